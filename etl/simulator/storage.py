"""The storage origin: signed recording URLs on a host that is not the API.

It records every header it receives, because the archiver must never send the API key (or anything
else Ultravox-specific) to the host a redirect points at.
"""

from __future__ import annotations

import re

from etl.simulator import responses
from etl.simulator.account import fraction
from etl.simulator.origin import Origin
from etl.simulator.wire import Request, Response

_RECORDING_PATH = re.compile(r"/recordings/(?P<call_id>[^/]+)\.wav")


class StorageOrigin(Origin):
    rng_label = "storage-faults"

    async def handle(self, request: Request) -> Response:
        self.stats.requests["storage"] += 1
        self._inspect(request)
        return await self._counted(self._answer(request), self.stats.storage_responses)

    def _inspect(self, request: Request) -> None:
        self.stats.storage_header_names.update(request.headers)
        leaked = self.api_key in request.target or any(
            self.api_key in value for value in request.headers.values()
        )
        if leaked:
            self.stats.storage_requests_with_api_key += 1

    async def _answer(self, request: Request) -> Response:
        fault = await self._injected_fault(
            request.target,
            reset_rate=self.config.storage_reset_rate,
            error_rate=self.config.storage_error_rate,
            error=lambda: responses.xml_error(
                500, "InternalError", "We encountered an internal error. Please try again."
            ),
        )
        if fault is not None:
            return fault
        found = _RECORDING_PATH.fullmatch(request.path)
        if found is None:
            return responses.xml_error(404, "NoSuchKey", "The specified key does not exist.")
        if request.method not in ("GET", "HEAD"):
            return responses.xml_error(405, "MethodNotAllowed", "The specified method is not allowed.")
        expires, signature = request.param("expires"), request.param("signature")
        if not expires or not signature:
            return responses.xml_error(
                403, "AccessDenied", "Query-string authentication requires a signature"
            )
        if not self.signer.verify(request.path, expires, signature):
            return responses.xml_error(403, "SignatureDoesNotMatch", "The request signature does not match")
        if not expires.isdigit() or int(expires) < self.clock():
            return responses.xml_error(403, "AccessDenied", "Request has expired")
        record = self.account.find_any(found["call_id"])
        if record is None:
            return responses.xml_error(404, "NoSuchKey", "The specified key does not exist.")
        truncate = self.rng.random() < self.config.storage_truncate_rate
        cut_rate = self.config.storage_cut_after_headers_rate
        # Rolled only when on, so the other faults of a seed stay where they were.
        if cut_rate > 0 and self.rng.random() < cut_rate:
            self.stats.cut_bodies += 1
            return responses.audio_response(record, self.stats, 0)
        chunked = fraction(record.call_id, "chunked") < self.config.chunked_audio_rate
        cut_at = record.recording_bytes // 2 if truncate else None
        return responses.audio_response(record, self.stats, cut_at, chunked=chunked)
