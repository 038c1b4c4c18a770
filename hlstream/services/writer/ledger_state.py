"""The venue audit's ledgers (audit.py) as bytes, so a restarted writer continues them. Pure.

Invariants: ledgers are restored only into the data dir the bytes name, all or nothing
(IntegrityError changes no ledger), and only for the files configured now.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from hlstream.common.csvrow import Row
from hlstream.common.errors import IntegrityError
from hlstream.common.revisions import VENUE_MISMATCH
from hlstream.common.wire import Count, Ms
from hlstream.services.writer.audit import AuditLedger, AuditTally, Unit

LEDGER_VERSION = 1


class SavedRow(msgspec.Struct, frozen=True, array_like=True):
    """[start_ms, open, high, low, close, volume, trades or null]"""

    start_ms: Ms
    open: str
    high: str
    low: str
    close: str
    volume: str
    trades: Count | None


class SavedUnit(msgspec.Struct, frozen=True):
    start_ms: Ms
    due_ms: Ms
    attempts: Count
    rows: list[SavedRow]
    reason: str = VENUE_MISMATCH  # the default for a saved unit without one


class SavedLedger(msgspec.Struct, frozen=True):
    coin: str
    interval: str
    audited: Count
    matched: Count
    mismatched: Count
    unauditable: Count
    units: list[SavedUnit]


class SavedAudit(msgspec.Struct, frozen=True):
    version: int
    data_dir: str
    ledgers: list[SavedLedger]


def _saved(coin: str, interval: str, ledger: AuditLedger) -> SavedLedger:
    units = [
        SavedUnit(
            start,
            unit.due_ms,
            unit.attempts,
            [
                SavedRow(r.start_ms, r.open, r.high, r.low, r.close, r.volume, trades)
                for r, trades in (unit.rows[key] for key in sorted(unit.rows))
            ],
            unit.reason,
        )
        for start, unit in sorted(ledger.units.items())
    ]
    tally = ledger.tally
    return SavedLedger(
        coin, interval, tally.audited, tally.matched, tally.mismatched, tally.unauditable, units
    )


def encode_ledgers(ledgers: Mapping[tuple[str, str], AuditLedger], data_dir: str) -> bytes:
    """Every ledger's counts and pending rows, as JSON."""
    saved = [_saved(coin, interval, ledger) for (coin, interval), ledger in ledgers.items()]
    return msgspec.json.encode(SavedAudit(LEDGER_VERSION, data_dir, saved))


def decode_ledgers(data: bytes, data_dir: str) -> dict[tuple[str, str], SavedLedger]:
    """The saved ledgers by (coin, interval); IntegrityError when they cannot be restored."""
    try:
        saved = msgspec.json.decode(data, type=SavedAudit)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise IntegrityError(f"audit ledger is malformed: {exc}") from exc
    if saved.version != LEDGER_VERSION:
        raise IntegrityError(f"audit ledger version {saved.version}, expected {LEDGER_VERSION}")
    if saved.data_dir != data_dir:
        raise IntegrityError(f"audit ledger describes data dir {saved.data_dir}, not {data_dir}")
    return {(entry.coin, entry.interval): entry for entry in saved.ledgers}


def restore(
    ledgers: Mapping[tuple[str, str], AuditLedger], saved: Mapping[tuple[str, str], SavedLedger]
) -> int:
    """Put the saved counts and pending rows into the fresh ledgers of the same files; return
    the rows pending. IntegrityError, with no ledger changed, on a misaligned saved unit."""
    for key, entry in saved.items():
        ledger = ledgers.get(key)
        if ledger is not None and any(unit.start_ms % ledger.unit_ms for unit in entry.units):
            raise IntegrityError(f"audit ledger of {' '.join(key)} holds a misaligned window")
    for key, entry in saved.items():
        if key in ledgers:
            _restore(ledgers[key], entry)
    return sum(ledgers[key].pending_rows() for key in saved if key in ledgers)


def _restore(ledger: AuditLedger, saved: SavedLedger) -> None:
    ledger.tally = AuditTally(saved.audited, saved.matched, saved.mismatched, saved.unauditable)
    ledger.units = {
        unit.start_ms: Unit(
            {
                r.start_ms: (Row(r.start_ms, r.open, r.high, r.low, r.close, r.volume), r.trades)
                for r in unit.rows
            },
            unit.due_ms,
            unit.attempts,
            unit.reason,
        )
        for unit in saved.units
    }
