"""Property tests for `hlstream rebuild`'s columnar path (hlstream/rebuild_columnar.py): for
any records of a coin's tape (trades near time order with ties and stragglers, some far out of
order, gap markers anywhere, decimal texts of up to 32 digits on either side of the point,
trailing and leading zeros), any interval, coverage and seed close, it gives exactly the rows
and inexact windows of the per-record path (`tape_bars`, the aggregator's core), or None,
leaving it to that path. It declines only when the per-record path might round a decimal or
find a late trade: on ordinary venue texts and a tape in near time order it always answers.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hlstream.common.messages import Gap, Trade
from hlstream.common.tape.format import Record
from hlstream.rebuild import LATE_SLACK_MS, Window, tape_bars
from hlstream.rebuild_columnar import columnar_bars, records_frame
from hlstream.services.writer.core import row_of

DAY0 = 1_699_920_000_000  # a UTC midnight
INTERVALS = {"1s": 1_000, "5s": 5_000, "15s": 15_000, "1m": 60_000, "1h": 3_600_000}


@st.composite
def decimal_texts(draw: st.DrawFn, long: bool) -> str:
    """A positive decimal as the tape holds it: venue-like, or (long) up to 32 + 32 digits."""
    most_ints, most_scale = (32, 32) if long else (7, 8)
    ints = draw(st.text("0123456789", min_size=1, max_size=most_ints))
    scale = draw(st.integers(0, most_scale))
    text = ints + (
        "." + draw(st.text("0123456789", min_size=scale, max_size=scale)) if scale else ""
    )
    return text if any(c in "123456789" for c in text) else text[:-1] + "1"


@st.composite
def tapes(draw: st.DrawFn) -> tuple[Window, list[Record], int | None, str | None, bool]:
    """A window, records of one coin in feed order, coverage, seed; and whether the records
    are ordinary (venue-size decimals, nothing far out of order)."""
    interval = draw(st.sampled_from(sorted(INTERVALS)))
    step = INTERVALS[interval]
    windows = draw(st.integers(1, 30))
    from_ms = DAY0 + draw(st.integers(0, 40)) * step
    window = Window(interval, step, from_ms, from_ms + windows * step)
    long = draw(st.integers(0, 9)) == 0
    ordinary = not long
    coin = draw(st.sampled_from(["BTC", "kPEPE", "@107"]))
    records: list[Record] = []
    ts = from_ms - draw(st.integers(0, 2 * step))
    for _ in range(draw(st.integers(0, 60))):
        if draw(st.integers(0, 9)) == 0:
            lo = ts + draw(st.integers(-3 * step, 3 * step))
            records.append(Gap(coin, lo, lo + draw(st.integers(0, 3 * step)), "reconnect"))
            continue
        ts += draw(st.sampled_from([0, 0, 1, step // 3 + 1, step, 2 * step, 5 * step]))
        stamp = ts - draw(st.sampled_from([0, 0, 0, 1, min(step // 2, LATE_SLACK_MS // 2)]))
        if draw(st.integers(0, 29)) == 0:  # a straggler, perhaps beyond the late slack
            stamp -= draw(st.integers(0, LATE_SLACK_MS + 3 * step))
            ordinary = False
        price = draw(decimal_texts(long and draw(st.booleans())))
        size = draw(decimal_texts(long and draw(st.booleans())))
        side = draw(st.sampled_from(["buy", "sell"]))
        records.append(Trade(coin, side, price, size, stamp, len(records), "0x0"))
    covered = draw(st.one_of(st.none(), st.integers(from_ms - step, window.to_ms + step)))
    seed = draw(st.one_of(st.none(), st.sampled_from(["9.5", "100.0", "0.000123"])))
    return window, records, covered, seed, ordinary


@settings(max_examples=200, deadline=None)
@given(tapes())
def test_columnar_rows_equal_the_per_record_rows_or_it_declines(tape):
    window, records, covered, seed, ordinary = tape
    coin = records[0].coin if records else "BTC"
    expected = tape_bars(coin, window, records, covered, seed)
    got = columnar_bars(coin, window, records_frame(records), covered, seed)
    if got is None:
        assert not ordinary, "declined an ordinary tape"
        return
    assert expected.late == 0
    assert got.rows == [row_of(bar) for bar in expected.bars]
    assert got.inexact == expected.inexact()


def test_a_record_of_another_coin_or_a_bad_decimal_is_left_to_the_per_record_path():
    window = Window("1m", 60_000, DAY0, DAY0 + 120_000)
    good = Trade("BTC", "buy", "1.5", "2", DAY0 + 1, 1, "0x0")
    assert columnar_bars("BTC", window, records_frame([good]), DAY0, None) is not None
    other = Trade("ETH", "buy", "1.5", "2", DAY0 + 2, 2, "0x0")
    assert columnar_bars("BTC", window, records_frame([good, other]), DAY0, None) is None
    for text in ("0.0", "1e5", "-1", "1.", ".5", ""):
        bad = Trade("BTC", "buy", text, "2", DAY0 + 2, 2, "0x0")
        assert columnar_bars("BTC", window, records_frame([good, bad]), DAY0, None) is None
