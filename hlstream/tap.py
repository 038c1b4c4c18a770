"""Tap the hlstream bus from any Python process: needs only pyzmq and msgpack, and imports
nothing from hlstream, so a strategy can copy it:

    from hlstream.tap import Tap
    for msg in Tap("ipc:///path/to/run/trades.sock", ["trade.BTC|"]):
        print(msg.topic, msg.data)

`msg.data` is the decoded payload (docs/bus.md); `msg.event` is "first", "ok", "restart" (new
publisher session), "loss" (`msg.lost` were dropped) or "stale" (a repeat). Topics end with "|",
so "trade.ETH|" never matches "trade.ETHFI|"; "trade." subscribes to a family. A tap on which
nothing can arrive raises `TapError` at once, in one line. `CatchUpTap` replays trades from
ingest's tape, then goes on live with no gap and no duplicate. `Tap.nats`: JetStream, any host.
"""

from __future__ import annotations

import difflib
import json
import re
import socket
import stat
import time
from collections import deque
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack
import zmq

if TYPE_CHECKING:
    from hlstream.tap_nats import JetStreamTap

try:  # installed with hlstream, tap errors share its root; vendored alone, this file stands alone
    from hlstream.common.errors import HlstreamError as _ErrorRoot
except ImportError:  # test_packaging loads a copy of this file with hlstream blocked
    _ErrorRoot = Exception  # type: ignore[assignment,misc]

SCHEMA_VERSION = 2
MAX_FRAME_BYTES = 4 * 1024 * 1024
TOPIC_END = "|"  # the bus's topic terminator (common/messages.py), never inside a coin name
STATUS_FRESH_MS = 10_000  # the writer rewrites its status every second; older is not trusted
SHOWN_NAMES = 12  # longer coin lists are cut in error messages
RECEIVE_QUEUE = 100_000  # messages held for a slow reader before ZeroMQ drops (then: "loss")
HEARTBEAT_WAIT_S = 5.0  # CatchUpTap: ingest heartbeats every second
REPLAY_ANSWER_MS = 30_000  # CatchUpTap: the longest wait for each frame of a replay
_GAP_FIELDS = ("coin", "from_ms", "to_ms", "reason")

WireMap = dict[str, Any]  # a decoded payload: the message's fields plus v, type, session, seq


class TapError(_ErrorRoot):
    """Nothing can arrive on this tap; the message says why in one line."""


class ReplayError(TapError):
    """The tape replay could not be had (ingest not running, bad request, too much asked)."""


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
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except PermissionError:
            return f"permission denied on {path}"
        except OSError:
            return f"{path} is a stale socket: no publisher is listening on it"
    return None


# A copy of hlstream.common.timebucket.parse_interval, since this file imports nothing from
# hlstream; tests/unit/test_tap_request.py holds both to one table of labels.
_INTERVAL_RE = re.compile(r"^([1-9][0-9]{0,5})([smhd])$")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DAY_MS = 86_400_000


def _interval_ms(label: str) -> int | None:
    match = _INTERVAL_RE.match(label.strip())
    return None if match is None else int(match.group(1)) * _UNIT_MS[match.group(2)]


def interval_problem(label: str) -> str | None:
    """hlstream's parse error for a bar interval label, or None when it is well formed."""
    interval_ms = _interval_ms(label)
    if interval_ms is None:
        units = "N followed by s, m, h or d (e.g. 5s, 1m, 30m, 1h, 1d)"
        return f"unknown interval {label!r}: use {units}"
    if interval_ms > 7 * _DAY_MS:
        return f"interval {label!r} is longer than 7 days"
    if _DAY_MS % interval_ms != 0 and interval_ms % _DAY_MS != 0:
        drift = "so windows would drift against UTC"
        return f"interval {label!r} does not divide a day evenly, {drift}"
    return None


@dataclass(frozen=True)
class Streamed:
    """The coins and bar intervals an instance streams (None: not known); run_dir: read there."""

    coins: frozenset[str] | None
    intervals: frozenset[str] | None
    run_dir: str | None = None


UNKNOWN = Streamed(None, None)


def read_streamed(run_dir: str | Path, now_ms: int) -> Streamed | None:
    """What the instance in `run_dir` streams, from its writer's status file; None when there
    is no fresh, well-formed one (a stale file may describe an earlier configuration)."""
    try:
        data = json.loads((Path(run_dir) / "writer-status.json").read_text())
        ts_ms, files, refused = data["ts_ms"], data["files"], data["refused"]
        pairs = [(info["coin"], info["interval"]) for info in files.values()]
        pairs += [(key.rpartition(" ")[0], key.rpartition(" ")[2]) for key in refused]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    named = pairs and all(isinstance(name, str) and name for pair in pairs for name in pair)
    if type(ts_ms) is not int or abs(now_ms - ts_ms) > STATUS_FRESH_MS or not named:
        return None
    return Streamed(frozenset(c for c, _ in pairs), frozenset(i for _, i in pairs), str(run_dir))


def request_problem(
    coins: Iterable[str], intervals: Iterable[str], streamed: Streamed
) -> str | None:
    """Why no message can arrive for these coins and bar intervals, else None (pure)."""
    for label in intervals:
        problem = interval_problem(label)
        if problem:
            return f"nothing can arrive: {problem}"
        if streamed.intervals is not None and label not in streamed.intervals:
            labels = sorted(streamed.intervals, key=lambda name: (_interval_ms(name) or 0, name))
            has = _has(streamed, "intervals", labels)
            return f"nothing can arrive for interval {label!r}: {has}"
    if streamed.coins is None:
        return None
    known = streamed.coins
    for coin in coins:
        if coin in known:
            continue
        same_case = sorted(name for name in known if name.lower() == coin.lower())
        if same_case:
            hint = "(coin names are case-sensitive)"
            return f"nothing can arrive for coin {coin!r}: did you mean {same_case[0]}? {hint}"
        close = difflib.get_close_matches(coin, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        has = _has(streamed, "coins", sorted(known))
        return f"nothing can arrive for coin {coin!r}: {has}{hint}"
    return None


def requested(prefixes: Iterable[str]) -> tuple[list[str], list[str]]:
    """The coins and bar intervals named by topic prefixes (a partial prefix names none)."""
    coins: list[str] = []
    intervals: list[str] = []
    for prefix in prefixes:
        kind, _, rest = prefix.partition(".")
        if kind == "bar":
            label, dot, rest = rest.partition(".")
            if not dot:
                continue
            intervals.append(label)
        elif kind not in ("trade", "gap", "late"):
            continue  # book, bbo and fills follow settings a tap cannot see; status is not a coin
        if len(rest) > len(TOPIC_END) and rest.endswith(TOPIC_END):
            coins.append(rest[: -len(TOPIC_END)])
    return coins, intervals


def _has(streamed: Streamed, what: str, names: Collection[str]) -> str:
    shown = ", ".join(list(names)[:SHOWN_NAMES])
    if len(names) > SHOWN_NAMES:
        shown += f", ... ({len(names)} in all)"
    if streamed.run_dir is None:
        return f"setting {what} is {shown}"
    return f"the instance running in {streamed.run_dir} has {what} {shown}"


@dataclass(frozen=True)
class TapMessage:
    """One decoded bus message and what its sequence number says."""

    topic: str
    data: WireMap
    event: str
    lost: int


def _connect(sock: zmq.Socket[bytes], endpoint: str, server_key: bytes | None) -> None:
    """Connect `sock`; with `server_key` (the bus runs CURVE), as an authenticated client."""
    sock.setsockopt(zmq.LINGER, 0)
    if server_key is not None:
        sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
        sock.curve_serverkey = server_key
    sock.connect(endpoint)


class Tap:
    """A SUB socket on one hlstream endpoint, yielding decoded messages."""

    def __init__(
        self,
        endpoint: str,
        prefixes: list[str],
        timeout_ms: int | None = None,
        server_key: bytes | None = None,
    ):
        problem = endpoint_problem(endpoint)
        if problem:
            raise TapError(f"cannot tap {endpoint}: {problem}")
        streamed = None  # an ipc socket's folder is a run dir; its writer says what streams
        if endpoint.startswith("ipc://"):
            run_dir = Path(endpoint[len("ipc://") :]).parent
            streamed = read_streamed(run_dir, time.time_ns() // 1_000_000)
        problem = request_problem(*requested(prefixes), streamed or UNKNOWN)
        if problem:
            raise TapError(problem)
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.RCVHWM, RECEIVE_QUEUE)
        for prefix in prefixes or [""]:
            self.socket.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        _connect(self.socket, endpoint, server_key)
        self.prefixes = prefixes
        self.timeout_ms = timeout_ms
        self.malformed = 0
        self.lost = 0
        self._last: dict[str, tuple[str, int]] = {}

    @staticmethod
    def nats(url: str, prefixes: list[str], **options: Any) -> JetStreamTap:
        """The same messages from JetStream at `url`, any host (hlstream/tap_nats.py)."""
        from hlstream.tap_nats import JetStreamTap  # needs nats-py, which the bus tap does not

        return JetStreamTap(url, prefixes, **options)

    def receive(self) -> TapMessage | None:
        """The next valid message, or None when `timeout_ms` passes without one."""
        while True:
            if self.timeout_ms is not None and not self.socket.poll(self.timeout_ms):
                return None
            message = self._decode(self.socket.recv_multipart())
            if message is not None:
                return message

    def _decode(self, frames: list[bytes]) -> TapMessage | None:
        try:
            if len(frames) != 2 or len(frames[1]) > MAX_FRAME_BYTES:
                raise ValueError("bad frame count or size")
            topic = frames[0].decode("ascii")
            if self.prefixes and not any(topic.startswith(p) for p in self.prefixes):
                raise ValueError("topic does not match")
            data = msgpack.unpackb(frames[1], raw=False)
            version = data.get("v") if isinstance(data, dict) else None
            if type(version) is not int or version != SCHEMA_VERSION:
                raise ValueError(f"not a version-{SCHEMA_VERSION} map")
            session, seq = data["session"], data["seq"]
            if not isinstance(session, str) or type(seq) is not int:
                raise ValueError("bad session or seq")
        except (ValueError, KeyError, UnicodeDecodeError, msgpack.UnpackException):
            self.malformed += 1
            return None
        return TapMessage(topic, data, *self._sequence(topic, session, seq))

    def _sequence(self, topic: str, session: str, seq: int) -> tuple[str, int]:
        # A copy of common/sequence.py's SeqTracker; tests/unit/test_sequence_table.py: same.
        previous = self._last.get(topic)
        if previous is None or previous[0] != session:
            self._last[topic] = (session, seq)
            return ("first", 0) if previous is None else ("restart", 0)
        if seq <= previous[1]:
            return "stale", 0  # a repeat or an older message: nothing was lost
        self._last[topic] = (session, seq)
        lost = seq - previous[1] - 1
        self.lost += lost
        return ("loss", lost) if lost else ("ok", 0)

    def close(self) -> None:
        self.socket.close()

    def __iter__(self) -> Iterator[TapMessage]:
        """The messages until `receive` times out."""
        return iter(self.receive, None)


class CatchUpTap:
    """Trades and gap markers of `coins` since `since_ms` from ingest's tape, then live.
    Subscribe first; ask for the replay once the subscription is live (an ingest heartbeat
    came); then drop each live message whose tape span ends where the replay had reached
    (`_is_new`; the seam is pinned by tests/unit/test_replay_seam.py)."""

    def __init__(
        self,
        trades_endpoint: str,
        replay_endpoint: str,
        coins: list[str],
        since_ms: int,
        timeout_ms: int | None = None,
        server_key: bytes | None = None,
    ):
        topics = [f"{kind}.{coin}|" for coin in coins for kind in ("trade", "gap")]
        self.live = Tap(trades_endpoint, [*topics, "status.ingest|"], server_key=server_key)
        self.replay_endpoint = replay_endpoint
        self.server_key = server_key
        self.coins = list(coins)
        self.since_ms = since_ms
        self.timeout_ms = timeout_ms
        self.replayed: dict[str, dict[str, int]] = {}  # coin -> {day: tape offset}
        self.pending: deque[TapMessage] = deque()
        self.started = False

    def receive(self) -> TapMessage | None:
        """The next replayed or live message, or None when `timeout_ms` passes without one."""
        if not self.started:
            self.started = True
            self._catch_up()
        while not self.pending:
            self.live.timeout_ms = self.timeout_ms
            message = self.live.receive()
            if message is None:
                return None
            if self._is_new(message):
                return message
        return self.pending.popleft()

    def _is_new(self, message: TapMessage) -> bool:
        if message.topic.startswith("status."):
            return False
        span, coin = message.data.get("tape"), message.data.get("coin")
        if not isinstance(span, list) or len(span) != 3 or coin not in self.replayed:
            return True
        day, _start, end = span
        upto = self.replayed[coin].get(day)
        return upto is None or end > upto

    def _catch_up(self) -> None:
        deadline = time.monotonic() + HEARTBEAT_WAIT_S
        buffered: list[TapMessage] = []
        while True:  # until the subscription is live
            self.live.timeout_ms = max(1, int((deadline - time.monotonic()) * 1000))
            message = self.live.receive()
            if message is None:
                raise ReplayError(
                    f"no heartbeat from ingest within {HEARTBEAT_WAIT_S:.0f}s; is hlstream running?"
                )
            if message.topic.startswith("status."):
                break
            buffered.append(message)
        dealer = self.live.context.socket(zmq.DEALER)
        _connect(dealer, self.replay_endpoint, self.server_key)
        try:
            for coin in self.coins:
                self._replay_coin(dealer, coin)
        finally:
            dealer.close()
        self.pending.extend(m for m in buffered if self._is_new(m))

    def _replay_coin(self, dealer: zmq.Socket[bytes], coin: str) -> None:
        request = {"v": SCHEMA_VERSION, "type": "replay", "coin": coin, "since_ms": self.since_ms}
        dealer.send(msgpack.packb(request, use_bin_type=True))
        while True:
            if not dealer.poll(REPLAY_ANSWER_MS):
                raise ReplayError(f"no answer from the replay server at {self.replay_endpoint}")
            frame = msgpack.unpackb(dealer.recv(), raw=False)
            kind = frame.get("type", "") if isinstance(frame, dict) else None
            if kind == "replay_trades":
                data = {"type": "trades", "coin": coin, "trades": frame["trades"]}
                self.pending.append(TapMessage(f"trade.{coin}|", data, "replay", 0))
            elif kind == "replay_gap":
                data = {"type": "gap", **{key: frame[key] for key in _GAP_FIELDS}}
                self.pending.append(TapMessage(f"gap.{coin}|", data, "replay", 0))
            elif kind == "replay_end":
                self.replayed[coin] = dict(frame["tape"])
                return
            else:
                raise ReplayError(str(frame.get("error", frame) if kind is not None else frame))

    def close(self) -> None:
        self.live.close()

    def __iter__(self) -> Iterator[TapMessage]:
        """The messages until `receive` times out."""
        return iter(self.receive, None)
