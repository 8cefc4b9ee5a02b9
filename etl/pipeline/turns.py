"""Turns taken one at a time in a fixed order, whichever of their takers is ready first."""

from __future__ import annotations

import asyncio


class Turns:
    """`count` turns, numbered from 0: turn i starts once every turn before it has ended.

    A run lists its days through these, so that days list in date order, one at a time, however
    their preparation (lease, archived files) interleaves. `end` is idempotent and may end a turn
    before it has started (a day whose lease is held elsewhere never lists): the turns after it
    must never wait for it.
    """

    def __init__(self, count: int) -> None:
        self._started = [asyncio.Event() for _ in range(count)]
        self._ended: set[int] = set()
        self._next = 0
        if count:
            self._started[0].set()

    async def wait(self, index: int) -> None:
        """Return once turn `index` is the current one."""
        await self._started[index].wait()

    def end(self, index: int) -> None:
        self._ended.add(index)
        while self._next in self._ended:
            self._next += 1
            if self._next < len(self._started):
                self._started[self._next].set()
