"""`hlstream tap KIND [COIN...]`: print live bus messages, one line each (via common/tap.py).

Kinds and where they are published:
    trades, gaps, status                on trades_endpoint (ingest)
    book, bbo, fills                    on trades_endpoint, only for the coins/addresses
                                        in settings book_coins, bbo_coins, user_fills
    bars, late                          on bars_endpoint (aggregator)
With `--since 5m` (trades only), the tap first prints the coins' trades of the last five
minutes from ingest's tape, then goes on live with no gap and no duplicate at the seam.
Coins are matched exactly: the subscription `trade.ETH|` never receives `trade.ETHFI|`, and
every received topic is compared again against the wanted set. Human lines by default,
one JSON object per message with `--json` (`topic`, `event`, `lost` + the payload map).
"""

from __future__ import annotations

import json
import socket
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from hlstream.common.bus_io import curve_keys
from hlstream.common.config import Settings
from hlstream.common.lifecycle_io import StopFlag
from hlstream.common.messages import TOPIC_END
from hlstream.common.timebucket import format_window
from hlstream.tap import CatchUpTap, ReplayError, Tap, TapMessage

KINDS = ("trades", "bars", "book", "bbo", "fills", "gaps", "status", "late")
_TOPIC_NAME = {
    "trades": "trade",
    "bars": "bar",
    "book": "book",
    "bbo": "bbo",
    "fills": "fills",
    "gaps": "gap",
    "status": "status",
    "late": "late",
}


def subscriptions(kind: str, coins: list[str], interval: str | None) -> list[str]:
    """The exact ZeroMQ prefixes for a tap (a family prefix when no coin is given)."""
    name = _TOPIC_NAME[kind]
    if kind == "bars":
        family = f"bar.{interval}." if interval else "bar."
        if not coins:
            return [family]
        if interval:
            return [f"{family}{coin}{TOPIC_END}" for coin in coins]
        return [family]  # any interval: filter the coin on receipt
    if not coins:
        return [f"{name}."]
    return [f"{name}.{coin}{TOPIC_END}" for coin in coins]


def topic_matcher(kind: str, coins: list[str], interval: str | None) -> Callable[[str], bool]:
    """Exact check of a received topic against the tap's kind, coins and interval."""
    name = _TOPIC_NAME[kind]
    wanted = set(coins)

    def matches(topic: str) -> bool:
        if not topic.endswith(TOPIC_END) or not topic.startswith(name + "."):
            return False
        rest = topic[len(name) + 1 : -len(TOPIC_END)]
        if kind == "bars":
            label, _, coin = rest.partition(".")
            if interval and label != interval:
                return False
            return not wanted or coin in wanted
        return not wanted or rest in wanted

    return matches


def _stamp(ts_ms: object) -> str:
    if isinstance(ts_ms, int) and not isinstance(ts_ms, bool):
        return format_window(ts_ms - ts_ms % 1000) + f".{ts_ms % 1000:03d}"
    return "-"


_ENVELOPE = {"v", "type", "session", "seq"}


def _level(level: object) -> str:
    if isinstance(level, dict):
        return f"{level.get('size')}@{level.get('price')}"
    return "-"


def human_lines(message: TapMessage) -> list[str]:
    """One or more display lines for a message (a trade batch gives one line per trade)."""
    data = message.data
    kind = data.get("type")
    lines: list[str] = []
    if kind == "trades" and isinstance(data.get("trades"), list):
        for trade in data["trades"]:
            if not isinstance(trade, dict):
                continue
            lines.append(
                f"{_stamp(trade.get('ts_ms'))} {trade.get('coin')} {trade.get('side'):<4} "
                f"{trade.get('size')} @ {trade.get('price')} tid={trade.get('tid')}"
            )
    elif kind == "bar":
        state = "complete" if data.get("complete") else "PARTIAL"
        lines.append(
            f"{_stamp(data.get('start_ms'))} {data.get('coin')} {data.get('interval')} "
            f"O={data.get('open')} H={data.get('high')} L={data.get('low')} "
            f"C={data.get('close')} V={data.get('volume')} n={data.get('trades')} "
            f"{state} src={data.get('source')}"
        )
    elif (
        kind == "book" and isinstance(data.get("bids"), list) and isinstance(data.get("asks"), list)
    ):
        bids, asks = data["bids"], data["asks"]
        lines.append(
            f"{_stamp(data.get('ts_ms'))} {data.get('coin')} book "
            f"bid {_level(bids[0] if bids else None)} ask {_level(asks[0] if asks else None)} "
            f"({len(bids)}x{len(asks)} levels)"
        )
    elif kind == "bbo":
        lines.append(
            f"{_stamp(data.get('ts_ms'))} {data.get('coin')} bbo "
            f"bid {_level(data.get('bid'))} ask {_level(data.get('ask'))}"
        )
    else:
        body = " ".join(f"{k}={json.dumps(v)}" for k, v in data.items() if k not in _ENVELOPE)
        lines.append(f"{message.topic} {body}")
    if message.event in ("loss", "restart"):
        note = "publisher restarted"
        if message.event == "loss":
            note = f"lost {message.lost} message(s)"
        lines.insert(0, f"# {message.topic} {note}")
    return lines


def json_line(message: TapMessage) -> str:
    """One JSON object per message: topic, event, lost and the decoded payload."""
    body: dict[str, Any] = {"topic": message.topic, "event": message.event, "lost": message.lost}
    body.update(message.data)
    return json.dumps(body, separators=(",", ":"), default=str)


ENDPOINT_WAIT_S = 3.0


def endpoint_problem(endpoint: str) -> str | None:
    """Why nothing can arrive on an ipc endpoint (missing, unreadable, stale), else None."""
    if not endpoint.startswith("ipc://"):
        return None
    path = Path(endpoint[len("ipc://") :])
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if not path.parent.is_dir():
            return f"run dir {path.parent} does not exist"
        return f"no socket {path.name} in {path.parent}: nothing is publishing there"
    except PermissionError:
        return f"permission denied on {path.parent} (run dirs are mode 0700: run as their owner)"
    if not stat.S_ISSOCK(mode):
        return f"{path} is not a socket"
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except PermissionError:
        return f"permission denied on {path}"
    except OSError:
        return f"{path} is a stale socket: no publisher is listening on it"
    finally:
        probe.close()
    return None


def _wait_for_endpoint(endpoint: str, run_dir: Path, stop: StopFlag) -> str | None:
    """Give a starting pipeline a few seconds; return the problem if it persists."""
    deadline = time.monotonic() + ENDPOINT_WAIT_S
    problem = endpoint_problem(endpoint)
    while problem and time.monotonic() < deadline and not stop.wait(0.2):
        problem = endpoint_problem(endpoint)
    if problem:
        return f"{problem}; is hlstream running with --run-dir {run_dir}? (`hlstream status`)"
    return None


def run_tap(
    settings: Settings,
    kind: str,
    coins: list[str],
    *,
    interval: str | None = None,
    as_json: bool = False,
    count: int | None = None,
    timeout_s: float | None = None,
    since_ms: int | None = None,
    out: TextIO | None = None,
) -> int:
    """Print messages until Ctrl-C, `count` lines, or `timeout_s`; exit 1 if count not reached."""
    out = out or sys.stdout
    endpoint = settings.bars_endpoint if kind in ("bars", "late") else settings.trades_endpoint
    configured = {
        "book": settings.book_coins,
        "bbo": settings.bbo_coins,
        "fills": settings.user_fills,
    }.get(kind)
    if configured is not None:
        missing = [c for c in coins if c not in configured and c.lower() not in configured]
        if missing or not configured:
            setting = {"book": "book_coins", "bbo": "bbo_coins", "fills": "user_fills"}[kind]
            print(
                f"hlstream tap: note: {setting} is {','.join(configured) or 'empty'}; ingest "
                f"publishes {kind} only for those",
                file=sys.stderr,
            )
    stop = StopFlag().install()
    problem = _wait_for_endpoint(endpoint, settings.run_dir, stop)
    if problem:
        print(f"hlstream tap: cannot tap {endpoint}: {problem}", file=sys.stderr)
        return 1
    matches = topic_matcher(kind, coins, interval)
    keys = curve_keys(settings)
    server_key = None if keys is None else keys.public
    tap: Tap | CatchUpTap
    if since_ms is not None:  # tape history first, then live (kind trades, coins given)
        tap = CatchUpTap(
            endpoint,
            settings.replay_endpoint,
            coins,
            since_ms,
            timeout_ms=250,
            server_key=server_key,
        )
    else:
        tap = Tap(endpoint, subscriptions(kind, coins, interval), 250, server_key)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    printed = 0
    quiet_since, warned = time.monotonic(), False
    try:
        while (count is None or printed < count) and not stop.is_set():
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                tap.timeout_ms = max(1, min(250, int(remaining * 1000)))
            message = tap.receive()
            if message is None or not matches(message.topic):
                if not warned and time.monotonic() - quiet_since > ENDPOINT_WAIT_S:
                    warned = True
                    print(
                        f"hlstream tap: connected to {endpoint}; nothing matching has been "
                        f"published for {ENDPOINT_WAIT_S:.0f}s, still waiting",
                        file=sys.stderr,
                    )
                continue
            lines = [json_line(message)] if as_json else human_lines(message)
            for line in lines:
                if count is not None and printed >= count:
                    break
                out.write(line + "\n")
                if not line.startswith("#"):
                    printed += 1
            out.flush()
    except KeyboardInterrupt:
        return 0
    except ReplayError as exc:
        print(f"hlstream tap: cannot catch up from the tape: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `hlstream tap ... | head`: stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        return 0
    finally:
        tap.close()
    return 1 if count is not None and printed < count else 0
