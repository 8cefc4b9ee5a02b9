"""Where a recording's bytes go as they arrive: hashed once, held in one pooled buffer, and uploaded
without ever touching a local file.

Every method here blocks: a sink is driven by one worker thread at a time (the download's), so the
event loop never copies, hashes or uploads audio. A recording whose length is known and fits the
buffer goes up in one PUT from it once the download ends, with the SHA-256 for S3 to verify. A longer
one (or one of unknown length) goes up as a multipart upload in parts of half the buffer: while one
half uploads (in a thread of the sink's own) the download fills the other, so the two overlap.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from etl.api.budget import AudioBuffer
from etl.errors import ArchiverError, RetriableError
from etl.storage.base import PartedUpload, Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredRecording:
    uri: str
    size_bytes: int
    sha256: str


class TransferCancelled(ArchiverError):
    """The recording's task was cancelled while a thread was moving its bytes."""


class RecordingSink:
    """A `BlockingSink` (etl.api.responses) that uploads one recording to `key` as it downloads.

    Its buffer, lent by the run's `BufferPool`, is `attach`ed before the first byte arrives and comes
    back from `detach` after `close`, which aborts whatever was sent and not finished.
    """

    def __init__(self, storage: Storage, key: str, *, content_type: str = "audio/wav") -> None:
        self._storage = storage
        self._key = key
        self._buffer: AudioBuffer | None = None
        self._view = memoryview(b"")
        self._content_type = content_type
        self._cancelled = threading.Event()
        self._hash = hashlib.sha256()
        self._size = 0
        self._single_put = True
        self._fill = 0  # bytes in the area being filled
        self._area = 0  # multipart: which half is filling
        self._upload: PartedUpload | None = None
        self._uploader: ThreadPoolExecutor | None = None
        self._parts: list[Future[None] | None] = [None, None]  # the part each half is uploading
        self._part_count = 0
        self._sent = 0  # bytes handed to part uploads

    @property
    def buffer_size(self) -> int:
        """The size of the buffer attached, 0 for none."""
        return len(self._view)

    def attach(self, buffer: AudioBuffer) -> None:
        if self._buffer is not None:
            raise AssertionError("a recording sink holds one buffer at a time")
        self._buffer, self._view = buffer, memoryview(buffer)

    def detach(self) -> AudioBuffer | None:
        """The buffer, for its pool; call it after `close`."""
        buffer, self._buffer, self._view = self._buffer, None, memoryview(b"")
        return buffer

    @property
    def settled(self) -> bool:
        """Nothing to abort or wait for: `reset` and `close` return at once."""
        return self._upload is None and self._uploader is None and self._parts == [None, None]

    def cancel(self) -> None:
        """Make the thread writing here stop at its next chunk (called from any thread)."""
        self._cancelled.set()

    # -- BlockingSink ------------------------------------------------------------------------------

    def reset(self) -> None:
        # A retry after a cut download starts clean: parts already sent are forgotten with the upload.
        self._discard()
        self._hash = hashlib.sha256()
        self._size = 0

    def begin(self, length: int | None) -> None:
        self._single_put = length is not None and length <= len(self._view)

    def write(self, chunk: bytes | memoryview) -> None:
        if self._cancelled.is_set():
            raise TransferCancelled(f"{self._key}: cancelled")
        if self._buffer is None:
            raise AssertionError("a recording sink was written before a buffer was attached")
        self._hash.update(chunk)
        self._size += len(chunk)
        view = memoryview(chunk)
        while view:
            area = self._area_view()
            if self._fill == len(area):
                # Only a single-put buffer is ever full here (a full part is sent at once).
                raise RetriableError(f"{self._key}: the body is longer than its Content-Length")
            taken = min(len(area) - self._fill, len(view))
            area[self._fill : self._fill + taken] = view[:taken]
            self._fill += taken
            view = view[taken:]
            if self._fill == len(area) and not self._single_put:
                self._send_part()

    # -- the end -----------------------------------------------------------------------------------

    def finish(self) -> StoredRecording:
        """Store what was written; after this the object is visible under the key."""
        sha256 = self._hash.digest()
        if self._upload is None:
            # Everything fits in the buffer (or nothing came: an empty body): one PUT.
            uri = self._storage.put_checked(
                self._key, self._view[: self._fill], sha256=sha256, content_type=self._content_type
            )
            self._fill = 0
        else:
            if self._fill:
                self._send_part()
            self._wait_for_parts()
            uri = self._upload.complete()
            self._upload = None
        return StoredRecording(uri=uri, size_bytes=self._size, sha256=sha256.hex())

    def close(self) -> None:
        """Abort whatever was sent and not finished, and release the sink's thread and buffer views."""
        self._discard()
        if self._uploader is not None:
            self._uploader.shutdown(wait=True)
            self._uploader = None

    # -- internals ---------------------------------------------------------------------------------

    def _area_view(self) -> memoryview:
        if self._single_put:
            return self._view
        half = len(self._view) // 2
        return self._view[self._area * half : (self._area + 1) * half]

    def _send_part(self) -> None:
        if self._upload is None:
            self._upload = self._storage.start_upload(self._key, content_type=self._content_type)
            self._uploader = self._uploader or ThreadPoolExecutor(1, thread_name_prefix="part-upload")
        assert self._uploader is not None
        area, filled = self._area, self._fill
        self._part_count += 1
        number, offset = self._part_count, self._sent
        self._sent += filled
        data = self._area_view()[:filled]
        self._parts[area] = self._uploader.submit(self._upload.put_part, number, offset, data)
        # Fill the other half once its previous part is stored; a failed part stops the download now.
        self._area, self._fill = 1 - area, 0
        self._settle(self._area)

    def _settle(self, area: int) -> None:
        part, self._parts[area] = self._parts[area], None
        if part is not None:
            part.result()

    def _wait_for_parts(self) -> None:
        """Every part stored, or the first failure raised once both have settled."""
        errors: list[BaseException] = []
        for area in (0, 1):
            try:
                self._settle(area)
            except BaseException as exc:  # both halves settle before anything is raised
                errors.append(exc)
        if errors:
            raise errors[0]

    def _discard(self) -> None:
        """Forget everything: parts settled, the upload aborted, the buffer empty."""
        for area in (0, 1):
            part, self._parts[area] = self._parts[area], None
            if part is not None:
                part.exception()  # waits; the failure itself no longer matters
        self._fill, self._area, self._sent, self._part_count = 0, 0, 0, 0
        upload, self._upload = self._upload, None
        if upload is not None:
            try:
                upload.abort()
            except ArchiverError as exc:
                # The parts stay billed until a bucket lifecycle rule removes them; say so.
                log.warning("aborting an upload failed", extra={"key": self._key, "error": str(exc)})
