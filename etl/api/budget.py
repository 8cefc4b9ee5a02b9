"""The audio memory of a run: a fixed set of equal recording buffers, lent out and given back.

Recordings are buffered in memory on their way to storage. A download borrows one buffer BEFORE its
request goes out and gives it back once its bytes are stored, so the memory held by audio stays under
one configured figure however many downloads are allowed at once. Borrowing only once the body flows
would not do: bytes that arrive while a reader waits pile up in a queue instead of filling the TCP
window.

The buffers are reused rather than allocated per recording: on this class of machine a fresh 32 MiB
buffer costs as much CPU to fault in and zero (~0.8 CPU-s per GiB) as hashing what goes into it.
"""

from __future__ import annotations

import asyncio

_MIB = 1024 * 1024
# A real recording is up to ~29 MB (900 s of 16 kHz mono): in a 32 MiB buffer nearly every one goes
# up in a single PUT, where a multipart upload would cost three more requests and a CRC32 pass.
RECORDING_BUFFER_BYTES = 32 * _MIB


class BufferPool:
    """`acquire()` waits for a free buffer of `buffer_bytes` and lends it; `release()` takes it back.

    At most `total_bytes // buffer_bytes` buffers exist, created on first need and kept for the run.
    Waiters are served first come, first served. A buffer is never resized while lent: slices of it
    are memoryviews, so its allocation (and the pages already faulted in) is what the next one gets.
    """

    def __init__(self, total_bytes: int, buffer_bytes: int) -> None:
        if buffer_bytes < 1 or total_bytes < buffer_bytes:
            raise ValueError(f"a buffer pool of {total_bytes} bytes cannot hold one of {buffer_bytes}")
        self.buffer_bytes = buffer_bytes
        self.count = total_bytes // buffer_bytes
        self._lendable = asyncio.Semaphore(self.count)
        self._free: list[bytearray] = []
        self._lent = 0

    @property
    def lent(self) -> int:
        """Buffers lent out right now."""
        return self._lent

    async def acquire(self) -> bytearray:
        await self._lendable.acquire()
        self._lent += 1
        return self._free.pop() if self._free else bytearray(self.buffer_bytes)

    def release(self, buffer: bytearray) -> None:
        if len(buffer) != self.buffer_bytes:
            raise AssertionError("a pooled buffer came back resized")
        if self._lent == 0:
            raise AssertionError("a buffer pool was given back more buffers than it lent")
        self._lent -= 1
        self._free.append(buffer)
        self._lendable.release()


def recording_buffers(total_bytes: int) -> BufferPool:
    """The run's pool: `RECORDING_BUFFER_BYTES` buffers, or one smaller buffer if that is all the
    memory allowed (parts, half a buffer, must stay above S3's 5 MiB minimum: at least 16 MiB)."""
    return BufferPool(total_bytes, min(RECORDING_BUFFER_BYTES, total_bytes))
