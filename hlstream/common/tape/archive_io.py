"""A closed tape day as one Parquet file (zstd): the CSV segment's records, column for column.

The columns are the CSV's (`COLUMNS`, or `COLUMNS_V1` for a day whose CSV has the older header,
which the file's metadata names): text stays text, so prices and sizes keep their exact
decimal text (never floats); `ts_ms` (a gap's start), `tid` and `to_ms` are Int64, and a field
the CSV leaves empty is null (but an empty hash or gap reason: ""). One line reads a day:
`pl.read_parquet(path)`, `pd.read_parquet(path)`, `duckdb.sql("FROM 'path'")` (docs/data.md).

Invariant: rendering the records back with `format_record` gives the CSV's bytes exactly (its
whole lines, header first), so a record's *offset* in a Parquet day is the byte offset it had
in the CSV and a `TapePosition` taken on the CSV stays valid after compaction. The file's
metadata holds the CSV's length, SHA-256 and record count; compaction checks them against
the CSV before removing it (tape/compact_io.py).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from hlstream.common.durable import write_atomic
from hlstream.common.errors import IntegrityError, ProtocolError
from hlstream.common.messages import Gap, Trade
from hlstream.common.tape.format import (
    COLUMNS,
    COLUMNS_V1,
    Record,
    format_record,
    format_trades,
    header,
    header_users,
    segment_day,
)

META_CSV_BYTES = "hlstream.tape.csv_bytes"
META_CSV_SHA256 = "hlstream.tape.csv_sha256"
META_RECORDS = "hlstream.tape.records"
META_HEADER = "hlstream.tape.header"  # the CSV schema the records follow
_INT_COLUMNS = ("ts_ms", "tid", "to_ms")
TRADE_TEXT = ("side", "price", "size", "hash")
USERS = ("buyer", "seller")
ROW_GROUP = 65_536  # rows a reader decodes at once: a partial or backward scan stops early


class Fingerprint(NamedTuple):
    """What a day's CSV text is: its record count, length in bytes and SHA-256."""

    records: int
    csv_bytes: int
    sha256: str


def _names(users: bool) -> tuple[str, ...]:
    return COLUMNS if users else COLUMNS_V1


def _schema(users: bool) -> dict[str, Any]:
    import polars as pl

    return {name: pl.Int64 if name in _INT_COLUMNS else pl.String for name in _names(users)}


def _columns(records: Iterable[Record], users: bool) -> dict[str, list[Any]]:
    names = _names(users)
    cols: dict[str, list[Any]] = {name: [] for name in names}
    for r in records:
        if isinstance(r, Trade):
            row: tuple[Any, ...] = ("T", r.coin, r.ts_ms, r.tid, r.side, r.price, r.size, r.hash)
            row += (None, None, *(r.users or (None, None)))
        else:
            row = ("G", r.coin, r.from_ms, None, None, None, None, None, r.to_ms, r.reason)
            row += (None, None)
        for name, value in zip(names, row, strict=False):  # without users: the first 10
            cols[name].append(value)
    return cols


def encode_archive(records: list[Record], fingerprint: Fingerprint, users: bool = True) -> bytes:
    """The Parquet file of `records` (zstd) for a CSV with (`users`) or without the users
    columns, stamped with the CSV's `fingerprint`."""
    import polars as pl

    try:
        frame = pl.DataFrame(_columns(records, users), schema=_schema(users))
    except (TypeError, OverflowError, pl.exceptions.PolarsError) as exc:
        raise IntegrityError(f"tape records do not fit the archive's columns: {exc}") from None
    return _parquet(frame, fingerprint, users)


def encode_csv(text: bytes, fingerprint: Fingerprint) -> bytes:
    """The Parquet file of a segment's whole lines `text` (header first), parsed by polars:
    the fast path, trusted only once the file renders back to `text` (`rendered_fingerprint`).
    IntegrityError if polars cannot parse it."""
    import polars as pl

    users = header_users(text)
    if users is None:
        raise IntegrityError("tape segment does not start with the tape header")
    try:
        frame = pl.read_csv(
            io.BytesIO(text),
            schema=_schema(users),
            empty_string_is_null=False,  # "" stays "": a trade's hash, a gap's reason
            raise_if_empty=False,
        )
    except pl.exceptions.PolarsError as exc:
        raise IntegrityError(f"tape segment does not parse as CSV: {exc}") from None
    trade = pl.col("kind") == "T"
    frame = frame.with_columns(  # the fields of the other kind of row are null, not ""
        *(pl.when(trade).then(pl.col(name)).alias(name) for name in TRADE_TEXT),
        pl.when(~trade).then(pl.col("reason")).alias("reason"),
        *(pl.when(pl.col(name) != "").then(pl.col(name)).alias(name) for name in _users(users)),
    )
    return _parquet(frame, fingerprint, users)


def _users(users: bool) -> tuple[str, ...]:
    """The users columns of a CSV with (`users`) or without them."""
    return USERS if users else ()


def _parquet(frame: Any, fingerprint: Fingerprint, users: bool) -> bytes:
    metadata = {
        META_CSV_BYTES: str(fingerprint.csv_bytes),
        META_CSV_SHA256: fingerprint.sha256,
        META_RECORDS: str(fingerprint.records),
        META_HEADER: header(users).decode("ascii").strip(),
    }
    out = io.BytesIO()
    frame.write_parquet(out, compression="zstd", row_group_size=ROW_GROUP, metadata=metadata)
    return out.getvalue()


def write_archive(path: Path, data: bytes) -> None:
    """Put the archive `data` at `path` atomically and durably (temp, fsync, rename)."""
    write_atomic(path, data)


def _metadata(path: Path) -> tuple[Fingerprint, bool]:
    """The fingerprint the archive at `path` was stamped with, and whether its CSV had the
    users columns; IntegrityError if it has none."""
    import polars as pl

    try:
        meta = pl.read_parquet_metadata(path)
        fingerprint = Fingerprint(
            int(meta[META_RECORDS]), int(meta[META_CSV_BYTES]), meta[META_CSV_SHA256]
        )
        users = header_users(meta[META_HEADER].encode("utf-8") + b"\n")
    except (KeyError, ValueError, pl.exceptions.PolarsError) as exc:
        raise IntegrityError(f"{path}: not a tape archive ({exc!r})") from None
    if users is None:
        raise IntegrityError(f"{path}: tape archive of an unknown header")
    return fingerprint, users


def archive_fingerprint(path: Path) -> Fingerprint:
    """The fingerprint the archive at `path` was stamped with; IntegrityError if it has none."""
    return _metadata(path)[0]


def _record(row: tuple[Any, ...], path: Path, index: int) -> Record:
    kind, coin, ts_ms, tid, side, price, size, hash_, to_ms, reason = row[:10]
    buyer, seller = row[10:] or (None, None)
    users = None if buyer is None and seller is None else (buyer, seller)
    if kind == "T" and side in ("buy", "sell") and None not in (tid, price, size, hash_):
        return Trade(coin, side, price, size, ts_ms, tid, hash_, users)
    if kind == "G" and to_ms is not None and reason is not None and users is None:
        return Gap(coin, ts_ms, to_ms, reason)
    raise IntegrityError(f"{path} row {index}: corrupt tape archive record")


def _render(records: list[Record], users: bool) -> list[str]:
    """`format_record` of each of (non-empty) `records`: by `format_trades` when all are trades
    of one coin and day (the same text, checked at once), else one by one; ProtocolError if
    one is bad."""
    first = records[0]
    if isinstance(first, Trade) and all(isinstance(r, Trade) for r in records):
        trades = [r for r in records if isinstance(r, Trade)]
        text = format_trades(trades, first.coin, segment_day(first.ts_ms), users)
        if text is not None:
            return [line + "\n" for line in text.split("\n")[:-1]]
    return [format_record(r, users) for r in records]


def _chunks(path: Path, coin: str, *, backward: bool = False) -> Iterator[list[Record]]:
    """The records of the archive at `path`, `ROW_GROUP` at a time, in file order (the first
    group read alone, so a scan of the first records stops early) or from the end (a group
    at a time); IntegrityError if one is corrupt or of another coin."""
    import polars as pl

    (count, _, _), users = _metadata(path)
    names = _names(users)
    spans: list[tuple[int, int | None]] = [(0, ROW_GROUP), (ROW_GROUP, None)]
    if backward:
        spans = [(first, ROW_GROUP) for first in reversed(range(0, count, ROW_GROUP))]
    try:
        for first, length in spans:
            if first >= count:
                return
            frame = pl.scan_parquet(path).select(names).slice(first, length).collect()
            for piece in frame.iter_slices(ROW_GROUP):
                data = piece.to_dict(as_series=False)
                rows = zip(*(data[name] for name in names), strict=True)
                chunk = [_record(row, path, first + index) for index, row in enumerate(rows)]
                if any(record.coin != coin for record in chunk):
                    raise IntegrityError(f"{path}: record of another coin in the {coin!r} tape")
                first += len(chunk)
                yield chunk
    except pl.exceptions.PolarsError as exc:
        raise IntegrityError(f"{path}: unreadable tape archive ({exc})") from None


def archived_backward(path: Path, coin: str) -> Iterator[Record]:
    """The records of the archive at `path`, last first, reading only as far back as asked."""
    for chunk in _chunks(path, coin, backward=True):
        yield from reversed(chunk)


def _lines(path: Path, coin: str) -> Iterator[tuple[Record, bytes]]:
    """Each record of the archive at `path` with its CSV line; IntegrityError if corrupt."""
    users = _metadata(path)[1]
    for chunk in _chunks(path, coin):
        try:
            lines = _render(chunk, users)
        except ProtocolError as exc:
            raise IntegrityError(f"{path}: corrupt tape record: {exc}") from None
        for record, line in zip(chunk, lines, strict=True):
            yield record, line.encode("utf-8")


def read_archived(path: Path, coin: str, start: int = 0) -> Iterator[tuple[Record, int]]:
    """Records of the archive at `path` from CSV offset `start` (a whole line's end), each with
    the CSV offset just after it; IntegrityError if a record is corrupt or of another coin."""
    offset = len(header(_metadata(path)[1]))
    aligned = start <= offset
    for record, line in _lines(path, coin):
        aligned = aligned or offset == start
        offset += len(line)
        if offset > start:
            if not aligned:
                raise IntegrityError(
                    f"{path}: tape position {start} is not the end of a whole line"
                )
            yield record, offset
    if not aligned and offset != start:
        raise IntegrityError(f"{path}: tape position {start} is not the end of a whole line")


def rendered_fingerprint(path: Path, coin: str) -> Fingerprint:
    """The fingerprint of the CSV text the archive's records render to (header first)."""
    head = header(_metadata(path)[1])
    digest = hashlib.sha256(head)
    count, size = 0, len(head)
    for _, line in _lines(path, coin):
        digest.update(line)
        count, size = count + 1, size + len(line)
    return Fingerprint(count, size, digest.hexdigest())
