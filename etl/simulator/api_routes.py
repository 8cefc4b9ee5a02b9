"""The API origin: everything under /api, behind the API key, rate limit, latency and faults."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from etl.simulator import responses
from etl.simulator.account import CallRecord, fraction
from etl.simulator.faults import TokenBucket
from etl.simulator.origin import Origin
from etl.simulator.paging import (
    BadRequest,
    Cursor,
    decode_cursor,
    encode_cursor,
    keyset_page,
    page_size,
    page_url,
    parse_date_filter,
)
from etl.simulator.state import transcript
from etl.simulator.wire import Request, Response

CALLS_PAGE_SIZE = 100
MESSAGES_PAGE_SIZE = 20

_NOT_FOUND = "Not found."
# Where an `unsafe_redirect_rate` recording redirect points: the cloud metadata service.
UNSAFE_LOCATION = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"


class _NotFound(Exception):
    """No live call with the id in the path: every handler answers it with the same 404."""


@dataclass(frozen=True)
class _Route:
    pattern: re.Pattern[str]
    kind: str  # the stats bucket
    handler: str  # name of the ApiOrigin method


def _route(pattern: str, kind: str, handler: str) -> _Route:
    return _Route(re.compile(pattern), kind, handler)


_CALL = r"/api/calls/(?P<call_id>[^/]+)"
_ROUTES = (
    _route(r"/api/calls/?", "list_calls", "list_calls"),
    _route(_CALL + r"/?", "call", "get_call"),
    _route(_CALL + r"/messages/?", "messages", "messages"),
    _route(_CALL + r"/recording/?", "recording", "recording"),
    _route(_CALL + r"/stages/?", "stages", "stages"),
    _route(_CALL + r"/stages/(?P<stage_id>[^/]+)/?", "stages", "stages"),
    _route(_CALL + r"/stages/(?P<stage_id>[^/]+)/messages/?", "messages", "messages"),
    _route(r"/api/deleted_calls/?", "deleted_calls", "deleted_calls"),
    _route(r"/api/deleted_calls/(?P<call_id>[^/]+)/?", "deleted_calls", "deleted_call"),
)


@dataclass(eq=False, kw_only=True)
class ApiOrigin(Origin):
    page_size_max: int
    bucket: TokenBucket = field(init=False, repr=False)

    rng_label = "api-faults"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.bucket = TokenBucket(self.config.rate_limit_rps)

    async def handle(self, request: Request) -> Response:
        route, groups = _match(request.path)
        self.stats.requests[route.kind if route else "other"] += 1
        return await self._counted(
            self._encoded(request, self._answer(request, route, groups)), self.stats.responses
        )

    async def _encoded(self, request: Request, answer: Awaitable[Response]) -> Response:
        response = await answer
        rate = self.config.gzip_rate
        if (
            rate > 0
            and response.body
            and response.stream is None
            and "gzip" in request.headers.get("accept-encoding", "")
            and not any(name.lower() == "content-encoding" for name, _ in response.headers)
            and self.roll("gzip", request.target) < rate
        ):
            return responses.gzipped(response)
        return response

    async def _answer(self, request: Request, route: _Route | None, groups: dict[str, str]) -> Response:
        delay_ms = self.config.latency_ms + self.rng.uniform(0, self.config.latency_jitter_ms)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        key = request.headers.get("x-api-key")
        if key != self.api_key:
            self.stats.api_requests_without_valid_key += 1
            if key is None:
                return responses.detail(401, "Authentication credentials were not provided.")
            return responses.detail(403, "Invalid API key.")
        if self.bucket.rate != self.config.rate_limit_rps:
            self.bucket = TokenBucket(self.config.rate_limit_rps)
        if not self.bucket.allow():
            self.stats.rate_limited += 1
            return responses.detail(429, "Request was throttled.", [("Retry-After", "1")])
        throttled = self._injected_throttle()
        if throttled is not None:
            return throttled
        fault = await self._injected_fault(
            request.target,
            reset_rate=self.config.reset_rate,
            error_rate=self.config.error_rate_5xx,
            error=lambda: responses.server_error(self.rng),
            link_base=f"http://{request.headers.get('host', '127.0.0.1')}",
        )
        if fault is not None:
            return fault
        if route is None:
            return responses.detail(404, _NOT_FOUND)
        if request.method not in ("GET", "HEAD"):
            return responses.detail(405, f'Method "{request.method}" not allowed.')
        handler: Callable[..., Awaitable[Response]] = getattr(self, route.handler)
        try:
            return self._maybe_cut(await handler(request, **groups))
        except BadRequest as exc:
            return responses.detail(400, str(exc))
        except _NotFound:
            return responses.detail(404, _NOT_FOUND)

    # Both rolls happen only when their switch is on, so turning one on leaves the other faults of a
    # seed where they were.
    def _injected_throttle(self) -> Response | None:
        rate = self.config.throttle_rate
        if rate <= 0 or self.rng.random() >= rate:
            return None
        self.stats.rate_limited += 1
        return responses.throttled(self.rng.choice(self.config.retry_after), self.clock())

    def _maybe_cut(self, response: Response) -> Response:
        rate = self.config.cut_after_headers_rate
        if rate <= 0 or not response.body or self.rng.random() >= rate:
            return response
        self.stats.cut_bodies += 1
        return dataclasses.replace(response, abort_after_bytes=0)

    # -- calls ---------------------------------------------------------------------------------------
    async def list_calls(self, request: Request) -> Response:
        return self._keyset_list(request, deleted=False)

    async def deleted_calls(self, request: Request) -> Response:
        return self._keyset_list(request, deleted=True)

    async def get_call(self, request: Request, call_id: str) -> Response:
        record = self._live_call(call_id)
        return responses.raw_json(200, self.account.call_json(record))

    async def deleted_call(self, request: Request, call_id: str) -> Response:
        record = self.account.find_any(call_id)
        if record is None or self.account.find(call_id) is not None:
            return responses.detail(404, _NOT_FOUND)
        return responses.json_response(200, self.account.tombstone(record))

    def _live_call(self, call_id: str) -> CallRecord:
        record = self.account.find(call_id)
        if record is None:
            raise _NotFound(call_id)
        return record

    def _keyset_list(self, request: Request, *, deleted: bool) -> Response:
        from_text, to_text = request.param("fromDate"), request.param("toDate")
        offset = self.config.naive_date_offset_h
        from_us = (
            parse_date_filter("fromDate", from_text, end_of_day=False, naive_offset_h=offset)
            if from_text
            else None
        )
        to_us = (
            parse_date_filter("toDate", to_text, end_of_day=True, naive_offset_h=offset) if to_text else None
        )
        kind = "deleted_calls" if deleted else "calls"
        cursor = _cursor(request, kind)
        if cursor is not None and cursor.key is None:
            raise BadRequest("Invalid cursor")
        items = self.account.deleted if deleted else self.account.live
        lo, hi = self.account.window(from_us, to_us, deleted=deleted)
        size = self._short(request, page_size(request.param("pageSize"), CALLS_PAGE_SIZE, self.page_size_max))
        start, stop = keyset_page(items, lambda record: record.key, lo, hi, cursor, size)
        after = Cursor(kind, key=items[stop - 1].key) if stop < hi and stop > start else None
        before = None
        if start > lo:
            # "Everything before the first row of this page"; an empty page past the end uses a key
            # just after the last call.
            first = items[start].key if start < len(items) else (items[-1].created_us + 1, "")
            before = Cursor(kind, key=first, reverse=True)
        if deleted:
            parts = [
                json.dumps(self.account.tombstone(record), ensure_ascii=False) for record in items[start:stop]
            ]
        else:
            listed = items[start:stop]
            if start > lo and self.roll("duplicate", request.target) < self.config.duplicate_listing_rate:
                # As when a call shifts between two page requests: the previous page's last call again.
                listed = [items[start - 1], *listed]
                self.stats.injected_errors += 1
            parts = [self._listed_call_json(record) for record in listed]
        # Calls are cached as JSON text: a page is a join, not a re-serialisation of 100 objects.
        links = json.dumps(self._link(request, after)), json.dumps(self._link(request, before))
        body = f'{{"next":{links[0]},"previous":{links[1]},"results":[{",".join(parts)}],"total":{hi - lo}}}'
        return responses.raw_json(200, body)

    def _listed_call_json(self, record: CallRecord) -> str:
        if record.call_id not in self.config.strip_call_id:
            return self.account.call_json(record)
        call = dict(self.account.call_object(record))
        del call["callId"]
        return json.dumps(call, ensure_ascii=False)

    def _link(self, request: Request, cursor: Cursor | None) -> str | None:
        if cursor is None:
            return None
        host, params = request.headers.get("host", "127.0.0.1"), request.params
        if self.roll("shuffle", request.target) < self.config.next_query_shuffle_rate:
            # The query back in another order, with a parameter the client never sent: a cursor
            # link is opaque, to be followed as given.
            params = [*reversed([p for p in params if p[0] != "format"]), ("format", "json")]
        return page_url(host, request.path, params, encode_cursor(cursor))

    def _short(self, request: Request, size: int) -> int:
        """A page size far below the one asked for, on some pages (short_page_rate)."""
        roll = self.roll("short", request.target)
        if roll < self.config.short_page_rate:
            return max(1, int(size * roll / max(self.config.short_page_rate, 1e-9) / 10))
        return size

    # -- transcripts ---------------------------------------------------------------------------------
    async def messages(self, request: Request, call_id: str, stage_id: str | None = None) -> Response:
        record = self._live_call(call_id)
        calls_transcript = transcript(record)
        if stage_id is not None:
            found = calls_transcript.stage_messages(stage_id)
            if found is None:
                return responses.detail(404, _NOT_FOUND)
            return self._offset_list(request, "messages", found, MESSAGES_PAGE_SIZE)
        mode = request.param("mode") or "last_stage"
        if mode not in ("last_stage", "in_call"):
            raise BadRequest(f'mode: "{mode}" is not a valid choice.')
        chosen = calls_transcript.last_stage() if mode == "last_stage" else calls_transcript.messages
        return self._offset_list(request, "messages", chosen, MESSAGES_PAGE_SIZE)

    async def stages(self, request: Request, call_id: str, stage_id: str | None = None) -> Response:
        record = self._live_call(call_id)
        stages = transcript(record).stages
        if stage_id is None:
            return self._offset_list(request, "stages", stages, MESSAGES_PAGE_SIZE)
        for stage in stages:
            if stage["callStageId"] == stage_id:
                return responses.json_response(200, stage)
        return responses.detail(404, _NOT_FOUND)

    def _offset_list(
        self, request: Request, kind: str, items: Sequence[dict[str, Any]], default: int
    ) -> Response:
        # Transcripts never change once generated, so an offset inside the cursor is stable.
        cursor = _cursor(request, kind)
        if cursor is not None and cursor.key is not None:
            raise BadRequest("Invalid cursor")
        size = page_size(request.param("pageSize"), min(default, self.page_size_max), self.page_size_max)
        size = self._short(request, size)
        start = min(cursor.offset if cursor else 0, len(items))
        stop = min(len(items), start + size)
        after = Cursor(kind, offset=stop) if stop < len(items) else None
        before = Cursor(kind, offset=max(0, start - size)) if start > 0 else None
        payload = {
            "next": self._link(request, after),
            "previous": self._link(request, before),
            "results": list(items[start:stop]),
            "total": len(items),
        }
        return responses.json_response(200, payload)

    # -- recordings ----------------------------------------------------------------------------------
    async def recording(self, request: Request, call_id: str) -> Response:
        record = self._live_call(call_id)
        status = self.account.poll_recording(record)
        if status == "not_enabled":
            return self._not_enabled(record)
        if status == "processing":
            if self._broken(record):
                return responses.detail(self.config.broken_recording_status, "Recording unavailable.")
            return responses.detail(425, "Recording not yet available.")
        if fraction(record.call_id, "unsafe-redirect") < self.config.unsafe_redirect_rate:
            return Response(302, [("Location", UNSAFE_LOCATION)])
        if record.delivery == "direct":
            chunked = fraction(record.call_id, "chunked") < self.config.chunked_audio_rate
            return responses.audio_response(record, self.stats, chunked=chunked)
        born_expired = self.account.issue_signed_url(record, self.config.expired_url_rate)
        now = int(self.clock())
        expires = now - 60 if born_expired else int(now + self.config.signed_url_ttl_s)
        self.stats.signed_urls_issued += 1
        return Response(302, [("Location", self.signer.url(record.call_id, expires))])

    def _not_enabled(self, record: CallRecord) -> Response:
        if not self.config.not_enabled_wordings:
            # 400: the request can never succeed for this call, unlike 425; 404 would read as "no call".
            return responses.detail(400, "Recording is not enabled for this call.")
        picked = _NOT_ENABLED_ANSWERS[
            int(fraction(record.call_id, "not-enabled") * len(_NOT_ENABLED_ANSWERS))
        ]
        return responses.detail(*picked)

    def _broken(self, record: CallRecord) -> bool:
        return (
            record.processing_polls is None
            and self.account.is_ended(record)
            and fraction(record.call_id, "broken-recording") < self.config.broken_recording_rate
        )


# What the API documents for "recording not enabled" is only "an error status with a JSON detail".
_NOT_ENABLED_ANSWERS = (
    (400, "Recording is not enabled for this call."),
    (404, "Not found."),
    (409, "This call has no recording."),
    (410, "Recording disabled."),
    (422, "Call recording was turned off for this call."),
    (400, "Recording unavailable: RECORDING_DISABLED"),
)


def _match(path: str) -> tuple[_Route | None, dict[str, str]]:
    for route in _ROUTES:
        found = route.pattern.fullmatch(path)
        if found:
            return route, found.groupdict()
    return None, {}


def _cursor(request: Request, kind: str) -> Cursor | None:
    text = request.param("cursor")
    return decode_cursor(text, kind) if text else None
