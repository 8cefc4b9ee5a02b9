"""The HTTP edge: the only module that imports httpx and tenacity.

One `ApiClient` owns two connection pools. The API pool sends `X-API-Key` and never follows
redirects, so the recording endpoint's 302 cannot carry the key to the storage host. The storage pool
sends no Ultravox header at all. Every API request, retries included, first takes a slot from one
shared rate limiter. One function decides what is retriable: 429, 5xx, timeouts and connection
resets are; other 4xx are not.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import itertools
import json
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from etl.api.ratelimit import RateLimiter
from etl.config import Settings
from etl.errors import AuthError, FatalError, RetriableError
from etl.netio import lean_transport
from etl.pagination import Paginator, origin_of
from etl.secrets import Secret

log = logging.getLogger(__name__)
T = TypeVar("T")

# Where the API says "recording not enabled": an error status with a JSON `detail`.
_NOT_ENABLED_STATUSES = frozenset({400, 404, 409, 412, 422})

USER_AGENT = "ultravox-archiver/0.1"
RETRY_AFTER_CAP_S = 120.0
STREAM_CHUNK_BYTES = 256 * 1024
_CONNECTIONS_PER_SHARD = 2


class ByteSink(Protocol):
    """Where a streamed body goes. `reset` is called before every attempt, so a retry starts clean."""

    def reset(self) -> None: ...

    def write(self, chunk: bytes) -> None: ...


@dataclass(frozen=True)
class RecordingAnswer:
    """What the recording endpoint said: `redirect` (with location), `direct` (body written to the
    sink), `too_early` (425) or `not_enabled` (with the API's detail)."""

    kind: str
    location: str | None = None
    detail: str | None = None
    size_bytes: int | None = None


class SignedUrlRejected(FatalError):
    """The storage host refused the signed URL (expired or bad signature): ask the API for a new one."""


def redact_url(url: str | httpx.URL, *, keep_query: bool = True) -> str:
    """A URL fit for logs: never credentials in userinfo; the query dropped for signed storage URLs."""
    parts = urlsplit(str(url))
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    query = parts.query if keep_query else ("…" if parts.query else "")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


@dataclass(frozen=True)
class ClientOptions:
    base_url: str
    api_key: Secret
    max_rps: float
    # httpcore's pool scans every connection for each request, so a pool far larger than the
    # requests actually in flight (about rate x latency: 190/s x 50 ms is 10) costs CPU for nothing.
    max_connections: int = 32
    storage_connections: int = 8
    timeout_s: float = 60.0
    max_attempts: int = 8
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientOptions:
        return cls(
            base_url=settings.api_base_url,
            api_key=settings.api_key,
            max_rps=settings.max_rps,
            max_connections=min(settings.concurrency, 32),
            storage_connections=settings.download_concurrency,
            timeout_s=settings.request_timeout_s,
            max_attempts=settings.max_attempts,
            retry_initial_s=settings.retry_initial_s,
            retry_max_s=settings.retry_max_s,
        )


class ApiClient:
    def __init__(
        self,
        options: ClientOptions,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        storage_transport: httpx.AsyncBaseTransport | None = None,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._options = options
        self._key = options.api_key
        self._base_url = options.base_url.rstrip("/")
        self._origin = origin_of(self._base_url)
        self._sleep = sleep
        self.limiter = limiter or RateLimiter(options.max_rps, sleep=sleep)
        self.retries = 0
        self.throttled = 0
        timeout = httpx.Timeout(options.timeout_s, connect=min(options.timeout_s, 15.0))
        # Many tiny pools instead of one big one: httpcore scans its pool once per connection for
        # each connection on every request (quadratic), so at 32 connections the scans cost more
        # CPU than the requests themselves. Two per pool keeps a slow answer from holding up the
        # next request sent to that pool.
        shards = max(1, math.ceil(options.max_connections / _CONNECTIONS_PER_SHARD))
        # One TLS context for every pool: loading the CA bundle costs ~20 ms each time.
        tls = httpx.create_ssl_context()
        api_limits = _pool(math.ceil(options.max_connections / shards))
        self._api_pools = [
            httpx.AsyncClient(
                headers={
                    "X-API-Key": self._key.reveal(),
                    "User-Agent": USER_AGENT,
                    "Accept": "application/json",
                },
                timeout=timeout,
                cookies=_NoCookies(),
                verify=tls,
                limits=api_limits,
                follow_redirects=False,
                transport=transport or lean_transport(api_limits, tls),
            )
            for _ in range(shards)
        ]
        self._next_pool = itertools.cycle(self._api_pools)
        # No Ultravox header here: this pool talks to cloud storage. Redirects among storage hosts are
        # harmless to follow because this client holds nothing secret.
        storage_limits = _pool(options.storage_connections)
        self._storage = httpx.AsyncClient(
            headers={"User-Agent": USER_AGENT},
            timeout=timeout,
            verify=tls,
            limits=storage_limits,
            follow_redirects=True,
            transport=storage_transport or lean_transport(storage_limits, tls),
        )

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for pool in self._api_pools:
            await pool.aclose()
        await self._storage.aclose()

    @property
    def api_requests(self) -> int:
        return self.limiter.requests

    def url(self, path: str) -> str:
        return f"{self._base_url}/{path.lstrip('/')}"

    # -- JSON endpoints -------------------------------------------------------------------------------

    async def get_json(self, url: str, params: Mapping[str, str | int] | None = None) -> Any:
        # One query string now, not a params merge by httpx on every attempt (it re-validates the
        # whole URL character by character each time).
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"

        async def attempt() -> Any:
            response = await self._send_api(url)
            self._raise_for_status(response)
            if response.status_code != 200:
                raise FatalError(
                    f"GET {redact_url(response.url)}: unexpected HTTP {response.status_code}",
                    status=response.status_code,
                )
            return _parse_json(response)

        return await self._retrying(attempt)

    async def iter_pages(
        self, path: str, params: Mapping[str, str | int], *, description: str
    ) -> AsyncIterator[list[Any]]:
        """Every page's `results` of a paginated listing, following `next` URLs as given."""
        paginator = Paginator(self._origin, description)
        url: str | None = self.url(path)
        first = True
        while url is not None:
            page = await self.get_json(url, params if first else None)
            first = False
            results = paginator.results(page)
            yield results
            url = paginator.advance(page)

    # -- recordings -----------------------------------------------------------------------------------

    async def request_recording(self, call_id: str, sink: ByteSink) -> RecordingAnswer:
        """Ask the API for a call's recording. A 200 body streams into `sink`; a 302 is not followed."""
        url = self.url(f"calls/{call_id}/recording")

        async def attempt() -> RecordingAnswer:
            sink.reset()
            await self.limiter.acquire()
            try:
                pool = next(self._next_pool)
                response = await pool.send(pool.build_request("GET", url), stream=True)
            except httpx.HTTPError as exc:
                raise _transport_error(exc, url) from None
            try:
                if response.status_code != 200:
                    # Small bodies: reading them lets the connection go back to the pool; closing
                    # a response with its body unread closes the connection too.
                    await response.aread()
                if response.status_code in (301, 302, 303, 307, 308):
                    location = response.headers.get("location")
                    if not location:
                        raise FatalError(f"GET {redact_url(url)}: redirect without a Location header")
                    return RecordingAnswer("redirect", location=str(response.url.join(location)))
                if response.status_code == 425:
                    return RecordingAnswer("too_early")
                if response.status_code == 200:
                    size = await _stream_into(response, sink, url)
                    return RecordingAnswer("direct", size_bytes=size)
                detail = _detail(response)
                if (
                    response.status_code in _NOT_ENABLED_STATUSES
                    and detail
                    and "not enabled" in detail.lower()
                ):
                    return RecordingAnswer("not_enabled", detail=detail)
                self._raise_for_status(response)
                raise FatalError(
                    f"GET {redact_url(url)}: unexpected HTTP {response.status_code}",
                    status=response.status_code,
                )
            finally:
                await response.aclose()

        return await self._retrying(attempt)

    async def download(self, url: str, sink: ByteSink) -> int:
        """Stream a signed storage URL into `sink`, sending no API header. Returns the byte count."""

        async def attempt() -> int:
            sink.reset()
            try:
                async with self._storage.stream("GET", url) as response:
                    status = response.status_code
                    if status in (400, 401, 403):
                        raise SignedUrlRejected(
                            f"storage refused {redact_url(url, keep_query=False)}: HTTP {status}",
                            status=status,
                        )
                    if status == 429 or status >= 500:
                        raise RetriableError(
                            f"storage {redact_url(url, keep_query=False)}: HTTP {status}",
                            retry_after_s=_retry_after(response),
                        )
                    if status != 200:
                        raise FatalError(
                            f"storage {redact_url(url, keep_query=False)}: HTTP {status}", status=status
                        )
                    return await _stream_into(response, sink, url)
            except httpx.HTTPError as exc:
                raise _transport_error(exc, url, keep_query=False) from None

        return await self._retrying(attempt)

    # -- internals ------------------------------------------------------------------------------------

    async def _send_api(self, url: str) -> httpx.Response:
        await self.limiter.acquire()
        try:
            # JSON pages are small: read whole, unlike recordings.
            return await next(self._next_pool).get(url)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, url) from None

    def _raise_for_status(self, response: httpx.Response) -> None:
        """The one place that decides what an error status means."""
        status = response.status_code
        if status < 400:
            return
        where = f"GET {redact_url(response.url)}"
        if status == 429:
            retry_after = _retry_after(response)
            self.throttled += 1
            self.limiter.pause(retry_after if retry_after is not None else 1.0)
            raise RetriableError(f"{where}: HTTP 429 (rate limited)", retry_after_s=retry_after)
        if status >= 500:
            raise RetriableError(f"{where}: HTTP {status}", retry_after_s=_retry_after(response))
        detail = _detail(response)
        suffix = f": {self._key.redact(detail)}" if detail else ""
        if status in (401, 403):
            raise AuthError(f"{where}: HTTP {status}, the API key was rejected{suffix}", status=status)
        raise FatalError(f"{where}: HTTP {status}{suffix}", status=status)

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RetriableError),
            stop=stop_after_attempt(self._options.max_attempts),
            wait=self._wait,
            sleep=self._sleep,
            reraise=True,
            before_sleep=self._log_retry,
        )
        async for retry_state in retrying:
            with retry_state:
                return await attempt()
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = error.retry_after_s if isinstance(error, RetriableError) else None
        if retry_after is not None:
            return min(max(retry_after, 0.0), RETRY_AFTER_CAP_S)
        initial = self._options.retry_initial_s
        exponential = min(initial * 2 ** (state.attempt_number - 1), self._options.retry_max_s)
        # Full jitter keeps many concurrent tasks from retrying in lockstep.
        return float(exponential * (0.5 + _jitter()))

    def _log_retry(self, state: RetryCallState) -> None:
        self.retries += 1
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "retrying request",
            extra={
                "attempt": state.attempt_number,
                "error": self._key.redact(str(error)),
                "wait_s": round(state.upcoming_sleep, 3),
            },
        )


class _NoCookies(http.cookiejar.CookieJar):
    """The API is keyed by header, not by cookies: keep none, and skip httpx's per-response
    Set-Cookie bookkeeping (a measurable share of the CPU per request)."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def add_cookie_header(self, request: Any) -> None:
        return None


def _pool(size: int) -> httpx.Limits:
    return httpx.Limits(max_connections=size, max_keepalive_connections=size)


def _jitter() -> float:
    return random.random() * 0.5


async def _stream_into(response: httpx.Response, sink: ByteSink, url: str) -> int:
    # Content-Length counts encoded bytes; the check only holds when the body is not content-encoded.
    encoded = response.headers.get("content-encoding", "identity") != "identity"
    expected = None if encoded else response.headers.get("content-length")
    received = 0
    try:
        async for chunk in response.aiter_bytes(STREAM_CHUNK_BYTES):
            sink.write(chunk)
            received += len(chunk)
    except httpx.HTTPError as exc:
        raise _transport_error(exc, url, keep_query=False) from None
    if expected is not None and expected.isdigit() and int(expected) != received:
        raise RetriableError(
            f"GET {redact_url(url, keep_query=False)}: body ended after {received} of {expected} bytes"
        )
    return received


def _transport_error(exc: httpx.HTTPError, url: str, *, keep_query: bool = True) -> Exception:
    where = f"GET {redact_url(url, keep_query=keep_query)}"
    if isinstance(exc, httpx.TimeoutException):
        return RetriableError(f"{where}: timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.TransportError):
        return RetriableError(f"{where}: connection failed ({type(exc).__name__})")
    return FatalError(f"{where}: {type(exc).__name__}")


def _parse_json(response: httpx.Response) -> Any:
    body = response.content
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        content_type = response.headers.get("content-type", "?")
        raise FatalError(
            f"GET {redact_url(response.url)}: the answer is not JSON (Content-Type {content_type}, "
            f"{len(body)} bytes)"
        ) from None


def _detail(response: httpx.Response) -> str | None:
    try:
        data = json.loads(response.content)
    except (UnicodeDecodeError, json.JSONDecodeError, httpx.ResponseNotRead):
        return None
    detail = data.get("detail") if isinstance(data, dict) else None
    return str(detail)[:300] if detail is not None else None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        # An HTTP-date: rarely used by APIs; treat it as "a moment".
        return 1.0
