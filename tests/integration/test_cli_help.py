"""`hlstream` help: a bare command lists the commands, each --help shows its own options, and
the settings are explained once, in `hlstream help settings`."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields

from hlstream.common.config import Settings


def _hlstream(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hlstream.cli", *args], capture_output=True, text=True, timeout=30
    )


def test_bare_hlstream_prints_the_command_list():
    result = _hlstream()
    assert result.returncode == 0, result.stderr
    for command in ("run", "start", "stop", "restart", "status", "tap", "demo", "help"):
        assert f"\n    {command} " in result.stdout, command


def test_subcommand_help_shows_its_own_options_not_every_setting():
    result = _hlstream("status", "--help")
    assert result.returncode == 0
    assert "--json" in result.stdout and "--config FILE" in result.stdout
    assert "--backoff-cap-seconds" not in result.stdout and "--coins VALUE" not in result.stdout
    assert "hlstream help settings" in result.stdout


def test_setting_flags_are_still_accepted_by_every_command():
    result = _hlstream("verify", "--data-dir", "/nonexistent-hlstream-dir", "--interval", "1m")
    assert result.returncode == 1, result.stderr  # the settings parsed; nothing to verify there
    assert "no *_data.csv files in /nonexistent-hlstream-dir" in result.stderr


def test_help_settings_explains_every_setting_once():
    result = _hlstream("help", "settings")
    assert result.returncode == 0, result.stderr
    for item in fields(Settings):
        flag = "--" + item.name.replace("_", "-")
        assert result.stdout.count(f"  {flag}  HLSTREAM_{item.name.upper()}\n") == 1, flag
    assert "(default: 30m)" in result.stdout


def test_hints_name_the_venv_command_when_hlstream_is_not_on_path(tmp_path, monkeypatch):
    from hlstream.commands import command_name as _command_name

    script = tmp_path / ".venv" / "bin" / "hlstream"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr("sys.argv", [".venv/bin/hlstream", "demo"])
    assert _command_name() == ".venv/bin/hlstream"

    monkeypatch.setenv("PATH", str(script.parent))
    script.chmod(0o755)
    assert _command_name() == "hlstream"
