"""The API client: auth header, retry policy, status -> error.

`ApiClient` reaches two kinds of host, both through httpx's own transport. The API pools send
`X-API-Key` and never follow redirects, so the recording endpoint's 302 cannot carry the key to the
storage host. The storage pool sends no Ultravox header at all. Every API request, retries included,
first takes a slot from one shared rate limiter. One function decides what is retriable: 429, 5xx,
timeouts and connection resets are (a reset while a body is being read included); other 4xx are not.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.stop import stop_base

from etl.api.ratelimit import RateLimiter
from etl.api.redirects import DownloadPolicy, Resolver, parse_host_list
from etl.api.responses import (
    BlockingSink,
    converted_errors,
    copy_body,
    declared_length,
    detail,
    parse_json,
    read_capped,
    redact_url,
    retry_after,
    small_copy,
    small_copy_sync,
)
from etl.api.retry_budget import RetryBudget
from etl.api.storage_transport import direct_sync_transport
from etl.api.threads import in_thread
from etl.config import (
    DEFAULT_MAX_PAGE_MIB,
    DEFAULT_MAX_PAGES_PER_LISTING,
    DEFAULT_RETRY_AFTER_MAX_S,
    Settings,
)
from etl.errors import AuthError, FatalError, RetriableError, SignedUrlRejected
from etl.pagination import Paginator, origin_of
from etl.secrets import Secret

log = logging.getLogger(__name__)
T = TypeVar("T")

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

USER_AGENT = "ultravox-archiver/0.1"
# The recording endpoint answers audio (200 audio/wav), a redirect, or a JSON error: ask for what it
# may send, JSON errors included, rather than `application/json` alone.
RECORDING_ACCEPT = "audio/wav, audio/*;q=0.9, application/json;q=0.5"
# More connections than requests in flight (about rate x latency: 190/s x 50 ms is 10) buy nothing.
_MAX_API_CONNECTIONS = 32
# Pools of two connections, taken in turn, instead of one pool of 32: on every request it queues and
# every response it closes, httpcore's pool visits each connection, asks the OS about each idle one
# (a poll() call: did the server close it?) and counts the idle ones again for each (quadratic). At
# the API's rate limit (tests/perf/bench.py --cases api) one pool of 32 cost 5.7-7.8 ms of CPU per
# request against 3.4-4.2 ms for pools of two, enough to make the run CPU-bound on two cores (wall
# 1.3-2.7 x the rate-limit bound, against 1.06-1.14 x). Two per pool keeps a slow answer from
# holding up the next request sent to that pool.
_CONNECTIONS_PER_POOL = 2


class AnswerKind(StrEnum):
    REDIRECT = "redirect"  # `location` is the signed storage URL
    DIRECT = "direct"  # the body was written to the sink
    TOO_EARLY = "too_early"  # 425: not ready yet
    # Any other 4xx but 401/403/429: the API will not give this recording (`status`, `detail`).
    # What that means depends on the call's `recordingEnabled`, never on the wording of `detail`:
    # the caller decides (etl.api.recordings).
    REFUSED = "refused"


@dataclass(frozen=True)
class RecordingAnswer:
    """What the recording endpoint said."""

    kind: AnswerKind
    location: str | None = None
    detail: str | None = None
    size_bytes: int | None = None
    status: int | None = None


@dataclass(frozen=True)
class ClientOptions:
    """Every field required: the defaults live in `Settings`, read by `from_settings`."""

    base_url: str
    api_key: Secret
    max_rps: float
    max_connections: int
    storage_connections: int
    timeout_s: float
    max_attempts: int
    retry_initial_s: float
    retry_max_s: float
    # Default to Settings' own defaults, so that options built by hand (tests) need not name them.
    max_page_bytes: int = int(DEFAULT_MAX_PAGE_MIB * 1024 * 1024)
    max_pages_per_listing: int = DEFAULT_MAX_PAGES_PER_LISTING
    retry_after_max_s: float = DEFAULT_RETRY_AFTER_MAX_S
    # Hosts a recording may be downloaded from even on a private or loopback address (redirects.py).
    allowed_recording_hosts: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientOptions:
        return cls(
            base_url=settings.api_base_url,
            api_key=settings.api_key,
            max_rps=settings.max_rps,
            max_connections=min(settings.concurrency, _MAX_API_CONNECTIONS),
            storage_connections=settings.download_concurrency,
            timeout_s=settings.request_timeout_s,
            max_attempts=settings.max_attempts,
            retry_initial_s=settings.retry_initial_s,
            retry_max_s=settings.retry_max_s,
            max_page_bytes=int(settings.max_page_mib * 1024 * 1024),
            max_pages_per_listing=settings.max_pages_per_listing,
            retry_after_max_s=settings.retry_after_max_s,
            allowed_recording_hosts=parse_host_list(settings.allowed_recording_hosts or ""),
        )


class ApiClient:
    def __init__(
        self,
        options: ClientOptions,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        storage_transport: httpx.BaseTransport | None = None,
        limiter: RateLimiter | None = None,
        retry_budget: RetryBudget | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        resolve: Resolver | None = None,
    ) -> None:
        self._options = options
        self._key = options.api_key
        self._base_url = options.base_url.rstrip("/")
        self._origin = origin_of(self._base_url)
        self._sleep = sleep
        self.limiter = limiter or RateLimiter(options.max_rps, sleep=sleep)
        self.retries = 0
        self.throttled = 0
        # Shared by every request of the run; without one, only max_attempts bounds retrying.
        self.retry_budget = retry_budget or RetryBudget(None)
        timeout = httpx.Timeout(options.timeout_s, connect=min(options.timeout_s, 15.0))
        # One TLS context for every pool: loading the CA bundle costs ~20 ms each time.
        tls = httpx.create_ssl_context()
        # With no transport given, httpx builds its own from `verify` and `limits`, and mounts the
        # proxies named by HTTP_PROXY/HTTPS_PROXY/ALL_PROXY/NO_PROXY; an injected transport (tests)
        # replaces both.
        pools = max(1, math.ceil(options.max_connections / _CONNECTIONS_PER_POOL))
        api_limits = _pool(math.ceil(options.max_connections / pools))
        self._api_pools = [
            httpx.AsyncClient(
                headers={
                    "X-API-Key": self._key.reveal(),
                    "User-Agent": USER_AGENT,
                    "Accept": "application/json",
                },
                timeout=timeout,
                verify=tls,
                limits=api_limits,
                follow_redirects=False,
                transport=transport,
            )
            for _ in range(pools)
        ]
        self._next_pool = itertools.cycle(self._api_pools)
        # No Ultravox header here: this pool talks to cloud storage. Redirects among storage hosts are
        # harmless to follow because this client holds nothing secret; where each request may go is
        # checked before it is sent, redirects included (redirects.DownloadPolicy). It is
        # synchronous: audio is read, hashed and uploaded in worker threads, which costs a third less
        # CPU per byte than reading it through the event loop and leaves the loop to the API.
        policy = DownloadPolicy.for_api(options.base_url, options.allowed_recording_hosts, resolve)
        self._storage = httpx.Client(
            event_hooks={"request": [policy.check_request]},
            headers={"User-Agent": USER_AGENT},
            timeout=timeout,
            verify=tls,
            limits=_pool(options.storage_connections),
            follow_redirects=True,
            transport=storage_transport or direct_sync_transport(tls, options.storage_connections),
        )
        self._downloads = ThreadPoolExecutor(options.storage_connections, thread_name_prefix="download")
        # The recording endpoint may answer with the audio itself (200), so it is asked from worker
        # threads too, by a synchronous client of its own: read through the event loop, the 15 % of
        # recordings the simulator delivers that way cost the loop 3.5 CPU-s per GiB (tests/perf/
        # bench.py --cases audio), against ~1 in a thread. The key goes only to the URLs this client
        # is given, all on the API's origin: it never follows a redirect (the 302 is the answer). A
        # transport injected for the API (tests' MockTransport) serves this client as well.
        self._recording_api = httpx.Client(
            headers={"X-API-Key": self._key.reveal(), "User-Agent": USER_AGENT},
            timeout=timeout,
            verify=tls,
            limits=_pool(options.max_connections),
            follow_redirects=False,
            transport=transport
            if isinstance(transport, httpx.BaseTransport)
            else direct_sync_transport(tls, options.max_connections),
        )
        self._recording_requests = ThreadPoolExecutor(options.max_connections, thread_name_prefix="recording")

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for pool in self._api_pools:
            await pool.aclose()
        self._storage.close()
        self._recording_api.close()
        self._downloads.shutdown(wait=False, cancel_futures=True)
        self._recording_requests.shutdown(wait=False, cancel_futures=True)

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
            await self.limiter.acquire()
            # JSON pages are read whole, unlike recordings, but never more than the cap (decoded
            # bytes: a gzip bomb stops there too), and an error answer only as far as its `detail`.
            pool = next(self._next_pool)
            streamed = await pool.send(pool.build_request("GET", url), stream=True)
            try:
                if streamed.status_code == 200:
                    body = await read_capped(streamed, self._options.max_page_bytes, url)
                    return parse_json(streamed, body)
                response = await small_copy(streamed, url)
            finally:
                await streamed.aclose()
            self._raise_for_status(response)
            if response.status_code != 200:
                raise FatalError(
                    f"GET {redact_url(response.url)}: unexpected HTTP {response.status_code}",
                    status=response.status_code,
                )
            return parse_json(response)

        return await self._retrying(attempt, url)

    async def iter_pages(
        self, path: str, params: Mapping[str, str | int], *, description: str
    ) -> AsyncIterator[list[Any]]:
        """Every page's `results` of a paginated listing, following `next` URLs as given."""
        paginator = Paginator(self._origin, description, max_pages=self._options.max_pages_per_listing)
        url: str | None = self.url(path)
        first = True
        while url is not None:
            page = await self.get_json(url, params if first else None)
            first = False
            results = paginator.results(page)
            yield results
            url = paginator.advance(page)

    # -- recordings -----------------------------------------------------------------------------------

    async def request_recording(
        self,
        call_id: str,
        sink: BlockingSink,
        *,
        before_body: Callable[[int | None], Awaitable[None]] | None = None,
        on_cancel: Callable[[], None] | None = None,
    ) -> RecordingAnswer:
        """Ask the API for a call's recording. A 200 body streams into `sink` in a worker thread
        (after `before_body`, which may wait for room for it); a 302 is not followed. `sink` must come
        clean: it is reset before a retry only, which spares work on every poll. `on_cancel` should
        make the sink's writes fail, so a cancelled download stops at its next chunk."""
        url = self.url(f"calls/{call_id}/recording")
        attempts = 0

        async def attempt() -> RecordingAnswer:
            nonlocal attempts
            attempts += 1
            await self.limiter.acquire()
            threads = self._recording_requests
            response = await in_thread(
                self._open_recording, url, sink, attempts > 1, executor=threads, discard=httpx.Response.close
            )
            if response.status_code != 200:
                return self._recording_answer(response, url)
            size = await self._receive(response, sink, url, threads, before_body, on_cancel)
            return RecordingAnswer(AnswerKind.DIRECT, size_bytes=size)

        return await self._retrying(attempt, url)

    def _open_recording(self, url: str, sink: BlockingSink, reset: bool) -> httpx.Response:
        """The recording endpoint's answer: a 200 with its body unread, any other status read (as
        far as small_copy reads), so that its connection goes back to the pool."""
        if reset:
            sink.reset()
        client = self._recording_api
        response = client.send(
            client.build_request("GET", url, headers={"Accept": RECORDING_ACCEPT}), stream=True
        )
        if response.status_code == 200:
            return response
        try:
            return small_copy_sync(response, url)
        finally:
            response.close()

    def _recording_answer(self, response: httpx.Response, url: str) -> RecordingAnswer:
        status = response.status_code
        if status in _REDIRECT_STATUSES:
            location = response.headers.get("location")
            if not location:
                raise FatalError(f"GET {redact_url(url)}: redirect without a Location header")
            return RecordingAnswer(AnswerKind.REDIRECT, location=str(response.url.join(location)))
        if status == 425:
            return RecordingAnswer(AnswerKind.TOO_EARLY)
        if 400 <= status < 500 and status not in (401, 403, 429):
            explained = detail(response)
            shown = self._key.redact(explained) if explained else None
            return RecordingAnswer(AnswerKind.REFUSED, detail=shown, status=status)
        self._raise_for_status(response)
        raise FatalError(f"GET {redact_url(url)}: unexpected HTTP {status}", status=status)

    async def download(
        self,
        url: str,
        sink: BlockingSink,
        *,
        before_body: Callable[[int | None], Awaitable[None]] | None = None,
        on_cancel: Callable[[], None] | None = None,
    ) -> int:
        """Stream a signed storage URL into `sink` in worker threads, sending no API header. Returns
        the byte count. `before_body` gets the body's length once the headers are in (and may wait
        for room for it, on the loop, with the body unread); `on_cancel` should make the sink's
        writes fail, so a cancelled download stops at its next chunk."""

        async def attempt() -> int:
            response = await in_thread(
                self._open_download, url, sink, executor=self._downloads, discard=httpx.Response.close
            )
            return await self._receive(response, sink, url, self._downloads, before_body, on_cancel)

        return await self._retrying(attempt, url, keep_query=False)

    @staticmethod
    async def _receive(
        response: httpx.Response,
        sink: BlockingSink,
        url: str,
        threads: ThreadPoolExecutor,
        before_body: Callable[[int | None], Awaitable[None]] | None,
        on_cancel: Callable[[], None] | None,
    ) -> int:
        """Copy a 200's body into `sink` in one of `threads`, once `before_body` has seen its length
        (on the loop, with the body unread); the response is closed whatever happens."""
        try:
            if before_body is not None:
                await before_body(declared_length(response))
            return await in_thread(copy_body, response, sink, url, executor=threads, on_cancel=on_cancel)
        finally:
            response.close()

    def _open_download(self, url: str, sink: BlockingSink) -> httpx.Response:
        """The storage host's answer with its body unread, or the error its status means."""
        # Signed query strings stay out of messages: they are credentials until they expire.
        shown = redact_url(url, keep_query=False)
        sink.reset()
        response = self._storage.send(self._storage.build_request("GET", url), stream=True)
        status = response.status_code
        if status == 200:
            return response
        response.close()
        if status in (400, 401, 403):
            raise SignedUrlRejected(f"storage refused {shown}: HTTP {status}", status=status)
        if status == 429 or status >= 500:
            wait = self._retry_after(response)
            raise RetriableError(f"storage {shown}: HTTP {status}", retry_after_s=wait)
        raise FatalError(f"storage {shown}: HTTP {status}", status=status)

    # -- internals ------------------------------------------------------------------------------------

    def _raise_for_status(self, response: httpx.Response) -> None:
        """The one place that decides what an error status means."""
        status = response.status_code
        if status < 400:
            return
        where = f"GET {redact_url(response.url)}"
        if status == 429:
            wait = self._retry_after(response)
            self.throttled += 1
            # Without a usable hint every worker still holds back a moment (never past the cap).
            self.limiter.pause(wait if wait is not None else min(1.0, self._options.retry_after_max_s))
            raise RetriableError(f"{where}: HTTP 429 (rate limited)", retry_after_s=wait)
        if status >= 500:
            raise RetriableError(f"{where}: HTTP {status}", retry_after_s=self._retry_after(response))
        explained = detail(response)
        suffix = f": {self._key.redact(explained)}" if explained else ""
        if status in (401, 403):
            raise AuthError(f"{where}: HTTP {status}, the API key was rejected{suffix}", status=status)
        raise FatalError(f"{where}: HTTP {status}{suffix}", status=status)

    def _retry_after(self, response: httpx.Response) -> float | None:
        return retry_after(response, cap=self._options.retry_after_max_s)

    async def _retrying(self, attempt: Callable[[], Awaitable[T]], url: str, *, keep_query: bool = True) -> T:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RetriableError),
            # Attempts first: a request that has used its own attempts spends nothing of the run's.
            stop=stop_after_attempt(self._options.max_attempts) | _BudgetSpent(self.retry_budget),
            wait=self._wait,
            sleep=self._sleep,
            reraise=True,
            before_sleep=self._log_retry,
        )
        async for retry_state in retrying:
            # Around the whole attempt, body reads included: see converted_errors.
            with retry_state, converted_errors(url, keep_query=keep_query):
                return await attempt()
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        hinted = error.retry_after_s if isinstance(error, RetriableError) else None
        if hinted is not None and hinted >= 0:  # `>=` is false for nan too
            return min(hinted, self._options.retry_after_max_s)
        initial = self._options.retry_initial_s
        # The exponent stops growing long before the cap matters (2**60 would still be a float).
        doublings = min(state.attempt_number - 1, 60)
        exponential = min(initial * 2**doublings, self._options.retry_max_s)
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


class _BudgetSpent(stop_base):
    """Stops retrying when the run's retry budget refuses one more retry (it spends one otherwise)."""

    def __init__(self, budget: RetryBudget) -> None:
        self._budget = budget

    def __call__(self, retry_state: RetryCallState) -> bool:
        return not self._budget.take()


def _pool(size: int) -> httpx.Limits:
    return httpx.Limits(max_connections=size, max_keepalive_connections=size)


def _jitter() -> float:
    return random.random() * 0.5
