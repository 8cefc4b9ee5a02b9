"""Pure: one day's source listing against what the archive holds -> findings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from etl.recording_check import disagreement
from etl.storage.base import ObjectInfo
from etl.verify.archived_day import ArchivedDay
from etl.verify.findings import Finding, FindingKind


@dataclass
class SourceDay:
    """The calls the source lists for a day: ended ones (the archive must hold them) and those still
    underway (the archive legitimately lacks them until they end)."""

    ended: set[str] = field(default_factory=set)
    underway: set[str] = field(default_factory=set)


def compare_day(
    source: SourceDay,
    archived: ArchivedDay,
    *,
    message_counts: Mapping[str, int],
    recordings: Mapping[str, ObjectInfo | None],
) -> list[Finding]:
    """`message_counts`: messages the source lists per call (for the calls compared);
    `recordings`: the stored object of each archived recording (from `Storage.digest`)."""
    day = archived.day
    findings = [
        Finding(
            FindingKind.MISSING_CALL, day, call_id, "the source lists this ended call; the archive has no row"
        )
        for call_id in sorted(source.ended - set(archived.call_rows))
    ]
    findings += [
        Finding(FindingKind.DUPLICATE_CALL, day, call_id, f"{rows} rows in the calls table")
        for call_id, rows in sorted(archived.call_rows.items())
        if rows > 1
    ]
    findings += _duplicate_messages(day, archived)
    findings += _message_counts(day, archived, message_counts)
    findings += _recordings(day, archived, recordings)
    findings += [
        Finding(FindingKind.DELETED_AT_SOURCE, day, call_id, "archived, no longer listed by the source: kept")
        for call_id in sorted(set(archived.call_rows) - source.ended - source.underway)
    ]
    findings += _partition_state(day, archived)
    return findings


def _duplicate_messages(day: date, archived: ArchivedDay) -> list[Finding]:
    twice: dict[str, list[str]] = {}
    for (call_id, index), rows in sorted(archived.message_keys.items()):
        if rows > 1:
            twice.setdefault(call_id, []).append(f"{index} ({rows} rows)")
    return [
        Finding(FindingKind.DUPLICATE_MESSAGE, day, call_id, "message_index " + ", ".join(indexes))
        for call_id, indexes in twice.items()
    ]


def _message_counts(day: date, archived: ArchivedDay, message_counts: Mapping[str, int]) -> list[Finding]:
    held = archived.distinct_messages()
    findings = []
    for call_id, listed in sorted(message_counts.items()):
        row = archived.calls.get(call_id)
        said = row.message_count if row is not None else None
        if held[call_id] != listed or said != listed:
            detail = f"the source lists {listed} messages; archived {held[call_id]} (message_count {said})"
            findings.append(Finding(FindingKind.MESSAGE_COUNT, day, call_id, detail))
    return findings


def _recordings(
    day: date, archived: ArchivedDay, recordings: Mapping[str, ObjectInfo | None]
) -> list[Finding]:
    findings = []
    for call_id, stored in sorted(recordings.items(), key=lambda item: item[0]):
        row = archived.calls[call_id]
        why = disagreement(stored, size=row.recording_bytes, sha256_hex=row.recording_sha256)
        if why is not None:
            kind = FindingKind.RECORDING_MISSING if stored is None else FindingKind.RECORDING_MISMATCH
            findings.append(Finding(kind, day, call_id, why))
    return findings


def _partition_state(day: date, archived: ArchivedDay) -> list[Finding]:
    manifest = archived.manifest
    if manifest is None:
        if archived.manifest_unreadable or archived.call_rows or archived.open_marker:
            what = "unreadable" if archived.manifest_unreadable else "missing"
            return [Finding(FindingKind.PARTITION_OPEN, day, None, f"the partition's manifest is {what}")]
        return []
    if manifest.final and not archived.open_marker:
        return []
    detail = (
        f"open: {len(manifest.underway_call_ids)} underway, {len(manifest.pending_recording_call_ids)} "
        f"recordings pending, {manifest.failed} failed (the next sync finishes it)"
    )
    return [Finding(FindingKind.PARTITION_OPEN, day, None, detail)]
