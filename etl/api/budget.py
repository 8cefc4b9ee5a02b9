"""The audio memory of a run: recording buffers sized to fit, lent within one byte total and reused.

Recordings are buffered in memory on their way to storage. A download borrows a buffer once the
headers say how long the body is, and gives it back once its bytes are stored, so the memory held by
audio stays under one configured figure however many downloads run at once. A download waiting for
room does not read its socket meanwhile, so TCP flow control holds the sender back.

Buffers are reused rather than allocated per recording: on this class of machine a fresh 32 MiB
buffer costs as much CPU to fault in and zero (~0.8 CPU-s per GiB) as hashing what goes into it.
Sizes are powers of two, so recordings of similar length share buffers; buffers kept for reuse count
against the total too, and the least recently given back are dropped when a size that is not kept
needs room. A buffer is an anonymous private mapping, not a bytearray: nothing zeroes it up front,
only the pages written become resident, and a dropped one goes back to the system at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
from collections import deque

# What a recording's bytes are held in: a pooled mapping, or (in tests) any writable buffer.
AudioBuffer = mmap.mmap | bytearray

_MIB = 1024 * 1024
# A real recording is up to ~29 MB (900 s of 16 kHz mono): in a 32 MiB buffer nearly every one goes
# up in a single PUT, where a multipart upload would cost three more requests and a CRC32 pass.
RECORDING_BUFFER_BYTES = 32 * _MIB
_SMALLEST_BUFFER = 256 * 1024


class BufferPool:
    """`acquire(length)` waits until a buffer for `length` bytes fits in the total and lends it;
    `release()` takes it back. `length` None (unknown) or above the largest size gets the largest
    buffer, which the caller fills and sends half by half.

    Waiters are served first come, first served: a large buffer is never starved by a stream of small
    ones slipping past it. A buffer is never resized while lent: slices of it are memoryviews, so its
    allocation (and the pages already faulted in) is what the next borrower gets. A borrower may get
    a bigger buffer than it asked for (an idle one); it counts at its real size.
    """

    def __init__(self, total_bytes: int, largest_bytes: int = RECORDING_BUFFER_BYTES) -> None:
        if largest_bytes < 1 or total_bytes < largest_bytes:
            raise ValueError(f"a buffer pool of {total_bytes} bytes cannot hold one of {largest_bytes}")
        self.total = total_bytes
        self.largest = largest_bytes
        self._lent = 0
        self._idle: deque[AudioBuffer] = deque()  # given back, oldest first
        self._idle_bytes = 0
        self._waiters: deque[tuple[int, asyncio.Future[AudioBuffer]]] = deque()

    def size_for(self, length: int | None) -> int:
        if length is None or length >= self.largest:
            return self.largest
        size = _SMALLEST_BUFFER
        while size < length:
            size *= 2
        return min(size, self.largest)

    @property
    def lent_bytes(self) -> int:
        return self._lent

    @property
    def held_bytes(self) -> int:
        """Lent plus kept for reuse: the memory the pool stands for."""
        return self._lent + self._idle_bytes

    async def acquire(self, length: int | None) -> AudioBuffer:
        size = self.size_for(length)
        if not self._waiters and self._fits(size):
            return self._lend(size)
        future: asyncio.Future[AudioBuffer] = asyncio.get_running_loop().create_future()
        entry = (size, future)
        self._waiters.append(entry)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Lent in the same instant the wait was cancelled: it is ours to give back.
                self.release(future.result())
            else:
                self._waiters.remove(entry)
                # The head may have been what kept smaller waiters behind it.
                self._wake()
            raise

    def release(self, buffer: AudioBuffer) -> None:
        size = len(buffer)
        if size > self._lent:
            raise AssertionError("a buffer pool was given back more than it lent (or a buffer grew)")
        self._lent -= size
        self._idle.append(buffer)
        self._idle_bytes += size
        self._wake()

    def _fits(self, size: int) -> bool:
        """Whether `size` can be lent now: an idle buffer at least that big, or room for a new one
        once idle buffers are dropped."""
        return self._idle_at_least(size) is not None or self._lent + size <= self.total

    def _lend(self, size: int) -> AudioBuffer:
        # A bigger idle buffer rather than a new one: its pages are already faulted in, and it is
        # already counted against the total.
        index = self._idle_at_least(size)
        if index is not None:
            buffer = self._idle[index]
            del self._idle[index]
            self._idle_bytes -= len(buffer)
        else:
            while self._lent + self._idle_bytes + size > self.total:
                dropped = self._idle.popleft()
                self._idle_bytes -= len(dropped)
                _unmap(dropped)
            buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
        self._lent += len(buffer)
        return buffer

    def _idle_at_least(self, size: int) -> int | None:
        """The index of the smallest idle buffer of at least `size` bytes."""
        fitting = [(len(buffer), index) for index, buffer in enumerate(self._idle) if len(buffer) >= size]
        return min(fitting)[1] if fitting else None

    def _wake(self) -> None:
        while self._waiters and self._fits(self._waiters[0][0]):
            size, future = self._waiters.popleft()
            if future.done():
                continue
            future.set_result(self._lend(size))


def _unmap(buffer: AudioBuffer) -> None:
    # A view of it may still be alive somewhere (a request object botocore keeps): the mapping then
    # goes when that view does.
    if isinstance(buffer, mmap.mmap):
        with contextlib.suppress(BufferError):
            buffer.close()


def recording_buffers(total_bytes: int) -> BufferPool:
    """The run's pool: buffers up to `RECORDING_BUFFER_BYTES`, or up to the whole budget if that is
    smaller (parts, half the largest buffer, must stay above S3's 5 MiB minimum: at least 16 MiB)."""
    return BufferPool(total_bytes, min(RECORDING_BUFFER_BYTES, total_bytes))
