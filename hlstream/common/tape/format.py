"""The trade tape's record format and pure logic: one CSV line per admitted trade or gap.

The tape is the pipeline's own record (DESIGN "Trade tape and checkpoints"). It is split
into one *segment* per coin per UTC day, `{data_dir}/tape/{encode_coin(coin)}/{YYYY-MM-DD}.csv`
(`encode_coin` is the same lowercase percent-encoding the bar CSVs use: `PURR/USDC` ->
`purr%2fusdc`). Because that encoding folds case, the exact coin is kept in every row.

Segment format (RFC 4180 CSV, UTF-8, `\\n` line ends, header first):

    kind,coin,ts_ms,tid,side,price,size,hash,to_ms,reason
    T,BTC,1700000000000,123456,buy,63471.0,0.00155,0xab12...,,
    G,BTC,1700000000500,,,,,,1700000003000,reconnect

- `kind` `T` is a trade: `side` is `buy` (the taker bought, venue `B`) or `sell` (venue `A`),
  the same words as the bus; `price` and `size` are the exchange's decimal strings verbatim;
  `to_ms` and `reason` are empty.
- `kind` `G` is a gap marker: trades of `coin` in `[ts_ms, to_ms]` (inclusive, like `Gap`)
  may be missing; `reason` is free text; the trade columns are empty.
- A field holding `,` or `"` is quoted and its quotes doubled; CR/LF never occur inside a
  record, so one record is always exactly one line. CR/LF in a gap `reason` become spaces
  (the one normalisation); in any other field they are refused.
- The header is the schema version: a segment with any other first line is refused.

Read a segment with pandas without losing a digit (only empty cells become NaN):

    pd.read_csv(path, dtype={"coin": str, "price": str, "size": str, "hash": str,
                "reason": str, "tid": "Int64", "to_ms": "Int64"},
                keep_default_na=False, na_values=[""])

or polars: `pl.read_csv(path, schema_overrides={"price": pl.Utf8, "size": pl.Utf8,
"hash": pl.Utf8, "tid": pl.Int64, "to_ms": pl.Int64})` (both checked with pandas 3.1, polars 2.1).

Invariants kept here:
- `parse_record(format_record(r)) == r` for every record (bar CR/LF in a gap reason), and
  `format_record` refuses whatever `parse_record` would refuse, so a committed line always
  reads back.
- Every record lies in the segment of its own UTC day: a trade at 23:59:59.999 belongs to that
  day even when it is committed after midnight, and `split_by_day` cuts a gap that spans
  midnight into one piece per day, so a segment never holds a time outside its day.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from hlstream.common.decimals import is_positive_decimal
from hlstream.common.errors import ProtocolError
from hlstream.common.filenames import encode_coin
from hlstream.common.messages import Gap, Trade, has_plain_decimals

Record = Trade | Gap
TradeKey = tuple[str, int, int]

COLUMNS = ("kind", "coin", "ts_ms", "tid", "side", "price", "size", "hash", "to_ms", "reason")
HEADER = ",".join(COLUMNS) + "\n"
HEADER_BYTES = HEADER.encode("ascii")
TAPE_DIR = "tape"
SEGMENT_SUFFIX = ".csv"
DAY_MS = 86_400_000

_EPOCH = date(1970, 1, 1)
_DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_INT_RE = re.compile(r"-?[0-9]{1,19}\Z")
_INT_LIMIT = 10**19
_FIELD_COUNT = len(COLUMNS)
_SIDES = ("buy", "sell")


class TapePosition(NamedTuple):
    """A byte offset just after a whole line of one segment; orders by coin, day, offset."""

    coin: str
    day: str
    offset: int


# --- days and paths ---------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _day_name(day_index: int) -> str:
    return (_EPOCH + timedelta(days=day_index)).isoformat()


def segment_day(ts_ms: int) -> str:
    """The UTC day `YYYY-MM-DD` that contains `ts_ms` (integer math, no float)."""
    return _day_name(ts_ms // DAY_MS)


@lru_cache(maxsize=64)
def day_start_ms(day: str) -> int:
    """Epoch ms of 00:00 UTC on `day`."""
    check_day(day)
    return (date.fromisoformat(day) - _EPOCH).days * DAY_MS


def shift_day(day: str, days: int) -> str:
    """`day` moved by `days` (negative = earlier)."""
    check_day(day)
    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()


def check_day(day: str) -> None:
    """Raise ValueError unless `day` is a real `YYYY-MM-DD` date (it becomes a filename)."""
    if not _DAY_RE.match(day):
        raise ValueError(f"tape day {day!r} is not YYYY-MM-DD")
    date.fromisoformat(day)


def is_segment_name(name: str) -> bool:
    """True for a segment filename such as `2024-03-01.csv`."""
    return name.endswith(SEGMENT_SUFFIX) and bool(_DAY_RE.match(name[: -len(SEGMENT_SUFFIX)]))


def coin_dir(data_dir: Path | str, coin: str) -> Path:
    """The folder holding every segment of `coin`."""
    return Path(data_dir) / TAPE_DIR / encode_coin(coin)


def segment_path(data_dir: Path | str, coin: str, day: str) -> Path:
    """`{data_dir}/tape/{encode_coin(coin)}/{day}.csv`."""
    check_day(day)
    return coin_dir(data_dir, coin) / f"{day}{SEGMENT_SUFFIX}"


def record_day(record: Record) -> str:
    """The day whose segment holds `record`: its trade time, or a gap's start."""
    return segment_day(record.ts_ms if isinstance(record, Trade) else record.from_ms)


def split_by_day(record: Record) -> list[Record]:
    """`record` as stored: a gap spanning midnight becomes one piece per UTC day."""
    if isinstance(record, Trade):
        return [record]
    pieces: list[Record] = []
    start = record.from_ms
    while True:
        day_end = start - start % DAY_MS + DAY_MS - 1
        if record.to_ms <= day_end:
            pieces.append(Gap(record.coin, start, record.to_ms, record.reason))
            return pieces
        pieces.append(Gap(record.coin, start, day_end, record.reason))
        start = day_end + 1


# --- formatting -------------------------------------------------------------------------


def _quote(field: str) -> str:
    if "\n" in field or "\r" in field:
        raise ProtocolError(f"tape field {field[:40]!r} holds a line break")
    if "," in field or '"' in field:
        return '"' + field.replace('"', '""') + '"'
    return field


def _is_plain(line: str) -> bool:
    """True when a line built by plain joining has exactly its 10 fields and one newline."""
    return (
        line.count(",") == _FIELD_COUNT - 1
        and '"' not in line
        and line.find("\n") == len(line) - 1
        and "\r" not in line
    )


def _check_int(value: int, name: str) -> None:
    if not -_INT_LIMIT < value < _INT_LIMIT:
        raise ProtocolError(f"tape field {name}={value} is out of range")


def _format_trade(trade: Trade) -> str:
    # Refuse here whatever parse_record would refuse, so a committed line always reads back.
    _positive_decimal(trade.price, "price")
    _positive_decimal(trade.size, "size")
    _check_int(trade.ts_ms, "ts_ms")
    _check_int(trade.tid, "tid")
    side = trade.side
    line = (
        f"T,{trade.coin},{trade.ts_ms},{trade.tid},{side},"
        f"{trade.price},{trade.size},{trade.hash},,\n"
    )
    if _is_plain(line):
        return line
    fields = (trade.coin, str(trade.ts_ms), str(trade.tid), side, trade.price, trade.size)
    quoted = ",".join(_quote(field) for field in (*fields, trade.hash))
    return f"T,{quoted},,\n"


def _format_gap(gap: Gap) -> str:
    _check_int(gap.from_ms, "from_ms")
    _check_int(gap.to_ms, "to_ms")
    reason = gap.reason.replace("\r", " ").replace("\n", " ")
    return f"G,{_quote(gap.coin)},{gap.from_ms},,,,,,{gap.to_ms},{_quote(reason)}\n"


def format_trades(trades: Sequence[Trade], coin: str, day: str) -> str | None:
    """The tape lines of `trades`, joined, if every one is of `coin` on `day` (else None):
    what `format_record` gives line by line, built in one pass for the plain case (the hot
    path: one call per coin per frame). ProtocolError as `format_record` raises it."""
    start_ms = day_start_ms(day)
    end_ms = start_ms + DAY_MS
    lines = []
    tids_fit = True
    for t in trades:
        ts_ms, tid = t.ts_ms, t.tid
        if t.coin != coin or not start_ms <= ts_ms < end_ms:
            return None
        if not -_INT_LIMIT < tid < _INT_LIMIT:
            tids_fit = False
        lines.append(f"T,{coin},{ts_ms},{tid},{t.side},{t.price},{t.size},{t.hash},,\n")
    text = "".join(lines)
    count = len(lines)
    if (
        tids_fit
        and has_plain_decimals(trades)
        and text.count(",") == (_FIELD_COUNT - 1) * count
        and text.count("\n") == count
        and '"' not in text
        and "\r" not in text
    ):
        return text
    return "".join([format_record(t) for t in trades])  # quotes, or raises ProtocolError


def format_record(record: Record) -> str:
    """One tape line, ending in `\\n`; ProtocolError for anything parse_record would refuse."""
    if isinstance(record, Trade):
        return _format_trade(record)
    return _format_gap(record)


# --- parsing ----------------------------------------------------------------------------


def _split(line: str) -> list[str]:
    if line.endswith("\n"):
        line = line[:-1]
    if "\n" in line or "\r" in line:
        raise ProtocolError("tape record spans more than one line")
    if '"' not in line:
        return line.split(",")
    try:
        return next(csv.reader([line], strict=True))
    except csv.Error as exc:
        raise ProtocolError(f"tape record has bad quoting: {exc}") from None


def _int(text: str, name: str) -> int:
    if not _INT_RE.match(text):
        raise ProtocolError(f"tape field {name}={text[:40]!r} is not an integer")
    return int(text)


def _positive_decimal(text: str, name: str) -> str:
    if not is_positive_decimal(text):
        raise ProtocolError(f"tape field {name}={text[:40]!r} is not a positive decimal")
    return text


def _parse_trade(fields: list[str]) -> Trade:
    _, coin, ts_ms, tid, side, price, size, hash_, to_ms, reason = fields
    if side not in _SIDES:
        raise ProtocolError(f"tape trade side {side[:40]!r} is not buy or sell")
    if to_ms or reason:
        raise ProtocolError("tape trade has gap fields set")
    return Trade(
        coin=coin,
        side="buy" if side == "buy" else "sell",
        price=_positive_decimal(price, "price"),
        size=_positive_decimal(size, "size"),
        ts_ms=_int(ts_ms, "ts_ms"),
        tid=_int(tid, "tid"),
        hash=hash_,
    )


def _parse_gap(fields: list[str]) -> Gap:
    _, coin, ts_ms, tid, side, price, size, hash_, to_ms, reason = fields
    if tid or side or price or size or hash_:
        raise ProtocolError("tape gap has trade fields set")
    return Gap(coin, _int(ts_ms, "ts_ms"), _int(to_ms, "to_ms"), reason)


def parse_record(line: str) -> Record:
    """Inverse of `format_record` (trailing `\\n` optional); ProtocolError if malformed."""
    fields = _split(line)
    if len(fields) != _FIELD_COUNT:
        raise ProtocolError(f"tape record has {len(fields)} fields, not {_FIELD_COUNT}")
    if not fields[1]:
        raise ProtocolError("tape record has no coin")
    kind = fields[0]
    if kind == "T":
        return _parse_trade(fields)
    if kind == "G":
        return _parse_gap(fields)
    raise ProtocolError(f"tape record kind {kind[:10]!r} is not T or G")


# --- recovery helpers -------------------------------------------------------------------


def trade_key(trade: Trade) -> TradeKey:
    """A trade's identity: (coin, ts_ms, tid)."""
    return trade.coin, trade.ts_ms, trade.tid


def dedupe_keys_from_tail(records: Iterable[Record]) -> set[TradeKey]:
    """The identities of the trades among `records` (gap markers carry none)."""
    return {trade_key(r) for r in records if isinstance(r, Trade)}


def coverage_start(first_records: Iterable[Record]) -> int | None:
    """The first exchange time from which a tape holds every trade of its coin, given its
    first records (at least its first batch: the venue's subscribe replay); None if none.

    Coverage begins strictly after the oldest replayed time: the venue stamps every trade of
    a block with one time, and a replay of its last N trades may begin inside a block, so
    trades of that millisecond may be missing. Later records are all newer than the replay's
    oldest, so reading more than the first batch changes nothing.
    """
    times = [r.ts_ms if isinstance(r, Trade) else r.from_ms for r in first_records]
    return min(times) + 1 if times else None
