"""The relay's pure core: subjects, message ids, payloads, the publish plan, SQL, progress.

Stream layout (docs/scale-out.md is the reference for consumers in any language):

    HL_TRADES  hl.trades.{coin}            one message per trade, msgpack `JsTrade`,
                                           header Nats-Msg-Id `{coin}:{ts_ms}:{tid}`
               hl.gaps.{coin}              msgpack `JsGap`, msg id `gap:{coin}:{from_ms}:{to_ms}`
    HL_BARS    hl.bars.{interval}.{coin}   msgpack `JsBar`, msg id
                                           `{interval}:{coin}:{start_ms}:{revision}`

Subject tokens: a coin is used as is when it consists of `[A-Za-z0-9_-]` only; any other
byte of its UTF-8 form (and `%` itself) is written `%XX` (uppercase hex), so `PURR/USDC` is
`PURR%2FUSDC`, `@107` is `%40107`, `xyz:TSLA` is `xyz%3ATSLA`. Case is kept (subjects are
case-sensitive, as coin names are), and every coin has its own token (hlstream/tap_nats.py
decodes them).
Message ids use the exact coin: they are header values, not subject tokens.

Exactly once: a trade is skipped when its id is already in the stream (read back from the
resume point minus `READ_BACK_MARGIN_MS`) and otherwise published with its id, so the
server's duplicate window covers only the seconds between a read-back and a publish.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from hlstream.common.addresses import Users
from hlstream.common.messages import Gap, Trade
from hlstream.common.tape.format import Record
from hlstream.common.wire import Count, Ms

TRADES_STREAM = "HL_TRADES"
BARS_STREAM = "HL_BARS"
TRADE_PREFIX = "hl.trades."
GAP_PREFIX = "hl.gaps."
BAR_PREFIX = "hl.bars."
MSG_ID_HEADER = "Nats-Msg-Id"
READ_BACK_MARGIN_MS = 300_000  # late trades and host clock skew: read back this much earlier
SCHEMA_VERSION = 1

Values = tuple[str, str, str, str, str]  # a bar's open, high, low, close, volume as written

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_SAFE_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+\Z")


# --- subjects and ids ---------------------------------------------------------------------


def encode_token(coin: str) -> str:
    """`coin` as one NATS subject token (see the module docstring)."""
    if _SAFE_TOKEN_RE.match(coin):
        return coin
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in coin.encode("utf-8"))


def trade_subject(coin: str) -> str:
    return TRADE_PREFIX + encode_token(coin)


def gap_subject(coin: str) -> str:
    return GAP_PREFIX + encode_token(coin)


def bar_subject(interval: str, coin: str) -> str:
    return f"{BAR_PREFIX}{interval}.{encode_token(coin)}"


def trade_msg_id(trade: Trade) -> str:
    return f"{trade.coin}:{trade.ts_ms}:{trade.tid}"


def gap_msg_id(gap: Gap) -> str:
    return f"gap:{gap.coin}:{gap.from_ms}:{gap.to_ms}"


def bar_msg_id(interval: str, coin: str, start_ms: int, revision: int) -> str:
    return f"{interval}:{coin}:{start_ms}:{revision}"


# --- payloads -----------------------------------------------------------------------------


class JsTrade(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """A trade on `hl.trades.{coin}`: the bus's trade map plus `recv_us`, when this host's
    relay read it from its tape (the tape keeps no receipt time; an upper bound on it);
    `users` only when the trade has them."""

    coin: str
    side: Literal["buy", "sell"]
    price: str
    size: str
    ts_ms: Ms
    tid: Count
    hash: str
    recv_us: Count
    users: Users | None = None


class JsGap(msgspec.Struct, frozen=True, gc=False):
    """On `hl.gaps.{coin}`: trades of `coin` in [from_ms, to_ms] may be missing."""

    coin: str
    from_ms: Ms
    to_ms: Ms
    reason: str


class JsBar(msgspec.Struct, frozen=True, gc=False):
    """A CSV row on `hl.bars.{interval}.{coin}`; `trades` counts the tape's trades that make
    the row, nil when the tape does not account for it exactly (tradecount.py);
    `exact` is False when the row has an `.inexact` journal entry, True for a `.revisions`
    line (the venue's candle); a higher `revision` of the same window replaces a lower one."""

    coin: str
    interval: str
    start_ms: Ms
    open: str
    high: str
    low: str
    close: str
    volume: str
    trades: Count | None
    exact: bool
    revision: Annotated[int, Meta(ge=0)]


_ENCODER = msgspec.msgpack.Encoder()


def trade_payload(trade: Trade, recv_us: int) -> bytes:
    t = trade
    return _ENCODER.encode(
        JsTrade(t.coin, t.side, t.price, t.size, t.ts_ms, t.tid, t.hash, recv_us, t.users)
    )


def gap_payload(gap: Gap) -> bytes:
    return _ENCODER.encode(JsGap(gap.coin, gap.from_ms, gap.to_ms, gap.reason))


def bar_payload(bar: JsBar) -> bytes:
    return _ENCODER.encode(bar)


# --- publish plan -------------------------------------------------------------------------


class Outgoing(msgspec.Struct, frozen=True, gc=False):
    """One message to publish: subject, msg id, payload."""

    subject: str
    msg_id: str
    payload: bytes


def plan_records(
    records: Iterable[Record], present: set[str] | frozenset[str], recv_us: int
) -> tuple[list[Outgoing], int]:
    """The messages for `records` that the stream lacks, and how many were already there."""
    out: list[Outgoing] = []
    skipped = 0
    for record in records:
        if isinstance(record, Trade):
            msg_id = trade_msg_id(record)
            if msg_id in present:
                skipped += 1
                continue
            out.append(Outgoing(trade_subject(record.coin), msg_id, trade_payload(record, recv_us)))
        else:
            msg_id = gap_msg_id(record)
            if msg_id in present:
                skipped += 1
                continue
            out.append(Outgoing(gap_subject(record.coin), msg_id, gap_payload(record)))
    return out, skipped


def read_back_start_ms(resume_ts_ms: Sequence[int]) -> int:
    """Where the stream's ids must be read from: the oldest resume time less the margin."""
    return max(0, min(resume_ts_ms) - READ_BACK_MARGIN_MS) if resume_ts_ms else 0


def record_time_ms(record: Record) -> int:
    return record.ts_ms if isinstance(record, Trade) else record.from_ms


# --- PostgreSQL ---------------------------------------------------------------------------

SCHEMA_STATEMENTS: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS hlstream_schema (name text PRIMARY KEY, version int NOT NULL)",
    """CREATE TABLE IF NOT EXISTS hlstream_bars (
        coin text NOT NULL,
        interval text NOT NULL,
        start_ts timestamptz NOT NULL,
        open numeric NOT NULL,
        high numeric NOT NULL,
        low numeric NOT NULL,
        close numeric NOT NULL,
        volume numeric NOT NULL,
        trades int,
        exact bool NOT NULL,
        revision int NOT NULL DEFAULT 0,
        written_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (coin, interval, start_ts)
    )""",
    "INSERT INTO hlstream_schema (name, version) VALUES ('hlstream_bars', 1) "
    "ON CONFLICT (name) DO NOTHING",
)

SCHEMA_VERSION_QUERY = "SELECT version FROM hlstream_schema WHERE name = 'hlstream_bars'"

# A re-sent bar changes nothing (the WHERE finds no difference); a different one updates the
# row and bumps `revision` to the bar's own revision number, or one higher when the row had
# reached that number already (two relays, or a bar that changed only in Postgres's view),
# except that an inexact bar never replaces an exact one (two hosts publishing one coin
# converge on the exact row). A new row takes the bar's revision number.
UPSERT_SQL = """INSERT INTO hlstream_bars AS b
    (coin, interval, start_ts, open, high, low, close, volume, trades, exact, revision)
VALUES (%s, %s, to_timestamp(%s::numeric / 1000), %s::numeric, %s::numeric, %s::numeric,
        %s::numeric, %s::numeric, %s, %s, %s)
ON CONFLICT (coin, interval, start_ts) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, trades = EXCLUDED.trades, exact = EXCLUDED.exact,
    revision = GREATEST(b.revision + 1, EXCLUDED.revision), written_at = now()
WHERE (EXCLUDED.exact OR NOT b.exact)
  AND (b.open, b.high, b.low, b.close, b.volume, b.trades, b.exact)
      IS DISTINCT FROM
      (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume,
       EXCLUDED.trades, EXCLUDED.exact)"""

UpsertParams = tuple[str, str, int, str, str, str, str, str, int | None, bool, int]


def upsert_params(bar: JsBar) -> UpsertParams:
    """The parameters of `UPSERT_SQL` for one bar (decimals as strings: exact)."""
    return (
        bar.coin, bar.interval, bar.start_ms, bar.open, bar.high, bar.low, bar.close,
        bar.volume, bar.trades, bar.exact, bar.revision,
    )  # fmt: skip


# --- progress and status ------------------------------------------------------------------


class FileProgress(msgspec.Struct, gc=False):
    """How far one sink has taken one CSV file, its `.inexact` journal and its `.revisions`."""

    inode: int = 0
    offset: int = 0  # bytes of the CSV file sent (whole lines)
    journal_offset: int = 0  # bytes of the journal applied
    revisions_offset: int = 0  # bytes of the `.revisions` file applied
    last_start_ms: int = -1  # newest window sent
    generation: int = 0  # rewrites that had to be re-sent whole (no pin of the old file)
    bumps: dict[int, int] = msgspec.field(default_factory=dict, name="flips")  # start -> changes
    revised: dict[int, Values] = msgspec.field(default_factory=dict)  # start -> values sent
    inexact: set[int] = msgspec.field(default_factory=set)  # windows last sent exact=false

    def revision(self, start_ms: int) -> int:
        return self.generation + self.bumps.get(start_ms, 0)

    def copy(self) -> FileProgress:
        return msgspec.structs.replace(
            self, bumps=dict(self.bumps), revised=dict(self.revised), inexact=set(self.inexact)
        )


class RelayProgress(msgspec.Struct, gc=False):
    """The relay's durable progress (`run_dir/relay-progress.json`), saved after acks."""

    tape: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)  # coin->day->offset
    resume_ts_ms: dict[str, int] = msgspec.field(default_factory=dict)  # coin -> newest acked
    nats_bars: dict[str, FileProgress] = msgspec.field(default_factory=dict)
    postgres_bars: dict[str, FileProgress] = msgspec.field(default_factory=dict)
    bars_saved_ms: int = 0  # wall clock of the last save of nats_bars


class SinkStatus(msgspec.Struct, frozen=True, gc=False):
    """One sink's state in the relay's heartbeat."""

    configured: bool = False
    connected: bool = False
    last_error: str = ""
    failing_since_ms: int | None = None


class RelayStatus(msgspec.Struct, frozen=True):
    """`run_dir/relay-status.json`: the relay's heartbeat (docs/scale-out.md)."""

    service: str
    ts_ms: int
    pid: int
    nats: SinkStatus
    postgres: SinkStatus
    lag_s: float  # age of the oldest tape record not yet acked (0 when none)
    lag_trades: int  # tape records read, not yet acked
    lag_bytes: int  # tape bytes not yet read
    published: int  # trades and gaps acked by JetStream
    duplicates: int  # publishes the server dropped as duplicates (A/B proof)
    skipped: int  # tape records found already in the stream on read-back
    bars_published: int
    bars_upserted: int
    errors: int


@dataclass
class SinkState:
    """One sink's connection state, for the heartbeat and the log."""

    name: str
    configured: bool
    connected: bool = False
    last_error: str = ""
    failing_since_ms: int | None = None

    def status(self) -> SinkStatus:
        return SinkStatus(self.configured, self.connected, self.last_error, self.failing_since_ms)


@dataclass
class Counters:
    published: int = 0
    duplicates: int = 0
    skipped: int = 0
    bars_published: int = 0
    bars_upserted: int = 0
    errors: int = 0
    lag_trades: int = 0
    pending_since_ms: int | None = None
    read_backs: int = 0
