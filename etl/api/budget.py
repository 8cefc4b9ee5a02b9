"""A byte budget shared by every download of a run: an async semaphore counted in bytes.

Recordings are buffered in memory on their way to storage. Each buffer is reserved here before it is
allocated and given back once its bytes are stored, so the memory held by audio stays under one
configured figure however many downloads are in flight: a download that finds the budget spent waits
(and its TCP window fills, so the storage host waits too) instead of growing the process.
"""

from __future__ import annotations

import asyncio
from collections import deque


class ByteBudget:
    """`acquire(n)` waits until `n` bytes are free and takes them; `release(n)` gives them back.

    Waiters are served first come, first served: a large reservation is never starved by a stream of
    small ones slipping past it.
    """

    def __init__(self, total: int, *, reuse_size: int = 0) -> None:
        if total < 1:
            raise ValueError("a byte budget must be positive")
        self.total = total
        self._free = total
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        # Buffers of `reuse_size` given back while nobody waits, kept (and still counted as taken)
        # for the next taker: a fresh 8 MiB bytearray costs a zero-fill and ~2,000 page faults,
        # about a tenth of the audio path's CPU. They are dropped the moment anyone must wait.
        self._reuse_size = reuse_size
        self._idle: list[bytearray] = []

    @property
    def free(self) -> int:
        """Bytes a reservation could have now, idle buffers included."""
        return self._free + len(self._idle) * self._reuse_size

    async def take_buffer(self, size: int) -> bytearray:
        """A buffer of `size` bytes, reserved from the budget; give it back with `give_buffer`."""
        if size == self._reuse_size and self._idle:
            return self._idle.pop()
        await self.acquire(size)
        return bytearray(size)

    def give_buffer(self, buffer: bytearray, reserved: int) -> None:
        """Return a buffer taken with `take_buffer` (`reserved`: the size it was taken with)."""
        if reserved == self._reuse_size == len(buffer) and not self._waiters:
            self._idle.append(buffer)
        else:
            self.release(reserved)

    async def acquire(self, n: int) -> None:
        if n > self.total:
            # It could never be granted: waiting would hang the run.
            raise ValueError(f"cannot reserve {n} bytes from a budget of {self.total}")
        while self._idle and (self._waiters or n > self._free):
            self._idle.pop()
            self._free += self._reuse_size
        if not self._waiters and n <= self._free:
            self._free -= n
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, future)
        self._waiters.append(entry)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Granted in the same instant it was cancelled: the bytes are ours to give back.
                self.release(n)
            else:
                self._waiters.remove(entry)
                # The head may have been what kept smaller waiters behind it.
                self._wake()
            raise

    def release(self, n: int) -> None:
        self._free += n
        if self._free > self.total:
            raise AssertionError("a byte budget was released more than was acquired")
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._waiters[0][0] <= self._free:
            n, future = self._waiters.popleft()
            if future.done():
                continue
            self._free -= n
            future.set_result(None)
