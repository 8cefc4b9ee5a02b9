"""The run's bookkeeping: what was archived, what is open, what failed and why.

Every outcome goes through here, so the run summary, each partition's open items (its manifest) and
the log always agree.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from etl.model import RecordingOutcome, RecordingStatus
from etl.pipeline.partition import Partition
from etl.reporting.summary import Problem, RunSummary

log = logging.getLogger(__name__)

_RAW_QUARANTINE_LIMIT = 64 * 1024
# Problems that leave a call (or a whole day's listing) unarchived by this run.
_FAILED_KINDS = frozenset({"call_failed", "listing_failed", "lease_lost"})


class Ledger:
    def __init__(self, summary: RunSummary, progress: Callable[[RunSummary], None] | None = None) -> None:
        self.summary = summary
        self._progress = progress

    def problem(
        self, kind: str, reason: str, partition: Partition, *, call_id: str | None = None, raw: object = None
    ) -> None:
        partition.failed.append(call_id or kind)
        if kind == "bad_record":
            self.summary.records_quarantined += 1
        elif kind in _FAILED_KINDS:
            self.summary.calls_failed += 1
        raw_json = None
        if raw is not None:
            raw_json = json.dumps(raw, ensure_ascii=False, default=str)[:_RAW_QUARANTINE_LIMIT]
        self.summary.problems.append(Problem(kind, reason, partition.day.isoformat(), call_id, raw_json))
        message = "recording not archived" if kind == "recording_failed" else "call not archived"
        log.warning(message, extra={"kind": kind, "reason": reason, "call_id": call_id})

    def underway(self, call_id: str, partition: Partition) -> None:
        self.summary.calls_underway += 1
        self.summary.underway_call_ids.append(call_id)
        partition.underway_call_ids.append(call_id)

    def recording_reused(self) -> None:
        self.summary.recordings_reused += 1

    def archived(
        self,
        outcome: RecordingOutcome,
        call_id: str,
        partition: Partition,
        messages: int,
        *,
        reused_transcript: bool,
    ) -> None:
        summary = self.summary
        summary.calls_archived += 1
        summary.messages_archived += messages
        summary.transcripts_reused += reused_transcript
        if outcome.status is RecordingStatus.ARCHIVED:
            summary.recordings_archived += 1
            summary.recording_bytes += outcome.size_bytes or 0
        elif outcome.status is RecordingStatus.NOT_ENABLED:
            summary.recordings_not_enabled += 1
        elif outcome.status is RecordingStatus.PENDING:
            summary.recordings_pending += 1
            summary.pending_recording_call_ids.append(call_id)
        elif outcome.status is RecordingStatus.UNAVAILABLE:
            # Archived as such, not a failure of this run: the source never finished it.
            summary.recordings_unavailable += 1
            summary.unavailable_recording_call_ids.append(call_id)
            log.warning("recording given up on", extra={"call_id": call_id, "reason": outcome.detail})
        else:
            summary.recordings_failed += 1
            self.problem("recording_failed", f"call {call_id}: {outcome.detail}", partition, call_id=call_id)
        if self._progress is not None:
            self._progress(summary)
