"""Fetch one call's recording and publish it to the destination.

The recording endpoint answers 425 until the audio is ready, then either 302 to a signed URL on a
storage host (which expires) or, on some deployments, 200 with the audio itself. Audio is streamed to
a spool file while its size and SHA-256 are computed, then published atomically, so memory stays flat
whatever the recording's size and a reader never sees half a file.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import TracebackType

from etl.api.client import AnswerKind, ApiClient
from etl.errors import ArchiverError, SignedUrlRejected
from etl.model import RecordingOutcome, RecordingStatus
from etl.storage.base import Storage

log = logging.getLogger(__name__)


def recording_key(call_date: date, call_id: str) -> str:
    return f"recordings/call_date={call_date.isoformat()}/{call_id}.wav"


class SpoolFile:
    """A local temp file that hashes what is written to it; `reset` empties it for a retry."""

    def __init__(self, directory: Path | None) -> None:
        handle, name = tempfile.mkstemp(prefix="recording-", suffix=".wav.part", dir=directory)
        self.path = Path(name)
        self._file = os.fdopen(handle, "wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def reset(self) -> None:
        self._file.seek(0)
        self._file.truncate()
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def finish(self) -> str:
        self._file.flush()
        return self._hash.hexdigest()

    def __enter__(self) -> SpoolFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)


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


class RecordingFetcher:
    def __init__(
        self,
        client: ApiClient,
        storage: Storage,
        policy: RecordingPolicy,
        *,
        spool_dir: Path | None,
        download_slots: asyncio.Semaphore,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = client
        self._storage = storage
        self._policy = policy
        self._spool_dir = spool_dir
        self._download_slots = download_slots
        self._clock = clock
        self._sleep = sleep

    async def fetch(
        self, call_id: str, call_date: date, *, slot: asyncio.Semaphore | None = None
    ) -> RecordingOutcome:
        """Archive one recording. `slot`, if given, is held by the caller and given up while waiting
        between polls, so calls whose recordings are not ready do not starve the others."""
        try:
            return await self._fetch(call_id, call_date, slot)
        except ArchiverError as exc:
            log.warning("recording failed", extra={"call_id": call_id, "error": str(exc)})
            return RecordingOutcome(RecordingStatus.FAILED, detail=str(exc))

    async def _fetch(self, call_id: str, call_date: date, slot: asyncio.Semaphore | None) -> RecordingOutcome:
        poll_delay = self._policy.poll_initial_s
        deadline: float | None = None
        refreshes = 0
        with SpoolFile(self._spool_dir) as spool:
            while True:
                answer = await self._client.request_recording(call_id, spool)
                if answer.kind is AnswerKind.NOT_ENABLED:
                    return RecordingOutcome(RecordingStatus.NOT_ENABLED, detail=answer.detail)
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
                        async with self._download_slots:
                            await self._client.download(answer.location, spool)
                    except SignedUrlRejected:
                        # Signed URLs expire; the API hands out a fresh one on the next request.
                        refreshes += 1
                        if refreshes > self._policy.url_refreshes:
                            raise
                        continue
                return await self._publish(spool, call_id, call_date)

    async def _pause(self, seconds: float, slot: asyncio.Semaphore | None) -> None:
        if slot is None:
            await self._sleep(seconds)
            return
        slot.release()
        try:
            await self._sleep(seconds)
        finally:
            await slot.acquire()

    async def _publish(self, spool: SpoolFile, call_id: str, call_date: date) -> RecordingOutcome:
        sha256 = spool.finish()
        key = recording_key(call_date, call_id)
        uri = await asyncio.to_thread(self._storage.put_file, key, spool.path, content_type="audio/wav")
        log.debug("recording archived", extra={"call_id": call_id, "bytes": spool.size})
        return RecordingOutcome(RecordingStatus.ARCHIVED, uri=uri, size_bytes=spool.size, sha256=sha256)
