"""What one run did, filled in as it goes; written to `_runs/` and printed at the end."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from etl.model import ProblemKind


@dataclass
class Problem:
    """One call (or listing) that could not be archived, with the reason; written to `_quarantine/`."""

    kind: ProblemKind
    reason: str
    call_date: str | None = None
    call_id: str | None = None
    raw_json: str | None = None


@dataclass
class RunSummary:
    run_id: str
    command: str
    since: str
    until: str
    started_at: str
    finished_at: str | None = None
    calls_archived: int = 0
    messages_archived: int = 0
    transcripts_reused: int = 0
    recordings_archived: int = 0
    recordings_reused: int = 0
    # Archived recordings looked up in the destination before re-using them (a HEAD each on S3;
    # a backfill asks for the stored SHA-256 too), and those found missing or disagreeing with their
    # row, then fetched again.
    recording_checks: int = 0
    recordings_refetched: int = 0
    recording_bytes: int = 0
    recordings_not_enabled: int = 0
    recordings_pending: int = 0
    recordings_failed: int = 0
    recordings_unavailable: int = 0
    calls_underway: int = 0
    # A call listed again later in the same listing (calls shift between page requests): archived once.
    calls_listed_twice: int = 0
    calls_failed: int = 0
    records_quarantined: int = 0
    partitions_written: int = 0
    partitions_final: int = 0
    # Archived calls this run did not archive again (deleted at the source, or failing now): kept.
    calls_kept_from_archive: int = 0
    calls_deleted_at_source: int = 0
    api_requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    # Retriable failures not retried because the run's retry budget was spent (or its deadline passed).
    retries_refused: int = 0
    fatal_error: str | None = None
    # The run reached --max-run-time and took no new work after it; these days are not finished.
    deadline_reached: bool = False
    days_unfinished: list[str] = field(default_factory=list)
    # What stopped the run: "auth", "storage", "internal" (a bug) or "interrupted"; None if nothing.
    fatal_error_kind: str | None = None
    partitions_locked: list[str] = field(default_factory=list)
    underway_call_ids: list[str] = field(default_factory=list)
    pending_recording_call_ids: list[str] = field(default_factory=list)
    unavailable_recording_call_ids: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # A sharded backfill's shard ("2/4"), and the request rate the run was held to (a shard's share
    # of the default, unless --max-rps was given).
    shard: str | None = None
    max_rps: float | None = None

    @property
    def complete(self) -> bool:
        """True when everything in the window was archived or is legitimately pending."""
        return self.complete_but_locked and not self.partitions_locked

    @property
    def complete_but_locked(self) -> bool:
        """Everything this run could reach was archived; it only skipped partitions held by another run."""
        return (
            self.fatal_error is None
            and not self.deadline_reached
            and self.calls_failed == 0
            and self.records_quarantined == 0
            and self.recordings_failed == 0
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["complete"] = self.complete
        return data


def run_records(summary: RunSummary) -> list[tuple[str, bytes, str]]:
    """The objects a finished run leaves in the destination, as (key, body, content type): its
    problems, one JSON line each (if any), and the summary itself."""
    records = []
    if summary.problems:
        lines = "".join(
            json.dumps({"run_id": summary.run_id, **asdict(problem)}, ensure_ascii=False) + "\n"
            for problem in summary.problems
        )
        records.append((f"_quarantine/{summary.run_id}.jsonl", _utf8(lines), "application/x-ndjson"))
    body = _utf8(json.dumps(summary.to_json(), indent=2, ensure_ascii=False))
    records.append((f"_runs/{summary.run_id}.json", body, "application/json"))
    return records


def _utf8(json_text: str) -> bytes:
    # A lone surrogate (the API may send "\\ud800") cannot be UTF-8; as the JSON escape it came in as,
    # it can: in JSON text such a character only ever stands inside a string.
    return json_text.encode("utf-8", "backslashreplace")
