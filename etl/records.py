"""Pure transforms: Ultravox API JSON -> rows of the `calls` and `messages` tables.

No I/O, no environment, no clock: the caller passes `archived_at`. A value that cannot be converted
raises BadRecord with a reason naming the API field, so the pipeline can quarantine the record and go
on. Fields the archiver does not model are never lost: every row carries the whole API object in
`raw_json`.

Timestamps: the API documents them as UTC ISO 8601. Offsets other than UTC are converted; a
timestamp without an offset is taken as UTC (the documented zone) rather than rejected.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from etl.errors import BadRecord
from etl.model import RecordingOutcome

T = TypeVar("T")

# Extended ISO 8601 date and time, optional fraction and offset. fromisoformat alone would also
# accept a bare date or the basic format (20260302T1000), which the API never sends and which more
# likely mean a mangled value than a timestamp.
_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})?",
)
# Protobuf JSON duration, as in the OpenAPI pattern: "300s", "245.5s", "-1.5s".
_DURATION = re.compile(r"-?\d+(\.\d+)?s")
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1

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


# --- value parsers -------------------------------------------------------------------------------


def parse_timestamp(value: Any, *, field: str = "timestamp") -> datetime:
    """ISO 8601 string -> aware datetime in UTC (microsecond precision; extra digits truncated)."""
    if value is None:
        raise BadRecord(f"{field}: missing")
    if not isinstance(value, str) or not (match := _TIMESTAMP.fullmatch(value)):
        raise BadRecord(f"{field}: not an ISO 8601 timestamp: {_show(value)}")
    # Python 3.11 keeps at most microseconds; cut nanoseconds rather than round so a value never
    # moves into the next second (or the next day's partition). The fraction is group 2, its dot
    # and up to nine digits; (-1, -1) when there is none.
    fraction_start, fraction_end = match.span(2)
    text = value
    if fraction_end - fraction_start > 7:
        text = value[: fraction_start + 7] + value[fraction_end:]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadRecord(f"{field}: not a valid timestamp: {_show(value)}") from exc
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_duration_s(value: Any, *, field: str = "duration") -> float:
    """API duration ("300s", "245.5s") -> seconds. A bare number is taken as seconds already."""
    if isinstance(value, bool):
        raise BadRecord(f"{field}: not a duration: {_show(value)}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise BadRecord(f"{field}: not a finite duration: {_show(value)}")
        return float(value)
    if not isinstance(value, str) or not _DURATION.fullmatch(value):
        raise BadRecord(f"{field}: not a duration like '300s': {_show(value)}")
    return float(value[:-1])


def _optional(source: Mapping[str, Any], key: str, parse: Callable[[Any, str], T]) -> T | None:
    """source[key] parsed, or None when absent or null. `key` (the API name) labels errors."""
    value = source.get(key)
    if value is None:
        return None
    return parse(value, key)


def _timestamp(value: Any, field: str) -> datetime:
    return parse_timestamp(value, field=field)


def _duration(value: Any, field: str) -> float:
    return parse_duration_s(value, field=field)


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise BadRecord(f"{field}: expected a string, got {_kind(value)}")
    return value


def _boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise BadRecord(f"{field}: expected true or false, got {_kind(value)}")
    return value


def _integer(value: Any, field: str) -> int:
    # bool is an int subclass in Python; JSON true is not a count.
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRecord(f"{field}: expected an integer, got {_kind(value)}")
    return value


def _int32(value: Any, field: str) -> int:
    number = _integer(value, field)
    # Compared, not `in range(...)`: a range scans an int subclass element by element.
    if not _INT32_MIN <= number <= _INT32_MAX:
        raise BadRecord(f"{field}: {number} does not fit in 32 bits")
    return number


def _number(value: Any, field: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise BadRecord(f"{field}: expected a finite number, got {_show(value)}")
    return float(value)


def _string_map(value: Any, field: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise BadRecord(f"{field}: expected an object of strings, got {_kind(value)}")
    for key, item in value.items():
        if not isinstance(item, str):
            raise BadRecord(f"{field}: value of {key!r} is {_kind(item)}, not a string")
    return dict(value)


def _medium_key(value: Any, field: str) -> str | None:
    # The API models the medium as a oneof: {"webRtc": {}}, {"twilio": {...}}; the key is the medium.
    if not isinstance(value, Mapping):
        raise BadRecord(f"{field}: expected an object like {{'webRtc': {{}}}}, got {_kind(value)}")
    if len(value) > 1:
        raise BadRecord(f"{field}: more than one medium set: {sorted(value)}")
    return next(iter(value), None)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _show(value: Any) -> str:
    # Reasons end up in logs and quarantine files; keep them short.
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _raw_json(value: Mapping[str, Any]) -> str:
    return _JSON.encode(value)


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
        "joined": _optional(call, "joined", _timestamp),
        "ended": _optional(call, "ended", _timestamp),
        "end_reason": _optional(call, "endReason", _string),
        "model": _optional(call, "model", _string),
        "voice": _optional(call, "voice", _string),
        "system_prompt": _optional(call, "systemPrompt", _string),
        "temperature": _optional(call, "temperature", _number),
        "language_hint": _optional(call, "languageHint", _string),
        "max_duration_s": _optional(call, "maxDuration", _duration),
        "time_exceeded_message": _optional(call, "timeExceededMessage", _string),
        "recording_enabled": _optional(call, "recordingEnabled", _boolean),
        "metadata": _optional(call, "metadata", _string_map),
        "summary": _optional(call, "summary", _string),
        "short_summary": _optional(call, "shortSummary", _string),
        "billed_duration_s": _optional(call, "billedDuration", _duration),
        "billing_status": _optional(call, "billingStatus", _string),
        "billed_side_input_tokens": _optional(call, "billedSideInputTokens", _integer),
        "billed_side_output_tokens": _optional(call, "billedSideOutputTokens", _integer),
        "retention_policy": _optional(call, "retentionPolicy", _string),
        "agent_id": _optional(call, "agentId", _string),
        "medium": _optional(call, "medium", _medium_key),
        "error_count": _optional(call, "errorCount", _integer),
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


def message_rows(call_id: str, messages: Iterable[Any]) -> list[dict[str, Any]]:
    """Rows of the `messages` table for one call, in the order given (the conversation order).

    message_index is the position in `messages`, which must be the whole transcript across pages;
    the older revision's `ordinal` is kept in raw_json only.
    """
    rows = []
    for index, message in enumerate(messages):
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
    timespan = get("timespan")
    start_s, end_s = (None, None) if timespan is None else _timespan(timespan, "timespan")
    wall_clock = get("wallClockTimespan")
    wall_clock_start_s, wall_clock_end_s = (
        (None, None) if wall_clock is None else _timespan(wall_clock, "wallClockTimespan")
    )
    return {
        "call_id": call_id,
        "message_index": index if index <= _INT32_MAX else _int32(index, "message_index"),
        "role": normalise_role(get("role")),
        "text": _optional_string(message, "text"),
        "medium": normalise_medium(get("medium")),
        "tool_name": _optional_string(message, "toolName"),
        "invocation_id": _optional_string(message, "invocationId"),
        "error_details": _optional_string(message, "errorDetails"),
        "call_stage_id": _optional_string(message, "callStageId"),
        "call_stage_message_index": _optional_int32(message, "callStageMessageIndex"),
        "start_s": start_s,
        "end_s": end_s,
        "wall_clock_start_s": wall_clock_start_s,
        "wall_clock_end_s": wall_clock_end_s,
        "raw_json": _raw_json(message),
    }


def _optional_string(source: Mapping[str, Any], key: str) -> str | None:
    """_optional(source, key, _string), for the per-message path."""
    value = source.get(key)
    if value is None or type(value) is str:
        return value
    return _string(value, key)


def _optional_int32(source: Mapping[str, Any], key: str) -> int | None:
    """_optional(source, key, _int32), for the per-message path."""
    value = source.get(key)
    if value is None or (type(value) is int and _INT32_MIN <= value <= _INT32_MAX):
        return value
    return _int32(value, key)


def normalise_role(role: Any) -> str:
    """MESSAGE_ROLE_USER / USER -> user, ...; missing or unknown roles -> unspecified."""
    if type(role) is str and role in _KNOWN_ROLES:
        return _KNOWN_ROLES[role]
    if role is None:
        return "unspecified"
    name = _string(role, "role").upper().removeprefix("MESSAGE_ROLE_")
    # An unknown role is a new API value, not a broken record: keep the message (raw_json has the
    # original) rather than lose a transcript line.
    return _ROLES.get(name, "unspecified")


def normalise_medium(medium: Any) -> str | None:
    """MESSAGE_MEDIUM_VOICE -> voice, MESSAGE_MEDIUM_TEXT -> text; unspecified or unknown -> None."""
    if type(medium) is str and medium in _KNOWN_MEDIA:
        return _KNOWN_MEDIA[medium]
    if medium is None:
        return None
    name = _string(medium, "medium").upper().removeprefix("MESSAGE_MEDIUM_")
    return _MEDIA.get(name)


def _timespan(value: Any, field: str) -> tuple[float | None, float | None]:
    if type(value) is not dict and not isinstance(value, Mapping):
        raise BadRecord(f"{field}: expected an object with start and end, got {_kind(value)}")
    return _timespan_bound(value, field, "start"), _timespan_bound(value, field, "end")


def _timespan_bound(timespan: Mapping[str, Any], field: str, key: str) -> float | None:
    value = timespan.get(key)
    if value is None:
        return None
    if type(value) is str and _DURATION.fullmatch(value):
        return float(value[:-1])
    # parse_duration_s as it would go for the common case, without building the field's name for
    # every message: only an unusual or bad value gets here.
    return parse_duration_s(value, field=f"{field}.{key}")
