"""What `verify` found, and how it is told: plain data, the exit code, text and JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

EXIT_AGREES = 0
# Some listing could not be read (after the run's retries): what it covers was not compared.
EXIT_UNCHECKED = 1
EXIT_DRIFT = 8


class FindingKind(StrEnum):
    # Drift: the archive disagrees with the source; a backfill of the window repairs it.
    MISSING_CALL = "missing_call"
    DUPLICATE_CALL = "duplicate_call"
    DUPLICATE_MESSAGE = "duplicate_message"
    MESSAGE_COUNT = "message_count"
    RECORDING_MISSING = "recording_missing"
    RECORDING_MISMATCH = "recording_mismatch"
    # Information: as the archive means it to be, or nothing to compare.
    DELETED_AT_SOURCE = "deleted_at_source"  # archived, no longer listed: the archive keeps it
    PARTITION_OPEN = "partition_open"  # the manifest says what the next sync will finish
    NOT_CHECKED = "not_checked"  # a listing failed: what it covers was not compared


DRIFT_KINDS = frozenset(
    {
        FindingKind.MISSING_CALL,
        FindingKind.DUPLICATE_CALL,
        FindingKind.DUPLICATE_MESSAGE,
        FindingKind.MESSAGE_COUNT,
        FindingKind.RECORDING_MISSING,
        FindingKind.RECORDING_MISMATCH,
    }
)


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    day: date
    call_id: str | None
    detail: str

    @property
    def drift(self) -> bool:
        return self.kind in DRIFT_KINDS

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "drift": self.drift,
            "day": self.day.isoformat(),
            "call_id": self.call_id,
            "detail": self.detail,
        }


@dataclass
class VerifyReport:
    dest: str
    since: date
    until: date
    findings: list[Finding] = field(default_factory=list)
    calls_listed: int = 0
    calls_archived: int = 0
    # Calls whose messages were listed at the source to compare their counts.
    transcripts_listed: int = 0
    api_requests: int = 0
    # Storage HEADs (or local files hashed) made to check recordings against their rows.
    recordings_checked: int = 0

    @property
    def drift(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.drift]

    @property
    def exit_code(self) -> int:
        if self.drift:
            return EXIT_DRIFT
        if any(finding.kind is FindingKind.NOT_CHECKED for finding in self.findings):
            return EXIT_UNCHECKED
        return EXIT_AGREES

    def to_json(self) -> dict[str, Any]:
        return {
            "dest": self.dest,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "exit_code": self.exit_code,
            "agrees": self.exit_code == EXIT_AGREES,
            "drift": len(self.drift),
            "calls_listed": self.calls_listed,
            "calls_archived": self.calls_archived,
            "transcripts_listed": self.transcripts_listed,
            "api_requests": self.api_requests,
            "recordings_checked": self.recordings_checked,
            "findings": [finding.to_json() for finding in self.findings],
        }


def format_report(report: VerifyReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report.to_json(), ensure_ascii=False)
    window = f"{report.since}..{report.until}"
    verdict = {
        EXIT_AGREES: "the archive agrees with the source",
        EXIT_UNCHECKED: "no drift found, but some listings could not be read (not_checked)",
        EXIT_DRIFT: f"{len(report.drift)} finding(s) of drift",
    }[report.exit_code]
    lines = [
        f"verify {window} of {report.dest}: {verdict} (exit {report.exit_code})",
        f"  calls listed {report.calls_listed}, archived {report.calls_archived}; "
        f"transcripts listed {report.transcripts_listed}; API requests {report.api_requests}; "
        f"recordings checked {report.recordings_checked}",
    ]
    for finding in sorted(report.findings, key=lambda f: (not f.drift, f.day, f.kind, f.call_id or "")):
        label = "drift" if finding.drift else "info "
        lines.append(f"  {label} {finding.day} {finding.kind:<18} {finding.call_id or '-'}  {finding.detail}")
    if report.drift:
        lines.append(
            f"repair: ultravox-archiver backfill --since {report.since} --until {report.until} "
            "(then verify again)"
        )
    return "\n".join(lines)
