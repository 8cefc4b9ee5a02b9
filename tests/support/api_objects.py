"""API objects and answers as the Ultravox API shapes them, for tests over httpx.MockTransport."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx

from etl.api.client import ClientOptions
from etl.secrets import Secret


def listed_call(call_id: str, created: datetime, **fields: Any) -> dict[str, Any]:
    """A call as `GET /api/calls` lists it: ended three minutes after it was created, recording
    off unless `fields` say otherwise."""
    return {
        "callId": call_id,
        "created": created.isoformat().replace("+00:00", "Z"),
        "joined": (created + timedelta(seconds=2)).isoformat(),
        "ended": (created + timedelta(minutes=3)).isoformat(),
        "endReason": "hangup",
        "recordingEnabled": False,
        "medium": {"webRtc": {}},
        **fields,
    }


def last_page(results: list[Any]) -> httpx.Response:
    """A listing's only (or last) page."""
    return httpx.Response(
        200, json={"next": None, "previous": None, "results": results, "total": len(results)}
    )


TEST_KEY = "abcdefgh." + "k" * 32


def client_options(**overrides: Any) -> ClientOptions:
    """Client options for a test against a mocked or local API: a limit no test reaches, short
    timeouts, no waits between retries; `overrides` set what a test is about."""
    fields: dict[str, Any] = {
        "base_url": "https://api.test/api",
        "api_key": Secret(TEST_KEY),
        "max_rps": 10_000.0,
        "max_connections": 4,
        "storage_connections": 2,
        "timeout_s": 5.0,
        "max_attempts": 3,
        "retry_initial_s": 0.0,
        "retry_max_s": 0.0,
    }
    return ClientOptions(**(fields | overrides))
