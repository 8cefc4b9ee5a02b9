"""API objects and answers as the Ultravox API shapes them, for tests over httpx.MockTransport."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx


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
