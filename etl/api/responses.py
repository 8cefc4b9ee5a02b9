"""Reading httpx responses, and the one place httpx's exceptions become ours.

Everything here is about one response at a time: streaming its body into a sink with a length
check, reading a JSON page or an error body within a size cap, parsing JSON, the API's `detail`,
`Retry-After`, and URLs fit for messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from etl.errors import FatalError, RetriableError, Unreachable

_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# An error answer is read for its `detail` only: a few KiB say all there is to say, and a broken
# gateway's endless error page must not be held in memory.
ERROR_BODY_LIMIT = 64 * 1024


class BlockingSink(Protocol):
    """Where a streamed body goes. `reset` is called before every attempt, so a retry starts clean;
    `begin` once the headers are in, with the body's length when it is known. Every method may block
    (a write may wait for an upload): they are called from a worker thread, never on the event loop.
    """

    def reset(self) -> None: ...

    def begin(self, length: int | None) -> None: ...

    def write(self, chunk: bytes | memoryview) -> None: ...


def redact_url(url: str | httpx.URL, *, keep_query: bool = True) -> str:
    """A URL fit for logs: never credentials in userinfo; the query dropped for signed storage URLs."""
    parts = urlsplit(str(url))
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    query = parts.query if keep_query else ("…" if parts.query else "")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


@contextmanager
def converted_errors(url: str, *, keep_query: bool = True) -> Iterator[None]:
    """httpx's exceptions as ours, wherever in a request they happen: connecting, sending, or reading
    the body, which for a streamed response is long after the headers arrived. A transport error
    there is a reset like any other and must be retried like one."""
    try:
        yield
    except httpx.InvalidURL:
        # Not an HTTPError: raised for a URL httpx cannot send (a control character in a `next`).
        raise FatalError(f"GET {redact_url(url, keep_query=False)}: not a valid URL") from None
    except httpx.HTTPError as exc:
        where = f"GET {redact_url(url, keep_query=keep_query)}"
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            raise Unreachable(f"{where}: connection failed ({type(exc).__name__})") from None
        if isinstance(exc, httpx.TimeoutException):
            raise RetriableError(f"{where}: timed out ({type(exc).__name__})") from None
        if isinstance(exc, httpx.TransportError):
            raise RetriableError(f"{where}: connection failed ({type(exc).__name__})") from None
        raise FatalError(f"{where}: {type(exc).__name__}") from None


def declared_length(response: httpx.Response) -> int | None:
    """Content-Length, when it counts the bytes we will read (not for a content-encoded body)."""
    encoded = response.headers.get("content-encoding", "identity") != "identity"
    declared = None if encoded else response.headers.get("content-length")
    return int(declared) if declared is not None and declared.isdigit() else None


def check_length(url: str, expected: int | None, received: int) -> int:
    """A body shorter than its Content-Length is retriable: the connection ended early without a
    transport error."""
    if expected is not None and expected != received:
        raise RetriableError(
            f"GET {redact_url(url, keep_query=False)}: body ended after {received} of {expected} bytes"
        )
    return received


def copy_body(response: httpx.Response, sink: BlockingSink, url: str) -> int:
    """Copy a streamed body (of a synchronous client) into `sink` in the calling thread; returns
    the byte count."""
    expected = declared_length(response)
    sink.begin(expected)
    received = 0
    # The chunks exactly as httpx reads them off the socket (no chunk size: re-chunking would copy
    # every byte once more into a buffer of that size).
    for chunk in response.iter_bytes():
        sink.write(chunk)
        received += len(chunk)
    return check_length(url, expected, received)


async def read_capped(response: httpx.Response, limit: int, url: str) -> bytes:
    """The whole decoded body of a streamed response, refusing (FatalError) one larger than `limit`
    bytes. httpx decodes gzip, deflate and brotli as it reads, so the cap holds on what decompression
    produces (a gzip bomb stops at `limit`, give or take one network read's expansion), not on the
    bytes on the wire."""
    declared = declared_length(response)
    if declared is not None:
        if declared > limit:
            raise _too_large(url, limit)
        # Not encoded and known to fit: one read, without a Python step per network read.
        return await response.aread()
    chunks: list[bytes] = []
    received = 0
    async for chunk in response.aiter_bytes():
        received += len(chunk)
        if received > limit:
            raise _too_large(url, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(url: str, limit: int) -> FatalError:
    return FatalError(f"GET {redact_url(url, keep_query=False)}: the answer is larger than {limit} bytes")


async def small_copy(response: httpx.Response, url: str, limit: int = ERROR_BODY_LIMIT) -> httpx.Response:
    """A read copy of a streamed (error) response with at most `limit` bytes of its decoded body; the
    rest is never read (closing the stream drops the connection rather than drain it)."""
    head = _Head(limit)
    async for chunk in response.aiter_bytes():
        if head.full_after(chunk):
            break
    return with_body(response, head.body())


def small_copy_sync(response: httpx.Response, url: str, limit: int = ERROR_BODY_LIMIT) -> httpx.Response:
    """`small_copy` for a response of a synchronous client."""
    head = _Head(limit)
    for chunk in response.iter_bytes():
        if head.full_after(chunk):
            break
    return with_body(response, head.body())


class _Head:
    """The first `limit` bytes of a body read chunk by chunk."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: list[bytes] = []
        self._received = 0

    def full_after(self, chunk: bytes) -> bool:
        self._chunks.append(chunk[: self._limit - self._received])
        self._received += len(self._chunks[-1])
        return self._received >= self._limit

    def body(self) -> bytes:
        return b"".join(self._chunks)


def with_body(response: httpx.Response, body: bytes) -> httpx.Response:
    """A read response: `response`'s status and headers with `body`, its decoded body as read."""
    # The body is decoded already: the copy must not say it is encoded, or httpx would decode it again.
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(response.status_code, headers=headers, content=body, request=response.request)


def parse_json(response: httpx.Response, body: bytes | None = None) -> Any:
    """`body` (default: the read response's content) as JSON; FatalError with a reason if it is not."""
    body = response.content if body is None else body
    try:
        return json.loads(body)
    except RecursionError:
        # Deeper than the interpreter's recursion limit: no record we archive is nested like that.
        raise FatalError(
            f"GET {redact_url(response.url)}: the answer is JSON nested too deeply to read"
        ) from None
    except (UnicodeDecodeError, ValueError):
        # ValueError besides JSONDecodeError: an integer of more than 4,300 digits.
        content_type = response.headers.get("content-type", "?")
        raise FatalError(
            f"GET {redact_url(response.url)}: the answer is not JSON (Content-Type {content_type}, "
            f"{len(body)} bytes)"
        ) from None


def detail(response: httpx.Response) -> str | None:
    """The API's `{"detail": ...}` of an error answer, cut short, if the body has one."""
    try:
        data = json.loads(response.content)
    except (UnicodeDecodeError, ValueError, RecursionError, httpx.ResponseNotRead):
        return None
    found = data.get("detail") if isinstance(data, dict) else None
    return str(found)[:300] if found is not None else None


def retry_after(response: httpx.Response, *, cap: float, now: datetime | None = None) -> float | None:
    """The wait a response's `Retry-After` asks for, in seconds within 0..cap; None when there is none
    or it is unusable, so the caller falls back to its own backoff.

    An HTTP-date is measured against the response's own `Date` header when it has a valid one (the
    server's clock, so a skew between the two clocks does not matter), else against `now`."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    reference = _http_date(response.headers.get("date", "")) or now or datetime.now(UTC)
    seconds = parse_retry_after(value, reference)
    return None if seconds is None else min(seconds, cap)


def parse_retry_after(value: str, now: datetime) -> float | None:
    """`Retry-After` (RFC 9110 section 10.2.3): delta-seconds or an HTTP-date, as seconds (inf for a
    delta too long for a float). Garbage, negative, `inf`, `nan` and dates not in the future: None."""
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        # A valid delta however long: so many digits that float() gives inf is just "very long".
        return float(text)
    when = _http_date(text)
    if when is None:
        return None
    seconds = (when - now).total_seconds()
    if not seconds > 0:
        return None  # a date in the past says nothing about how long to wait now
    return seconds


def _http_date(text: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # HTTP-dates are always GMT; a date without a zone is read as one.
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
