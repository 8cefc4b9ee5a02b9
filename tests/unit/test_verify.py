"""`verify`'s pure parts: a day's source listing against the archive -> findings; the report's exit
code, JSON and text; whether a stored recording agrees with its row. End to end (each kind of drift
made on purpose, then repaired): tests/integration/test_verify_e2e.py."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import UTC, date, datetime

import pytest

from etl.recording_check import disagreement
from etl.state import PartitionManifest
from etl.storage.base import ObjectInfo
from etl.verify.archived_day import ArchivedCallRow, ArchivedDay
from etl.verify.compare import SourceDay, compare_day
from etl.verify.findings import Finding, FindingKind, VerifyReport, format_report

DAY = date(2026, 3, 2)
AUDIO = b"RIFF" * 100
SHA = hashlib.sha256(AUDIO).hexdigest()


def row(messages: int, status: str = "archived") -> ArchivedCallRow:
    archived = status == "archived"
    return ArchivedCallRow(messages, status, len(AUDIO) if archived else None, SHA if archived else None)


def archived_day(calls: dict[str, int], *, rows: Counter[str] | None = None) -> ArchivedDay:
    day = ArchivedDay(DAY, manifest=PartitionManifest(DAY, "run", datetime.now(UTC), True, 0, 0, 0, 0, 0, 0))
    for call_id, messages in calls.items():
        day.calls[call_id] = row(messages)
        day.call_rows[call_id] = (rows or Counter())[call_id] or 1
        day.message_keys.update((call_id, index) for index in range(messages))
    return day


def stored(call_id: str) -> ObjectInfo:
    return ObjectInfo(call_id, len(AUDIO), sha256=hashlib.sha256(AUDIO).digest())


def kinds(findings: list[Finding]) -> list[tuple[str, str | None]]:
    return [(finding.kind.value, finding.call_id) for finding in findings]


def test_an_archive_that_agrees_has_no_findings() -> None:
    archive = archived_day({"a": 2, "b": 0})
    findings = compare_day(
        SourceDay(ended={"a", "b"}, underway={"c"}),
        archive,
        message_counts={"a": 2, "b": 0},
        recordings={"a": stored("a"), "b": stored("b")},
    )
    assert findings == []


def test_each_kind_of_drift_is_named_with_its_call() -> None:
    archive = archived_day({"dup": 1, "msgs": 3, "gone": 1, "deleted": 1}, rows=Counter({"dup": 2}))
    archive.message_keys[("dup", 0)] += 1
    archive.message_keys.pop(("msgs", 2))
    other = ObjectInfo("x", len(AUDIO), sha256=hashlib.sha256(b"other").digest())
    findings = compare_day(
        SourceDay(ended={"dup", "msgs", "gone", "missing"}),
        archive,
        message_counts={"dup": 1, "msgs": 3, "gone": 1},
        recordings={"dup": stored("dup"), "msgs": None, "gone": other, "deleted": stored("deleted")},
    )
    assert kinds(findings) == [
        ("missing_call", "missing"),
        ("duplicate_call", "dup"),
        ("duplicate_message", "dup"),
        ("message_count", "msgs"),
        ("recording_mismatch", "gone"),
        ("recording_missing", "msgs"),
        ("deleted_at_source", "deleted"),
    ]
    assert [f.drift for f in findings] == [True] * 6 + [False]
    assert "the source lists 3 messages; archived 2 (message_count 3)" in findings[3].detail


def test_a_message_count_column_that_disagrees_is_drift_too() -> None:
    archive = archived_day({"a": 2})
    archive.calls["a"] = row(5)
    findings = compare_day(SourceDay(ended={"a"}), archive, message_counts={"a": 2}, recordings={})
    assert kinds(findings) == [("message_count", "a")]


def test_recordings_agree_by_size_and_sha256() -> None:
    assert disagreement(stored("a"), size=len(AUDIO), sha256_hex=SHA) is None
    assert disagreement(None, size=1, sha256_hex=SHA) == "the recording object is missing"
    assert "has 400 bytes, the row says 401" in str(disagreement(stored("a"), size=401, sha256_hex=SHA))
    other = hashlib.sha256(b"x").hexdigest()
    assert "SHA-256" in str(disagreement(stored("a"), size=len(AUDIO), sha256_hex=other))
    # No checksum on a single-part object: not what the archiver wrote. A multipart one: size only.
    assert "no SHA-256" in str(disagreement(ObjectInfo("a", 400), size=400, sha256_hex=SHA))
    assert disagreement(ObjectInfo("a", 400, parted=True), size=400, sha256_hex=SHA) is None


@pytest.mark.parametrize(
    ("kinds_found", "code"),
    [
        ([], 0),
        ([FindingKind.DELETED_AT_SOURCE, FindingKind.PARTITION_OPEN], 0),
        ([FindingKind.NOT_CHECKED], 1),
        ([FindingKind.NOT_CHECKED, FindingKind.MISSING_CALL], 8),
    ],
)
def test_exit_codes(kinds_found: list[FindingKind], code: int) -> None:
    report = VerifyReport("s3://b/a", DAY, DAY, findings=[Finding(k, DAY, "c", "why") for k in kinds_found])
    assert report.exit_code == code
    data = json.loads(format_report(report, "json"))
    assert data["exit_code"] == code and data["agrees"] == (code == 0)
    assert [f["kind"] for f in data["findings"]] == [k.value for k in kinds_found]
    text = format_report(report, "text")
    assert f"(exit {code})" in text
    assert ("repair: ultravox-archiver backfill --since 2026-03-02 --until 2026-03-02" in text) == (code == 8)


def test_an_open_partition_is_information() -> None:
    archive = archived_day({"a": 1})
    archive.open_marker = True
    findings = compare_day(SourceDay(ended={"a"}), archive, message_counts={}, recordings={})
    assert kinds(findings) == [("partition_open", None)]
    assert not findings[0].drift
    archive.open_marker, archive.manifest = False, None
    findings = compare_day(SourceDay(ended={"a"}), archive, message_counts={}, recordings={})
    assert [f.detail for f in findings] == ["the partition's manifest is missing"]
