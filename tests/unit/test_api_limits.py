"""What the HTTP edge reads of an answer, at most (etl/api/responses.py, client.py; issue 11 items 2-3):
pages within a decoded-size cap (gzip bombs included), error bodies within a small one, and JSON
that no decoder should be trusted with refused with a reason instead of an unexpected exception."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from support.api_objects import client_options

from etl.api.client import ApiClient
from etl.errors import FatalError, RetriableError

BASE = "https://api.test/api"
MIB = 1024 * 1024


def client(handler: Callable[[httpx.Request], httpx.Response], *, max_page_bytes: int = MIB) -> ApiClient:
    async def no_sleep(seconds: float) -> None:
        return None

    options = client_options(
        base_url=BASE, max_attempts=2, max_page_bytes=max_page_bytes, max_pages_per_listing=5
    )
    return ApiClient(options, transport=httpx.MockTransport(handler), sleep=no_sleep)


def get(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> Any:
    async def one() -> Any:
        async with client(handler, **kwargs) as api:
            return await api.get_json(f"{BASE}/calls")

    return asyncio.run(one())


class Counted:
    """A streamed body in 16 KiB pieces that counts how much of it was ever read."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.body), 16 * 1024):
            piece = self.body[start : start + 16 * 1024]
            self.sent += len(piece)
            yield piece


def test_json_nested_deeper_than_the_recursion_limit_is_refused_with_a_reason() -> None:
    deep = b'{"results":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(FatalError, match="nested too deeply"):
        get(lambda request: httpx.Response(200, content=deep))


def test_an_integer_too_long_to_read_is_not_json_to_us() -> None:
    with pytest.raises(FatalError, match="not JSON"):
        get(lambda request: httpx.Response(200, content=b'{"results":[' + b"7" * 5000 + b"]}"))


def test_a_page_up_to_the_cap_is_read() -> None:
    body = b'{"results":[],"pad":"' + b"x" * (MIB - 24) + b'"}'
    assert len(body) <= MIB
    assert get(lambda request: httpx.Response(200, content=body))["results"] == []


def test_a_page_over_the_cap_is_refused_while_it_is_read() -> None:
    body = Counted(b'{"results":[],"pad":"' + b"x" * (8 * MIB) + b'"}')
    with pytest.raises(FatalError, match=f"larger than {MIB} bytes"):
        get(lambda request: httpx.Response(200, content=body))
    assert body.sent <= MIB + 16 * 1024


def test_a_gzip_bomb_stops_at_the_cap_of_decoded_bytes() -> None:
    bomb = Counted(gzip.compress(b" " * (64 * MIB), compresslevel=9))
    assert len(bomb.body) < MIB  # small on the wire
    headers = {"content-encoding": "gzip", "content-type": "application/json"}
    with pytest.raises(FatalError, match=f"larger than {MIB} bytes"):
        get(lambda request: httpx.Response(200, headers=headers, content=bomb))
    assert bomb.sent < len(bomb.body)  # stopped long before the end


def test_gzip_encoded_pages_are_read() -> None:
    headers = {"content-encoding": "gzip"}
    body = gzip.compress(b'{"results":[1,2,3],"next":null}')
    assert get(lambda request: httpx.Response(200, headers=headers, content=body))["results"] == [1, 2, 3]


def test_an_error_body_is_read_only_as_far_as_a_small_cap() -> None:
    body = Counted(b'{"detail":"broken"}' + b" " * (16 * MIB))
    with pytest.raises(RetriableError, match="HTTP 503"):
        get(lambda request: httpx.Response(503, content=body))
    assert body.sent <= 2 * 64 * 1024 * 2  # two attempts, each at most the cap and one piece


def test_an_error_detail_is_still_reported() -> None:
    with pytest.raises(FatalError, match="no such thing"):
        get(lambda request: httpx.Response(404, json={"detail": "no such thing"}))


def test_a_next_link_with_a_control_character_fails_the_listing_not_the_run() -> None:
    page = {"next": f"{BASE}/calls?cursor=a\x01b", "results": [{"callId": "x"}]}

    async def listing() -> list[Any]:
        pages = []
        async with client(lambda request: httpx.Response(200, json=page)) as api:
            async for results in api.iter_pages("calls", {"pageSize": 1}, description="calls of a day"):
                pages.append(results)
        return pages

    with pytest.raises(FatalError, match="not a valid URL"):
        asyncio.run(listing())
