"""The venue audit's score across files (pure), from the writer's per-file `AuditScore`s."""

from __future__ import annotations

from collections.abc import Iterable

from hlstream.common.status import AuditScore

# The writer's audit totals among the report's counters: the text and /metrics show them per
# file instead (files.FILE.audit).
AUDIT_COUNTERS = frozenset({"rows_audited", "rows_mismatched", "audit_pending"})


def total_score(scores: Iterable[AuditScore | None]) -> AuditScore | None:
    """The sum of the files' scores; None when no file has one (the audit is off)."""
    known = [score for score in scores if score is not None]
    if not known:
        return None
    return AuditScore(
        audited=sum(score.audited for score in known),
        matched=sum(score.matched for score in known),
        mismatched=sum(score.mismatched for score in known),
        pending=sum(score.pending for score in known),
        unauditable=sum(score.unauditable for score in known),
    )


def has_activity(score: AuditScore | None) -> bool:
    """True when the file has rows in any state of the audit."""
    return score is not None and (score.audited + score.pending + score.unauditable) > 0
