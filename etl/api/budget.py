"""A byte budget shared by every download of a run: an async semaphore counted in bytes.

Recordings are buffered in memory on their way to storage. A download reserves its whole allowance
here BEFORE its request goes out and gives it back once its bytes are stored, so the memory held by
audio stays under one configured figure however many downloads are allowed at once. Reserving only
once the body flows would not do: anyio's stream protocol never pauses reading, so bytes that arrive
while a reader waits pile up in its queue instead of filling the TCP window.
"""

from __future__ import annotations

import asyncio
from collections import deque


class ByteBudget:
    """`acquire(n)` waits until `n` bytes are free and takes them; `release(n)` gives them back.

    Waiters are served first come, first served: a large reservation is never starved by a stream of
    small ones slipping past it.
    """

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError("a byte budget must be positive")
        self.total = total
        self._free = total
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def free(self) -> int:
        return self._free

    async def acquire(self, n: int) -> None:
        if n > self.total:
            # It could never be granted: waiting would hang the run.
            raise ValueError(f"cannot reserve {n} bytes from a budget of {self.total}")
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
