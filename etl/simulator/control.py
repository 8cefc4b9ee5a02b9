"""Control endpoints under /_sim on the API port: ground truth, stats, fault switches, advance.

No API key: these exist for tests and the demo, and are never what the archiver talks to.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from etl.simulator import responses
from etl.simulator.account import US_PER_S, CallRecord
from etl.simulator.faults import ConfigError, FaultConfig
from etl.simulator.paging import BadRequest
from etl.simulator.state import Account
from etl.simulator.stats import Stats
from etl.simulator.wire import Request, Response

TRUTH_BATCH = 256


class ControlOrigin:
    def __init__(
        self, account: Account, config: FaultConfig, stats: Stats, clock: Callable[[], float] = time.time
    ) -> None:
        self.account, self.config, self.stats, self.clock = account, config, stats, clock

    async def handle(self, request: Request) -> Response:
        route = (request.method, request.path.rstrip("/"))
        try:
            if route == ("GET", "/_sim/truth"):
                return self.truth(with_messages=request.param("messages") not in ("0", "false"))
            if route == ("GET", "/_sim/stats"):
                return responses.json_response(200, self.stats.snapshot())
            if route == ("POST", "/_sim/reset-stats"):
                self.stats.reset()
                return responses.json_response(200, {"ok": True})
            if route in (("GET", "/_sim/config"), ("POST", "/_sim/config")):
                if request.method == "POST":
                    self.config.apply(_json_object(request))
                return responses.json_response(200, self.config.to_json())
            if route == ("POST", "/_sim/advance"):
                now_us = int(self.clock() * US_PER_S)
                return responses.json_response(200, self.account.advance(_json_object(request), now_us))
            if route == ("GET", "/_sim/health"):
                return responses.json_response(200, {"ok": True, "calls": len(self.account.live)})
        except (BadRequest, ConfigError) as exc:
            return responses.detail(400, str(exc))
        return responses.detail(404, "Not found.")

    def truth(self, *, with_messages: bool) -> Response:
        """NDJSON, one line per call ever created (deleted ones flagged), in list order."""
        records = self.account.all_records()

        async def lines() -> AsyncIterator[bytes]:
            for start in range(0, len(records), TRUTH_BATCH):
                # Hashing recordings (up to GiBs) happens off the event loop so /api stays responsive.
                batch = records[start : start + TRUTH_BATCH]
                yield await asyncio.to_thread(self._render, batch, with_messages)

        return Response(200, [("Content-Type", "application/x-ndjson")], stream=lines())

    def _render(self, batch: list[CallRecord], with_messages: bool) -> bytes:
        lines = (self.account.truth_line(record, with_messages=with_messages) for record in batch)
        return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()


def _json_object(request: Request) -> dict[str, Any]:
    try:
        payload = json.loads(request.body or b"{}")
    except ValueError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise BadRequest("body must be a JSON object")
    return payload
