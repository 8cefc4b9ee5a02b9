"""Edge cases of the HTTP edge, against httpx.MockTransport (the real-server tests are in integration/)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from support.api_objects import client_options
from support.memory_sink import MemorySink

from etl.api.client import ApiClient
from etl.api.ratelimit import RateLimiter
from etl.errors import AuthError, FatalError, RetriableError, SignedUrlRejected
from etl.secrets import Secret

KEY = "abcdefgh." + "k" * 32
BASE = "https://api.test/api"


def make_client(
    handler: Callable[[httpx.Request], httpx.Response],
    storage_handler: Callable[[httpx.Request], httpx.Response] | None = None,
    sleeps: list[float] | None = None,
) -> ApiClient:
    async def fake_sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    options = client_options(
        base_url=BASE,
        api_key=Secret(KEY),
        max_connections=32,
        storage_connections=8,
        timeout_s=60.0,
        max_attempts=4,
        retry_initial_s=0.5,
        retry_max_s=30.0,
        max_page_bytes=1024 * 1024,
        max_pages_per_listing=100,
        allowed_recording_hosts=frozenset({"storage.test"}),
    )
    return ApiClient(
        options,
        transport=httpx.MockTransport(handler),
        storage_transport=httpx.MockTransport(storage_handler or handler),
        sleep=fake_sleep,
    )


def test_retries_5xx_then_succeeds() -> None:
    answers = iter([httpx.Response(503), httpx.Response(200, json={"ok": 1})])
    sleeps: list[float] = []
    client = make_client(lambda request: next(answers), sleeps=sleeps)
    assert asyncio.run(client.get_json(f"{BASE}/calls")) == {"ok": 1}
    assert len(sleeps) == 1
    assert client.retries == 1


def test_429_honours_retry_after() -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200, json=[])])
    sleeps: list[float] = []
    client = make_client(lambda request: next(answers), sleeps=sleeps)
    assert asyncio.run(client.get_json(f"{BASE}/calls")) == []
    # The retry waits Retry-After; the shared limiter also holds back every other task for as long.
    assert sleeps[0] == 7.0
    assert client.throttled == 1


def test_404_is_not_retried() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(404, json={"detail": "Not found."})

    client = make_client(handler)
    with pytest.raises(FatalError, match="HTTP 404: Not found") as info:
        asyncio.run(client.get_json(f"{BASE}/calls/x/messages"))
    assert info.value.status == 404
    assert len(calls) == 1


def test_rejected_key_is_auth_error_without_the_key() -> None:
    client = make_client(lambda request: httpx.Response(403, json={"detail": f"bad key {KEY}"}))
    with pytest.raises(AuthError) as info:
        asyncio.run(client.get_json(f"{BASE}/calls"))
    assert KEY not in str(info.value)


def test_gives_up_after_max_attempts() -> None:
    client = make_client(lambda request: httpx.Response(500), sleeps=[])
    with pytest.raises(RetriableError, match="HTTP 500"):
        asyncio.run(client.get_json(f"{BASE}/calls"))
    assert client.api_requests == 4


def test_connection_reset_is_retried() -> None:
    attempts = iter([httpx.ReadError("reset"), None])

    def handler(request: httpx.Request) -> httpx.Response:
        error = next(attempts)
        if error:
            raise error
        return httpx.Response(200, json={"results": []})

    assert asyncio.run(make_client(handler, sleeps=[]).get_json(f"{BASE}/calls")) == {"results": []}


def test_non_json_page_is_a_clear_error() -> None:
    client = make_client(lambda request: httpx.Response(200, text="<html>oops</html>"))
    with pytest.raises(FatalError, match="not JSON"):
        asyncio.run(client.get_json(f"{BASE}/calls"))


def test_api_key_header_sent_to_api() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-api-key"))
        return httpx.Response(200, json={})

    asyncio.run(make_client(handler).get_json(f"{BASE}/calls"))
    assert seen == [KEY]


def test_redirect_is_not_followed_and_storage_gets_no_key() -> None:
    storage_requests: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "https://storage.test/rec.wav?sig=s3cr3t"})

    def storage(request: httpx.Request) -> httpx.Response:
        storage_requests.append(request)
        return httpx.Response(200, content=b"RIFF....WAVE")

    client = make_client(api, storage)
    sink = MemorySink()
    answer = asyncio.run(client.request_recording("c1", sink))
    assert answer.kind == "redirect"
    assert answer.location == "https://storage.test/rec.wav?sig=s3cr3t"
    assert asyncio.run(client.download(answer.location, sink)) == 12
    assert bytes(sink.data) == b"RIFF....WAVE"
    (request,) = storage_requests
    assert "x-api-key" not in request.headers
    assert KEY not in str(request.headers) and KEY not in str(request.url)


@pytest.mark.parametrize("status", [400, 404, 409, 410, 422])
@pytest.mark.parametrize(
    "body", [{"detail": "Recording is not enabled for this call."}, {"detail": "No recording."}, None]
)
def test_a_4xx_recording_answer_is_a_refusal_whatever_its_wording(status: int, body: object) -> None:
    client = make_client(lambda request: httpx.Response(status, json=body))
    answer = asyncio.run(client.request_recording("c1", MemorySink()))
    assert (answer.kind, answer.status) == ("refused", status)


def test_the_recording_request_accepts_audio_and_json_errors() -> None:
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["accept"])
        if request.url.path.endswith("/calls"):
            return httpx.Response(200, json={"next": None, "results": []})
        return httpx.Response(425) if len(seen) == 1 else httpx.Response(200, content=b"RIFF")

    client = make_client(api)
    asyncio.run(client.request_recording("c1", MemorySink()))
    asyncio.run(client.request_recording("c1", MemorySink()))
    asyncio.run(client.get_json(f"{BASE}/calls"))  # the JSON endpoints still ask for JSON
    audio, _, page = seen
    assert "audio/wav" in audio and "application/json" in audio
    assert page == "application/json"


def test_too_early_and_direct_body() -> None:
    answers = iter([httpx.Response(425), httpx.Response(200, content=b"x" * 1000)])
    client = make_client(lambda request: next(answers))
    sink = MemorySink()
    assert asyncio.run(client.request_recording("c1", sink)).kind == "too_early"
    answer = asyncio.run(client.request_recording("c1", sink))
    assert (answer.kind, answer.size_bytes, len(sink.data)) == ("direct", 1000, 1000)


def test_expired_signed_url_is_signalled() -> None:
    client = make_client(lambda request: httpx.Response(403, text="<Error>expired</Error>"))
    with pytest.raises(SignedUrlRejected) as info:
        asyncio.run(client.download("https://storage.test/r.wav?signature=abc", MemorySink()))
    assert "abc" not in str(info.value)  # signed query strings stay out of messages


def test_storage_5xx_retries_from_a_clean_sink() -> None:
    answers = iter([httpx.Response(503, content=b"partial"), httpx.Response(200, content=b"whole")])
    sink = MemorySink()
    client = make_client(lambda r: httpx.Response(500), lambda request: next(answers), sleeps=[])
    assert asyncio.run(client.download("https://storage.test/r.wav", sink)) == 5
    assert bytes(sink.data) == b"whole"
    assert sink.resets == 2


def test_rate_limiter_spaces_requests() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    limiter = RateLimiter(10, clock=lambda: now[0], sleep=sleep)

    async def burst() -> None:
        for _ in range(5):
            await limiter.acquire()

    asyncio.run(burst())
    assert slept == pytest.approx([0.1, 0.2, 0.3, 0.4])
    limiter.pause(5)
    asyncio.run(limiter.acquire())
    assert slept[-1] == pytest.approx(5.0)


def test_rate_limiter_backs_off_on_429_and_recovers() -> None:
    now = [100.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(100, clock=lambda: now[0], sleep=sleep)
    limiter.pause(0)
    limiter.pause(0)  # the same burst of 429s: one cut
    assert limiter.rate == pytest.approx(75)
    now[0] += 1.0
    assert limiter.rate == pytest.approx(80)  # +5% of the maximum per second
    limiter.pause(0)
    assert limiter.rate == pytest.approx(60)
    now[0] += 60
    assert limiter.rate == 100  # back to the configured maximum, never above
