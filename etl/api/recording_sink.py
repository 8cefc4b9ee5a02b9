"""Where a recording's bytes go as they arrive: hashed once, buffered within the run's byte budget,
and uploaded without ever touching a local file.

A recording whose length is known and small goes up in one PUT from memory once the download ends,
with the SHA-256 for S3 to verify. A large one (or one of unknown length) goes up as a multipart
upload: each full part buffer is handed to a worker thread to upload while the download fills the
next, so download and upload overlap. The sink holds at most `AudioBuffers.allowance` bytes of
buffers, which its caller reserves from the run's `ByteBudget` before the request goes out, so audio
memory stays under one figure however many recordings are in flight. The SHA-256 is computed on the
loop as each chunk arrives: one pass over each byte at ~2 GB/s, never a second one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from types import TracebackType

from etl.api.budget import ByteBudget
from etl.errors import ArchiverError, RetriableError
from etl.storage.base import PartedUpload, Storage

log = logging.getLogger(__name__)

_MIB = 1024 * 1024


@dataclass(frozen=True)
class AudioBuffers:
    """How recordings are buffered; `part_bytes` is at least S3's 5 MiB minimum part size."""

    # Known-length recordings up to this size go up in one PUT from one buffer of exactly their size:
    # a real recording is ~14 MB on average, and every multipart upload costs three more requests.
    single_put_max_bytes: int = 16 * _MIB
    part_bytes: int = 8 * _MIB
    # Part buffers one recording may hold: one filling while the other uploads.
    buffers_per_recording: int = 2

    @property
    def allowance(self) -> int:
        """What one recording in flight may hold: reserved from the run's budget before its request."""
        return max(self.single_put_max_bytes, self.part_bytes * self.buffers_per_recording)


DEFAULT_BUFFERS = AudioBuffers()


@dataclass(frozen=True)
class StoredRecording:
    uri: str
    size_bytes: int
    sha256: str


class RecordingSink:
    """A `ByteSink` (etl.api.responses) that uploads one recording to `key` as it downloads.

    Use it as an async context manager: leaving it without `finish` aborts whatever was sent.
    """

    def __init__(
        self,
        storage: Storage,
        key: str,
        budget: ByteBudget,
        buffers: AudioBuffers,
        *,
        content_type: str = "audio/wav",
    ) -> None:
        self._storage = storage
        self._key = key
        self._budget = budget
        self._reserved = False
        # Buffer slots within the allowance: a full sink waits for its own part upload to finish.
        self._slots = asyncio.Semaphore(buffers.buffers_per_recording)
        self._buffers = buffers
        self._content_type = content_type
        self._hash = hashlib.sha256()
        self._size = 0
        self._single_put = False
        self._buffer: bytearray | None = None
        self._fill = 0
        self._upload: PartedUpload | None = None
        self._parts: list[asyncio.Task[None]] = []
        self._sent = 0  # bytes handed to part uploads

    async def __aenter__(self) -> RecordingSink:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._discard()
        self._give_back_allowance()

    async def reserve(self) -> None:
        """Reserve this recording's allowance from the budget, if not yet held. Call it before the
        request whose body comes here: bytes that arrive while a reader waits are not held back."""
        if not self._reserved:
            await self._budget.acquire(self._buffers.allowance)
            self._reserved = True

    def _give_back_allowance(self) -> None:
        if self._reserved:
            self._budget.release(self._buffers.allowance)
            self._reserved = False

    # -- ByteSink ----------------------------------------------------------------------------------

    async def reset(self) -> None:
        # A retry after a cut download starts clean: parts already sent are forgotten with the upload.
        await self._discard()
        self._hash = hashlib.sha256()
        self._size = 0

    async def begin(self, length: int | None) -> None:
        # A 200 from the API itself carries the audio: there was no earlier moment to reserve.
        await self.reserve()
        self._single_put = length is not None and length <= self._buffers.single_put_max_bytes
        if self._single_put and length is not None:
            await self._take_buffer(length)

    async def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self._size += len(chunk)
        view = memoryview(chunk)
        while view:
            if self._buffer is None:
                await self._take_buffer(self._buffers.part_bytes)
            buffer = self._buffer
            assert buffer is not None
            if self._fill == len(buffer):
                # Only a single-put buffer is ever full here (a full part is sent at once).
                raise RetriableError(f"{self._key}: the body is longer than its Content-Length")
            taken = min(len(buffer) - self._fill, len(view))
            buffer[self._fill : self._fill + taken] = view[:taken]
            self._fill += taken
            view = view[taken:]
            if self._fill == len(buffer) and not self._single_put:
                await self._send_part()

    # -- the end -----------------------------------------------------------------------------------

    async def finish(self) -> StoredRecording:
        """Store what was written; after this the object is visible under the key."""
        sha256 = self._hash.digest()
        if self._upload is None and not self._parts:
            # Everything fits in the one buffer (or none: an empty body): one PUT.
            data = self._buffer if self._buffer is not None else bytearray()
            del data[self._fill :]
            uri = await asyncio.to_thread(
                self._storage.put_checked, self._key, data, sha256=sha256, content_type=self._content_type
            )
            self._give_back_buffer()
        else:
            if self._fill:
                await self._send_part()
            self._give_back_buffer()
            await self._wait_for_parts()
            upload = self._upload
            assert upload is not None
            uri = await asyncio.to_thread(upload.complete)
            self._upload = None
        self._give_back_allowance()
        return StoredRecording(uri=uri, size_bytes=self._size, sha256=sha256.hex())

    # -- internals ---------------------------------------------------------------------------------

    async def _take_buffer(self, size: int) -> None:
        await self._slots.acquire()
        self._buffer, self._fill = bytearray(size), 0

    def _give_back_buffer(self) -> None:
        if self._buffer is not None:
            self._slots.release()
            self._buffer, self._fill = None, 0

    async def _send_part(self) -> None:
        buffer, filled = self._buffer, self._fill
        assert buffer is not None
        # A part that failed stops the download now rather than after the whole body.
        for task in self._parts:
            if task.done() and not task.cancelled() and task.exception() is not None:
                await task
        if self._upload is None:
            self._upload = await asyncio.to_thread(
                self._storage.start_upload, self._key, content_type=self._content_type
            )
        if filled < len(buffer):
            del buffer[filled:]  # the last part: S3 takes its length from the body
        number, offset = len(self._parts) + 1, self._sent
        self._sent += filled
        # The part now owns the buffer and its slot, and gives the slot back when stored.
        self._buffer, self._fill = None, 0
        self._parts.append(asyncio.create_task(self._put_part(self._upload, number, offset, buffer)))

    async def _put_part(self, upload: PartedUpload, number: int, offset: int, data: bytearray) -> None:
        try:
            await asyncio.to_thread(upload.put_part, number, offset, data)
        finally:
            self._slots.release()

    async def _wait_for_parts(self) -> None:
        """Every part stored, or the first failure raised once all have settled."""
        results = await asyncio.gather(*self._parts, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _discard(self) -> None:
        """Forget everything: buffers back to the budget, parts settled, the upload aborted."""
        self._give_back_buffer()
        await asyncio.gather(*self._parts, return_exceptions=True)
        self._parts = []
        self._sent = 0
        upload, self._upload = self._upload, None
        if upload is not None:
            try:
                await asyncio.to_thread(upload.abort)
            except ArchiverError as exc:
                # The parts stay billed until a bucket lifecycle rule removes them; say so.
                log.warning("aborting an upload failed", extra={"key": self._key, "error": str(exc)})
