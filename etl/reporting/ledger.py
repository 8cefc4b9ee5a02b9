"""The run's bookkeeping: what was archived, what is open, what failed and why.

Every outcome goes through here, so the run summary, each partition's open items (its manifest) and
the log always agree. The Ledger is the only writer of both: the summary of the run, and a
`PartitionBook` per partition, from which the partition's manifest is made.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from etl.model import ProblemKind, PublishResult, RecordingOutcome, RecordingStatus
from etl.reporting.progress import Progress
from etl.reporting.summary import Problem, RunSummary
from etl.state import PartitionManifest, is_final

log = logging.getLogger(__name__)

_RAW_QUARANTINE_LIMIT = 64 * 1024
# Problems that leave a call (or a whole day's listing) unarchived by this run.
_FAILED_KINDS = frozenset(
    {ProblemKind.CALL_FAILED, ProblemKind.LISTING_FAILED, ProblemKind.LEASE_LOST, ProblemKind.DAY_FAILED}
)


@dataclass
class PartitionBook:
    """What stays open in one partition after this run, and its recordings; written by the Ledger."""

    day: date
    underway_call_ids: list[str] = field(default_factory=list)
    pending_recording_call_ids: list[str] = field(default_factory=list)
    failed_call_ids: list[str] = field(default_factory=list)
    # Failures without a call id (see PartitionManifest.failed_kinds).
    failed_kinds: list[ProblemKind] = field(default_factory=list)
    # Every call id the day's listing has shown so far: a call listed twice is archived once.
    listed_call_ids: set[str] = field(default_factory=set)
    recordings_archived: int = 0
    recording_bytes: int = 0
    underway_since: dict[str, str] = field(default_factory=dict)

    def manifest(
        self, published: PublishResult, *, run_id: str, written_at: datetime, refresh_window: timedelta
    ) -> PartitionManifest:
        """The manifest of the partition as published, final if nothing in it is open any more."""
        final = is_final(
            self.day,
            underway=len(self.underway_call_ids),
            pending_recordings=len(self.pending_recording_call_ids),
            failed=len(self.failed_call_ids) + len(self.failed_kinds),
            now=written_at,
            refresh_window=refresh_window,
        )
        return PartitionManifest(
            call_date=self.day,
            run_id=run_id,
            written_at=written_at,
            final=final,
            calls=published.calls,
            messages=published.messages,
            recordings_archived=self.recordings_archived,
            recording_bytes=self.recording_bytes,
            calls_kept_from_archive=published.kept_from_archive,
            calls_deleted_at_source=published.deleted_at_source,
            schema_versions=dict(published.schema_versions),
            underway_call_ids=tuple(self.underway_call_ids),
            pending_recording_call_ids=tuple(self.pending_recording_call_ids),
            failed_call_ids=tuple(self.failed_call_ids),
            newest_call_created=published.newest_call_created,
            failed_kinds=tuple(self.failed_kinds),
            underway_since=dict(self.underway_since),
        )


class Ledger:
    def __init__(self, summary: RunSummary, progress: Progress | None = None) -> None:
        self.summary = summary
        self._progress = progress

    def planned(self, days: int) -> None:
        """The run will visit `days` days (the progress display's total)."""
        if self._progress is not None:
            self._progress.planned(days)

    def listed(self, calls: int) -> None:
        """A page of a day's listing came in, with `calls` items."""
        if self._progress is not None:
            self._progress.listed(calls)

    def day_listed(self) -> None:
        """A day's listing ended (the progress display's estimate of the run's calls firms up)."""
        if self._progress is not None:
            self._progress.day_listed()

    def day_done(self) -> None:
        """One of the planned days is done with, however it ended (published, locked, failed)."""
        if self._progress is not None:
            self._progress.day_done()

    def problem(
        self,
        kind: ProblemKind,
        reason: str,
        book: PartitionBook,
        *,
        call_id: str | None = None,
        raw: object = None,
    ) -> None:
        if call_id is not None:
            book.failed_call_ids.append(call_id)
        else:
            book.failed_kinds.append(kind)
        if kind is ProblemKind.BAD_RECORD:
            self.summary.records_quarantined += 1
        elif kind in _FAILED_KINDS:
            self.summary.calls_failed += 1
        raw_json = None if raw is None else _quarantined_json(raw)
        self.summary.problems.append(Problem(kind, reason, book.day.isoformat(), call_id, raw_json))
        message = "recording not archived" if kind is ProblemKind.RECORDING_FAILED else "call not archived"
        log.warning(message, extra={"kind": kind, "reason": reason, "call_id": call_id})

    def listed_twice(self, call_id: str) -> None:
        self.summary.calls_listed_twice += 1
        log.info("call listed twice, archived once", extra={"call_id": call_id})

    def underway(self, call_id: str, book: PartitionBook, *, since: datetime | None = None) -> None:
        self.summary.calls_underway += 1
        self.summary.underway_call_ids.append(call_id)
        book.underway_call_ids.append(call_id)
        if since is not None:
            book.underway_since[call_id] = since.isoformat()

    def underway_given_up(self, call_id: str, book: PartitionBook, *, since: datetime) -> None:
        """A call archived as it is although still underway: its first-found time stays in the
        manifest, so a later visit of the day (refresh window, backfill) gives it up again at once
        instead of counting from zero and opening the day for it."""
        book.underway_since[call_id] = since.isoformat()

    def recording_reused(self) -> None:
        self.summary.recordings_reused += 1

    def recording_checked(self, *, disagrees: bool) -> None:
        self.summary.recording_checks += 1
        self.summary.recordings_refetched += disagrees

    def archived(
        self,
        outcome: RecordingOutcome,
        call_id: str,
        book: PartitionBook,
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
            book.recordings_archived += 1
            book.recording_bytes += outcome.size_bytes or 0
        elif outcome.status is RecordingStatus.NOT_ENABLED:
            summary.recordings_not_enabled += 1
        elif outcome.status is RecordingStatus.PENDING:
            summary.recordings_pending += 1
            summary.pending_recording_call_ids.append(call_id)
            book.pending_recording_call_ids.append(call_id)
        elif outcome.status is RecordingStatus.UNAVAILABLE:
            # Archived as such, not a failure of this run: the source never finished it.
            summary.recordings_unavailable += 1
            summary.unavailable_recording_call_ids.append(call_id)
            log.warning("recording given up on", extra={"call_id": call_id, "reason": outcome.detail})
        else:
            summary.recordings_failed += 1
            reason = f"call {call_id}: {outcome.detail}"
            self.problem(ProblemKind.RECORDING_FAILED, reason, book, call_id=call_id)
        if self._progress is not None:
            self._progress.update(summary)

    def deadline_reached(self) -> None:
        """The run was still working when its deadline passed: what is left undone is the deadline's."""
        if not self.summary.deadline_reached:
            log.warning(
                "deadline reached: no new work, no more retries", extra={"run_id": self.summary.run_id}
            )
        self.summary.deadline_reached = True

    def unfinished(self, day: date, book: PartitionBook | None) -> None:
        """The run's deadline came before `day` was finished (or, without a book, started): the day
        stays open for the next run."""
        self.deadline_reached()
        self.summary.days_unfinished.append(day.isoformat())
        if book is not None:
            book.failed_kinds.append(ProblemKind.UNFINISHED)
        log.warning("day left for the next run (deadline reached)", extra={"call_date": day.isoformat()})

    def partition_locked(self, day: date, holder: str) -> None:
        self.summary.partitions_locked.append(f"{day.isoformat()} (locked by {holder})")
        log.warning("partition locked by another run", extra={"call_date": day.isoformat(), "by": holder})

    def partition_written(self, manifest: PartitionManifest) -> None:
        """`manifest` and the partition it describes are in place (and the open marker is gone if final)."""
        summary = self.summary
        summary.partitions_written += 1
        summary.partitions_final += manifest.final
        summary.calls_kept_from_archive += manifest.calls_kept_from_archive
        summary.calls_deleted_at_source += manifest.calls_deleted_at_source
        log.info(
            "partition written",
            extra={
                "call_date": manifest.call_date.isoformat(),
                "calls": manifest.calls,
                "final": manifest.final,
            },
        )


def _quarantined_json(raw: object) -> str:
    """The raw record as JSON for `_quarantine/`, cut at 64 KiB; a record too deep (or otherwise unfit)
    to encode is described instead, never allowed to stop the run that quarantines it."""
    try:
        text = json.dumps(raw, ensure_ascii=False, default=str)
    except (RecursionError, ValueError):
        return json.dumps({"unencodable": f"a {type(raw).__name__} nested too deeply or holding bad values"})
    return text[:_RAW_QUARANTINE_LIMIT]
