"""The listings the archiver reads, as async iterators over pages of raw JSON items.

What a page holds is the pure transform's business (`records`); how pages follow each other is the
client's (`ApiClient.iter_pages`, which follows `next` as given). This module only says which
endpoint and which filters: `fromDate` and `toDate` bound one UTC day, both inclusive.

The OpenAPI declares both filters `format: date-time`; in which zone the API reads a bare date is
not documented. So they are sent as date-times with an explicit UTC offset covering exactly the UTC
day, from its first microsecond to its last (the API's own "end of day" is 23:59:59.999999).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from etl.api.client import ApiClient


def day_filters(day: date) -> dict[str, str | int]:
    """`fromDate`/`toDate` of the UTC day `day`: `T00:00:00.000000+00:00` to `T23:59:59.999999+00:00`."""
    start = datetime.combine(day, time(0), tzinfo=UTC)
    last = start + timedelta(days=1, microseconds=-1)
    return {
        "fromDate": start.isoformat(timespec="microseconds"),
        "toDate": last.isoformat(timespec="microseconds"),
    }


def calls_of_day(client: ApiClient, day: date, *, page_size: int) -> AsyncIterator[list[Any]]:
    """`GET /api/calls`: the calls created on `day` (UTC), page by page."""
    params = {**day_filters(day), "pageSize": page_size}
    return client.iter_pages("calls", params, description=f"calls of {day}")


def deleted_calls_of_day(client: ApiClient, day: date) -> AsyncIterator[list[Any]]:
    """`GET /api/deleted_calls`: tombstones of the calls created on `day` that the source deleted."""
    return client.iter_pages("deleted_calls", day_filters(day), description=f"deleted calls of {day}")


def messages_of_call(client: ApiClient, call_id: str, *, page_size: int) -> AsyncIterator[list[Any]]:
    """`GET /api/calls/{call_id}/messages` in `in_call` mode: every stage's messages, in order."""
    params: dict[str, str | int] = {"mode": "in_call", "pageSize": page_size}
    return client.iter_pages(f"calls/{call_id}/messages", params, description=f"messages of call {call_id}")
