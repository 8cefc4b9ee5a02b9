"""ApiClient over real sockets on loopback, through httpx's own transport: a response cut off at any
moment is retried like a reset, TLS and proxy settings reach the connection, pools are reused."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from support.api_objects import client_options
from support.memory_sink import MemorySink

from etl.api.client import ApiClient, ClientOptions
from etl.errors import FatalError, RetriableError
from etl.secrets import Secret

DATA = Path(__file__).resolve().parent.parent / "data"
CERT = DATA / "localhost-cert.pem"  # self-signed for localhost / 127.0.0.1, valid until 2126
KEY = DATA / "localhost-key.pem"
API_KEY = "abcdefgh." + "k" * 32
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(autouse=True)
def no_proxy_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy set on the machine would stand between the client and the loopback servers.
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


@asynccontextmanager
async def serving(handler: Handler, *, tls: bool = False) -> AsyncIterator[str]:
    context = None
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(CERT, KEY)
    writers: list[asyncio.StreamWriter] = []

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        # The client going away mid-answer is what some tests are about.
        with suppress(ConnectionError, ssl.SSLError):
            await handler(reader, writer)

    server = await asyncio.start_server(tracked, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.close()
        for writer in writers:
            writer.close()
        for writer in writers:
            with suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def head(status: str, length: int, *extra: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {length}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def options(base_url: str, **overrides: Any) -> ClientOptions:
    fields: dict[str, Any] = {
        "base_url": f"{base_url}/api",
        "api_key": Secret(API_KEY),
        "max_page_bytes": 1024 * 1024,
        "max_pages_per_listing": 100,
    }
    return client_options(**(fields | overrides))


def api_client(base_url: str, **overrides: Any) -> ApiClient:
    async def no_sleep(seconds: float) -> None:
        return None

    return ApiClient(options(base_url, **overrides), sleep=no_sleep)


class CutOnce:
    """Answers every request with `good`, except the first, which gets `cut` and a closed connection:
    the headers arrive, the body does not (or only part of it)."""

    def __init__(self, cut: bytes, good: bytes) -> None:
        self.cut = cut
        self.good = good
        self.requests = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            self.requests += 1
            if self.requests == 1:
                writer.write(self.cut)
                await writer.drain()
                writer.close()
                return
            writer.write(self.good)
            await writer.drain()
        writer.close()


JSON_PAGE = b'{"results": [], "next": null}'
AUDIO = b"RIFF" + bytes(range(256)) * 40


# --- a response cut off after its headers is retried, on every endpoint ----------------------------


@pytest.mark.parametrize("received", [0, 10], ids=["before-the-body", "mid-body"])
@run_async
async def test_a_json_page_cut_after_its_headers_is_retried(received: int) -> None:
    server = CutOnce(
        head("200 OK", len(JSON_PAGE), "Content-Type: application/json") + JSON_PAGE[:received],
        head("200 OK", len(JSON_PAGE), "Content-Type: application/json") + JSON_PAGE,
    )
    async with serving(server) as base, api_client(base) as client:
        page = await client.get_json(client.url("calls"))
    assert page == {"results": [], "next": None}
    assert (server.requests, client.retries) == (2, 1)


@pytest.mark.parametrize(
    ("status", "extra", "kind"),
    [
        ("425 Too Early", (), "too_early"),
        ("302 Found", ("Location: https://storage.test/r.wav?sig=1",), "redirect"),
    ],
)
@pytest.mark.parametrize("received", [0, 10], ids=["before-the-body", "mid-body"])
@run_async
async def test_a_small_recording_answer_cut_after_its_headers_is_retried(
    status: str, extra: tuple[str, ...], kind: str, received: int
) -> None:
    body = b'{"detail": "' + b"x" * 16 + b'"}'  # 30 bytes, as small bodies of this endpoint are
    server = CutOnce(
        head(status, len(body), *extra) + body[:received], head(status, len(body), *extra) + body
    )
    async with serving(server) as base, api_client(base) as client:
        answer = await client.request_recording("c1", MemorySink())
    assert answer.kind == kind
    assert (server.requests, client.retries) == (2, 1)


@pytest.mark.parametrize("received", [0, 1000], ids=["before-the-body", "mid-body"])
@run_async
async def test_a_recording_body_cut_off_is_retried_into_a_clean_sink(received: int) -> None:
    server = CutOnce(
        head("200 OK", len(AUDIO), "Content-Type: audio/wav") + AUDIO[:received],
        head("200 OK", len(AUDIO), "Content-Type: audio/wav") + AUDIO,
    )
    sink = MemorySink()
    async with serving(server) as base, api_client(base) as client:
        answer = await client.request_recording("c1", sink)
    assert (answer.kind, answer.size_bytes) == ("direct", len(AUDIO))
    assert bytes(sink.data) == AUDIO
    # The sink comes clean; it is reset before the retry only.
    assert (server.requests, client.retries, sink.resets) == (2, 1, 1)


class ThreadNoting(MemorySink):
    """Notes the thread of every write."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()

    def write(self, chunk: bytes | memoryview) -> None:
        self.threads.add(threading.current_thread().name)
        super().write(chunk)


@run_async
async def test_the_recording_endpoints_audio_is_read_in_a_worker_thread_with_the_key() -> None:
    # Read through the event loop, the API's own 200-with-audio answers cost the loop 3.5 CPU-s per
    # GiB; they go through the same threaded reading as the storage host's.
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            seen.append(request)
            writer.write(head("200 OK", len(AUDIO), "Content-Type: audio/wav") + AUDIO)
            await writer.drain()

    sink = ThreadNoting()
    async with serving(handler) as base, api_client(base) as client:
        answer = await client.request_recording("c1", sink)
    assert (answer.kind, answer.size_bytes, bytes(sink.data)) == ("direct", len(AUDIO), AUDIO)
    assert sink.threads and all(name.startswith("recording") for name in sink.threads), sink.threads
    [request] = seen
    start, *lines = request.decode().strip().split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines)}
    assert start.startswith("GET /api/calls/c1/recording ")
    assert headers["x-api-key"] == API_KEY


@pytest.mark.parametrize("received", [0, 1000], ids=["before-the-body", "mid-body"])
@run_async
async def test_a_storage_download_cut_off_is_retried_into_a_clean_sink(received: int) -> None:
    server = CutOnce(head("200 OK", len(AUDIO)) + AUDIO[:received], head("200 OK", len(AUDIO)) + AUDIO)
    sink = MemorySink()
    async with serving(server) as base, api_client(base) as client:
        assert await client.download(f"{base}/bucket/r.wav?sig=1", sink) == len(AUDIO)
    assert bytes(sink.data) == AUDIO
    assert (server.requests, client.retries, sink.resets) == (2, 1, 2)


# --- connections: reuse, TLS, proxies, failures ----------------------------------------------------


async def keep_alive_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while (request := await read_request(reader)) is not None:
        body = b'{"path": "' + request.split(b" ")[1] + b'"}'
        writer.write(head("200 OK", len(body), "Content-Type: application/json") + body)
        await writer.drain()
    writer.close()


class Counting:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await self.handler(reader, writer)


@run_async
async def test_sequential_requests_reuse_kept_alive_connections() -> None:
    server = Counting(keep_alive_server)
    async with serving(server) as base, api_client(base, max_connections=4) as client:
        for n in range(10):
            assert await client.get_json(client.url(f"page/{n}")) == {"path": f"/api/page/{n}"}
    # Four connections are two pools of two, taken in turn: one connection each, kept alive.
    assert server.connections == 2


@run_async
async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def one_answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        # No "Connection: close": the client believes the connection is reusable.
        writer.write(head("200 OK", len(JSON_PAGE)) + JSON_PAGE)
        await writer.drain()
        writer.close()

    server = Counting(one_answer_then_close)
    async with serving(server) as base, api_client(base) as client:
        for _ in range(3):
            assert await client.get_json(client.url("calls")) == {"results": [], "next": None}
            await asyncio.sleep(0.05)  # the close reaches the client while the connection is idle
        assert client.retries == 0
    assert server.connections == 3


@run_async
async def test_tls_trusts_the_certificates_named_by_ssl_cert_file(monkeypatch: pytest.MonkeyPatch) -> None:
    # The one TLS context both pools share is httpx's: SSL_CERT_FILE names the trusted CAs.
    monkeypatch.setenv("SSL_CERT_FILE", str(CERT))
    async with serving(keep_alive_server, tls=True) as base, api_client(base) as client:
        assert await client.get_json(client.url("secure")) == {"path": "/api/secure"}
        sink = MemorySink()
        assert await client.download(f"{base}/bucket/r.wav", sink) > 0


@run_async
async def test_tls_refuses_an_untrusted_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    async with serving(keep_alive_server, tls=True) as base, api_client(base) as client:
        with pytest.raises(RetriableError, match="connection failed"):
            await client.get_json(client.url("secure"))
        assert client.api_requests == 3  # every attempt refused, none sent a request


@run_async
async def test_the_proxy_named_in_the_environment_carries_both_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (request := await read_request(reader)) is not None:
            seen.append(request.split(b"\r\n")[0])
            writer.write(head("200 OK", len(JSON_PAGE)) + JSON_PAGE)
            await writer.drain()
        writer.close()

    async with serving(proxy) as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        # Hosts that do not resolve: only a proxy can answer for them.
        async with api_client(
            "http://api.invalid", allowed_recording_hosts=frozenset({"storage.invalid"})
        ) as client:
            assert await client.get_json(client.url("calls")) == {"results": [], "next": None}
            assert await client.download("http://storage.invalid/r.wav?sig=1", MemorySink()) == len(JSON_PAGE)
    # A proxy gets the absolute URL in the request line.
    assert seen == [
        b"GET http://api.invalid/api/calls HTTP/1.1",
        b"GET http://storage.invalid/r.wav?sig=1 HTTP/1.1",
    ]


@run_async
async def test_no_proxy_leaves_the_listed_hosts_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with serving(keep_alive_server) as base, api_client(base) as client:
        assert await client.get_json(client.url("calls")) == {"path": "/api/calls"}


@run_async
async def test_a_silent_server_is_a_retried_timeout() -> None:
    server_requests = 0

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal server_requests
        await read_request(reader)
        server_requests += 1
        await asyncio.sleep(5)
        writer.close()

    async with serving(silent) as base, api_client(base, timeout_s=0.2) as client:
        with pytest.raises(RetriableError, match="timed out"):
            await client.get_json(client.url("calls"))
        assert client.retries == 2
    assert server_requests == 3


@run_async
async def test_nobody_listening_is_a_retried_connection_failure() -> None:
    server = await asyncio.start_server(keep_alive_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with api_client(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(RetriableError, match="connection failed"):
            await client.get_json(client.url("calls"))
        assert client.retries == 2


@run_async
async def test_a_large_recording_streams_intact() -> None:
    body = bytes(range(256)) * (16 * 1024)  # 4 MiB, many chunks

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head("200 OK", len(body)) + body)
        await writer.drain()
        writer.close()

    class Hashing(MemorySink):
        def __init__(self) -> None:
            super().__init__()
            self.digest = hashlib.sha256()
            self.chunks = 0

        def write(self, chunk: bytes | memoryview) -> None:
            self.digest.update(chunk)
            self.chunks += 1

    sink = Hashing()
    async with serving(big) as base, api_client(base) as client:
        assert await client.download(f"{base}/r.wav", sink) == len(body)
    assert sink.digest.hexdigest() == hashlib.sha256(body).hexdigest()
    assert sink.chunks > 1


# --- the storage host through urllib3 (etl/api/storage_transport.py) -------------------------------


class RecordsRequests:
    """Answers every request with `body` on a kept-alive connection; records request lines and
    counts connections."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.lines: list[bytes] = []
        self.connections = 0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while (request := await read_request(reader)) is not None:
            self.lines.append(request.split(b"\r\n", 1)[0])
            writer.write(head("200 OK", len(self.body)) + self.body)
            await writer.drain()
        writer.close()


@run_async
async def test_a_signed_url_reaches_the_storage_host_byte_for_byte() -> None:
    # A signature covers the query exactly as issued: no re-encoding, no reordering.
    query = "X-Amz-Signature=ab%2Bcd%2F%3D&b=1&a=%7E2&empty="
    server = RecordsRequests(AUDIO)
    async with serving(server) as base, api_client(base) as client:
        assert await client.download(f"{base}/bucket/a%20b/r.wav?{query}", MemorySink()) == len(AUDIO)
    assert server.lines == [f"GET /bucket/a%20b/r.wav?{query} HTTP/1.1".encode()]


@run_async
async def test_a_download_abandoned_half_way_never_hands_its_connection_to_the_next() -> None:
    big = bytes(range(256)) * 16 * 1024  # 4 MiB: the sink gives up after the first read

    class GivesUp(MemorySink):
        def write(self, chunk: bytes | memoryview) -> None:
            raise FatalError("given up")

    server = RecordsRequests(big)
    async with serving(server) as base, api_client(base) as client:
        with pytest.raises(FatalError, match="given up"):
            await client.download(f"{base}/r.wav", GivesUp())
        sink = MemorySink()
        assert await client.download(f"{base}/r.wav", sink) == len(big)
    assert bytes(sink.data) == big
    assert server.connections == 2  # the rest of the first body was never read as an answer


@run_async
async def test_the_storage_transport_maps_a_refused_connection_to_a_retriable_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once the socket closes
    async with api_client(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(RetriableError, match="connection failed \\(ConnectError\\)") as failed:
            await client.download(f"http://127.0.0.1:{port}/r.wav?sig=secret", MemorySink())
    assert "secret" not in str(failed.value)
