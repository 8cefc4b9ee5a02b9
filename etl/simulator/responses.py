"""Response builders shared by the API and storage origins, including injected faults."""

from __future__ import annotations

import asyncio
import json
import random
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


async def rule_response(rule: Rule) -> Response | None:
    """The answer a matched rule forces; None for `delay`, which only slows the normal answer."""
    if rule.action == "delay":
        await asyncio.sleep(rule.delay_ms / 1000)
        return None
    if rule.action == "reset":
        return reset()
    if rule.action == "not_json":
        return not_json()
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


def server_error(rng: random.Random) -> Response:
    status = rng.choice((500, 502, 503))
    if status == 500:
        return detail(500, "A server error occurred.")
    # Gateways in front of the API answer with HTML, not JSON.
    body = f"<html><body><h1>{status}</h1>upstream unavailable</body></html>".encode()
    headers = [("Content-Type", HTML_TYPE)] + ([("Retry-After", "1")] if status == 503 else [])
    return Response(status, headers, body)


def audio_response(record: CallRecord, stats: Stats, abort_after_bytes: int | None = None) -> Response:
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
        content_length=record.recording_bytes,
        abort_after_bytes=abort_after_bytes,
    )
