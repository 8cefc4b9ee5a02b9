"""A page of a listing fetched while the one before it is worked on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")


class _End:
    pass


_END = _End()


class ReadAhead(Generic[T]):
    """Iterates over `pages`, asking for the next page as soon as one is handed out, and for the
    first at once, on construction: a listing's next request is in flight while the caller admits
    the calls of the page it has (admission can wait long for call slots), so admitting never waits
    for a listing round trip that could have been made earlier. At most two pages are held: the
    one being worked on and the next. `aclose` must be awaited when done (or abandoned).
    """

    def __init__(self, pages: AsyncIterator[T]) -> None:
        self._pages = pages
        self._next: asyncio.Task[T | _End] = asyncio.create_task(self._fetch())

    async def _fetch(self) -> T | _End:
        try:
            return await anext(self._pages)
        except StopAsyncIteration:
            return _END

    def __aiter__(self) -> ReadAhead[T]:
        return self

    async def __anext__(self) -> T:
        page = await self._next
        if isinstance(page, _End):
            raise StopAsyncIteration
        self._next = asyncio.create_task(self._fetch())
        return page

    async def aclose(self) -> None:
        """Stop the fetch in flight, if any, and close the underlying listing."""
        pending = self._next
        pending.cancel()
        await asyncio.wait([pending])
        if not pending.cancelled():
            # Retrieved so that an error nobody will act on (the listing was abandoned, or its
            # error already raised by __anext__) is not reported as never retrieved.
            pending.exception()
        close = getattr(self._pages, "aclose", None)
        if close is not None:
            await close()
