"""The listings the archiver reads, as async iterators over pages of raw JSON items.

What a page holds is the pure transform's business (`records`); how pages follow each other is the
client's (`ApiClient.iter_pages`, which follows `next` as given). This module only says which
endpoint and which filters: `fromDate` and `toDate` both name the same day, and the API reads a
date without a time as the start of the day for `fromDate` and the end of the day for `toDate`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any

from etl.api.client import ApiClient


def _one_day(day: date) -> dict[str, str | int]:
    return {"fromDate": day.isoformat(), "toDate": day.isoformat()}


def calls_of_day(client: ApiClient, day: date, *, page_size: int) -> AsyncIterator[list[Any]]:
    """`GET /api/calls`: the calls created on `day` (UTC), page by page."""
    params = {**_one_day(day), "pageSize": page_size}
    return client.iter_pages("calls", params, description=f"calls of {day}")


def deleted_calls_of_day(client: ApiClient, day: date) -> AsyncIterator[list[Any]]:
    """`GET /api/deleted_calls`: tombstones of the calls created on `day` that the source deleted."""
    return client.iter_pages("deleted_calls", _one_day(day), description=f"deleted calls of {day}")


def messages_of_call(client: ApiClient, call_id: str, *, page_size: int) -> AsyncIterator[list[Any]]:
    """`GET /api/calls/{call_id}/messages` in `in_call` mode: every stage's messages, in order."""
    params: dict[str, str | int] = {"mode": "in_call", "pageSize": page_size}
    return client.iter_pages(f"calls/{call_id}/messages", params, description=f"messages of call {call_id}")
