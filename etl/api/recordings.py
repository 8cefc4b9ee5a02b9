"""Fetch one call's recording and publish it to the destination.

The recording endpoint answers 425 until the audio is ready, then either 302 to a signed URL on a
storage host (which expires) or, on some deployments, 200 with the audio itself. Either way the body
streams into a `RecordingSink` (etl.api.recording_sink), which hashes it once and uploads it from a
buffer borrowed from the run's pool just before the body flows; storage publishes atomically, so a
reader never sees half a file.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date

from etl.api.budget import BufferPool
from etl.api.client import AnswerKind, ApiClient
from etl.api.recording_sink import RecordingSink
from etl.api.threads import in_thread
from etl.api.transfer_guard import GuardedSink, TransferGuard, TransferLimits
from etl.errors import ArchiverError, SignedUrlRejected, StorageError
from etl.model import RecordingOutcome, RecordingStatus
from etl.storage.base import Storage

log = logging.getLogger(__name__)


def recording_key(call_date: date, call_id: str) -> str:
    return f"recordings/call_date={call_date.isoformat()}/{call_id}.wav"


@dataclass(frozen=True)
class RecordingPolicy:
    """Every field required: the defaults live in `Settings` (recording_*)."""

    # How long to keep polling a recording from its first 425. Per call, not per run: a call listed
    # late in a long run deserves the same wait as the first one. Spent once per recording: one an
    # earlier run left pending is asked for once (`fetch(known_pending=True)`).
    wait_s: float
    poll_initial_s: float
    poll_max_s: float
    # How many fresh signed URLs to ask for when the storage host refuses one (they expire).
    url_refreshes: int


def refused(status: int | None, explained: str | None, *, recording_enabled: bool | None) -> RecordingOutcome:
    """What a 4xx from the recording endpoint means, by status family and the call's
    `recordingEnabled`, never by the wording of `detail` (which the API does not document).

    The OpenAPI's default of `recordingEnabled` is false, so for a call whose object does not say,
    a refusal is the documented "recording not enabled". For a call created with recording on, it
    is a failure: the day stays open, and after `recording_give_up_days` it is given up on like a
    recording that stays pending.
    """
    said = f"HTTP {status}" + (f": {explained}" if explained else "")
    if recording_enabled is not True:
        return RecordingOutcome(RecordingStatus.NOT_ENABLED, detail=said)
    return RecordingOutcome(
        RecordingStatus.FAILED,
        detail=f"the API refused the recording of a call with recording enabled ({said})",
        source_failure=True,
    )


class RecordingFetcher:
    def __init__(
        self,
        client: ApiClient,
        storage: Storage,
        policy: RecordingPolicy,
        *,
        buffers: BufferPool,
        download_slots: asyncio.Semaphore,
        limits: TransferLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        stop_polling: Callable[[], bool] = lambda: False,
    ) -> None:
        self._client = client
        # True once the run's deadline has passed: a recording not ready then is left pending.
        self._stop_polling = stop_polling
        self._storage = storage
        self._policy = policy
        self._buffers = buffers
        self._download_slots = download_slots
        self._limits = limits or TransferLimits(max_bytes=None, min_bytes_per_s=0.0, window_s=60.0)
        self._clock = clock
        self._sleep = sleep
        # When the wait of each recording being waited for ends (clock time): the run's heartbeat.
        self._waiting: dict[tuple[date, str], float] = {}

    def waiting(self) -> tuple[int, float]:
        """How many recordings are being waited for now, and the seconds left of the longest wait."""
        if not self._waiting:
            return 0, 0.0
        return len(self._waiting), max(0.0, max(self._waiting.values()) - self._clock())

    async def fetch(
        self,
        call_id: str,
        call_date: date,
        *,
        recording_enabled: bool | None = None,
        slot: asyncio.Semaphore | None = None,
        known_pending: bool = False,
    ) -> RecordingOutcome:
        """Archive one recording. `recording_enabled` is the call's `recordingEnabled` (None: the
        object did not say). `slot`, if given, is held by the caller and given up while waiting
        between polls, so calls whose recordings are not ready do not starve the others.

        `known_pending`: an earlier run already waited `wait_s` for this recording and left it
        pending. It is asked for once, not waited for again: a recording that stays pending for days
        must not hold every scheduled run for `wait_s` (issue 13); one that became ready since is
        archived now."""
        try:
            return await self._fetch(call_id, call_date, recording_enabled, slot, known_pending)
        except StorageError as exc:
            log.warning("recording failed", extra={"call_id": call_id, "error": str(exc)})
            return RecordingOutcome(RecordingStatus.FAILED, detail=str(exc))
        except ArchiverError as exc:
            # The API or the storage host it sent us to kept failing (after retries).
            log.warning("recording failed", extra={"call_id": call_id, "error": str(exc)})
            return RecordingOutcome(RecordingStatus.FAILED, detail=str(exc), source_failure=True)

    async def _fetch(
        self,
        call_id: str,
        call_date: date,
        recording_enabled: bool | None,
        slot: asyncio.Semaphore | None,
        known_pending: bool,
    ) -> RecordingOutcome:
        poll_delay = self._policy.poll_initial_s
        deadline: float | None = None
        wait_s = 0.0 if known_pending else self._policy.wait_s
        refreshes = 0
        sink = RecordingSink(self._storage, recording_key(call_date, call_id))
        # The bytes pass the size cap and the minimum rate on their way in; the buffer, finish and
        # cancel go to the sink itself.
        guarded = GuardedSink(sink, TransferGuard(self._limits, clock=self._clock))
        try:
            while True:
                answer = await self._client.request_recording(
                    call_id,
                    guarded,
                    before_body=lambda length: self._lend_buffer(sink, length),
                    on_cancel=sink.cancel,
                )
                if answer.kind is AnswerKind.REFUSED:
                    return refused(answer.status, answer.detail, recording_enabled=recording_enabled)
                if answer.kind is AnswerKind.TOO_EARLY:
                    now = self._clock()
                    if deadline is None:
                        deadline = now + wait_s
                        if wait_s:
                            self._waiting[(call_date, call_id)] = deadline
                    if now + poll_delay > deadline:
                        # The same words for a recording known pending (waited for by an earlier
                        # run, asked once now): still true, and its row does not change every run.
                        return RecordingOutcome(
                            RecordingStatus.PENDING,
                            detail=f"not ready after polling for {self._policy.wait_s:g} s (HTTP 425)",
                        )
                    if self._stop_polling():
                        return RecordingOutcome(
                            RecordingStatus.PENDING, detail="not ready when the run reached its deadline"
                        )
                    if sink.buffer_size:
                        await self._give_back_buffer(sink)  # a cut 200 then a 425: no hoarding
                    await self._pause(poll_delay * (0.75 + random.random() * 0.5), slot)
                    poll_delay = min(poll_delay * 2, self._policy.poll_max_s)
                    continue
                if answer.kind is AnswerKind.REDIRECT and answer.location is not None:
                    try:
                        # A buffer is borrowed inside the slot, once the headers give the length
                        # (the body stays unread meanwhile, and TCP holds the sender back).
                        async with self._download_slots:
                            await self._client.download(
                                answer.location,
                                guarded,
                                before_body=lambda length: self._lend_buffer(sink, length),
                                on_cancel=sink.cancel,
                            )
                    except SignedUrlRejected:
                        # Signed URLs expire; the API hands out a fresh one on the next request.
                        refreshes += 1
                        if refreshes > self._policy.url_refreshes:
                            raise
                        # Never wait for a slot holding a buffer: the slots' holders may be
                        # waiting for it (a deadlock, seen with expired URLs and cut bodies).
                        await self._give_back_buffer(sink)
                        continue
                return await self._publish(sink, call_id)
        finally:
            self._waiting.pop((call_date, call_id), None)
            # Aborts what was not finished; the buffer goes back only once no thread can touch it,
            # even if this task is cancelled again while it waits.
            await asyncio.shield(self._give_back_buffer(sink, closing=True))

    async def _lend_buffer(self, sink: RecordingSink, length: int | None) -> None:
        if sink.buffer_size < self._buffers.size_for(length):
            if sink.buffer_size:
                await self._give_back_buffer(sink)
            sink.attach(await self._buffers.acquire(length))

    async def _give_back_buffer(self, sink: RecordingSink, *, closing: bool = False) -> None:
        """Settle the sink (parts uploaded or aborted), then return its buffer. Only a sink with an
        upload or a part thread to settle needs a worker thread for it (most have none)."""
        settle = sink.close if closing else sink.reset
        try:
            if sink.settled:
                settle()
            else:
                await in_thread(settle)
        finally:
            buffer = sink.detach()
            if buffer is not None:
                self._buffers.release(buffer)

    async def _pause(self, seconds: float, slot: asyncio.Semaphore | None) -> None:
        if slot is None:
            await self._sleep(seconds)
            return
        slot.release()
        try:
            await self._sleep(seconds)
        finally:
            await slot.acquire()

    async def _publish(self, sink: RecordingSink, call_id: str) -> RecordingOutcome:
        stored = await in_thread(sink.finish, on_cancel=sink.cancel)
        log.debug("recording archived", extra={"call_id": call_id, "bytes": stored.size_bytes})
        return RecordingOutcome(
            RecordingStatus.ARCHIVED, uri=stored.uri, size_bytes=stored.size_bytes, sha256=stored.sha256
        )
