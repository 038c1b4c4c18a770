"""A plain, non-editable install works from any directory and adds one import name: hlstream.

Built offline from this checkout (`--no-build-isolation` uses the test venv's setuptools), so
no test reaches a package index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    source = build / "src"  # a copy: pip builds in the source tree and leaves build/ behind
    shutil.copytree(
        ROOT,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".venv",
            ".git",
            "build",
            "*.egg-info",
            "__pycache__",
            ".*_cache",
            ".hypothesis",
            "data",
            "run",
            "demo-*",
        ),
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-cache-dir",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=build,
        env=dict(os.environ, PIP_NO_INDEX="1"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return target


def test_the_code_lives_in_the_package_and_the_design_folders_link_into_it() -> None:
    for name in ("common", "services", "sim", "supervisord.conf"):
        link, real = ROOT / name, ROOT / "hlstream" / name
        assert link.is_symlink() and link.resolve() == real.resolve(), name
        assert not real.is_symlink() and real.exists(), name


def test_only_hlstream_lands_at_the_top_level(installed: Path) -> None:
    top = {p.name for p in installed.iterdir() if not p.name.endswith((".dist-info", "bin"))}
    assert top == {"hlstream"}, top
    for sub in ("common", "services/ingest", "services/aggregator", "services/writer", "sim"):
        package = installed / "hlstream" / sub
        assert (package / "__init__.py").is_file() and not package.is_symlink(), sub
    assert (installed / "hlstream" / "supervisord.conf").read_text().count("[program:") == 4


def test_installed_package_runs_from_another_directory(installed: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(installed)
    probe = (
        "import hlstream, hlstream.cli, hlstream.tap, hlstream.services.writer.shell, "
        "hlstream.sim.exchange, importlib.util as u;"
        "from hlstream.supervise_io import config_path;"
        "print(hlstream.__file__);print(config_path());"
        "print(u.find_spec('common') is None and u.find_spec('services') is None)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    module, conf, no_generic = result.stdout.split()
    assert module.startswith(str(installed)) and conf.startswith(str(installed))
    assert no_generic == "True"
    cli = subprocess.run(
        [sys.executable, "-m", "hlstream.cli", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert cli.returncode == 0 and "hlstream" in cli.stdout


def test_tap_needs_only_pyzmq_and_msgpack(tmp_path: Path) -> None:
    source = (ROOT / "hlstream" / "tap.py").read_text()
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports
    assert not [line for line in imports if "hlstream" in line], imports
    vendored = tmp_path / "vendored_tap.py"
    vendored.write_text(source)
    check = (
        "import sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "sys.modules['hlstream'] = None  # as in a project that copied tap.py alone\n"
        "import vendored_tap\n"
        "try:\n"
        "    vendored_tap.Tap('ipc:///nonexistent/trades.sock', ['trade.BTC|'])\n"
        "except vendored_tap.TapError as exc:\n"
        "    print(type(exc).__mro__[1].__name__, exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.startswith("Exception cannot tap"), result.stderr
