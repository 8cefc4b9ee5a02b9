"""A lean asyncio network layer under httpx, for the CPU the archiver spends per request.

httpx's default transport reaches sockets through anyio. At the hundreds of requests a second a
backfill makes, that layer costs more CPU than the HTTP work itself: a cancel scope around every
read and write, and, before every request, a `poll()` system call plus a freshly built attribute
table for each idle connection in the pool (httpcore asks whether the server closed it). This module
plugs a plain asyncio backend into httpcore's documented `network_backend` hook: reads and writes
under `asyncio.timeout`, and an in-memory answer to "did the server close this idle connection?"
(the event loop has already delivered the close to the protocol by the time the pool asks).

`LeanTransport` is an `httpx.AsyncBaseTransport` over an `httpcore.AsyncConnectionPool` with that
backend. HTTP semantics (HTTP/1.1, keep-alive, pooling, TLS) stay httpcore's; only byte I/O changes.
"""

# httpcore's network backend interface is defined with `timeout` parameters.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

# Reading pauses when this much has arrived unread (httpcore reads 64 KiB at a time).
_HIGH_WATER = 1024 * 1024

# httpcore's get_extra_info names -> asyncio transport's.
_EXTRA_INFO = {
    "ssl_object": "ssl_object",
    "client_addr": "sockname",
    "server_addr": "peername",
    "socket": "socket",
}

_CORE_TO_HTTPX: dict[type[Exception], type[httpx.TransportError]] = {
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.ProxyError: httpx.ProxyError,
    # Bases last: a subclass above matches first.
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.ProtocolError: httpx.ProtocolError,
}


def proxy_configured() -> bool:
    """True when the environment names an HTTP(S) proxy: httpx's own transport handles those."""
    proxies = urllib.request.getproxies()
    return any(scheme in proxies for scheme in ("http", "https", "all"))


def lean_transport(limits: httpx.Limits, ssl_context: ssl.SSLContext) -> httpx.AsyncBaseTransport | None:
    """A `LeanTransport`, or None (httpx's default) when a proxy is configured in the environment:
    httpx applies environment proxies only to clients without a transport of their own."""
    if proxy_configured():
        return None
    return LeanTransport(limits, ssl_context=ssl_context)


class LeanTransport(httpx.AsyncBaseTransport):
    def __init__(self, limits: httpx.Limits, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=AsyncioBackend(),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            core_response = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_ResponseStream(core_response.stream),
            extensions=core_response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


@contextmanager
def _httpx_errors() -> Iterator[None]:
    """httpcore's exceptions as the httpx ones callers (and our retry policy) know."""
    try:
        yield
    except Exception as exc:
        for core_type, httpx_type in _CORE_TO_HTTPX.items():
            if isinstance(exc, core_type):
                raise httpx_type(str(exc)) from exc
        raise


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        local_addr = None if local_address is None else (local_address, 0)
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(
                    _StreamProtocol, host, port, local_addr=local_addr
                )
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return AsyncioStream(transport, protocol)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_unix_connection(_StreamProtocol, path)
        return AsyncioStream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class AsyncioStream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _StreamProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            async with asyncio.timeout(timeout):
                return await self._protocol.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
            self._protocol.raise_if_lost()
            self._transport.write(buffer)
            async with asyncio.timeout(timeout):
                await self._protocol.drained()

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):  # ssl.SSLError is an OSError
            try:
                async with asyncio.timeout(timeout):
                    tls = await loop.start_tls(
                        self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                    )
            except BaseException:
                self._transport.close()
                raise
        if not isinstance(tls, asyncio.Transport):  # None only when the loop is closing
            raise httpcore.ConnectError("TLS handshake interrupted")
        # From here the protocol's flow control goes through the TLS transport.
        self._protocol.connection_made(tls)
        return AsyncioStream(tls, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # httpcore asks this of idle connections only: anything readable there is the server
            # closing it (or talking out of turn), so the connection is not reused.
            return self._protocol.readable()
        name = _EXTRA_INFO.get(info)
        return None if name is None else self._transport.get_extra_info(name)


class _StreamProtocol(asyncio.Protocol):
    """Bytes received, waiting to be read; end of stream and errors as the loop reports them."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._eof = False
        self._error: BaseException | None = None
        self._reader: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._paused_reading = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > _HIGH_WATER and not self._paused_reading:
            self._paused_reading = True
            assert self._transport is not None
            self._transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._wake_reader()
        return None  # close our side too: httpcore never half-closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        if exc is not None:
            self._error = exc
        self._wake_reader()
        # A writer waiting to drain goes on; its next read reports the loss.
        self.resume_writing()

    def pause_writing(self) -> None:
        if self._drain is None:
            self._drain = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None

    async def read(self, max_bytes: int) -> bytes:
        while not self._buffer:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        if len(self._buffer) <= max_bytes:
            # The usual case: everything that has arrived fits, and nothing is shifted down.
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            data = bytes(self._buffer[:max_bytes])
            del self._buffer[:max_bytes]
        if self._paused_reading and len(self._buffer) <= _HIGH_WATER // 4:
            self._paused_reading = False
            assert self._transport is not None
            self._transport.resume_reading()
        return data

    async def drained(self) -> None:
        if self._drain is not None:
            await asyncio.shield(self._drain)

    def raise_if_lost(self) -> None:
        if self._error is not None:
            raise self._error
        if self._eof and self._transport is not None and self._transport.is_closing():
            raise ConnectionResetError("connection closed by the server")

    def readable(self) -> bool:
        return bool(self._buffer) or self._eof

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)


@contextmanager
def _mapped(timeout_as: type[Exception], error_as: type[Exception]) -> Iterator[None]:
    """asyncio's timeouts and socket errors as the httpcore exceptions its connections expect."""
    try:
        yield
    except TimeoutError as exc:  # before OSError, of which it is a subclass
        raise timeout_as(str(exc) or "timed out") from exc
    except OSError as exc:
        raise error_as(str(exc) or type(exc).__name__) from exc
