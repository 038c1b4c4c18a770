"""The venue audit's ledger survives a writer restart (services/writer/ledger_state.py and the
Auditor's ledger file): counts continue, pending rows are still audited."""

from __future__ import annotations

from pathlib import Path

import pytest

from hlstream.common.config import Settings, validate
from hlstream.common.csvrow import Row
from hlstream.common.errors import IntegrityError
from hlstream.common.lifecycle_io import StopFlag
from hlstream.common.log import EventLog
from hlstream.common.messages import Bar
from hlstream.common.status import AuditScore
from hlstream.services.writer.audit import AuditLedger, score_of
from hlstream.services.writer.auditor_io import LEDGER_FILE, Auditor
from hlstream.services.writer.ledger_state import decode_ledgers, encode_ledgers, restore
from tests.unit.test_writer_audit import MINUTE, S5, T0, M, candle, seconds_rows

DATA = "/srv/data"


def ledgers() -> dict[tuple[str, str], AuditLedger]:
    return {
        ("BTC", "1m"): AuditLedger(M, settle_ms=0, retry_ms=60_000, max_attempts=3),
        ("PURR/USDC", "5s"): AuditLedger(S5, settle_ms=0, retry_ms=60_000, max_attempts=3),
    }


def busy() -> dict[tuple[str, str], AuditLedger]:
    """Ledgers with counts and pending rows: a 1m row judged, one waiting with its trade
    count, one retried once; a minute of 5s rows waiting."""
    before = ledgers()
    minute = before[("BTC", "1m")]
    minute.add(Row(T0, "100", "101", "99", "100", "2"), 5)
    minute.settle([T0], {T0: candle(T0, "100", "101", "99", "100", "2", 5)}, T0 + M)
    minute.add(Row(T0 + M, "100", "101", "99", "100.5", "3"), 7)
    minute.add(Row(T0 + 2 * M, "1", "1", "1", "1", "1"), None)
    minute.settle([T0 + 2 * M], {}, T0 + 3 * M)  # not served yet: retried
    for row in seconds_rows():
        before[("PURR/USDC", "5s")].add(row, None)
    return before


def test_a_saved_ledger_restores_its_counts_and_pending_rows() -> None:
    before = busy()
    after = ledgers()
    pending = restore(after, decode_ledgers(encode_ledgers(before, DATA), DATA))
    assert pending == 2 + 12
    for key, ledger in before.items():
        assert score_of(after[key]) == score_of(ledger)
        assert after[key].units == ledger.units  # rows, trade counts, due times, attempts
    assert score_of(after[("BTC", "1m")]) == AuditScore(1, 1, 0, 2, 0)


def test_pending_rows_restored_are_still_audited() -> None:
    after = ledgers()
    restore(after, decode_ledgers(encode_ledgers(busy(), DATA), DATA))
    seconds = after[("PURR/USDC", "5s")]
    (outcome,) = seconds.settle(seconds.due(T0 + 2 * M), {T0: MINUTE}, T0 + 2 * M)
    assert outcome.problems == () and seconds.tally.matched == 12
    minute = after[("BTC", "1m")]
    venue = candle(T0 + M, "100", "101", "99", "100.5", "3", 8)
    (judged,) = minute.settle([T0 + M], {T0 + M: venue}, T0 + 5 * M)
    assert judged.problems == ("n 7 != 8",)  # our trade count came through the restart
    assert (minute.tally.audited, minute.tally.mismatched) == (2, 1)


def test_a_ledger_of_another_data_dir_or_malformed_is_refused() -> None:
    data = encode_ledgers(busy(), DATA)
    with pytest.raises(IntegrityError, match="data dir"):
        decode_ledgers(data, "/other")
    with pytest.raises(IntegrityError, match="malformed"):
        decode_ledgers(data[:-5], DATA)


def test_a_misaligned_unit_changes_no_ledger_and_an_unknown_file_is_dropped() -> None:
    saved = decode_ledgers(encode_ledgers(busy(), DATA), DATA)
    fresh = ledgers()
    odd = 7 * M + 1  # a ledger whose windows the saved minute cannot start
    assert T0 % odd
    changed = {("BTC", "1m"): fresh[("BTC", "1m")], ("PURR/USDC", "5s"): AuditLedger(odd, 0, 1, 1)}
    with pytest.raises(IntegrityError, match="misaligned"):
        restore(changed, saved)
    assert fresh[("BTC", "1m")].pending_rows() == 0 and fresh[("BTC", "1m")].tally.audited == 0
    only_btc = {("BTC", "1m"): fresh[("BTC", "1m")]}
    assert restore(only_btc, saved) == 2


def bar(start: int, interval: str, trades: int) -> Bar:
    return Bar("BTC", interval, start, "1", "1", "1", "1", "1", trades, True, "ws")


def test_a_restarted_auditor_continues_the_score_and_the_pending_rows(tmp_path: Path) -> None:
    settings = validate(
        Settings(coins=("BTC",), intervals=("1m",), run_dir=tmp_path, data_dir=tmp_path / "d")
    )
    paths = {("BTC", "1m"): tmp_path / "d" / "btc_1m_data.csv"}

    def auditor() -> Auditor:
        return Auditor(settings, StopFlag(), EventLog("writer"), None, paths, now_ms=lambda: T0)  # type: ignore[arg-type]

    first = auditor()
    first.offer([bar(T0, "1m", 3), bar(T0 + M, "1m", 4)])
    first.ledgers[("BTC", "1m")].tally.matched = first.ledgers[("BTC", "1m")].tally.audited = 9
    first.join(1.0)  # the thread never started: saves at once
    assert (tmp_path / LEDGER_FILE).exists()

    second = auditor()
    assert second.scores() == {("BTC", "1m"): AuditScore(9, 9, 0, 2, 0)}
    assert second.ledgers[("BTC", "1m")].units == first.ledgers[("BTC", "1m")].units
