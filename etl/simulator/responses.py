"""Response builders shared by the API and storage origins, including injected faults."""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import random
import zlib
from collections.abc import AsyncIterator, Iterable
from email.utils import formatdate
from typing import Any

from etl.simulator.account import CallRecord
from etl.simulator.audio import wav_chunks
from etl.simulator.faults import Rule
from etl.simulator.stats import Stats
from etl.simulator.wire import Response

JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"
# What a load balancer or a captive portal sends instead of JSON.
NOT_JSON_BODY = (
    b"<!DOCTYPE html><html><head><title>Maintenance</title></head><body><h1>Be right back</h1></body></html>"
)


def json_response(status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return Response(status, [("Content-Type", JSON_TYPE), *headers], body)


def raw_json(status: int, text: str) -> Response:
    return Response(status, [("Content-Type", JSON_TYPE)], text.encode())


def detail(status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return json_response(status, {"detail": text}, headers)


def xml_error(status: int, code: str, message: str) -> Response:
    body = f"<?xml version='1.0' encoding='UTF-8'?>\n<Error><Code>{code}</Code><Message>{message}</Message>"
    body += "</Error>"
    return Response(status, [("Content-Type", "application/xml")], body.encode())


def not_json() -> Response:
    return Response(200, [("Content-Type", HTML_TYPE)], NOT_JSON_BODY)


def reset() -> Response:
    return Response(0, abort=True)


async def rule_response(
    rule: Rule, link_base: str = "http://127.0.0.1", target: str = "/"
) -> Response | None:
    """The answer a matched rule forces; None for `delay`, which only slows the normal answer.
    `link_base` (scheme and host) and `target` (path and query) make the links of `*_next` answers."""
    if rule.action == "delay":
        await asyncio.sleep(rule.delay_ms / 1000)
        return None
    if rule.action == "reset":
        return reset()
    if rule.action == "not_json":
        return not_json()
    if rule.action in _BAD_INPUT:
        return _BAD_INPUT[rule.action](rule, link_base, target)
    headers = [("Retry-After", "1")] if rule.status in (429, 503) else []
    return detail(rule.status, "Injected fault.", headers)


def throttled(retry_after: str, now: float) -> Response:
    """An injected 429 carrying `retry_after` as FaultConfig.retry_after describes it."""
    headers = [("Date", formatdate(now, usegmt=True))]
    if retry_after.startswith(("date+", "date-")):
        offset = float(retry_after[4:])
        headers.append(("Retry-After", formatdate(now + offset, usegmt=True)))
    elif retry_after != "none":
        headers.append(("Retry-After", retry_after))
    return detail(429, "Request was throttled.", headers)


# -- bad input: answers no real page should be, each of which must cost one day or one call ----------

_DEPTH = 100_000  # far past the interpreter's recursion limit (1,000) and any decoder's


def _deep_json(rule: Rule, link_base: str, target: str) -> Response:
    body = b'{"next":null,"previous":null,"results":[' + b"[" * _DEPTH + b"]" * _DEPTH + b"]}"
    return Response(200, [("Content-Type", JSON_TYPE)], body)


def _huge_json(rule: Rule, link_base: str, target: str) -> Response:
    head, tail = b'{"next":null,"previous":null,"results":[],"padding":"', b'"}'
    filler = max(0, rule.bytes - len(head) - len(tail))
    return Response(200, [("Content-Type", JSON_TYPE)], head + b"x" * filler + tail)


@functools.lru_cache(maxsize=4)
def _bomb(size: int) -> bytes:
    # JSON whitespace compresses about 1000:1; built once per size, in 1 MiB steps.
    out = gzip.compress(b"", mtime=0)[:10]  # the gzip header only
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    step = b" " * (1024 * 1024)
    parts = [out]
    left = size
    crc = 0
    while left > 0:
        chunk = step if left >= len(step) else step[:left]
        parts.append(packer.compress(chunk))
        crc = zlib.crc32(chunk, crc)
        left -= len(chunk)
    parts.append(packer.flush())
    parts.append(crc.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little"))
    return b"".join(parts)


def _gzip_bomb(rule: Rule, link_base: str, target: str) -> Response:
    headers = [("Content-Type", JSON_TYPE), ("Content-Encoding", "gzip")]
    return Response(200, headers, _bomb(rule.bytes))


def _endless_next(rule: Rule, link_base: str, target: str) -> Response:
    # A fresh link each time (the rule's hit count in it), so only a cap on pages can stop a client.
    separator = "&" if "?" in target else "?"
    link = f"{link_base}{target.split('&endless=')[0]}{separator}endless={rule.hits}"
    return json_response(200, {"next": link, "previous": None, "results": [], "total": 0})


def _bad_next(rule: Rule, link_base: str, target: str) -> Response:
    link = f"{link_base}{target.split('?')[0]}?cursor=a\x01b"
    return json_response(200, {"next": link, "previous": None, "results": [], "total": 0})


def _trickle(rule: Rule, link_base: str, target: str) -> Response:
    async def slowly() -> AsyncIterator[bytes | memoryview]:
        for start in range(0, rule.bytes, 512):
            await asyncio.sleep(0.25)
            yield bytes(min(512, rule.bytes - start))

    return Response(200, [("Content-Type", "audio/wav")], stream=slowly(), content_length=rule.bytes)


_BAD_INPUT = {
    "deep_json": _deep_json,
    "huge_json": _huge_json,
    "gzip_bomb": _gzip_bomb,
    "endless_next": _endless_next,
    "bad_next": _bad_next,
    "trickle": _trickle,
}


def gzipped(response: Response) -> Response:
    """`response` with its body gzip-encoded, as a server or proxy that compresses JSON sends it."""
    headers = [*response.headers, ("Content-Encoding", "gzip")]
    return Response(response.status, headers, gzip.compress(response.body, compresslevel=1, mtime=0))


def server_error(rng: random.Random) -> Response:
    status = rng.choice((500, 502, 503))
    if status == 500:
        return detail(500, "A server error occurred.")
    # Gateways in front of the API answer with HTML, not JSON.
    body = f"<html><body><h1>{status}</h1>upstream unavailable</body></html>".encode()
    headers = [("Content-Type", HTML_TYPE)] + ([("Retry-After", "1")] if status == 503 else [])
    return Response(status, headers, body)


def audio_response(
    record: CallRecord, stats: Stats, abort_after_bytes: int | None = None, *, chunked: bool = False
) -> Response:
    """The recording's WAV bytes; `chunked`: with no Content-Length (chunked transfer encoding), as a
    storage host or proxy that streams without knowing the length sends it."""

    async def chunks() -> AsyncIterator[bytes | memoryview]:
        stats.recording_started()
        try:
            for chunk in wav_chunks(record.seed, record.recording_bytes, record.wav):
                yield chunk
        finally:
            stats.recording_finished()

    return Response(
        200,
        [("Content-Type", "audio/wav")],
        stream=chunks(),
        content_length=None if chunked else record.recording_bytes,
        abort_after_bytes=abort_after_bytes,
    )
