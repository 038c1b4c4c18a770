"""`hlstream tap KIND [COIN...]`: print live bus (or, with `--nats`, JetStream) messages, one
line each, through hlstream/tap.py and hlstream/tap_nats.py. A tap on which nothing can arrive
says why at once: a missing socket exits 1, a coin or interval not streamed exits 2.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from hlstream.common.bus_io import curve_keys
from hlstream.common.clock import now_ms
from hlstream.common.config import ALL_COINS, Settings
from hlstream.common.errors import EXIT_USAGE
from hlstream.common.lifecycle_io import StopFlag
from hlstream.common.messages import TOPIC_END
from hlstream.common.sinks import sink_secrets
from hlstream.common.timebucket import format_window
from hlstream.tap import (
    UNKNOWN,
    CatchUpTap,
    ReplayError,
    Streamed,
    Tap,
    TapError,
    TapMessage,
    endpoint_problem,
    read_streamed,
    request_problem,
)
from hlstream.tap_nats import JetStreamTap

KINDS = ("trades", "bars", "book", "bbo", "fills", "gaps", "status", "late")
NATS_KINDS = ("trades", "gaps", "bars")  # the kinds the relay publishes to JetStream
ENDPOINT_WAIT_S = 3.0  # while supervisord runs, a missing socket may be a stage (re)starting
ENDPOINT_POLL_S = 0.2
RECEIVE_MS = 250  # the longest the tap blocks, so Ctrl-C, --count and --timeout are prompt
_TOPIC_NAME = {"trades": "trade", "bars": "bar", "gaps": "gap"}  # else the kind itself
_SETTING = {"book": "book_coins", "bbo": "bbo_coins", "fills": "user_fills"}
_ENVELOPE = {"v", "type", "session", "seq"}


def subscriptions(kind: str, coins: list[str], interval: str | None) -> list[str]:
    """The exact ZeroMQ prefixes for a tap (a family prefix when no coin is given)."""
    name = _TOPIC_NAME.get(kind, kind)
    if kind == "bars":
        family = f"bar.{interval}." if interval else "bar."
        # Bars of any interval: the coin is filtered on receipt.
        return [f"{family}{coin}{TOPIC_END}" for coin in coins] if coins and interval else [family]
    return [f"{name}.{coin}{TOPIC_END}" for coin in coins] if coins else [f"{name}."]


def topic_matcher(kind: str, coins: list[str], interval: str | None) -> Callable[[str], bool]:
    """Exact check of a received topic against the tap's kind, coins and interval."""
    name = _TOPIC_NAME.get(kind, kind)
    wanted = set(coins)

    def matches(topic: str) -> bool:
        if not topic.endswith(TOPIC_END) or not topic.startswith(name + "."):
            return False
        coin = topic[len(name) + 1 : -len(TOPIC_END)]
        if kind == "bars":
            label, _, coin = coin.partition(".")
            if interval and label != interval:
                return False
        return not wanted or coin in wanted

    return matches


def _stamp(ts_ms: object) -> str:
    if isinstance(ts_ms, int) and not isinstance(ts_ms, bool):
        return format_window(ts_ms - ts_ms % 1000) + f".{ts_ms % 1000:03d}"
    return "-"


def _known(value: object) -> object:
    return "-" if value is None else value  # a JetStream bar has no trade count or source


def _level(level: object) -> str:
    return f"{level.get('size')}@{level.get('price')}" if isinstance(level, dict) else "-"


def _users(users: object) -> str:
    if isinstance(users, list) and len(users) == 2:
        return f" buyer={users[0]} seller={users[1]}"
    return ""


def _body_lines(topic: str, data: dict[str, object]) -> list[str]:
    kind, get = data.get("type"), data.get
    trades, bids, asks = get("trades"), get("bids"), get("asks")
    if kind == "trades" and isinstance(trades, list):
        return [
            f"{_stamp(t.get('ts_ms'))} {t.get('coin')} {t.get('side'):<4} "
            f"{t.get('size')} @ {t.get('price')} tid={t.get('tid')}{_users(t.get('users'))}"
            for t in trades
            if isinstance(t, dict)
        ]
    if kind == "bar":
        state = "complete" if get("complete") else "PARTIAL"
        return [
            f"{_stamp(get('start_ms'))} {get('coin')} {get('interval')} O={get('open')} "
            f"H={get('high')} L={get('low')} C={get('close')} V={get('volume')} "
            f"n={_known(get('trades'))} {state} src={_known(get('source'))}"
        ]
    if kind == "book" and isinstance(bids, list) and isinstance(asks, list):
        best = f"bid {_level(bids[0] if bids else None)} ask {_level(asks[0] if asks else None)}"
        return [
            f"{_stamp(get('ts_ms'))} {get('coin')} book {best} ({len(bids)}x{len(asks)} levels)"
        ]
    if kind == "bbo":
        best = f"bid {_level(get('bid'))} ask {_level(get('ask'))}"
        return [f"{_stamp(get('ts_ms'))} {get('coin')} bbo {best}"]
    body = " ".join(f"{k}={json.dumps(v)}" for k, v in data.items() if k not in _ENVELOPE)
    return [f"{topic} {body}"]


def human_lines(message: TapMessage) -> list[str]:
    """One or more display lines for a message (a trade batch gives one line per trade)."""
    lines = _body_lines(message.topic, message.data)
    if message.event == "loss":
        return [f"# {message.topic} lost {message.lost} message(s)", *lines]
    if message.event == "restart":
        return [f"# {message.topic} publisher restarted", *lines]
    return lines


def json_line(message: TapMessage) -> str:
    """One JSON object per message: topic, event, lost and the decoded payload."""
    head = {"topic": message.topic, "event": message.event, "lost": message.lost}
    return json.dumps({**head, **message.data}, separators=(",", ":"), default=str)


def streamed_by(settings: Settings, at_ms: int) -> Streamed:
    """What the tapped instance streams: its writer's status, else the tap's own settings."""
    running = read_streamed(settings.run_dir, at_ms)
    if running is not None:
        return running
    coins = None if settings.coins == (ALL_COINS,) else frozenset(settings.coins)
    return Streamed(coins, frozenset(settings.intervals))


def request_args(kind: str, coins: list[str], interval: str | None) -> tuple[list[str], list[str]]:
    """The coins and bar intervals of a tap that the running instance's lists decide."""
    if kind not in ("trades", "gaps", "bars", "late"):
        return [], []  # book, bbo, fills: their own settings (noted); status: service names
    return coins, [interval] if kind == "bars" and interval else []


def _wait_for_endpoint(endpoint: str, settings: Settings, stop: StopFlag) -> str | None:
    """The endpoint's problem, at once unless supervisord runs: then give the stage a moment."""
    from hlstream.supervise_io import is_running

    problem = endpoint_problem(endpoint)
    if problem and is_running(settings):
        deadline = time.monotonic() + ENDPOINT_WAIT_S
        while problem and time.monotonic() < deadline and not stop.wait(ENDPOINT_POLL_S):
            problem = endpoint_problem(endpoint)
    if problem:
        return (
            f"cannot tap {endpoint}: {problem}; is hlstream running with "
            f"--run-dir {settings.run_dir}? (`hlstream status`)"
        )
    return None


def _note_setting(settings: Settings, kind: str, coins: list[str]) -> None:
    """Book, bbo and fills are published only for the coins (addresses) of their setting."""
    setting = _SETTING.get(kind)
    if setting is None:
        return
    configured: tuple[str, ...] = getattr(settings, setting)
    missing = [c for c in coins if c not in configured and c.lower() not in configured]
    if missing or not configured:
        print(
            f"hlstream tap: note: {setting} is {','.join(configured) or 'empty'}; ingest "
            f"publishes {kind} only for those",
            file=sys.stderr,
        )


def _fail(problem: object, code: int = 1) -> int:
    print(f"hlstream tap: {problem}", file=sys.stderr)
    return code


@dataclass(frozen=True, slots=True)
class TapRequest:
    """What `hlstream tap` asks for; it stops after `count` lines or `timeout_s`."""

    kind: str
    coins: list[str]
    interval: str | None = None
    as_json: bool = False
    count: int | None = None
    timeout_s: float | None = None
    since_ms: int | None = None  # catch up from here first (trades from the tape; --nats: stream)


def run_tap(settings: Settings, request: TapRequest) -> int:
    """Print messages until Ctrl-C, `count` lines, or `timeout_s`; exit 1 if count not reached."""
    kind, coins, interval = request.kind, request.coins, request.interval
    endpoint = settings.bars_endpoint if kind in ("bars", "late") else settings.trades_endpoint
    _note_setting(settings, kind, coins)
    stop = StopFlag().install()
    problem = _wait_for_endpoint(endpoint, settings, stop)
    if problem:
        return _fail(problem)
    problem = request_problem(*request_args(kind, coins, interval), streamed_by(settings, now_ms()))
    if problem:
        return _fail(problem, EXIT_USAGE)
    keys = curve_keys(settings)
    server_key = None if keys is None else keys.public
    tap: Tap | CatchUpTap
    try:
        if request.since_ms is not None:  # tape history first, then live (trades, coins given)
            replay = settings.replay_endpoint
            tap = CatchUpTap(endpoint, replay, coins, request.since_ms, RECEIVE_MS, server_key)
        else:
            tap = Tap(endpoint, subscriptions(kind, coins, interval), RECEIVE_MS, server_key)
    except TapError as exc:  # the instance went away or changed since the checks above
        return _fail(exc)
    return _print_messages(tap, endpoint, stop, request)


def nats_prefixes(kind: str, coins: list[str], interval: str | None) -> list[str]:
    """The bus topics a JetStream tap asks for (bars of given coins at every interval too)."""
    if kind == "bars" and coins and not interval:
        return [f"bar.*.{coin}{TOPIC_END}" for coin in coins]
    return subscriptions(kind, coins, interval)


def run_nats_tap(settings: Settings, url: str, request: TapRequest) -> int:
    """`run_tap` on the relay's JetStream streams at `url`, with the relay's credentials."""
    kind, coins, interval = request.kind, request.coins, request.interval
    if kind not in NATS_KINDS:
        kinds = ", ".join(NATS_KINDS)
        return _fail(f"--nats: JetStream holds {kinds} only, not {kind}", EXIT_USAGE)
    problem = request_problem(*request_args(kind, coins, interval), UNKNOWN)
    if problem:
        return _fail(problem, EXIT_USAGE)
    secrets = sink_secrets(settings)
    stop = StopFlag().install()
    try:
        tap = JetStreamTap(
            url, nats_prefixes(kind, coins, interval), RECEIVE_MS, since_ms=request.since_ms,
            user=settings.nats_user, password=secrets.nats_password, token=secrets.nats_token,
            creds_file=settings.nats_creds_file, tls_ca_file=settings.nats_tls_ca_file,
        )  # fmt: skip
    except TapError as exc:
        return _fail(exc)
    return _print_messages(tap, tap.url, stop, request)


def _print_messages(
    tap: Tap | CatchUpTap | JetStreamTap, source: str, stop: StopFlag, request: TapRequest
) -> int:
    """Print `tap`'s matching messages until Ctrl-C, `count` lines or `timeout_s`; close it."""
    out, count, timeout_s = sys.stdout, request.count, request.timeout_s
    matches = topic_matcher(request.kind, request.coins, request.interval)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    printed = 0
    quiet_since, warned = time.monotonic(), False
    try:
        while (count is None or printed < count) and not stop.is_set():
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                tap.timeout_ms = max(1, min(RECEIVE_MS, int(remaining * 1000)))
            message = tap.receive()
            if message is None or not matches(message.topic):
                if not warned and time.monotonic() - quiet_since > ENDPOINT_WAIT_S:
                    warned = True
                    print(
                        f"hlstream tap: connected to {source}; nothing matching has been "
                        f"published for {ENDPOINT_WAIT_S:.0f}s, still waiting",
                        file=sys.stderr,
                    )
                continue
            for line in [json_line(message)] if request.as_json else human_lines(message):
                if count is not None and printed >= count:
                    break
                out.write(line + "\n")
                printed += not line.startswith("#")
            out.flush()
    except KeyboardInterrupt:
        return 0
    except ReplayError as exc:
        return _fail(f"cannot catch up from the tape: {exc}")
    except BrokenPipeError:  # `hlstream tap ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        return 0
    finally:
        tap.close()
    return 1 if count is not None and printed < count else 0
