"""The trade tape's record format, days and paths (pure): one CSV line per trade or gap, one
segment per coin per UTC day, `{data_dir}/tape/{encode_coin(coin)}/{YYYY-MM-DD}.csv`
(columns and quoting: docs/data.md).

- `parse_record(format_record(r)) == r` (CR/LF in a gap reason become spaces), and
  `format_record` refuses whatever `parse_record` would, so a committed line reads back.
- The header is the schema version: `HEADER`, or the older `HEADER_V1` without `buyer,seller`
  (`users=False`). A segment keeps its header (users appended to a `HEADER_V1` one are
  dropped, so offsets handed out stay valid); any other first line is refused.
- A record lies in the segment of its own UTC day, even when committed after midnight;
  `split_by_day` cuts a gap spanning midnight into one piece per day.
- The coin's folder name folds case, so every row keeps the exact coin.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import NamedTuple

from hlstream.common.addresses import Users, is_address
from hlstream.common.decimals import is_positive_decimal
from hlstream.common.errors import ProtocolError
from hlstream.common.filenames import encode_coin
from hlstream.common.messages import Gap, Trade, has_plain_decimals, has_plain_users

Record = Trade | Gap

COLUMNS_V1 = ("kind", "coin", "ts_ms", "tid", "side", "price", "size", "hash", "to_ms", "reason")
COLUMNS = (*COLUMNS_V1, "buyer", "seller")
HEADER = ",".join(COLUMNS) + "\n"
HEADER_BYTES = HEADER.encode("ascii")
HEADER_V1 = ",".join(COLUMNS_V1) + "\n"
HEADER_V1_BYTES = HEADER_V1.encode("ascii")
TAPE_DIR = "tape"
SEGMENT_SUFFIX = ".csv"
ARCHIVE_SUFFIX = ".parquet"  # a closed day compacted: the same records (tape/archive_io.py)
DAY_MS = 86_400_000

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_INT_RE = re.compile(r"-?[0-9]{1,19}\Z")
_INT_LIMIT = 10**19


class TapePosition(NamedTuple):
    """A byte offset just after a whole line of one segment; orders by coin, day, offset."""

    coin: str
    day: str
    offset: int


def header(users: bool) -> bytes:
    return HEADER_BYTES if users else HEADER_V1_BYTES


def header_users(head: bytes) -> bool | None:
    """Whether a segment starting with `head` has the users columns; None: not a tape header."""
    if head.startswith(HEADER_BYTES):
        return True
    return False if head.startswith(HEADER_V1_BYTES) else None


def segment_day(ts_ms: int) -> str:
    return date.fromordinal(_EPOCH_ORDINAL + ts_ms // DAY_MS).isoformat()


def check_day(day: str) -> date:
    """`day` as a date; ValueError unless it is a real `YYYY-MM-DD` (it becomes a filename)."""
    if not _DAY_RE.match(day):
        raise ValueError(f"tape day {day!r} is not YYYY-MM-DD")
    return date.fromisoformat(day)


def day_start_ms(day: str) -> int:
    return (date.fromisoformat(day).toordinal() - _EPOCH_ORDINAL) * DAY_MS


def shift_day(day: str, days: int) -> str:
    return (check_day(day) + timedelta(days=days)).isoformat()


def name_day(name: str) -> str | None:
    """The day of a segment (`2024-03-01.csv`) or archive (`.parquet`) filename, else None."""
    day, dot, suffix = name.partition(".")
    return day if _DAY_RE.match(day) and dot + suffix in (SEGMENT_SUFFIX, ARCHIVE_SUFFIX) else None


def is_segment_name(name: str) -> bool:
    return name.endswith(SEGMENT_SUFFIX) and name_day(name) is not None


def coin_dir(data_dir: Path | str, coin: str) -> Path:
    return Path(data_dir) / TAPE_DIR / encode_coin(coin)


def segment_path(data_dir: Path | str, coin: str, day: str) -> Path:
    check_day(day)
    return coin_dir(data_dir, coin) / f"{day}{SEGMENT_SUFFIX}"


def archive_path(data_dir: Path | str, coin: str, day: str) -> Path:
    """The day's segment compacted."""
    check_day(day)
    return coin_dir(data_dir, coin) / f"{day}{ARCHIVE_SUFFIX}"


def record_day(record: Record) -> str:
    """The day whose segment holds `record`: its trade time, or a gap's start."""
    return segment_day(record.ts_ms if isinstance(record, Trade) else record.from_ms)


def split_by_day(record: Record) -> list[Record]:
    """`record` as stored: a gap spanning midnight becomes one piece per UTC day."""
    if isinstance(record, Trade):
        return [record]
    pieces: list[Record] = []
    start = record.from_ms
    while (day_end := start - start % DAY_MS + DAY_MS - 1) < record.to_ms:
        pieces.append(Gap(record.coin, start, day_end, record.reason))
        start = day_end + 1
    return [*pieces, Gap(record.coin, start, record.to_ms, record.reason)]


def _quote(field: str) -> str:
    if "\n" in field or "\r" in field:
        raise ProtocolError(f"tape field {field[:40]!r} holds a line break")
    if "," in field or '"' in field:
        return '"' + field.replace('"', '""') + '"'
    return field


def _check_int(value: int, name: str) -> str:
    if not -_INT_LIMIT < value < _INT_LIMIT:
        raise ProtocolError(f"tape field {name}={value} is out of range")
    return str(value)


def _positive_decimal(text: str, name: str) -> str:
    if not is_positive_decimal(text):
        raise ProtocolError(f"tape field {name}={text[:40]!r} is not a positive decimal")
    return text


def _users_fields(users: Users | None) -> str:
    if users is None:
        return ","
    if not (is_address(users[0]) and is_address(users[1])):
        raise ProtocolError(f"tape trade users {str(users)[:100]!r} are not two addresses")
    return f"{users[0]},{users[1]}"


def format_record(record: Record, users: bool = True) -> str:
    """One tape line, ending in `\\n`, for a segment with or without the users columns;
    ProtocolError for anything parse_record would refuse."""
    tail = ",,\n" if users else "\n"
    if isinstance(record, Gap):
        reason = record.reason.replace("\r", " ").replace("\n", " ")
        start, end = _check_int(record.from_ms, "from_ms"), _check_int(record.to_ms, "to_ms")
        return f"G,{_quote(record.coin)},{start},,,,,,{end},{_quote(reason)}{tail}"
    fields = (
        record.coin,
        _check_int(record.ts_ms, "ts_ms"),
        _check_int(record.tid, "tid"),
        record.side,
        _positive_decimal(record.price, "price"),
        _positive_decimal(record.size, "size"),
        record.hash,
    )
    if users:
        tail = f",{_users_fields(record.users)}\n"
    return "T," + ",".join(_quote(field) for field in fields) + ",," + tail


# Fast path of `format_record` for one coin's trades (one call per coin per frame): joined
# without per-field checks, then the whole text checked at once. tests/property/
# test_tape_props.py `test_format_trades_equals_format_record_of_each` holds the two equal.
def format_trades(
    trades: Sequence[Trade], coin: str, day: str, users: bool = True, *, checked: bool = False
) -> str | None:
    """`format_record` of each of `trades`, joined, if every one is of `coin` on `day` (else
    None). `checked`: every price, size and users already passed `has_plain_decimals` and
    `has_plain_users` (ingest's parse), so they are not checked twice."""
    start_ms = day_start_ms(day)
    end_ms = start_ms + DAY_MS
    lines = []
    tids_fit = True
    empty = ",,,\n" if users else ",\n"  # to_ms, reason (and buyer, seller) left empty
    for t in trades:
        ts_ms, tid, pair = t.ts_ms, t.tid, t.users
        if t.coin != coin or not start_ms <= ts_ms < end_ms:
            return None
        if not -_INT_LIMIT < tid < _INT_LIMIT:
            tids_fit = False
        if pair is None or not users:
            lines.append(f"T,{coin},{ts_ms},{tid},{t.side},{t.price},{t.size},{t.hash},{empty}")
        else:
            lines.append(
                f"T,{coin},{ts_ms},{tid},{t.side},{t.price},{t.size},{t.hash},,,{pair[0]},{pair[1]}\n"
            )
    text = "".join(lines)
    count = len(lines)
    if (
        tids_fit
        and text.count(",") == (len(COLUMNS if users else COLUMNS_V1) - 1) * count
        and text.count("\n") == count
        and '"' not in text
        and "\r" not in text
        and (checked or (has_plain_decimals(trades) and (not users or has_plain_users(trades))))
    ):
        return text
    return "".join([format_record(t, users) for t in trades])  # quotes, or raises ProtocolError


def _split(line: str) -> list[str]:
    line = line.removesuffix("\n")
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


def _users(buyer: str, seller: str) -> Users | None:
    if not buyer and not seller:
        return None
    if not (is_address(buyer) and is_address(seller)):
        raise ProtocolError(f"tape trade users {buyer[:44]!r},{seller[:44]!r} are not addresses")
    return (buyer, seller)


def parse_record(line: str, users: bool = True) -> Record:
    """Inverse of `format_record` (trailing `\\n` optional); ProtocolError if malformed."""
    fields = _split(line)
    columns = len(COLUMNS if users else COLUMNS_V1)
    if len(fields) != columns:
        raise ProtocolError(f"tape record has {len(fields)} fields, not {columns}")
    kind, coin, ts_ms, tid, side, price, size, hash_, to_ms, reason = fields[:10]
    buyer, seller = fields[10:] or ("", "")
    if not coin:
        raise ProtocolError("tape record has no coin")
    if kind == "G":
        if tid or side or price or size or hash_ or buyer or seller:
            raise ProtocolError("tape gap has trade fields set")
        return Gap(coin, _int(ts_ms, "ts_ms"), _int(to_ms, "to_ms"), reason)
    if kind != "T":
        raise ProtocolError(f"tape record kind {kind[:10]!r} is not T or G")
    if side not in ("buy", "sell"):
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
        users=_users(buyer, seller),
    )


def coverage_start(first_records: Iterable[Record]) -> int | None:
    """The first exchange time from which a tape holds every trade of its coin, given at least
    its first batch (the subscribe replay); None if none. Strictly after the oldest replayed
    time: a block's trades share one time and the replay may begin inside a block."""
    times = [r.ts_ms if isinstance(r, Trade) else r.from_ms for r in first_records]
    return min(times) + 1 if times else None
