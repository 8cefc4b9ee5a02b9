"""One call: validate it, fetch its transcript and recording (or re-use what is archived), make its row."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from etl import records
from etl.api.client import ApiClient
from etl.api.listing import messages_of_call
from etl.api.recordings import RecordingFetcher, recording_key
from etl.errors import ArchiverError, AuthError, BadRecord
from etl.merge import ArchivedCall, transcript_is_reusable
from etl.model import ProblemKind, RecordingOutcome, RecordingStatus
from etl.pipeline.partition import Partition
from etl.pipeline.transcript import Transcript
from etl.recording_check import disagreement
from etl.reporting.ledger import Ledger, PartitionBook
from etl.storage.base import Storage

log = logging.getLogger(__name__)

# Call ids end up in URL paths and object keys: accept only what a UUID-like id can contain. Always
# `fullmatch`: `$` (and `match`) would let a trailing newline through into a path or a key.
_SAFE_CALL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


@dataclass(frozen=True)
class AdmittedCall:
    """A listed call that passed validation, with its row as far as the API object decides it."""

    call_id: str
    call: Mapping[str, Any]
    row: dict[str, Any]
    # Set for a call that never ended: archived as it is, with this reason for its recording.
    never_ended: str | None = None


class CallArchiver:
    """Admits listed calls and archives each admitted one; how many at once is the run's business."""

    def __init__(
        self,
        *,
        client: ApiClient,
        storage: Storage,
        fetcher: RecordingFetcher,
        ledger: Ledger,
        run_time: datetime,
        message_page_size: int,
        recording_give_up: timedelta,
        stop_new_work: Callable[[], bool] = lambda: False,
        spool_dir: Path,
        underway_give_up: timedelta,
    ) -> None:
        self._client = client
        self._storage = storage
        self._fetcher = fetcher
        self._ledger = ledger
        self._run_time = run_time
        self._message_page_size = message_page_size
        self._recording_give_up = recording_give_up
        # True once the run's deadline has passed: no recording is asked for after it.
        self._stop_new_work = stop_new_work
        self._spool_dir = spool_dir
        self._underway_give_up = underway_give_up

    def admit(
        self, raw: object, book: PartitionBook, *, underway_since: Mapping[str, datetime] | None = None
    ) -> AdmittedCall | None:
        """Validate a listed call; quarantine what cannot be archived; skip what the day's listing
        has shown before (calls shift between page requests), and what is still underway, unless it
        has been underway `underway_give_up` since the archive first found it so (`underway_since`,
        from the partition's manifest): then it is archived as it is."""
        day = book.day
        try:
            if not isinstance(raw, Mapping):
                raise BadRecord(f"a listed call is a {type(raw).__name__}, not a JSON object", record=raw)
            call_id = records.call_id_of(raw)
            if not _SAFE_CALL_ID.fullmatch(call_id):
                raise BadRecord(f"callId {call_id[:80]!r} has characters a call id cannot have", record=raw)
            if call_id in book.listed_call_ids:
                # The first sighting decided (archived, underway or quarantined): one row per call.
                self._ledger.listed_twice(call_id)
                return None
            book.listed_call_ids.add(call_id)
            if records.call_date_of(raw) != day:
                raise BadRecord(f"call {call_id} was listed for {day} but created on another day", record=raw)
            # Build (and so validate) every column now, before spending requests on a call we could
            # not store; archiving fills in only what it decides.
            row = records.call_row(raw, RecordingOutcome(RecordingStatus.PENDING), self._run_time)
        except BadRecord as exc:
            self._ledger.problem(ProblemKind.BAD_RECORD, exc.reason, book, call_id=_id_or_none(raw), raw=raw)
            return None
        except Exception as exc:  # a bug must cost one listed call, not the day or the run
            log.exception("internal error admitting a call")
            reason = f"internal error {type(exc).__name__} validating a listed call"
            self._ledger.problem(ProblemKind.BAD_RECORD, reason, book, call_id=_id_or_none(raw), raw=raw)
            return None
        if records.is_underway(raw):
            since = (underway_since or {}).get(call_id, self._run_time)
            waited = self._run_time - since
            if waited < self._underway_give_up:
                self._ledger.underway(call_id, book, since=since)
                return None
            reason = (
                f"the call was still underway {_days(waited)} after the archive first found it so; "
                "archived as it is, without waiting for it to end (a backfill of the day asks again)"
            )
            log.warning("call never ended: archived as it is", extra={"call_id": call_id})
            self._ledger.underway_given_up(call_id, book, since=since)
            return AdmittedCall(call_id, raw, row, never_ended=reason)
        return AdmittedCall(call_id, raw, row)

    async def archive(
        self, admitted: AdmittedCall, partition: Partition, book: PartitionBook, *, slot: asyncio.Semaphore
    ) -> None:
        """Archive one admitted call into `partition`; a failure costs this call only, with its reason.

        `slot` is the call slot the caller holds for this call: lent to the recording fetch, which
        gives it up while it waits for a recording that is not ready (the transcript's requests,
        a page or two, may still be in flight then)."""
        call_id, call = admitted.call_id, admitted.call
        archived = partition.archived.get(call_id)
        # The recording is fetched alongside the transcript: its 425 waits,
        # download and upload overlap the transcript's requests instead of following them, so a
        # day's (and the run's) last calls do not leave the rate budget idle while audio moves.
        recording = asyncio.create_task(
            self._recording(call, call_id, partition, archived, slot, never_ended=admitted.never_ended)
        )
        try:
            try:
                transcript, message_count = await self._transcript(call_id, partition, archived)
            except BaseException:
                # The call has failed: its recording is not wanted any more (the next run asks again).
                await _cancelled(recording)
                raise
            try:
                outcome = await _settled(recording)
                row = records.with_outcome(
                    admitted.row,
                    outcome,
                    archived.archived_at if archived else self._run_time,
                    message_count=message_count,
                    last_seen_at=self._run_time,
                )
            except BaseException:
                if transcript is not None:
                    transcript.discard()
                raise
        except AuthError:
            raise
        except BadRecord as exc:
            reason = f"call {call_id}: {exc.reason}"
            self._ledger.problem(ProblemKind.BAD_RECORD, reason, book, call_id=call_id, raw=exc.record)
            return
        except ArchiverError as exc:
            self._ledger.problem(ProblemKind.CALL_FAILED, f"call {call_id}: {exc}", book, call_id=call_id)
            return
        except Exception as exc:  # a bug must cost one call, not the run; the reason is kept
            log.exception("internal error archiving a call", extra={"call_id": call_id})
            reason = f"call {call_id}: internal error {type(exc).__name__}: {exc}"
            self._ledger.problem(ProblemKind.CALL_FAILED, reason, book, call_id=call_id)
            return
        try:
            partition.add_call(row, None if transcript is None else transcript.rows())
        finally:
            if transcript is not None:
                transcript.discard()
        self._ledger.archived(outcome, call_id, book, message_count, reused_transcript=transcript is None)

    async def _transcript(
        self, call_id: str, partition: Partition, archived: ArchivedCall | None
    ) -> tuple[Transcript | None, int]:
        """The call's transcript and message count; None when the archived transcript is re-used."""
        if transcript_is_reusable(archived, partition.archived_message_counts[call_id]):
            assert archived is not None and archived.message_count is not None
            return None, archived.message_count
        transcript = Transcript(call_id, self._spool_dir)
        try:
            # Rows are made page by page: a call holds one page of raw messages at a time.
            async for page in messages_of_call(self._client, call_id, page_size=self._message_page_size):
                transcript.add_page(page)
        except BaseException:
            transcript.discard()
            raise
        return transcript, transcript.count

    async def _recording(
        self,
        call: Mapping[str, Any],
        call_id: str,
        partition: Partition,
        archived: ArchivedCall | None,
        slot: asyncio.Semaphore,
        *,
        never_ended: str | None,
    ) -> RecordingOutcome:
        if call.get("recordingEnabled") is False:
            # The call object already says so: no request needed to learn it.
            return RecordingOutcome(RecordingStatus.NOT_ENABLED)
        if never_ended is not None:
            # Given up on (see `admit`): the API answers 425 for the recording of a call not ended.
            return RecordingOutcome(RecordingStatus.UNAVAILABLE, detail=never_ended)
        kept = archived.recording if archived is not None else None
        if (
            kept is not None
            and kept.status is RecordingStatus.ARCHIVED
            and await self._still_archived(partition, call_id, kept)
        ):
            # Archived before with this size and checksum: the audio never changes once ready.
            self._ledger.recording_reused()
            return kept
        if self._stop_new_work():
            # Pending keeps the day open: the next run asks for it.
            return RecordingOutcome(
                RecordingStatus.PENDING, detail="not asked for: the run reached its deadline"
            )
        enabled = call.get("recordingEnabled")
        outcome = await self._fetcher.fetch(
            call_id,
            partition.day,
            recording_enabled=enabled if isinstance(enabled, bool) else None,
            slot=slot,
            known_pending=call_id in partition.pending_recordings,
        )
        first_pending = archived.archived_at if archived is not None else None
        return give_up_if_overdue(outcome, first_pending, self._run_time, self._recording_give_up)

    async def _still_archived(self, partition: Partition, call_id: str, recording: RecordingOutcome) -> bool:
        """Whether the stored object still is the archived recording. A sync checks its size (a HEAD);
        a backfill (`partition.check_recordings`) its SHA-256 too, from the checksum S3 keeps (the
        same one HEAD) or by hashing a local file, so that what `verify` finds is repaired."""
        key = recording_key(partition.day, call_id)
        if partition.check_recordings:
            stored = await asyncio.to_thread(self._storage.digest, key)
            why = disagreement(stored, size=recording.size_bytes, sha256_hex=recording.sha256)
        else:
            head = await asyncio.to_thread(self._storage.head, key)
            why = None if head is not None and head.size == recording.size_bytes else "missing or resized"
        self._ledger.recording_checked(disagrees=why is not None)
        if why is not None:
            log.warning("archived recording fetched again", extra={"call_id": call_id, "reason": why})
        return why is None


# A call's recording task never outlives the call: the call's slot, lent to the fetch, is given back
# when the call ends, and the fetch may still be holding it.


async def _settled(recording: asyncio.Task[RecordingOutcome]) -> RecordingOutcome:
    """The recording's outcome; if the call is cancelled meanwhile, the recording is cancelled and
    waited for before the cancellation goes on."""
    try:
        return await asyncio.shield(recording)
    except asyncio.CancelledError:
        await _cancelled(recording)
        raise


async def _cancelled(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is not None:
        log.debug("recording ended with an error after its call failed", exc_info=task.exception())


def give_up_if_overdue(
    outcome: RecordingOutcome, first_pending: datetime | None, now: datetime, give_up_after: timedelta
) -> RecordingOutcome:
    """A recording still pending, or still failing at the source (the API refuses it or keeps
    answering 5xx), `give_up_after` since the archive first found it so becomes `unavailable`, so it
    stops keeping its day open (and every sync asking for it). A failure of our own destination is
    never given up on.

    `first_pending` is the call's archived_at: a call is first archived once it has ended, and an
    archived recording is never asked for again, so a recording pending now has been pending (or
    failing) since then. None: first seen by this run.
    """
    failing = outcome.status is RecordingStatus.FAILED and outcome.source_failure
    if (outcome.status is not RecordingStatus.PENDING and not failing) or first_pending is None:
        return outcome
    waited = now - first_pending
    if waited < give_up_after:
        return outcome
    still = f"still failing ({outcome.detail})" if failing else "still not ready (HTTP 425)"
    return RecordingOutcome(
        RecordingStatus.UNAVAILABLE,
        detail=f"{still} {_days(waited)} after it was first found pending; "
        "the day is no longer kept open for it (a backfill of the day asks again)",
    )


def _days(span: timedelta) -> str:
    days = span.total_seconds() / 86400
    return f"{days:.1f} days" if days >= 0.1 else f"{span.total_seconds():.0f} s"


def _id_or_none(raw: object) -> str | None:
    if isinstance(raw, Mapping):
        value = raw.get("callId")
        return value if isinstance(value, str) else None
    return None
