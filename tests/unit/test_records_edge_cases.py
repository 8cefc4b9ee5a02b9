"""Edge cases of the per-message transforms, checked against a plain reference implementation.

message_rows and parse_duration_s run once per message (and four times per message for durations),
so they take fast paths for the common case. The reference below is the straightforward version
they replaced, kept here to pin that the fast paths accept, reject and convert exactly the same values
and raise the same reasons.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest

from etl.errors import BadRecord
from etl.fields import parse_duration_s, parse_timestamp
from etl.records import (
    message_rows,
    normalise_medium,
    normalise_role,
)

CALL_ID = "6f1c2d3e-4b5a-4c6d-8e7f-901234567890"

# --- the reference: the plain implementation -----------------------------------------------------

_REF_DURATION = re.compile(r"-?\d+(\.\d+)?s")
_REF_INT32 = range(-(2**31), 2**31)
_REF_ROLES = {"USER": "user", "AGENT": "agent", "TOOL_CALL": "tool_call", "TOOL_RESULT": "tool_result"}
_REF_MEDIA = {"VOICE": "voice", "TEXT": "text"}


def _ref_kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _ref_show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_REF_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})?",
)


def ref_parse_timestamp(value: Any, *, field: str = "timestamp") -> datetime:
    if value is None:
        raise BadRecord(f"{field}: missing")
    if not isinstance(value, str) or not _REF_TIMESTAMP.fullmatch(value):
        raise BadRecord(f"{field}: not an ISO 8601 timestamp: {_ref_show(value)}")
    text = re.sub(r"(\.\d{6})\d+", r"\1", value)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadRecord(f"{field}: not a valid timestamp: {_ref_show(value)}") from exc
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def ref_parse_duration_s(value: Any, *, field: str = "duration") -> float:
    if isinstance(value, bool):
        raise BadRecord(f"{field}: not a duration: {_ref_show(value)}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise BadRecord(f"{field}: not a finite duration: {_ref_show(value)}")
        return float(value)
    if not isinstance(value, str) or not _REF_DURATION.fullmatch(value):
        raise BadRecord(f"{field}: not a duration like '300s': {_ref_show(value)}")
    return float(value[:-1])


def _ref_optional(source: Mapping[str, Any], key: str, parse: Callable[[Any, str], Any]) -> Any:
    value = source.get(key)
    if value is None:
        return None
    return parse(value, key)


def _ref_string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise BadRecord(f"{field}: expected a string, got {_ref_kind(value)}")
    return value


def _ref_int32(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRecord(f"{field}: expected an integer, got {_ref_kind(value)}")
    if value not in _REF_INT32:
        raise BadRecord(f"{field}: {value} does not fit in 32 bits")
    return value


def _ref_duration(value: Any, field: str) -> float:
    return ref_parse_duration_s(value, field=field)


def _ref_timespan(value: Any, field: str) -> tuple[float | None, float | None]:
    if not isinstance(value, Mapping):
        raise BadRecord(f"{field}: expected an object with start and end, got {_ref_kind(value)}")
    return (
        _ref_optional(value, "start", lambda v, key: _ref_duration(v, f"{field}.{key}")),
        _ref_optional(value, "end", lambda v, key: _ref_duration(v, f"{field}.{key}")),
    )


def ref_normalise_role(role: Any) -> str:
    if role is None:
        return "unspecified"
    name = _ref_string(role, "role").upper().removeprefix("MESSAGE_ROLE_")
    return _REF_ROLES.get(name, "unspecified")


def ref_normalise_medium(medium: Any) -> str | None:
    if medium is None:
        return None
    name = _ref_string(medium, "medium").upper().removeprefix("MESSAGE_MEDIUM_")
    return _REF_MEDIA.get(name)


def _ref_message_row(call_id: str, index: int, message: Mapping[str, Any]) -> dict[str, Any]:
    timespan = _ref_optional(message, "timespan", _ref_timespan) or (None, None)
    wall_clock = _ref_optional(message, "wallClockTimespan", _ref_timespan) or (None, None)
    return {
        "call_id": call_id,
        "message_index": _ref_int32(index, "message_index"),
        "role": ref_normalise_role(message.get("role")),
        "text": _ref_optional(message, "text", _ref_string),
        "medium": ref_normalise_medium(message.get("medium")),
        "tool_name": _ref_optional(message, "toolName", _ref_string),
        "invocation_id": _ref_optional(message, "invocationId", _ref_string),
        "error_details": _ref_optional(message, "errorDetails", _ref_string),
        "call_stage_id": _ref_optional(message, "callStageId", _ref_string),
        "call_stage_message_index": _ref_optional(message, "callStageMessageIndex", _ref_int32),
        "start_s": timespan[0],
        "end_s": timespan[1],
        "wall_clock_start_s": wall_clock[0],
        "wall_clock_end_s": wall_clock[1],
        "raw_json": json.dumps(message, ensure_ascii=False, sort_keys=True, separators=(",", ":")),
    }


def ref_message_rows(call_id: str, messages: Iterable[Any]) -> list[dict[str, Any]]:
    rows = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise BadRecord(f"message {index} of call {call_id} is not an object", record=message)
        try:
            rows.append(_ref_message_row(call_id, index, message))
        except BadRecord as exc:
            raise BadRecord(f"message {index} of call {call_id}: {exc.reason}", record=message) from exc
    return rows


# --- comparing outcomes --------------------------------------------------------------------------


def _exact(value: Any) -> Any:
    """A comparable form that tells 1 from 1.0 from True, -0.0 from 0.0 and a str subclass from str."""
    if isinstance(value, dict):
        return [(key, _exact(item)) for key, item in value.items()]
    if isinstance(value, list | tuple):
        return [_exact(item) for item in value]
    return (type(value), repr(value))


def _outcome(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return ("ok", _exact(function(*args, **kwargs)))
    except BadRecord as exc:
        return ("bad", exc.reason, id(exc.record) if exc.record is not None else None)


class Text(str):
    """A str subclass: accepted wherever a string is."""


class Count(int):
    """An int subclass that is not a bool: accepted wherever an integer is.

    Not used as a message field: `in range(...)` scans an int subclass one element at a time, so the
    reference would take minutes to accept one."""


# --- parse_duration_s ----------------------------------------------------------------------------

ACCEPTED_DURATIONS: list[tuple[str, float]] = [
    ("300s", 300.0),
    ("0s", 0.0),
    ("00s", 0.0),
    ("007.50s", 7.5),
    ("-1s", -1.0),
    ("-0.25s", -0.25),
    ("12.345s", 12.345),
    ("1." + "0" * 30 + "1s", 1.0),
    # \d is any Unicode decimal digit, and float() reads them too.
    ("\u0663s", 3.0),
    ("\u0661.\u0665s", 1.5),
    ("\uff17s", 7.0),
    # Too large for a float: the grammar allows it and float() overflows to infinity.
    ("1" * 400 + "s", math.inf),
]

REJECTED_DURATIONS = [
    "nans",
    "nan s",
    "NaNs",
    "infs",
    "-infs",
    "infinitys",
    "1e3s",
    "1E3s",
    "1.5e-3s",
    " 5s",
    "5s ",
    "5 s",
    "\n5s",
    "5s\n",
    "+1s",
    "--1s",
    "-s",
    "s",
    "",
    ".5s",
    "-.5s",
    "1.s",
    "1..5s",
    "1.5.2s",
    "1,5s",
    "1_0s",
    "0x10s",
    "5S",
    "5ss",
    "5",
    "5m",
    "\u00b2s",  # superscript two: a digit to isdigit(), not a decimal digit
    "\u2155s",  # vulgar fraction one fifth: numeric, not a digit
    "\u0663\u0664\u00bds",
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED_DURATIONS)
def test_accepted_durations(text: str, expected: float) -> None:
    parsed = parse_duration_s(text)

    assert parsed == expected
    assert type(parsed) is float
    assert parsed == ref_parse_duration_s(text)


def test_negative_zero_keeps_its_sign() -> None:
    assert math.copysign(1.0, parse_duration_s("-0s")) == -1.0
    assert math.copysign(1.0, parse_duration_s("-0.0s")) == -1.0


@pytest.mark.parametrize("text", REJECTED_DURATIONS)
def test_rejected_durations(text: str) -> None:
    with pytest.raises(BadRecord) as caught:
        parse_duration_s(text, field="timespan.start")

    assert caught.value.reason == f"timespan.start: not a duration like '300s': {_ref_show(text)}"
    assert _outcome(parse_duration_s, text, field="f") == _outcome(ref_parse_duration_s, text, field="f")


@pytest.mark.parametrize(
    "value",
    [
        0,
        5,
        -3,
        2**70,
        1.5,
        -0.0,
        True,
        False,
        None,
        math.nan,
        math.inf,
        -math.inf,
        [],
        {},
        b"5s",
        Text("5s"),
        Count(4),
    ],
)
def test_non_string_durations_match_the_reference(value: Any) -> None:
    assert _outcome(parse_duration_s, value, field="f") == _outcome(ref_parse_duration_s, value, field="f")


def test_long_rejected_duration_is_shown_shortened() -> None:
    text = "x" * 200 + "s"

    with pytest.raises(BadRecord) as caught:
        parse_duration_s(text, field="maxDuration")

    assert caught.value.reason == f"maxDuration: not a duration like '300s': {repr(text)[:77]}..."


def test_every_short_duration_over_a_tricky_alphabet_matches_the_reference() -> None:
    alphabet = ["-", "+", ".", "s", "1", "0", "\u0663", "\u00b2", " ", "e", "_", "n"]
    for length in range(5):
        for letters in itertools.product(alphabet, repeat=length):
            text = "".join(letters)
            assert _outcome(parse_duration_s, text) == _outcome(ref_parse_duration_s, text), text


def test_every_digit_like_character_matches_the_reference() -> None:
    # Characters a digit test could disagree on: anything numeric, any space, Latin-1.
    tricky = [
        chr(code)
        for code in range(sys.maxunicode + 1)
        if code < 256 or chr(code).isnumeric() or chr(code).isspace() or chr(code).isdigit()
    ]
    for char in tricky:
        for text in (f"{char}s", f"1{char}s", f"1.{char}s", f"-{char}s", f"{char}1s"):
            assert _outcome(parse_duration_s, text) == _outcome(ref_parse_duration_s, text), repr(text)


# --- parse_timestamp -----------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", ["", "."] + ["." + "123456789"[:digits] for digits in range(1, 11)])
@pytest.mark.parametrize("offset", ["", "Z", "z", "+00:00", "-0130", "+14:00", "+2400", "Q"])
@pytest.mark.parametrize(
    "clock", ["2026-03-02T23:59:59", "2026-03-02 00:00:00", "2026-03-02T10:00", "2026-02-30T10:00:00"]
)
def test_timestamps_match_the_reference(clock: str, fraction: str, offset: str) -> None:
    text = clock + fraction + offset

    assert _outcome(parse_timestamp, text, field="f") == _outcome(ref_parse_timestamp, text, field="f")


@pytest.mark.parametrize(
    "text",
    [
        "2026-03-02T23:59:59.9999999Z",
        "2026-03-02T23:59:59.999999999+01:00",
        "2026-03-02T10:00:00.\u0661\u0662\u0663\u0664\u0665\u0666\u0667Z",
        "2026-03-02T10:00:00.1234567\u0668",
        "\u0662\u0660\u0662\u0666-03-02T10:00:00.12345678Z",
        "2026-03-02T10:00:00.1234567.1Z",
        "2026-03-02T10:00:00.1234567\n",
        "2026-03-02T10:00\u0660.1234567Z",
        "",
        None,
        1772445600,
        Text("2026-03-02T10:00:00.12345678Z"),
    ],
)
def test_unusual_timestamps_match_the_reference(text: Any) -> None:
    assert _outcome(parse_timestamp, text, field="f") == _outcome(ref_parse_timestamp, text, field="f")


def test_nanoseconds_are_cut_not_rounded() -> None:
    assert parse_timestamp("2026-03-02T23:59:59.999999999-01:00") == datetime(
        2026, 3, 3, 0, 59, 59, 999999, tzinfo=UTC
    )


# --- message_rows --------------------------------------------------------------------------------

# Typical messages of the current and the older revision, as the API sends them.
TYPICAL_MESSAGES: list[dict[str, Any]] = [
    {
        "role": "MESSAGE_ROLE_AGENT",
        "text": "Bonjour ! Comment puis-je vous aider ?",
        "medium": "MESSAGE_MEDIUM_VOICE",
        "callStageId": "stage-1",
        "callStageMessageIndex": 0,
        "timespan": {"start": "0.5s", "end": "2.25s"},
        "wallClockTimespan": {"start": "0.7s", "end": "2.5s"},
    },
    {
        "role": "MESSAGE_ROLE_TOOL_CALL",
        "text": '{"orderId": "A-1", "note": "née à Zürich 🇨🇭"}',
        "invocationId": "inv-1",
        "toolName": "lookupOrder",
        "medium": "MESSAGE_MEDIUM_VOICE",
        "callStageId": "stage-1",
        "callStageMessageIndex": 1,
        "timespan": {"start": "3s", "end": "3.2s"},
    },
    {
        "role": "MESSAGE_ROLE_TOOL_RESULT",
        "text": "The tool failed.",
        "invocationId": "inv-1",
        "toolName": "lookupOrder",
        "errorDetails": "TimeoutError: upstream took 10.2s",
        "medium": "MESSAGE_MEDIUM_TEXT",
        "callState": {"z": 1, "a": [1.5, None, True, "ü"]},
    },
    {"ordinal": 3, "role": "USER", "text": "Hi"},
    {"role": "MESSAGE_ROLE_UNSPECIFIED", "text": ""},
    {},
]

# Values a field may hold in a broken or unusual record, besides the typical ones.
ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    7,
    2**31 - 1,
    2**31,
    -(2**31),
    -(2**31) - 1,
    1.0,
    -0.0,
    math.nan,
    math.inf,
    "",
    "x",
    "user",
    "MESSAGE_ROLE_USER",
    "message_role_agent",
    "MESSAGE_ROLE_",
    "AGENT",
    "TOOL_CALL",
    "MESSAGE_MEDIUM_VOICE",
    "text",
    "voice",
    "MESSAGE_MEDIUM_UNSPECIFIED",
    "ß",
    "1s",
    "-2.5s",
    "1e3s",
    " 5s",
    "nans",
    Text("MESSAGE_ROLE_USER"),
    Text("stage"),
    [],
    ["USER"],
    {},
    {"start": "1s"},
    {"start": "1s", "end": "2.5s"},
    {"start": None, "end": "-0s"},
    {"start": 4, "end": 4.5},
    {"start": True},
    {"end": "1e3s"},
    {"start": math.nan},
    {"start": " 1s"},
    {"start": "1_0s"},
    {"start": []},
    MappingProxyType({"start": "2s", "end": "1s"}),
]

FIELDS = [
    "role",
    "text",
    "medium",
    "toolName",
    "invocationId",
    "errorDetails",
    "callStageId",
    "callStageMessageIndex",
    "timespan",
    "wallClockTimespan",
    "unknownField",
]


@pytest.mark.parametrize("message", TYPICAL_MESSAGES)
def test_typical_messages_match_the_reference(message: dict[str, Any]) -> None:
    assert _exact(message_rows(CALL_ID, [message])) == _exact(ref_message_rows(CALL_ID, [message]))


def test_typical_message_row_exactly() -> None:
    row = message_rows(CALL_ID, TYPICAL_MESSAGES[:1])[0]

    assert _exact(row) == _exact(
        {
            "call_id": CALL_ID,
            "message_index": 0,
            "role": "agent",
            "text": "Bonjour ! Comment puis-je vous aider ?",
            "medium": "voice",
            "tool_name": None,
            "invocation_id": None,
            "error_details": None,
            "call_stage_id": "stage-1",
            "call_stage_message_index": 0,
            "start_s": 0.5,
            "end_s": 2.25,
            "wall_clock_start_s": 0.7,
            "wall_clock_end_s": 2.5,
            "raw_json": (
                '{"callStageId":"stage-1","callStageMessageIndex":0,"medium":"MESSAGE_MEDIUM_VOICE",'
                '"role":"MESSAGE_ROLE_AGENT","text":"Bonjour ! Comment puis-je vous aider ?",'
                '"timespan":{"end":"2.25s","start":"0.5s"},'
                '"wallClockTimespan":{"end":"2.5s","start":"0.7s"}}'
            ),
        }
    )


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
def test_every_odd_value_in_every_field_matches_the_reference(field: str, value: Any) -> None:
    for base in TYPICAL_MESSAGES:
        message = {**base, field: value}
        try:
            json.dumps(message)
        except (TypeError, ValueError):
            continue  # not JSON data (a MappingProxyType that passes validation): nothing to compare
        assert _outcome(message_rows, CALL_ID, [message]) == _outcome(ref_message_rows, CALL_ID, [message])


def test_random_messages_match_the_reference() -> None:
    rng = random.Random(20260302)
    for _ in range(3000):
        message = dict(rng.choice(TYPICAL_MESSAGES))
        for field in rng.sample(FIELDS, rng.randint(1, 4)):
            message[field] = rng.choice(ODD_VALUES)
        if any(isinstance(value, MappingProxyType) for value in message.values()):
            continue  # raw_json cannot encode it; covered where it fails validation first
        assert _outcome(message_rows, CALL_ID, [message]) == _outcome(ref_message_rows, CALL_ID, [message])


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"text": True}, "text: expected a string, got bool"),
        ({"toolName": 3}, "toolName: expected a string, got int"),
        ({"invocationId": []}, "invocationId: expected a string, got list"),
        ({"errorDetails": {}}, "errorDetails: expected a string, got dict"),
        ({"callStageId": 1.5}, "callStageId: expected a string, got float"),
        ({"callStageMessageIndex": True}, "callStageMessageIndex: expected an integer, got bool"),
        ({"callStageMessageIndex": 1.0}, "callStageMessageIndex: expected an integer, got float"),
        (
            {"callStageMessageIndex": -(2**31) - 1},
            "callStageMessageIndex: -2147483649 does not fit in 32 bits",
        ),
        ({"role": ["USER"]}, "role: expected a string, got list"),
        ({"role": {"name": "USER"}}, "role: expected a string, got dict"),
        ({"medium": {"voice": {}}}, "medium: expected a string, got dict"),
        ({"medium": False}, "medium: expected a string, got bool"),
        ({"timespan": []}, "timespan: expected an object with start and end, got list"),
        ({"timespan": "1s"}, "timespan: expected an object with start and end, got str"),
        ({"timespan": {"start": True}}, "timespan.start: not a duration: True"),
        ({"timespan": {"start": math.nan}}, "timespan.start: not a finite duration: nan"),
        ({"timespan": {"end": "1e3s"}}, "timespan.end: not a duration like '300s': '1e3s'"),
        (
            {"wallClockTimespan": {"start": " 5s"}},
            "wallClockTimespan.start: not a duration like '300s': ' 5s'",
        ),
        ({"wallClockTimespan": {"end": "nans"}}, "wallClockTimespan.end: not a duration like '300s': 'nans'"),
        # The first bad field in column order is the one named.
        ({"text": 1, "timespan": {"start": "x"}}, "timespan.start: not a duration like '300s': 'x'"),
        ({"text": 1, "role": 2}, "role: expected a string, got int"),
        ({"text": 1, "medium": 2}, "text: expected a string, got int"),
    ],
)
def test_bad_values_name_the_field(message: dict[str, Any], reason: str) -> None:
    with pytest.raises(BadRecord) as caught:
        message_rows(CALL_ID, [{"role": "USER"}, message])

    assert caught.value.reason == f"message 1 of call {CALL_ID}: {reason}"
    assert caught.value.record is message


@pytest.mark.parametrize(
    ("message", "column", "expected"),
    [
        ({"callStageMessageIndex": 2**31 - 1}, "call_stage_message_index", 2**31 - 1),
        ({"callStageMessageIndex": -(2**31)}, "call_stage_message_index", -(2**31)),
        ({"timespan": {"start": 5}}, "start_s", 5.0),
        ({"timespan": {"start": -0.0}}, "start_s", -0.0),
        ({"timespan": {"start": None, "end": "2s"}}, "start_s", None),
        ({"timespan": {}}, "start_s", None),
        ({"timespan": None}, "start_s", None),
        ({"wallClockTimespan": {"end": "-1s"}}, "wall_clock_end_s", -1.0),
        ({"role": "message_role_tool_call"}, "role", "tool_call"),
        ({"role": "MESSAGE_ROLE_"}, "role", "unspecified"),
        ({"role": Text("AGENT")}, "role", "agent"),
        ({"medium": "voice"}, "medium", "voice"),
        ({"medium": "MESSAGE_MEDIUM_UNSPECIFIED"}, "medium", None),
        ({"text": Text("hi")}, "text", Text("hi")),
    ],
)
def test_unusual_values_that_are_accepted(message: dict[str, Any], column: str, expected: Any) -> None:
    row = message_rows(CALL_ID, [message])[0]

    assert _exact(row[column]) == _exact(expected)


def test_a_str_subclass_is_kept_as_it_is() -> None:
    text = Text("hi")

    assert message_rows(CALL_ID, [{"text": text}])[0]["text"] is text


def test_a_mapping_that_is_not_a_dict_is_validated_then_cannot_be_encoded() -> None:
    # json encodes dicts only: such a message gets as far as raw_json, or is refused before if bad.
    good = MappingProxyType({"role": "USER", "timespan": {"start": "1s"}})
    bad = MappingProxyType({"role": "USER", "timespan": {"start": "1e3s"}})

    with pytest.raises(TypeError, match="not JSON serializable"):
        message_rows(CALL_ID, [good])
    with pytest.raises(BadRecord, match=r"timespan\.start: not a duration"):
        message_rows(CALL_ID, [bad])


def test_raw_json_is_compact_sorted_and_keeps_non_ascii_and_non_finite_numbers() -> None:
    message = {"text": "Zürich 🌧", "b": {"y": 1, "x": [math.nan, math.inf]}, "a": None}

    row = message_rows(CALL_ID, [message])[0]

    assert row["raw_json"] == '{"a":null,"b":{"x":[NaN,Infinity],"y":1},"text":"Zürich 🌧"}'


def test_raw_json_of_non_json_data_fails_as_before() -> None:
    message = {"text": "hi", "extra": object()}

    with pytest.raises(TypeError, match="not JSON serializable"):
        message_rows(CALL_ID, [message])


@pytest.mark.parametrize(
    "role",
    ["MESSAGE_ROLE_USER", "MESSAGE_ROLE_AGENT", "USER", "user", "Agent", "MESSAGE_ROLE_X", "", "ß", None],
)
def test_normalise_role_matches_the_reference(role: Any) -> None:
    assert normalise_role(role) == ref_normalise_role(role)


@pytest.mark.parametrize(
    "medium", ["MESSAGE_MEDIUM_VOICE", "MESSAGE_MEDIUM_TEXT", "TEXT", "voice", "x", "", None]
)
def test_normalise_medium_matches_the_reference(medium: Any) -> None:
    assert normalise_medium(medium) == ref_normalise_medium(medium)
