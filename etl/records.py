"""Pure transforms: Ultravox API JSON -> rows of the `calls` and `messages` tables.

No I/O, no environment, no clock: the caller passes `archived_at`. A value that cannot be converted
raises BadRecord with a reason naming the API field, so the pipeline can quarantine the record and go
on. Fields the archiver does not model are never lost: every row carries the whole API object in
`raw_json`. Single field values are parsed by `fields`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from etl.errors import BadRecord
from etl.fields import (
    INT32_MAX,
    boolean,
    duration,
    int32,
    integer,
    medium_key,
    number,
    optional,
    optional_int32,
    optional_string,
    parse_timestamp,
    string,
    string_map,
    timespan,
    timestamp,
)
from etl.model import RecordingOutcome

# Current revision roles are MESSAGE_ROLE_*; the older revision sent the bare USER / AGENT.
_ROLES = {
    "USER": "user",
    "AGENT": "agent",
    "TOOL_CALL": "tool_call",
    "TOOL_RESULT": "tool_result",
}
_MEDIA = {"VOICE": "voice", "TEXT": "text"}
# The spellings the API sends, resolved without upper() and removeprefix(): roles and media are
# looked up once per message. Anything else takes the general path.
_KNOWN_ROLES = {**_ROLES, **{f"MESSAGE_ROLE_{name}": role for name, role in _ROLES.items()}}
_KNOWN_MEDIA = {**_MEDIA, **{f"MESSAGE_MEDIUM_{name}": medium for name, medium in _MEDIA.items()}}

# sort_keys and fixed separators: the same API object always gives the same bytes, so re-runs
# produce identical files and diffs show real changes only. One encoder for all: json.dumps with
# options builds a new one per call, which costs about a fifth of encoding a message.
_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _raw_json(value: Mapping[str, Any]) -> str:
    """The whole API object as JSON text; BadRecord for one no table can hold.

    Every string of a row comes from this object, so checking its text once covers them all: a
    lone surrogate (the API may send the escape "\\ud800") cannot be written as UTF-8 to Parquet.
    """
    try:
        text = _JSON.encode(value)
    except RecursionError:
        raise BadRecord("nested too deeply to store") from None
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRecord("holds a string that is not valid Unicode (a lone surrogate)") from None
    return text


# --- calls ---------------------------------------------------------------------------------------


def call_id_of(call: Mapping[str, Any]) -> str:
    """The call's id; BadRecord if it has none, since nothing can be keyed without it."""
    if not isinstance(call, Mapping):
        raise BadRecord("call is not an object", record=call)
    call_id = call.get("callId")
    if not isinstance(call_id, str) or not call_id.strip():
        raise BadRecord("call has no callId", record=call)
    return call_id


def call_date_of(call: Mapping[str, Any]) -> date:
    """The partition value: the UTC date of `created`."""
    if not isinstance(call, Mapping):
        raise BadRecord("call is not an object", record=call)
    try:
        return parse_timestamp(call.get("created"), field="created").date()
    except BadRecord as exc:
        raise BadRecord(exc.reason, record=call) from exc


def is_underway(call: Mapping[str, Any]) -> bool:
    """True while the call has not ended (the API sends `ended: null`)."""
    return call.get("ended") is None


def call_row(
    call: Mapping[str, Any],
    recording: RecordingOutcome,
    archived_at: datetime,
    *,
    message_count: int | None = None,
    last_seen_at: datetime | None = None,
) -> dict[str, Any]:
    """One row of the `calls` table (without the partition column; see call_date_of).

    `archived_at` is when the call was first archived; `last_seen_at` (default: `archived_at`) when
    the source last listed it.
    """
    _check_aware(archived_at, last_seen_at)
    try:
        row = {
            "call_id": call_id_of(call),
            "created": parse_timestamp(call.get("created"), field="created"),
            **_call_fields(call),
            **_recording_fields(recording),
            "raw_json": _raw_json(call),
            **_archive_fields(archived_at, message_count, last_seen_at),
            "source_deleted_at": None,
        }
    except BadRecord as exc:
        raise BadRecord(exc.reason, record=call) from exc
    return row


def with_outcome(
    row: Mapping[str, Any],
    recording: RecordingOutcome,
    archived_at: datetime,
    *,
    message_count: int | None = None,
    last_seen_at: datetime | None = None,
) -> dict[str, Any]:
    """`row` (from call_row) with what archiving decided: the recording's outcome, when the call
    was first archived and last seen, and its message count. The API's fields are not parsed again."""
    _check_aware(archived_at, last_seen_at)
    return {
        **row,
        **_recording_fields(recording),
        **_archive_fields(archived_at, message_count, last_seen_at),
    }


def _check_aware(archived_at: datetime, last_seen_at: datetime | None) -> None:
    if archived_at.tzinfo is None or (last_seen_at is not None and last_seen_at.tzinfo is None):
        # A programming error, not a bad record: the caller's clock must be aware.
        raise ValueError("archived_at must be timezone-aware")


def _archive_fields(
    archived_at: datetime, message_count: int | None, last_seen_at: datetime | None
) -> dict[str, Any]:
    return {
        "archived_at": archived_at.astimezone(UTC),
        "message_count": message_count,
        "last_seen_at": (last_seen_at or archived_at).astimezone(UTC),
    }


def _call_fields(call: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "joined": optional(call, "joined", timestamp),
        "ended": optional(call, "ended", timestamp),
        "end_reason": optional(call, "endReason", string),
        "model": optional(call, "model", string),
        "voice": optional(call, "voice", string),
        "system_prompt": optional(call, "systemPrompt", string),
        "temperature": optional(call, "temperature", number),
        "language_hint": optional(call, "languageHint", string),
        "max_duration_s": optional(call, "maxDuration", duration),
        "time_exceeded_message": optional(call, "timeExceededMessage", string),
        "recording_enabled": optional(call, "recordingEnabled", boolean),
        "metadata": optional(call, "metadata", string_map),
        "summary": optional(call, "summary", string),
        "short_summary": optional(call, "shortSummary", string),
        "billed_duration_s": optional(call, "billedDuration", duration),
        "billing_status": optional(call, "billingStatus", string),
        "billed_side_input_tokens": optional(call, "billedSideInputTokens", integer),
        "billed_side_output_tokens": optional(call, "billedSideOutputTokens", integer),
        "retention_policy": optional(call, "retentionPolicy", string),
        "agent_id": optional(call, "agentId", string),
        "medium": optional(call, "medium", medium_key),
        "error_count": optional(call, "errorCount", integer),
    }


def _recording_fields(recording: RecordingOutcome) -> dict[str, Any]:
    return {
        "recording_status": str(recording.status),
        "recording_uri": recording.uri,
        "recording_bytes": recording.size_bytes,
        "recording_sha256": recording.sha256,
        "recording_detail": recording.detail,
    }


# --- messages ------------------------------------------------------------------------------------


def message_rows(call_id: str, messages: Iterable[Any], *, first_index: int = 0) -> list[dict[str, Any]]:
    """Rows of the `messages` table for one call, in the order given (the conversation order).

    message_index is the position in the whole transcript across pages: `first_index` is that of
    the first of `messages` (a page's rows are made as the page arrives); the older revision's
    `ordinal` is kept in raw_json only.
    """
    rows = []
    for index, message in enumerate(messages, first_index):
        # Messages are dicts, and isinstance against the Mapping ABC is slow: test the type first.
        if type(message) is not dict and not isinstance(message, Mapping):
            raise BadRecord(f"message {index} of call {call_id} is not an object", record=message)
        try:
            rows.append(_message_row(call_id, index, message))
        except BadRecord as exc:
            raise BadRecord(f"message {index} of call {call_id}: {exc.reason}", record=message) from exc
    return rows


def _message_row(call_id: str, index: int, message: Mapping[str, Any]) -> dict[str, Any]:
    # Once per message, so each field costs a type test when it is absent or already right; the
    # general parsers run only to raise their reasons. The order of the checks (timespans, then
    # column order) decides which reason a record with several bad fields gets: keep it.
    get = message.get
    span = get("timespan")
    start_s, end_s = (None, None) if span is None else timespan(span, "timespan")
    wall_clock = get("wallClockTimespan")
    wall_clock_start_s, wall_clock_end_s = (
        (None, None) if wall_clock is None else timespan(wall_clock, "wallClockTimespan")
    )
    return {
        "call_id": call_id,
        "message_index": index if index <= INT32_MAX else int32(index, "message_index"),
        "role": normalise_role(get("role")),
        "text": optional_string(message, "text"),
        "medium": normalise_medium(get("medium")),
        "tool_name": optional_string(message, "toolName"),
        "invocation_id": optional_string(message, "invocationId"),
        "error_details": optional_string(message, "errorDetails"),
        "call_stage_id": optional_string(message, "callStageId"),
        "call_stage_message_index": optional_int32(message, "callStageMessageIndex"),
        "start_s": start_s,
        "end_s": end_s,
        "wall_clock_start_s": wall_clock_start_s,
        "wall_clock_end_s": wall_clock_end_s,
        "raw_json": _raw_json(message),
    }


def normalise_role(role: Any) -> str:
    """MESSAGE_ROLE_USER / USER -> user, ...; missing or unknown roles -> unspecified."""
    if type(role) is str and role in _KNOWN_ROLES:
        return _KNOWN_ROLES[role]
    if role is None:
        return "unspecified"
    name = string(role, "role").upper().removeprefix("MESSAGE_ROLE_")
    # An unknown role is a new API value, not a broken record: keep the message (raw_json has the
    # original) rather than lose a transcript line.
    return _ROLES.get(name, "unspecified")


def normalise_medium(medium: Any) -> str | None:
    """MESSAGE_MEDIUM_VOICE -> voice, MESSAGE_MEDIUM_TEXT -> text; unspecified or unknown -> None."""
    if type(medium) is str and medium in _KNOWN_MEDIA:
        return _KNOWN_MEDIA[medium]
    if medium is None:
        return None
    name = string(medium, "medium").upper().removeprefix("MESSAGE_MEDIUM_")
    return _MEDIA.get(name)


# --- tombstones ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tombstones:
    """What `GET /api/deleted_calls` says about a day: call id -> deletionTime."""

    deleted: dict[str, datetime]
    # Items without a readable callId or deletionTime: skipped, and only counted, because a
    # tombstone only annotates a call the archive keeps anyway.
    unreadable: int = 0


def tombstones(items: Iterable[Any]) -> Tombstones:
    """Tombstone items (raw JSON) -> which calls were deleted, and when."""
    deleted: dict[str, datetime] = {}
    unreadable = 0
    for item in items:
        try:
            call_id = call_id_of(item)  # first: it also rejects an item that is not an object
            deleted[call_id] = parse_timestamp(item.get("deletionTime"), field="deletionTime")
        except BadRecord:
            unreadable += 1
    return Tombstones(deleted, unreadable)
