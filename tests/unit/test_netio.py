"""The lean asyncio transport under httpx: real sockets on loopback, plain and TLS."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

from etl.netio import LeanTransport, lean_transport

DATA = Path(__file__).resolve().parent.parent / "data"
CERT = DATA / "localhost-cert.pem"  # self-signed for localhost / 127.0.0.1, valid until 2126
KEY = DATA / "localhost-key.pem"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def run_async(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

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
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    return head


def answer(body: bytes, *, close: bool = False) -> bytes:
    headers = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n"
    if close:
        headers += "Connection: close\r\n"
    return headers.encode() + b"\r\n" + body


def client(*, verify: ssl.SSLContext | None = None, timeout: float = 5.0) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    return httpx.AsyncClient(transport=LeanTransport(limits, ssl_context=verify), timeout=timeout)


async def keep_alive_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while (head := await read_request(reader)) is not None:
        path = head.split(b" ")[1]
        writer.write(answer(b"you asked for " + path))
        await writer.drain()
    writer.close()


@run_async
async def test_requests_share_one_kept_alive_connection() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await keep_alive_server(reader, writer)

    async with serving(handler) as base, client() as http:
        for n in range(5):
            response = await http.get(f"{base}/page/{n}")
            assert response.status_code == 200
            assert response.text == f"you asked for /page/{n}"
    assert connections == 1


@run_async
async def test_tls_with_the_context_given() -> None:
    trusted = ssl.create_default_context(cafile=str(CERT))
    async with serving(keep_alive_server, tls=True) as base, client(verify=trusted) as http:
        first = await http.get(f"{base}/secure")
        second = await http.get(f"{base}/again")
    assert (first.text, second.text) == ("you asked for /secure", "you asked for /again")


@run_async
async def test_tls_refuses_an_untrusted_certificate() -> None:
    async with serving(keep_alive_server, tls=True) as base, client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{base}/secure")


@run_async
async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    connections = 0

    async def one_answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        # No "Connection: close": the client believes the connection is reusable.
        writer.write(answer(b"once"))
        await writer.drain()
        writer.close()

    async with serving(one_answer_then_close) as base, client() as http:
        for _ in range(3):
            assert (await http.get(f"{base}/")).text == "once"
            await asyncio.sleep(0.05)  # the close reaches the client while the connection is idle
    assert connections == 3


@run_async
async def test_a_large_body_streams_intact_through_flow_control() -> None:
    body = bytes(range(256)) * (48 * 1024)  # 12 MiB: well past the read buffer's high-water mark

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(body))
        await writer.drain()
        writer.close()

    digest = hashlib.sha256()
    async with serving(big) as base, client() as http, http.stream("GET", f"{base}/audio") as response:
        async for chunk in response.aiter_bytes():
            digest.update(chunk)
            await asyncio.sleep(0)  # a slow consumer, so reading must pause and resume
    assert digest.hexdigest() == hashlib.sha256(body).hexdigest()


@run_async
async def test_a_large_request_body_is_written_whole() -> None:
    payload = b"x" * (8 * 1024 * 1024)
    received = 0

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        head = await read_request(reader)
        assert head is not None
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        received = len(await reader.readexactly(length))
        writer.write(answer(b"ok", close=True))
        await writer.drain()
        writer.close()

    async with serving(sink) as base, client() as http:
        response = await http.put(f"{base}/upload", content=payload)
    assert response.text == "ok"
    assert received == len(payload)


@run_async
async def test_a_silent_server_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)
        writer.close()

    async with serving(silent) as base, client(timeout=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(f"{base}/")


@run_async
async def test_a_reset_mid_body_is_a_transport_error() -> None:
    async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly a little")
        await writer.drain()
        writer.close()

    async with serving(truncated) as base, client() as http:
        with pytest.raises(httpx.TransportError):
            await http.get(f"{base}/")


@run_async
async def test_nobody_listening_is_a_connect_error() -> None:
    server = await asyncio.start_server(keep_alive_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/")


def test_a_proxy_in_the_environment_leaves_the_transport_to_httpx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limits = httpx.Limits(max_connections=2)
    tls = ssl.create_default_context()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(lean_transport(limits, tls), LeanTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert lean_transport(limits, tls) is None
