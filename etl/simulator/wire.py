"""A small HTTP/1.1 server on asyncio streams: just what a faithful, fast stand-in API needs.

Hand-written rather than `http.server` because benchmarks push thousands of requests per second over
many keep-alive connections, latency must cost an `asyncio.sleep` rather than a thread, and faults
need control of the raw connection (abort without a response, truncate a body mid-stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str  # as received: path and query
    path: str  # percent-decoded, without the query
    params: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    keep_alive: bool

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: AsyncIterable[bytes | memoryview] | None = None
    content_length: int | None = None  # with `stream`; None means chunked transfer encoding
    abort: bool = False  # reset the connection instead of answering
    abort_after_bytes: int | None = None  # send this much of the body, then reset
    close: bool = False


Handler = Callable[[Request], Awaitable[Response]]


class ConnectionObserver(Protocol):
    def opened(self) -> None: ...

    def closed(self) -> None: ...


class _HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


async def start(
    handler: Handler, sock: socket.socket, observer: ConnectionObserver, tls: ssl.SSLContext | None = None
) -> asyncio.Server:
    """Serve HTTP (HTTPS with `tls`) on an already bound and listening socket."""

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_connection(reader, writer, handler, observer)

    return await asyncio.start_server(on_connection, sock=sock, limit=MAX_HEAD_BYTES, ssl=tls)


async def _serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler, observer: ConnectionObserver
) -> None:
    observer.opened()
    sock = writer.get_extra_info("socket")
    if sock is not None:
        # Without this, Nagle's algorithm and the client's delayed ACK add ~40 ms to every response.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # Fewer drain() pauses when streaming large recordings; memory stays bounded by this limit.
    writer.transport.set_write_buffer_limits(high=1024 * 1024)
    try:
        while True:
            request = await _read_request(reader)
            if request is None:
                return
            response = await _handle(handler, request)
            if response.abort:
                writer.transport.abort()
                return
            keep_alive = request.keep_alive and not response.close
            if not await _write_response(writer, request, response, keep_alive) or not keep_alive:
                return
    except _HttpError as exc:
        with contextlib.suppress(ConnectionError):
            await _write_response(writer, None, Response(exc.status), keep_alive=False)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass  # the client went away; nothing to answer
    finally:
        observer.closed()
        writer.close()


async def _handle(handler: Handler, request: Request) -> Response:
    try:
        return await handler(request)
    except Exception:
        # A simulator bug must show up as a loud 500 (and a traceback on stderr), never as a hang.
        logger.exception("simulator handler failed for %s %s", request.method, request.path)
        return Response(
            500, [("Content-Type", "application/json")], b'{"detail": "simulator bug"}', close=True
        )


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise _HttpError(400) from exc
        return None  # clean end of a keep-alive connection
    except asyncio.LimitOverrunError as exc:
        raise _HttpError(431) from exc
    lines = head[:-4].decode("latin-1").lstrip("\r\n").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _HttpError(400)
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise _HttpError(400)
        name, value = name.lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    body = await _read_body(reader, headers)
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    if target.startswith(("http://", "https://")):
        target = urlsplit(target)._replace(scheme="", netloc="").geturl()  # absolute-form
    raw_path, _, query = target.partition("?")
    params = parse_qsl(query, keep_blank_values=True)
    return Request(method.upper(), target, unquote(raw_path), params, headers, body, keep_alive)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "transfer-encoding" in headers:
        raise _HttpError(411)  # no client of this API sends chunked request bodies
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit():
        raise _HttpError(400)
    length = int(length_text)
    if length > MAX_BODY_BYTES:
        raise _HttpError(413)
    return await reader.readexactly(length) if length else b""


def _head_bytes(response: Response, body_length: int | None, keep_alive: bool) -> bytes:
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {response.status} {reason}", "Server: ultravox-simulator"]
    lines += [f"{name}: {value}" for name, value in response.headers]
    if body_length is None:
        lines.append("Transfer-Encoding: chunked")
    else:
        lines.append(f"Content-Length: {body_length}")
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _write_response(
    writer: asyncio.StreamWriter, request: Request | None, response: Response, keep_alive: bool
) -> bool:
    """Write one response; False when the connection was reset on purpose mid-body."""
    with_body = request is None or request.method != "HEAD"
    if response.stream is None:
        head = _head_bytes(response, len(response.body), keep_alive)
        cut = response.abort_after_bytes
        writer.write(head + response.body[:cut] if with_body else head)
        await writer.drain()
        if with_body and cut is not None and cut < len(response.body):
            writer.transport.abort()
            return False
        return True
    writer.write(_head_bytes(response, response.content_length, keep_alive))
    if with_body:
        return await _write_stream(writer, response)
    await writer.drain()
    return True


async def _write_stream(writer: asyncio.StreamWriter, response: Response) -> bool:
    assert response.stream is not None
    chunked = response.content_length is None
    budget = response.abort_after_bytes
    async for chunk in response.stream:
        if budget is not None and len(chunk) >= budget:
            writer.write(chunk[:budget])
            await writer.drain()
            writer.transport.abort()
            return False
        if budget is not None:
            budget -= len(chunk)
        if chunked:
            writer.write(b"%x\r\n" % len(chunk))
            writer.write(chunk)
            writer.write(b"\r\n")
        else:
            writer.write(chunk)
        await writer.drain()
    if chunked:
        writer.write(b"0\r\n\r\n")
    await writer.drain()
    return True
