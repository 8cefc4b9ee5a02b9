"""Fetch one call's recording and publish it to the destination.

The recording endpoint answers 425 until the audio is ready, then either 302 to a signed URL on a
storage host (which expires) or, on some deployments, 200 with the audio itself. Either way the body
streams into a `RecordingSink` (etl.api.recording_sink), which hashes it once and uploads it from
memory within the run's byte budget; storage publishes atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date

from etl.api.budget import ByteBudget
from etl.api.client import AnswerKind, ApiClient
from etl.api.recording_sink import DEFAULT_BUFFERS, AudioBuffers, RecordingSink
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
    # late in a long run deserves the same wait as the first one.
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
        budget: ByteBudget,
        download_slots: asyncio.Semaphore,
        buffers: AudioBuffers = DEFAULT_BUFFERS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = client
        self._storage = storage
        self._policy = policy
        self._budget = budget
        self._buffers = buffers
        self._download_slots = download_slots
        self._clock = clock
        self._sleep = sleep

    async def fetch(
        self,
        call_id: str,
        call_date: date,
        *,
        recording_enabled: bool | None = None,
        slot: asyncio.Semaphore | None = None,
    ) -> RecordingOutcome:
        """Archive one recording. `recording_enabled` is the call's `recordingEnabled` (None: the
        object did not say). `slot`, if given, is held by the caller and given up while waiting
        between polls, so calls whose recordings are not ready do not starve the others."""
        try:
            return await self._fetch(call_id, call_date, recording_enabled, slot)
        except StorageError as exc:
            log.warning("recording failed", extra={"call_id": call_id, "error": str(exc)})
            return RecordingOutcome(RecordingStatus.FAILED, detail=str(exc))
        except ArchiverError as exc:
            # The API or the storage host it sent us to kept failing (after retries).
            log.warning("recording failed", extra={"call_id": call_id, "error": str(exc)})
            return RecordingOutcome(RecordingStatus.FAILED, detail=str(exc), source_failure=True)

    async def _fetch(
        self, call_id: str, call_date: date, recording_enabled: bool | None, slot: asyncio.Semaphore | None
    ) -> RecordingOutcome:
        poll_delay = self._policy.poll_initial_s
        deadline: float | None = None
        refreshes = 0
        key = recording_key(call_date, call_id)
        async with RecordingSink(self._storage, key, self._budget, self._buffers) as sink:
            while True:
                answer = await self._client.request_recording(call_id, sink)
                if answer.kind is AnswerKind.REFUSED:
                    return refused(answer.status, answer.detail, recording_enabled=recording_enabled)
                if answer.kind is AnswerKind.TOO_EARLY:
                    now = self._clock()
                    deadline = now + self._policy.wait_s if deadline is None else deadline
                    if now + poll_delay > deadline:
                        return RecordingOutcome(
                            RecordingStatus.PENDING,
                            detail=f"not ready after polling for {self._policy.wait_s:g} s (HTTP 425)",
                        )
                    await self._pause(poll_delay * (0.75 + random.random() * 0.5), slot)
                    poll_delay = min(poll_delay * 2, self._policy.poll_max_s)
                    continue
                if answer.kind is AnswerKind.REDIRECT and answer.location is not None:
                    try:
                        # The allowance first, then a download slot: a sink keeps its allowance
                        # across a signed-URL refresh, so taking a slot first let 8 slot holders
                        # wait for allowances held by sinks that waited for a slot (a deadlock
                        # seen with expired URLs and storage faults on).
                        await sink.reserve()
                        async with self._download_slots:
                            await self._client.download(answer.location, sink)
                    except SignedUrlRejected:
                        # Signed URLs expire; the API hands out a fresh one on the next request.
                        refreshes += 1
                        if refreshes > self._policy.url_refreshes:
                            raise
                        continue
                return await self._publish(sink, call_id)

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
        stored = await sink.finish()
        log.debug("recording archived", extra={"call_id": call_id, "bytes": stored.size_bytes})
        return RecordingOutcome(
            RecordingStatus.ARCHIVED, uri=stored.uri, size_bytes=stored.size_bytes, sha256=stored.sha256
        )
