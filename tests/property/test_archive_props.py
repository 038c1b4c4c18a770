"""Property test for the tape archive: a compacted day reads back as the CSV did."""

from __future__ import annotations

import os
import tempfile
from contextlib import closing
from unittest.mock import patch

from hypothesis import given, settings

from hlstream.common.log import EventLog
from hlstream.common.messages import Gap, Trade
from hlstream.common.tape import compact_io
from hlstream.common.tape.compact_io import compact_day
from hlstream.common.tape.format import TapePosition, coin_dir
from hlstream.common.tape.readers_io import read_since, segment_days, segment_size
from hlstream.common.tape.writer_io import TapeWriter
from tests.property.test_tape_props import COINS, batches, make_old_segments, old_segments


def _read(tmp: str) -> dict[str, list[tuple[Trade | Gap, TapePosition]]]:
    return {coin: list(read_since(tmp, coin, [])) for coin in COINS}


@settings(deadline=None, max_examples=40)
@given(batches, old_segments)
def test_a_compacted_day_reads_the_same_records_at_the_same_positions(
    sequence: list[list[Trade | Gap]], old_keys: set[tuple[str, int]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        make_old_segments(tmp, old_keys)  # days of the older header: compacted without users
        with closing(TapeWriter(tmp, EventLog("test"), fsync=False)) as writer:
            for batch in sequence:
                writer.append(batch)
                writer.commit()
        before = _read(tmp)
        days = {coin: segment_days(tmp, coin, csv_only=True) for coin in COINS}
        sizes = {(c, d): segment_size(tmp, c, d) for c in COINS for d in days[c]}

        with patch.object(compact_io, "_parse", side_effect=AssertionError("slow path taken")):
            for coin in COINS:  # polars' parse of a tape the writer wrote always checks out
                for day in days[coin]:
                    compact_day(tmp, coin, day)

        assert all(segment_days(tmp, coin, csv_only=True) == [] for coin in COINS)
        assert all(
            sorted(os.listdir(coin_dir(tmp, c))) == [f"{d}.parquet" for d in days[c]]
            for c in COINS
            if days[c]
        )
        assert _read(tmp) == before
        assert {(c, d): segment_size(tmp, c, d) for c in COINS for d in days[c]} == sizes
        for coin, read in before.items():  # resuming at any position gives the same rest
            for index, (_, position) in enumerate(read):
                assert [r for r, _ in read_since(tmp, coin, [position])] == [
                    r for r, p in read[index + 1 :] if p.day >= position.day
                ]
