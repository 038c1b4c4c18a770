"""Property tests for the trade tape: what is committed reads back exactly, crashes cost only
the unfinished line."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import closing
from decimal import Decimal

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from hlstream.common.errors import ProtocolError
from hlstream.common.log import EventLog
from hlstream.common.messages import Gap, Trade, has_plain_decimals, has_plain_users
from hlstream.common.tape.format import (
    HEADER_BYTES,
    HEADER_V1_BYTES,
    format_record,
    format_trades,
    parse_record,
    record_day,
    segment_path,
    split_by_day,
)
from hlstream.common.tape.readers_io import read_since, read_tape
from hlstream.common.tape.writer_io import TapeWriter

COINS = ["BTC", "PURR/USDC", "@107", "xyz:TSLA", "kPEPE"]
DAY_MS = 86_400_000
T0 = 1_709_337_600_000 - DAY_MS  # 2024-03-01 00:00 UTC; times span three UTC days

one_line_text = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=12
)
# Plain positive decimals, at most 32 digits each side of the point (is_positive_decimal).
decimal_text = (
    st.decimals(
        min_value=Decimal("0.00000001"),
        max_value=Decimal("1e12"),
        allow_nan=False,
        allow_infinity=False,
    )
    .map(lambda value: format(value, "f"))  # plain, as the exchange writes them
    .filter(lambda text: len(text) <= 64 and len(text.partition(".")[2]) <= 32)
)
times = st.integers(T0, T0 + 3 * DAY_MS - 1)
addresses = st.text("0123456789abcdefABCDEF", min_size=40, max_size=40).map(lambda h: "0x" + h)
users = st.one_of(st.none(), st.tuples(addresses, addresses))
trades = st.builds(
    Trade,
    coin=st.sampled_from(COINS),
    side=st.sampled_from(["buy", "sell"]),
    price=decimal_text,
    size=decimal_text,
    ts_ms=times,
    tid=st.integers(0, 2**63 - 1),
    hash=one_line_text,
    users=users,
)
gaps = st.builds(
    lambda coin, start, length, reason: Gap(coin, start, start + length, reason),
    st.sampled_from(COINS),
    times,
    st.integers(0, 2 * DAY_MS),
    one_line_text,
)
records = st.one_of(trades, trades, gaps)
batches = st.lists(st.lists(records, max_size=8), max_size=6)
# Segments that exist with the older header before the writer starts: (coin, day index).
old_segments = st.sets(st.tuples(st.sampled_from(COINS), st.integers(0, 2)), max_size=4)


def make_old_segments(data_dir: str, keys: set[tuple[str, int]]) -> set[tuple[str, str]]:
    """Create each segment (coin, day index) holding just `HEADER_V1`; their (coin, day)."""
    made = set()
    for coin, index in keys:
        day = record_day(Gap(coin, T0 + index * DAY_MS, T0 + index * DAY_MS, ""))
        path = segment_path(data_dir, coin, day)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(HEADER_V1_BYTES)
        made.add((coin, day))
    return made


def stored(
    coin: str, written: list[Trade | Gap], old: set[tuple[str, str]] = frozenset()
) -> list[Trade | Gap]:
    """What the tape holds for `coin`: gaps cut per day, oldest day first, append order kept;
    trades in a segment of the older header without their users."""
    pieces = [p for r in written if r.coin == coin for p in split_by_day(r)]
    pieces = [
        msgspec.structs.replace(p, users=None)
        if isinstance(p, Trade) and (coin, record_day(p)) in old
        else p
        for p in pieces
    ]
    return sorted(pieces, key=record_day)


@given(st.one_of(trades, gaps))
def test_format_then_parse_is_identity(record: Trade | Gap) -> None:
    assert parse_record(format_record(record)) == record


@given(st.one_of(trades, gaps))
def test_the_older_schema_reads_back_everything_but_users(record: Trade | Gap) -> None:
    expected = msgspec.structs.replace(record, users=None) if isinstance(record, Trade) else record

    assert parse_record(format_record(record, users=False), users=False) == expected


# One coin's trades of one day, then at most two fields made odd: what format_record quotes
# or refuses, and trades of another coin or day (format_trades gives None for those).
day_trades = st.builds(
    Trade,
    coin=st.just("BTC"),
    side=st.sampled_from(["buy", "sell"]),
    price=decimal_text,
    size=decimal_text,
    ts_ms=st.integers(T0 + DAY_MS, T0 + 2 * DAY_MS - 1),
    tid=st.integers(0, 2**63 - 1),
    hash=one_line_text,
    users=users,
)
ADDRESS = "0x" + "ab" * 20
ODD_FIELDS: dict[str, list[object]] = {
    "coin": ["ETH", "A,B", 'x"y'],
    "price": ["0", "1e5", "-1", "", "1,5", "1\n2"],
    "size": ["0.0", "1.", "1\r"],
    "ts_ms": [T0 + DAY_MS - 1, T0 + 2 * DAY_MS],
    "tid": [10**19, -(10**19), 10**19 - 1, 1 - 10**19],
    "hash": ["a,b", 'q"', "x\ny", "x\r"],
    "users": [
        (ADDRESS, ""),
        ("", ""),
        (ADDRESS, ADDRESS[:-1]),
        (ADDRESS + "a", ADDRESS),
        (ADDRESS[:-1] + ",", ADDRESS),
        (ADDRESS[:-1] + '"', ADDRESS),
        (ADDRESS[:-1] + "\n", ADDRESS),
        (ADDRESS[:-1] + "é", ADDRESS),
        (ADDRESS[:-1], "0" + ADDRESS),  # lengths that add up
        ("1x" + ADDRESS[2:], ADDRESS),
    ],
}
oddities = st.sampled_from([(name, v) for name, values in ODD_FIELDS.items() for v in values])


def _formatted(text: Callable[[], str | None]) -> str | None | type[ProtocolError]:
    try:
        return text()
    except ProtocolError:
        return ProtocolError


@settings(max_examples=400)
@given(
    st.lists(day_trades, min_size=1, max_size=6),
    st.lists(st.tuples(st.integers(0, 5), oddities), max_size=2),
    st.booleans(),
)
def test_format_trades_equals_format_record_of_each(
    batch: list[Trade], odd: list[tuple[int, tuple[str, object]]], with_users: bool
) -> None:
    for index, (name, value) in odd:
        batch[index % len(batch)] = msgspec.structs.replace(
            batch[index % len(batch)], **{name: value}
        )
    coin, day = "BTC", "2024-03-02"
    fits = all(t.coin == coin and record_day(t) == day for t in batch)
    plain = _formatted(
        lambda: "".join(format_record(t, with_users) for t in batch) if fits else None
    )
    assert _formatted(lambda: format_trades(batch, coin, day, with_users)) == plain
    if has_plain_decimals(batch) and has_plain_users(batch):  # what ingest's parse vouches for
        checked = _formatted(lambda: format_trades(batch, coin, day, with_users, checked=True))
        assert checked == plain


@settings(deadline=None)
@given(batches, old_segments)
def test_committed_batches_read_back_identically_and_in_order(
    sequence: list[list[Trade | Gap]], old_keys: set[tuple[str, int]]
) -> None:
    written = [record for batch in sequence for record in batch]
    with tempfile.TemporaryDirectory() as tmp:
        old = make_old_segments(tmp, old_keys)
        ends: dict[tuple[str, str], int] = {}
        with closing(TapeWriter(tmp, EventLog("test"), fsync=False)) as writer:
            for batch in sequence:
                writer.append(batch)
                ends.update({(p.coin, p.day): p.offset for p in writer.commit()})

        for coin in COINS:
            expected = stored(coin, written, old)
            got = list(read_tape(tmp, coin, 0))
            assert len(got) == len(expected)
            assert got == expected
            assert [r for r, _ in read_since(tmp, coin, [])] == expected
        for (coin, day), offset in ends.items():
            assert segment_path(tmp, coin, day).stat().st_size == offset
        for coin, day in old:  # a segment keeps the header it was created with
            assert segment_path(tmp, coin, day).read_bytes().startswith(HEADER_V1_BYTES)
    assert sum(len(stored(c, written)) for c in COINS) >= len(written)


@settings(deadline=None)
@given(st.lists(st.lists(trades, min_size=1, max_size=5), min_size=1, max_size=5), st.data())
def test_truncation_at_any_byte_loses_only_the_cut_line(
    sequence: list[list[Trade]], data: st.DataObject
) -> None:
    batch_of_one_segment = [
        [msgspec.structs.replace(t, coin="BTC", ts_ms=T0 + t.ts_ms % DAY_MS) for t in batch]
        for batch in sequence
    ]
    written = [t for batch in batch_of_one_segment for t in batch]
    with tempfile.TemporaryDirectory() as tmp:
        with closing(TapeWriter(tmp, EventLog("test"), fsync=False)) as writer:
            for batch in batch_of_one_segment:
                writer.append(batch)
                writer.commit()
        path = segment_path(tmp, "BTC", "2024-03-01")
        full = path.read_bytes()
        cut = data.draw(st.integers(0, len(full)), label="cut")
        path.write_bytes(full[:cut])
        keep = full[:cut].rfind(b"\n") + 1  # whole lines survive a cut
        line_ends = _line_ends(written)
        survivors = [t for t, end in zip(written, line_ends, strict=True) if end <= keep]

        assert list(read_tape(tmp, "BTC", 0)) == survivors
        extra = Trade("BTC", "buy", "1.5", "2", T0 + 1, 1, "0xextra")
        with closing(TapeWriter(tmp, EventLog("test"), fsync=False)) as writer:
            writer.recover(["BTC"])
            assert path.stat().st_size == keep
            writer.append([extra])
            writer.commit()

        assert list(read_tape(tmp, "BTC", 0)) == [*survivors, extra]
        assert path.read_bytes().startswith(HEADER_BYTES)
        if cut == len(full):
            assert survivors == written


def _line_ends(written: list[Trade]) -> list[int]:
    ends, offset = [], len(HEADER_BYTES)
    for record in written:
        offset += len(format_record(record).encode())
        ends.append(offset)
    return ends
