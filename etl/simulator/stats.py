"""Counters exposed at GET /_sim/stats: what the archiver did to the API, seen from the server side."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

KINDS = ("list_calls", "call", "messages", "recording", "stages", "deleted_calls", "storage", "other")


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    responses: Counter[int] = field(default_factory=Counter)  # /api only
    storage_responses: Counter[int] = field(default_factory=Counter)
    rate_limited: int = 0
    resets: int = 0
    injected_errors: int = 0
    cut_bodies: int = 0  # answers whose connection closed right after the headers
    signed_urls_issued: int = 0
    storage_requests_with_api_key: int = 0
    api_requests_without_valid_key: int = 0
    storage_header_names: set[str] = field(default_factory=set)
    open_connections: int = 0
    max_concurrent_connections: int = 0
    in_flight_requests: int = 0
    max_in_flight_requests: int = 0
    # Recording bodies being sent right now: a request is in flight only until its answer is ready,
    # while a 30 MB body streams long after that.
    recordings_streaming: int = 0
    max_recordings_streaming: int = 0

    # The connection and in-flight gauges track the server as a whole (API, storage and control).
    def opened(self) -> None:
        self.open_connections += 1
        self.max_concurrent_connections = max(self.max_concurrent_connections, self.open_connections)

    def closed(self) -> None:
        self.open_connections -= 1

    def request_started(self) -> None:
        self.in_flight_requests += 1
        self.max_in_flight_requests = max(self.max_in_flight_requests, self.in_flight_requests)

    def request_finished(self) -> None:
        self.in_flight_requests -= 1

    def recording_started(self) -> None:
        self.recordings_streaming += 1
        self.max_recordings_streaming = max(self.max_recordings_streaming, self.recordings_streaming)

    def recording_finished(self) -> None:
        self.recordings_streaming -= 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": {kind: self.requests[kind] for kind in KINDS},
            "requests_total": sum(self.requests.values()),
            "responses": {str(status): count for status, count in sorted(self.responses.items())},
            "storage_responses": {str(status): n for status, n in sorted(self.storage_responses.items())},
            "rate_limited": self.rate_limited,
            "resets": self.resets,
            "injected_errors": self.injected_errors,
            "cut_bodies": self.cut_bodies,
            "signed_urls_issued": self.signed_urls_issued,
            "storage_requests_with_api_key": self.storage_requests_with_api_key,
            "api_requests_without_valid_key": self.api_requests_without_valid_key,
            "storage_header_names": sorted(self.storage_header_names),
            "open_connections": self.open_connections,
            "max_concurrent_connections": self.max_concurrent_connections,
            "max_in_flight_requests": self.max_in_flight_requests,
            "max_recordings_streaming": self.max_recordings_streaming,
        }

    def reset(self) -> None:
        """Zero every counter; the gauges restart from what is open right now."""
        fresh = Stats(
            open_connections=self.open_connections,
            max_concurrent_connections=self.open_connections,
            in_flight_requests=self.in_flight_requests,
            max_in_flight_requests=self.in_flight_requests,
            recordings_streaming=self.recordings_streaming,
            max_recordings_streaming=self.recordings_streaming,
        )
        self.__dict__.update(fresh.__dict__)
