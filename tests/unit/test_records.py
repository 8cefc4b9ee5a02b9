"""Pure transforms from API JSON to table rows. Fixtures are hand-written from the API reference."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from etl.errors import BadRecord
from etl.fields import parse_duration_s, parse_timestamp
from etl.model import RecordingOutcome, RecordingStatus
from etl.records import (
    call_date_of,
    call_id_of,
    call_row,
    is_underway,
    message_rows,
    normalise_medium,
    normalise_role,
    tombstones,
    with_outcome,
)
from etl.schema import load_table_schema

ARCHIVED_AT = datetime(2026, 3, 3, 4, 5, 6, 789000, tzinfo=UTC)
ARCHIVED = RecordingOutcome(
    status=RecordingStatus.ARCHIVED,
    uri="s3://bucket/prefix/recordings/call_date=2026-03-02/6f1c.wav",
    size_bytes=1_234_567,
    sha256="ab" * 32,
)
NOT_ENABLED = RecordingOutcome(status=RecordingStatus.NOT_ENABLED, detail="Recording is not enabled.")

# The current revision of the call object, with a field the archiver does not model (vadSettings)
# and non-ASCII text.
CALL: dict[str, Any] = {
    "callId": "6f1c2d3e-4b5a-4c6d-8e7f-901234567890",
    "clientVersion": "web-1.2.3",
    "created": "2026-03-02T10:00:00Z",
    "joined": "2026-03-02T10:00:02.5+00:00",
    "ended": "2026-03-02T10:01:05.123456Z",
    "endReason": "hangup",
    "model": "fixie-ai/ultravox",
    "voice": "Mark",
    "systemPrompt": "Tu es un assistant. Réponds brièvement 👋",
    "temperature": 0.4,
    "languageHint": "fr-FR",
    "maxDuration": "245.5s",
    "timeExceededMessage": "Le temps est écoulé.",
    "joinUrl": "wss://voice.example/join/abc",
    "recordingEnabled": True,
    "medium": {"twilio": {}},
    "metadata": {"customer": "ACME", "ticket": "42", "emoji": "☎️"},
    "shortSummary": "Short.",
    "summary": "A longer summary.",
    "billedDuration": "63s",
    "billingStatus": "BILLING_STATUS_BILLED",
    "billedSideInputTokens": 120,
    "billedSideOutputTokens": 80,
    "retentionPolicy": "auto_delete",
    "agentId": "a1b2c3d4-0000-4000-8000-000000000001",
    "agent": {"agentId": "a1b2c3d4-0000-4000-8000-000000000001", "name": "Front desk"},
    "errorCount": 0,
    "vadSettings": {"turnEndpointDelay": "0.384s"},
}

# What the older (seed) revision documents: only the basics.
MINIMAL_CALL: dict[str, Any] = {
    "callId": "00000000-0000-4000-8000-000000000002",
    "created": "2026-03-02T23:59:59Z",
    "ended": None,
}


def _call(**changes: Any) -> dict[str, Any]:
    call = copy.deepcopy(CALL)
    call.update(changes)
    return call


# --- parse_timestamp -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02T10:00:00Z", datetime(2026, 3, 2, 10, 0, tzinfo=UTC)),
        ("2026-03-02T10:00:00.123456+00:00", datetime(2026, 3, 2, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2026-03-02T12:30:00+02:30", datetime(2026, 3, 2, 10, 0, tzinfo=UTC)),
        ("2026-03-02T05:00:00-0500", datetime(2026, 3, 2, 10, 0, tzinfo=UTC)),
        ("2026-03-02 10:00:00.5Z", datetime(2026, 3, 2, 10, 0, 0, 500000, tzinfo=UTC)),
        # Nanoseconds are truncated, never rounded up into the next second.
        ("2026-03-02T23:59:59.999999999Z", datetime(2026, 3, 2, 23, 59, 59, 999999, tzinfo=UTC)),
        # Without an offset the documented zone (UTC) is assumed.
        ("2026-03-02T10:00:00", datetime(2026, 3, 2, 10, 0, tzinfo=UTC)),
    ],
)
def test_parse_timestamp_returns_utc(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)

    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "value",
    ["2026-03-02", "20260302T100000Z", "yesterday", "2026-13-02T10:00:00Z", "", 1772445600, None, []],
)
def test_parse_timestamp_rejects_non_timestamps(value: Any) -> None:
    with pytest.raises(BadRecord, match=r"^created: "):
        parse_timestamp(value, field="created")


# --- parse_duration_s ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("300s", 300.0), ("245.5s", 245.5), ("0s", 0.0), ("-1.5s", -1.5), ("0.384s", 0.384), (63, 63.0)],
)
def test_parse_duration_s(value: Any, expected: float) -> None:
    assert parse_duration_s(value) == expected


@pytest.mark.parametrize("value", ["300", "5m", "s", "1.s", "abc", "", True, None, float("nan"), {"s": 1}])
def test_parse_duration_s_rejects_non_durations(value: Any) -> None:
    with pytest.raises(BadRecord, match=r"^maxDuration: "):
        parse_duration_s(value, field="maxDuration")


# --- call identity -------------------------------------------------------------------------------


def test_call_id_of() -> None:
    assert call_id_of(CALL) == "6f1c2d3e-4b5a-4c6d-8e7f-901234567890"


@pytest.mark.parametrize("call", [{}, {"callId": None}, {"callId": ""}, {"callId": "  "}, {"callId": 7}])
def test_call_without_id_is_a_bad_record(call: dict[str, Any]) -> None:
    with pytest.raises(BadRecord, match="call has no callId") as caught:
        call_id_of(call)

    assert caught.value.record is call


def test_non_object_call_is_a_bad_record() -> None:
    with pytest.raises(BadRecord, match="not an object"):
        call_id_of(["not", "a", "call"])  # type: ignore[arg-type]


def test_call_date_is_the_utc_date_of_created() -> None:
    assert call_date_of(CALL) == date(2026, 3, 2)
    # 01:30 at +05:00 is still the previous day in UTC.
    assert call_date_of(_call(created="2026-03-02T01:30:00+05:00")) == date(2026, 3, 1)


@pytest.mark.parametrize("created", [None, "not a date", 0])
def test_call_date_of_bad_created_is_a_bad_record(created: Any) -> None:
    call = _call(created=created)

    with pytest.raises(BadRecord, match=r"^created: ") as caught:
        call_date_of(call)

    assert caught.value.record is call


def test_is_underway() -> None:
    assert is_underway(MINIMAL_CALL)
    assert is_underway({"callId": "x", "created": "2026-03-02T10:00:00Z"})
    assert not is_underway(CALL)


# --- call_row ------------------------------------------------------------------------------------


def test_call_row_maps_every_modelled_field() -> None:
    row = call_row(CALL, ARCHIVED, ARCHIVED_AT)

    assert row == {
        "call_id": "6f1c2d3e-4b5a-4c6d-8e7f-901234567890",
        "created": datetime(2026, 3, 2, 10, 0, tzinfo=UTC),
        "joined": datetime(2026, 3, 2, 10, 0, 2, 500000, tzinfo=UTC),
        "ended": datetime(2026, 3, 2, 10, 1, 5, 123456, tzinfo=UTC),
        "end_reason": "hangup",
        "model": "fixie-ai/ultravox",
        "voice": "Mark",
        "system_prompt": "Tu es un assistant. Réponds brièvement 👋",
        "temperature": 0.4,
        "language_hint": "fr-FR",
        "max_duration_s": 245.5,
        "time_exceeded_message": "Le temps est écoulé.",
        "recording_enabled": True,
        "metadata": {"customer": "ACME", "ticket": "42", "emoji": "☎️"},
        "summary": "A longer summary.",
        "short_summary": "Short.",
        "billed_duration_s": 63.0,
        "billing_status": "BILLING_STATUS_BILLED",
        "billed_side_input_tokens": 120,
        "billed_side_output_tokens": 80,
        "retention_policy": "auto_delete",
        "agent_id": "a1b2c3d4-0000-4000-8000-000000000001",
        "medium": "twilio",
        "error_count": 0,
        "recording_status": "archived",
        "recording_uri": "s3://bucket/prefix/recordings/call_date=2026-03-02/6f1c.wav",
        "recording_bytes": 1_234_567,
        "recording_sha256": "ab" * 32,
        "recording_detail": None,
        "raw_json": row["raw_json"],
        "archived_at": ARCHIVED_AT,
        "message_count": None,
        "last_seen_at": ARCHIVED_AT,
        "source_deleted_at": None,
    }


def test_call_row_has_exactly_the_contract_file_columns() -> None:
    contract = load_table_schema("calls").arrow_schema.names

    assert list(call_row(CALL, ARCHIVED, ARCHIVED_AT)) == contract
    assert list(call_row(MINIMAL_CALL, NOT_ENABLED, ARCHIVED_AT)) == contract


def test_minimal_call_gives_nulls_for_missing_fields() -> None:
    row = call_row(MINIMAL_CALL, NOT_ENABLED, ARCHIVED_AT)

    assert row["call_id"] == "00000000-0000-4000-8000-000000000002"
    assert row["created"] == datetime(2026, 3, 2, 23, 59, 59, tzinfo=UTC)
    assert row["recording_status"] == "not_enabled"
    assert row["recording_detail"] == "Recording is not enabled."
    modelled_but_absent = set(row) - {
        "call_id",
        "created",
        "recording_status",
        "recording_detail",
        "raw_json",
        "archived_at",
        "last_seen_at",
    }
    assert {row[name] for name in modelled_but_absent} == {None}


def test_explicit_nulls_are_nulls() -> None:
    call = _call(
        joined=None, endReason=None, systemPrompt=None, medium=None, metadata=None, billedDuration=None
    )

    row = call_row(call, NOT_ENABLED, ARCHIVED_AT)

    assert row["joined"] is None
    assert row["end_reason"] is None
    assert row["system_prompt"] is None
    assert row["medium"] is None
    assert row["metadata"] is None
    assert row["billed_duration_s"] is None


def test_empty_metadata_and_medium_objects() -> None:
    row = call_row(_call(metadata={}, medium={}), NOT_ENABLED, ARCHIVED_AT)

    assert row["metadata"] == {}
    assert row["medium"] is None


def test_integer_temperature_is_a_float() -> None:
    row = call_row(_call(temperature=1), NOT_ENABLED, ARCHIVED_AT)

    assert row["temperature"] == 1.0
    assert isinstance(row["temperature"], float)


def test_raw_json_keeps_every_field_and_is_deterministic() -> None:
    row = call_row(CALL, ARCHIVED, ARCHIVED_AT)
    reordered = dict(reversed(list(CALL.items())))

    assert json.loads(row["raw_json"]) == CALL
    assert call_row(reordered, ARCHIVED, ARCHIVED_AT)["raw_json"] == row["raw_json"]
    # Compact, sorted, and UTF-8 rather than \u escapes.
    assert row["raw_json"].startswith('{"agent":{"agentId":')
    assert '"vadSettings":{"turnEndpointDelay":"0.384s"}' in row["raw_json"]
    assert "Réponds brièvement 👋" in row["raw_json"]
    assert ", " not in row["raw_json"].replace("Tu es un assistant. ", "")


def test_call_row_does_not_modify_its_input() -> None:
    before = copy.deepcopy(CALL)

    call_row(CALL, ARCHIVED, ARCHIVED_AT)

    assert before == CALL


def test_archived_at_is_normalised_to_utc() -> None:
    paris = timezone(timedelta(hours=1))

    row = call_row(CALL, ARCHIVED, datetime(2026, 3, 3, 5, 5, 6, tzinfo=paris))

    assert row["archived_at"] == datetime(2026, 3, 3, 4, 5, 6, tzinfo=UTC)
    assert row["archived_at"].tzinfo is UTC


def test_naive_archived_at_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        call_row(CALL, ARCHIVED, datetime(2026, 3, 3))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"callId": None}, "call has no callId"),
        ({"created": None}, "created: missing"),
        ({"created": "02/03/2026"}, "created: not an ISO 8601 timestamp"),
        ({"ended": "soon"}, "ended: not an ISO 8601 timestamp"),
        ({"temperature": "hot"}, "temperature: expected a finite number"),
        ({"temperature": True}, "temperature: expected a finite number"),
        ({"maxDuration": "5 minutes"}, "maxDuration: not a duration"),
        ({"billedDuration": "63"}, "billedDuration: not a duration"),
        ({"recordingEnabled": "yes"}, "recordingEnabled: expected true or false, got str"),
        ({"metadata": ["a", "b"]}, "metadata: expected an object of strings, got list"),
        ({"metadata": {"count": 3}}, "metadata: value of 'count' is int, not a string"),
        ({"metadata": {"gone": None}}, "metadata: value of 'gone' is null, not a string"),
        ({"medium": "twilio"}, "medium: expected an object"),
        ({"medium": {"twilio": {}, "sip": {}}}, "medium: more than one medium set"),
        ({"voice": {"name": "Mark"}}, "voice: expected a string, got dict"),
        ({"billedSideInputTokens": "120"}, "billedSideInputTokens: expected an integer, got str"),
        ({"errorCount": 1.5}, "errorCount: expected an integer, got float"),
    ],
)
def test_bad_values_are_bad_records(changes: dict[str, Any], reason: str) -> None:
    call = _call(**changes)

    with pytest.raises(BadRecord) as caught:
        call_row(call, ARCHIVED, ARCHIVED_AT)

    assert caught.value.reason.startswith(reason)
    assert caught.value.record is call


# --- message_rows --------------------------------------------------------------------------------

CALL_ID = "6f1c2d3e-4b5a-4c6d-8e7f-901234567890"

CURRENT_MESSAGES: list[dict[str, Any]] = [
    {
        "role": "MESSAGE_ROLE_AGENT",
        "text": "Bonjour ! Comment puis-je vous aider ?",
        "medium": "MESSAGE_MEDIUM_VOICE",
        "callStageId": "stage-1",
        "callStageMessageIndex": 0,
    },
    {
        "role": "MESSAGE_ROLE_USER",
        "text": "Quel temps fait-il à Zürich ? 🌧",
        "medium": "MESSAGE_MEDIUM_VOICE",
        "callStageId": "stage-1",
        "callStageMessageIndex": 1,
        "timespan": {"start": "1.5s", "end": "3.25s"},
        "wallClockTimespan": {"start": "1.52s", "end": "3.3s"},
    },
    {
        "role": "MESSAGE_ROLE_TOOL_CALL",
        "text": '{"city":"Zürich"}',
        "toolName": "getWeather",
        "invocationId": "inv-1",
        "medium": "MESSAGE_MEDIUM_TEXT",
        "callStageId": "stage-1",
        "callStageMessageIndex": 2,
    },
    {
        "role": "MESSAGE_ROLE_TOOL_RESULT",
        "text": "upstream timeout",
        "toolName": "getWeather",
        "invocationId": "inv-1",
        "errorDetails": "HTTP 504 from weather service",
        "medium": "MESSAGE_MEDIUM_UNSPECIFIED",
        "callStageId": "stage-1",
        "callStageMessageIndex": 3,
        "callState": {"lastCity": "Zürich"},
        "metadata": {"trace": "t-1"},
    },
    {"role": "MESSAGE_ROLE_UNSPECIFIED", "text": ""},
]

SEED_MESSAGES: list[dict[str, Any]] = [
    {"ordinal": 7, "role": "AGENT", "text": "Hello!"},
    {"ordinal": 8, "role": "USER", "text": "Hi, I need help."},
    {"ordinal": 9, "role": "AGENT", "text": "Sure."},
]


def test_current_revision_messages() -> None:
    rows = message_rows(CALL_ID, CURRENT_MESSAGES)

    assert [r["message_index"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["role"] for r in rows] == ["agent", "user", "tool_call", "tool_result", "unspecified"]
    assert [r["medium"] for r in rows] == ["voice", "voice", "text", None, None]
    assert {r["call_id"] for r in rows} == {CALL_ID}
    user = rows[1]
    assert user["text"] == "Quel temps fait-il à Zürich ? 🌧"
    assert (user["start_s"], user["end_s"]) == (1.5, 3.25)
    assert (user["wall_clock_start_s"], user["wall_clock_end_s"]) == (1.52, 3.3)
    assert (user["call_stage_id"], user["call_stage_message_index"]) == ("stage-1", 1)


def test_tool_messages_keep_tool_fields() -> None:
    call, result = message_rows(CALL_ID, CURRENT_MESSAGES)[2:4]

    assert call["tool_name"] == result["tool_name"] == "getWeather"
    assert call["invocation_id"] == result["invocation_id"] == "inv-1"
    assert call["text"] == '{"city":"Zürich"}'
    assert call["error_details"] is None
    assert result["error_details"] == "HTTP 504 from weather service"
    # Unmodelled fields (callState, metadata) live in raw_json.
    assert json.loads(result["raw_json"]) == CURRENT_MESSAGES[3]


def test_messages_without_optional_fields_give_nulls() -> None:
    row = message_rows(CALL_ID, [{"role": "MESSAGE_ROLE_AGENT"}])[0]

    assert row == {
        "call_id": CALL_ID,
        "message_index": 0,
        "role": "agent",
        "text": None,
        "medium": None,
        "tool_name": None,
        "invocation_id": None,
        "error_details": None,
        "call_stage_id": None,
        "call_stage_message_index": None,
        "start_s": None,
        "end_s": None,
        "wall_clock_start_s": None,
        "wall_clock_end_s": None,
        "raw_json": '{"role":"MESSAGE_ROLE_AGENT"}',
    }


def test_message_rows_have_exactly_the_contract_file_columns() -> None:
    contract = load_table_schema("messages").arrow_schema.names

    for row in message_rows(CALL_ID, CURRENT_MESSAGES + SEED_MESSAGES):
        assert list(row) == contract


def test_seed_revision_messages_index_by_position_not_ordinal() -> None:
    rows = message_rows(CALL_ID, SEED_MESSAGES)

    assert [r["message_index"] for r in rows] == [0, 1, 2]
    assert [r["role"] for r in rows] == ["agent", "user", "agent"]
    assert [r["text"] for r in rows] == ["Hello!", "Hi, I need help.", "Sure."]
    assert json.loads(rows[0]["raw_json"])["ordinal"] == 7


def test_message_index_counts_across_pages() -> None:
    pages = [CURRENT_MESSAGES[:2], CURRENT_MESSAGES[2:]]

    rows = message_rows(CALL_ID, (m for page in pages for m in page))

    assert [r["message_index"] for r in rows] == list(range(len(CURRENT_MESSAGES)))


def test_empty_transcript() -> None:
    assert message_rows(CALL_ID, []) == []


def test_timespan_with_only_a_start() -> None:
    row = message_rows(CALL_ID, [{"role": "USER", "timespan": {"start": "2s"}}])[0]

    assert (row["start_s"], row["end_s"]) == (2.0, None)


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("MESSAGE_ROLE_USER", "user"),
        ("MESSAGE_ROLE_AGENT", "agent"),
        ("MESSAGE_ROLE_TOOL_CALL", "tool_call"),
        ("MESSAGE_ROLE_TOOL_RESULT", "tool_result"),
        ("MESSAGE_ROLE_UNSPECIFIED", "unspecified"),
        ("USER", "user"),
        ("AGENT", "agent"),
        ("user", "user"),
        ("MESSAGE_ROLE_SUPERVISOR", "unspecified"),
        (None, "unspecified"),
    ],
)
def test_normalise_role(role: str | None, expected: str) -> None:
    assert normalise_role(role) == expected


@pytest.mark.parametrize(
    ("medium", "expected"),
    [
        ("MESSAGE_MEDIUM_VOICE", "voice"),
        ("MESSAGE_MEDIUM_TEXT", "text"),
        ("MESSAGE_MEDIUM_UNSPECIFIED", None),
        ("MESSAGE_MEDIUM_CARRIER_PIGEON", None),
        (None, None),
    ],
)
def test_normalise_medium(medium: str | None, expected: str | None) -> None:
    assert normalise_medium(medium) == expected


def test_unknown_role_keeps_the_original_in_raw_json() -> None:
    row = message_rows(CALL_ID, [{"role": "MESSAGE_ROLE_SUPERVISOR", "text": "hm"}])[0]

    assert row["role"] == "unspecified"
    assert json.loads(row["raw_json"])["role"] == "MESSAGE_ROLE_SUPERVISOR"


@pytest.mark.parametrize("message", ["hello", None, ["USER", "hi"], 3])
def test_non_object_message_is_a_bad_record(message: Any) -> None:
    with pytest.raises(BadRecord, match=f"message 1 of call {CALL_ID} is not an object") as caught:
        message_rows(CALL_ID, [{"role": "USER"}, message])

    assert caught.value.record == message


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"role": 1}, "role: expected a string, got int"),
        ({"role": "USER", "medium": 2}, "medium: expected a string, got int"),
        ({"role": "USER", "text": {"t": 1}}, "text: expected a string, got dict"),
        ({"role": "USER", "timespan": "1s-2s"}, "timespan: expected an object"),
        ({"role": "USER", "timespan": {"start": "abc"}}, "timespan.start: not a duration"),
        ({"role": "USER", "wallClockTimespan": {"end": "3"}}, "wallClockTimespan.end: not a duration"),
        ({"role": "USER", "callStageMessageIndex": 2**31}, "callStageMessageIndex: 2147483648 does not fit"),
        ({"role": "USER", "callStageMessageIndex": "1"}, "callStageMessageIndex: expected an integer"),
    ],
)
def test_bad_message_values_are_bad_records(message: dict[str, Any], reason: str) -> None:
    with pytest.raises(BadRecord) as caught:
        message_rows(CALL_ID, [message])

    assert caught.value.reason.startswith(f"message 0 of call {CALL_ID}: {reason}")
    assert caught.value.record is message


def test_last_seen_and_message_count() -> None:
    seen = datetime(2026, 4, 1, tzinfo=UTC)
    row = call_row(CALL, ARCHIVED, ARCHIVED_AT, message_count=7, last_seen_at=seen)
    assert (row["archived_at"], row["last_seen_at"], row["message_count"]) == (ARCHIVED_AT, seen, 7)
    assert row["source_deleted_at"] is None


def test_with_outcome_fills_in_what_archiving_decided() -> None:
    admitted = call_row(CALL, NOT_ENABLED, ARCHIVED_AT)
    seen = datetime(2026, 4, 1, tzinfo=UTC)
    row = with_outcome(admitted, ARCHIVED, ARCHIVED_AT, message_count=7, last_seen_at=seen)
    assert row == call_row(CALL, ARCHIVED, ARCHIVED_AT, message_count=7, last_seen_at=seen)
    assert list(row) == load_table_schema("calls").arrow_schema.names


# --- tombstones ----------------------------------------------------------------------------------


def test_tombstones_map_call_ids_to_their_deletion_time_in_utc() -> None:
    parsed = tombstones(
        [
            {"callId": "a", "deletionTime": "2026-03-05T10:00:00Z"},
            {"callId": "b", "deletionTime": "2026-03-05T12:00:00+02:00", "created": "2026-03-02T09:00:00Z"},
        ]
    )
    assert parsed.deleted == {
        "a": datetime(2026, 3, 5, 10, tzinfo=UTC),
        "b": datetime(2026, 3, 5, 10, tzinfo=UTC),
    }
    assert parsed.unreadable == 0


@pytest.mark.parametrize(
    "item",
    [
        {"deletionTime": "2026-03-05T10:00:00Z"},
        {"callId": "", "deletionTime": "2026-03-05T10:00:00Z"},
        {"callId": "c"},
        {"callId": "c", "deletionTime": "yesterday"},
        ["c", "2026-03-05T10:00:00Z"],
        "c",
        None,
    ],
)
def test_unreadable_tombstones_are_counted_and_skipped(item: Any) -> None:
    parsed = tombstones([item, {"callId": "a", "deletionTime": "2026-03-05T10:00:00Z"}])
    assert parsed.deleted == {"a": datetime(2026, 3, 5, 10, tzinfo=UTC)}
    assert parsed.unreadable == 1
