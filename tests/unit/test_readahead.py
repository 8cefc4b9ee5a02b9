"""etl/pipeline/readahead.py: the next page is asked for while the current one is worked on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from etl.errors import RetriableError
from etl.pipeline.readahead import ReadAhead


class Listing:
    """Pages 0..count-1; records when each is asked for and whether the listing was closed."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count, self.fail_at = count, fail_at
        self.asked: list[int] = []
        self.closed = False

    async def pages(self) -> AsyncIterator[int]:
        try:
            for number in range(self.count):
                self.asked.append(number)
                await asyncio.sleep(0.01)
                if number == self.fail_at:
                    raise RetriableError("page refused")
                yield number
        finally:
            self.closed = True


def test_pages_come_in_order_each_asked_for_before_it_is_wanted() -> None:
    async def scenario(listing: Listing) -> list[tuple[int, list[int]]]:
        pages = ReadAhead(listing.pages())
        await asyncio.sleep(0.05)  # e.g. waiting for the day's turn
        assert listing.asked == [0]
        seen = []
        try:
            async for page in pages:
                await asyncio.sleep(0.05)  # admitting the page's calls
                seen.append((page, list(listing.asked)))
        finally:
            await pages.aclose()
        return seen

    listing = Listing(3)
    # While page n is worked on, page n+1 has been asked for.
    assert asyncio.run(scenario(listing)) == [(0, [0, 1]), (1, [0, 1, 2]), (2, [0, 1, 2])]
    assert listing.closed


def test_an_error_surfaces_where_its_page_is_wanted() -> None:
    async def scenario(listing: Listing) -> list[int]:
        pages, seen = ReadAhead(listing.pages()), []
        try:
            async for page in pages:
                seen.append(page)
        finally:
            await pages.aclose()
        return seen

    listing = Listing(3, fail_at=1)
    with pytest.raises(RetriableError, match="page refused"):
        asyncio.run(scenario(listing))
    assert listing.closed


def test_an_abandoned_listing_stops_its_fetch_and_closes() -> None:
    async def scenario(listing: Listing) -> None:
        pages = ReadAhead(listing.pages())
        assert await anext(pages) == 0
        await asyncio.sleep(0.001)
        assert listing.asked == [0, 1]  # in flight
        await pages.aclose()

    listing = Listing(5)
    asyncio.run(scenario(listing))
    assert listing.asked == [0, 1] and listing.closed  # page 2 never asked for
