"""Start, stop and watch the three stages under supervisord (the `hlstream` front door)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from hlstream import STAGES
from hlstream.common.config import Settings
from hlstream.common.errors import EXIT_CONFIG, ConfigError
from hlstream.common.lifecycle_io import StopFlag, pdeathsig_preexec
from hlstream.common.sinks import has_sink
from hlstream.health import ProcessInfo
from hlstream.logview import Echo, config_error

START_TIMEOUT_S = 15.0  # supervisord daemonizes, then opens its socket
STOP_TIMEOUT_S = 45.0  # the stages' stopwaitsecs in supervisord.conf add up to 40 s
POLL_S = 0.1
PROBE_TIMEOUT_S = 1.0  # connecting to supervisord's control socket
TAIL_EVERY_S = 0.25  # the foreground run echoes new log lines this often
WATCH_EVERY_S = 1.0  # ... and checks for a stage stopped on a configuration error
TAIL_JOIN_S = 2.0
ERROR_TAIL_BYTES = 64 * 1024  # where a stage's last lines are, in its log
SOCKET = "supervisor.sock"  # in the run dir, as supervisord.conf names them
PID_FILE = "supervisord.pid"


def config_path() -> Path:
    """The supervisord.conf shipped in the package (override: HLSTREAM_SUPERVISORD_CONF)."""
    shipped = Path(__file__).resolve().parent / "supervisord.conf"
    return Path(os.environ.get("HLSTREAM_SUPERVISORD_CONF", shipped))


def stage_env(settings: Settings, overrides: dict[str, str]) -> dict[str, str]:
    """Environment for supervisord and its children: flags become HLSTREAM_* variables."""
    env = {**os.environ, **overrides}
    if env.get("HLSTREAM_CONFIG"):  # the stages run in the project dir, not the caller's
        env["HLSTREAM_CONFIG"] = str(Path(env["HLSTREAM_CONFIG"]).resolve())
    env["HLSTREAM_RUN_DIR"] = str(settings.run_dir)
    env["HLSTREAM_DATA_DIR"] = str(settings.data_dir)
    env["HLSTREAM_PYTHON"] = sys.executable
    env["HLSTREAM_HOME"] = os.getcwd()  # the stages' working dir: where the command ran
    env["HLSTREAM_RELAY"] = "true" if has_sink(settings) else "false"  # its autostart
    env["PYTHONUNBUFFERED"] = "1"
    return env


def is_running(settings: Settings) -> bool:
    """True when a supervisord answers on this run dir's control socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_TIMEOUT_S)
        try:
            probe.connect(str(settings.run_dir / SOCKET))  # a missing socket raises too
        except OSError:
            return False
    return True


def _rpc(settings: Settings) -> Any:
    """An XML-RPC proxy to this run dir's supervisord (its methods are dynamic)."""
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{settings.run_dir / SOCKET}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def process_states(settings: Settings) -> dict[str, ProcessInfo]:
    """supervisord's view of each stage, by name."""
    infos = msgspec.convert(_rpc(settings).supervisor.getAllProcessInfo(), list[ProcessInfo])
    return {info.name: info for info in infos}


def _supervisord_cmd(foreground: bool) -> list[str]:
    """supervisord's command; in the foreground it logs only to run/logs/supervisord.log."""
    cmd = [sys.executable, "-m", "supervisor.supervisord", "-c", str(config_path())]
    return cmd + (["-n", "--silent"] if foreground else [])


def _prepare_logs(settings: Settings) -> Path:
    logs = settings.run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return logs


def _proc(pid: int, name: str) -> bytes:
    """/proc/PID/NAME; empty once the process is gone."""
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def refuse_if_running(settings: Settings) -> None:
    """Raise ConfigError naming a live instance; clean up a dead one's pid file and socket."""
    pid = _read_pid(settings)
    run_dir = settings.run_dir
    if is_running(settings):
        owner = f" (supervisord pid {pid})" if pid else ""
        raise ConfigError(
            f"hlstream is already running with run dir {run_dir}{owner}; "
            f"stop it with `hlstream stop --run-dir {run_dir}`"
        )
    if pid and b"supervisord" in _proc(pid, "cmdline"):  # not a recycled pid
        raise ConfigError(
            f"hlstream's supervisord (pid {pid}) for run dir {run_dir} is alive but "
            f"not answering on its socket; stop it with `kill {pid}`"
        )
    for path in (settings.run_dir / SOCKET, settings.run_dir / PID_FILE):
        if path.exists():
            path.unlink(missing_ok=True)
            _say(f"hlstream: removed stale {path.name} left by a stopped instance", err=True)


def wait_until(
    ready: Callable[[], bool], timeout_s: float, sleep: Callable[[float], None] = time.sleep
) -> bool:
    """Whether `ready()` comes true within `timeout_s`, asking every POLL_S."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            return False
        sleep(POLL_S)
    return True


def start_daemon(settings: Settings, env: dict[str, str]) -> None:
    """Start supervisord in the background and say what runs where once it answers.
    ConfigError if already running, or if it does not answer within START_TIMEOUT_S."""
    refuse_if_running(settings)
    logs = _prepare_logs(settings)
    subprocess.run(_supervisord_cmd(foreground=False), env=env, check=True)
    if not wait_until(lambda: is_running(settings) and _read_pid(settings) > 0, START_TIMEOUT_S):
        raise ConfigError(
            f"supervisord did not answer on {settings.run_dir / SOCKET} within "
            f"{START_TIMEOUT_S:.0f} s (see {logs / 'supervisord.log'})"
        )
    run_dir = settings.run_dir
    _say(
        f"hlstream: started {', '.join(STAGES)} under supervisord (pid {_read_pid(settings)}); "
        f"data in {settings.data_dir}, logs in {logs}\n"
        f"hlstream: `hlstream status --run-dir {run_dir}` checks them, "
        f"`hlstream stop --run-dir {run_dir}` stops them"
    )


def stop_daemon(settings: Settings) -> int:
    """Shut supervisord down; 0 only once it and every stage have exited (supervisord answers
    at once and stops the stages after), so `hlstream stop && hlstream start` works."""
    pids = {_read_pid(settings)}
    with contextlib.suppress(OSError, xmlrpc.client.Error):
        pids |= {info.pid for info in process_states(settings).values()}
    pids.discard(0)
    try:
        _rpc(settings).supervisor.shutdown()
    except (OSError, xmlrpc.client.Error) as exc:
        if is_running(settings):
            _say(f"hlstream: stop: supervisord refused the shutdown ({exc})", err=True)
            return 1
    if wait_until(
        lambda: not any(map(_is_alive, pids)) and not is_running(settings), STOP_TIMEOUT_S
    ):
        _say(f"hlstream: stopped (run dir {settings.run_dir})")
        return 0
    left = ", ".join(str(pid) for pid in sorted(pids) if _is_alive(pid)) or "?"
    _say(f"hlstream: stop: still running after {STOP_TIMEOUT_S:.0f} s: pid {left}", err=True)
    return 1


def _read_pid(settings: Settings) -> int:
    try:
        return int((settings.run_dir / PID_FILE).read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _is_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie waiting for its parent to reap it."""
    stat = _proc(pid, "stat")
    return bool(stat) and stat.rsplit(b")", 1)[1].split()[0] != b"Z"


def _tail_logs(logs: Path, stop: threading.Event, echo: Echo) -> None:
    """Echo new whole lines of each stage's log, prefixed with its name, once more after `stop`."""
    paths = {stage: logs / f"{stage}.log" for stage in STAGES}
    offsets = {stage: path.stat().st_size if path.exists() else 0 for stage, path in paths.items()}
    stopping = False
    while not stopping:
        stopping = stop.wait(TAIL_EVERY_S)
        for stage, path in paths.items():
            try:
                size = path.stat().st_size
                start = 0 if size < offsets[stage] else offsets[stage]  # rotated: from the top
                if size == start:
                    continue
                with path.open("rb") as handle:
                    handle.seek(start)
                    chunk = handle.read(size - start)
            except OSError:
                continue
            cut = chunk.rfind(b"\n") + 1
            offsets[stage] = start + cut
            lines = chunk[:cut].decode("utf-8", "replace").splitlines()
            shown = [out for line in lines for out in echo.feed(stage, line, time.monotonic())]
            if shown:
                _say("\n".join(shown))


def _config_failure(settings: Settings) -> str | None:
    """Name of a stage that exited with the configuration-error code (or is FATAL), if any."""
    try:
        states = process_states(settings)
    except (OSError, xmlrpc.client.Error):
        return None
    for name, info in states.items():
        if info.statename == "FATAL" or (
            info.statename == "EXITED" and info.exitstatus == EXIT_CONFIG
        ):
            return name
    return None


def run_foreground(settings: Settings, env: dict[str, str]) -> int:
    """Run supervisord in the foreground, echoing the stage logs, until Ctrl-C/SIGTERM or a
    stage stops on a configuration error (exit 78). One SIGTERM goes to supervisord, which
    stops the stages in order, even if this process is SIGKILLed (PR_SET_PDEATHSIG)."""
    refuse_if_running(settings)
    logs = _prepare_logs(settings)
    stop = StopFlag().install()
    proc = subprocess.Popen(
        _supervisord_cmd(foreground=True),
        env=env,
        start_new_session=True,  # a terminal's Ctrl-C reaches us only; we stop it in order
        preexec_fn=pdeathsig_preexec(),
    )
    tail_done = threading.Event()
    tail = threading.Thread(target=_tail_logs, args=(logs, tail_done, Echo(str(logs))), daemon=True)
    tail.start()
    _say(
        f"hlstream: running {','.join(settings.coins)} x {','.join(settings.intervals)} from "
        f"{settings.ws_url}; data in {settings.data_dir}, logs in {logs}; Ctrl-C stops"
    )
    failed, forwarded, noted = None, False, 1
    while proc.poll() is None:
        if not stop.is_set():
            stop.wait(WATCH_EVERY_S)
            failed = None if stop.is_set() else _config_failure(settings)
            if failed:
                message = f"stage {failed} stopped on a configuration error; stopping the pipeline"
                _say(f"hlstream: {message}", err=True)
                stop.set()
            continue
        if not forwarded:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            forwarded = True
            if not failed:
                _say("hlstream: stopping: ingest, then the aggregator, then the writer", err=True)
        if stop.signals > noted:
            noted = stop.signals
            _say(
                "hlstream: already stopping (ingest, aggregator, then writer); "
                "the last bars are being written",
                err=True,
            )
        is_running(settings)  # wakes supervisord: it reaps a stopped stage now, not on its 1 s tick
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=POLL_S)
    tail_done.set()  # the tail echoes what the stages wrote up to their exit, then ends
    tail.join(timeout=TAIL_JOIN_S)
    if failed:  # the stage's own words, as the last line on the terminal
        log = logs / f"{failed}.log"
        _say(f"hlstream: error: {failed}: {_stage_error(log)} (log: {log})", err=True)
        return EXIT_CONFIG
    code = 0 if proc.returncode in (0, -signal.SIGTERM) else proc.returncode
    _say(f"hlstream: stopped (exit {code}); data in {settings.data_dir}", err=True)
    return code


def _stage_error(log: Path) -> str:
    """The last configuration error a stage logged, read from the end of its log."""
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - ERROR_TAIL_BYTES))
            text = handle.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"its log cannot be read ({exc.strerror})"
    return config_error(text.splitlines()) or "it could not start; its last lines are above"


def _say(text: str, err: bool = False) -> None:
    """Print a line; a closed terminal or pipe (the parent shell died) is not an error."""
    stream = sys.stderr if err else sys.stdout
    with contextlib.suppress(OSError, ValueError):
        stream.write(text + "\n")
        stream.flush()


def supervisorctl(settings: Settings, env: dict[str, str], *args: str) -> int:
    """Run supervisorctl against this run dir's supervisord."""
    cmd = [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(config_path()), *args]
    return subprocess.run(cmd, env=env).returncode
