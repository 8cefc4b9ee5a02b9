"""The transport under the synchronous clients (the storage host's, and the recording endpoint's):
httpx's interface over urllib3's connection pool.

Audio is nearly every byte the archiver moves. httpx's own transport reads a body 64 KiB at a time and
copies each read through h11's buffer in Python; urllib3 (installed anyway, with botocore) reads 1 MiB
at a time from the socket's buffered reader. On the realistic-audio benchmark that is the difference
between ~2.0 and ~1.2 CPU-seconds per GiB read and hashed. The storage client keeps everything else
of httpx (redirects, timeouts, status handling, its exceptions), since this only turns one request
into one urllib3 `urlopen` and maps urllib3's exceptions onto httpx's.

Only those clients use it, and only for direct connections: httpx applies proxies named in the
environment to its own transports alone, so with a proxy configured they keep httpx's transport
(`direct_sync_transport` returns None).
"""

from __future__ import annotations

import ssl
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

# Up to one MiB per read: big enough that Python's work per chunk vanishes beside the bytes, small
# enough to stay in the CPU cache between the read, the hash and the copy into the recording's buffer.
READ_BYTES = 1024 * 1024


def direct_sync_transport(tls: ssl.SSLContext, max_connections: int) -> httpx.BaseTransport | None:
    """The urllib3 transport, or None (httpx's own) when the environment names a proxy."""
    if urllib.request.getproxies():
        return None
    return Urllib3Transport(tls, max_connections)


class Urllib3Transport(httpx.BaseTransport):
    def __init__(self, tls: ssl.SSLContext, max_connections: int) -> None:
        self._tls = tls
        self._max_connections = max_connections
        # One pool per storage origin, closed by `close` (urllib3's PoolManager leaves its pools'
        # connections open until garbage collection).
        self._pools: dict[tuple[str, str, int | None], urllib3.HTTPConnectionPool] = {}
        self._lock = threading.Lock()

    def _pool_for(self, url: httpx.URL) -> urllib3.HTTPConnectionPool:
        origin = (url.scheme, url.host, url.port)
        with self._lock:
            pool = self._pools.get(origin)
            if pool is None:
                tls = {"ssl_context": self._tls} if url.scheme == "https" else {}
                pool = urllib3.connection_from_url(
                    str(url.copy_with(path="/", query=None, fragment=None)),
                    maxsize=self._max_connections,
                    block=False,
                    retries=False,
                    **tls,
                )
                self._pools[origin] = pool
            return pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        headers = urllib3.HTTPHeaderDict()
        for name, value in request.headers.multi_items():
            headers.add(name, value)
        body = request.read()
        with mapped_errors(request):
            # The path and query exactly as httpx encoded them: a signed URL must not be re-encoded.
            answer = self._pool_for(request.url).urlopen(
                request.method,
                request.url.raw_path.decode("ascii"),
                body=body or None,
                headers=headers,
                redirect=False,  # httpx follows redirects itself, above the transport
                retries=False,  # and the archiver retries whole downloads
                preload_content=False,
                decode_content=False,  # httpx decodes by Content-Encoding as the body is read
                timeout=urllib3.Timeout(connect=timeouts.get("connect"), read=timeouts.get("read")),
                assert_same_host=False,
            )
        return httpx.Response(
            status_code=answer.status,
            headers=list(answer.headers.items()),
            stream=_Body(answer, request),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (answer.reason or "").encode()},
        )

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


class _Body(httpx.SyncByteStream):
    def __init__(self, answer: urllib3.BaseHTTPResponse, request: httpx.Request) -> None:
        self._answer = answer
        self._request = request
        self._read_whole = False

    def __iter__(self) -> Iterator[bytes]:
        with mapped_errors(self._request):
            # read1: what one read from the socket brings, up to READ_BYTES; `stream` would wait for
            # all of READ_BYTES, so a body trickling in would reach the rate guard only at the end.
            while chunk := self._answer.read1(READ_BYTES, decode_content=False):
                yield chunk
        self._read_whole = True

    def close(self) -> None:
        if not self._read_whole:
            # The rest of the body is still on the wire: the connection cannot serve another request.
            self._answer.close()
        self._answer.release_conn()


@contextmanager
def mapped_errors(request: httpx.Request) -> Iterator[None]:
    """urllib3's exceptions as the httpx ones they stand for. The messages are urllib3's own, which
    name the host but never the signed query."""
    try:
        yield
    except (NewConnectionError, SSLError) as exc:
        # Before ConnectTimeoutError: urllib3 derives NewConnectionError (refused, unresolvable)
        # from it.
        raise httpx.ConnectError(str(exc), request=request) from exc
    except ConnectTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc), request=request) from exc
    except ReadTimeoutError as exc:
        raise httpx.ReadTimeout(str(exc), request=request) from exc
    except ProtocolError as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request) from exc
