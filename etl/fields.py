"""Pure parsers for single API field values: timestamps, durations and typed scalars.

Each raises BadRecord with a reason naming the API field, so a record with a bad value can be
quarantined with a reason a person can act on. `records` builds rows out of these.

Timestamps: the API documents them as UTC ISO 8601. Offsets other than UTC are converted; a
timestamp without an offset is taken as UTC (the documented zone) rather than rejected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from etl.errors import BadRecord

T = TypeVar("T")

# Extended ISO 8601 date and time, optional fraction and offset. fromisoformat alone would also
# accept a bare date or the basic format (20260302T1000), which the API never sends and which more
# likely mean a mangled value than a timestamp.
_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})?",
)
# Protobuf JSON duration, as in the OpenAPI pattern: "300s", "245.5s", "-1.5s".
_DURATION = re.compile(r"-?\d+(\.\d+)?s")
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def parse_timestamp(value: Any, *, field: str = "timestamp") -> datetime:
    """ISO 8601 string -> aware datetime in UTC (microsecond precision; extra digits truncated)."""
    if value is None:
        raise BadRecord(f"{field}: missing")
    if not isinstance(value, str) or not (match := _TIMESTAMP.fullmatch(value)):
        raise BadRecord(f"{field}: not an ISO 8601 timestamp: {show(value)}")
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
        raise BadRecord(f"{field}: not a valid timestamp: {show(value)}") from exc
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+14:00 is a moment before the first one a datetime holds
        raise BadRecord(f"{field}: out of range in UTC: {show(value)}") from None


def parse_duration_s(value: Any, *, field: str = "duration") -> float:
    """API duration ("300s", "245.5s") -> seconds. A bare number is taken as seconds already."""
    if isinstance(value, bool):
        raise BadRecord(f"{field}: not a duration: {show(value)}")
    if isinstance(value, int | float):
        if not _finite(value):
            raise BadRecord(f"{field}: not a finite duration: {show(value)}")
        return float(value)
    if not isinstance(value, str) or not _DURATION.fullmatch(value):
        raise BadRecord(f"{field}: not a duration like '300s': {show(value)}")
    return float(value[:-1])


def optional(source: Mapping[str, Any], key: str, parse: Callable[[Any, str], T]) -> T | None:
    """source[key] parsed, or None when absent or null. `key` (the API name) labels errors."""
    value = source.get(key)
    if value is None:
        return None
    return parse(value, key)


def timestamp(value: Any, field: str) -> datetime:
    return parse_timestamp(value, field=field)


def duration(value: Any, field: str) -> float:
    return parse_duration_s(value, field=field)


def string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise BadRecord(f"{field}: expected a string, got {kind(value)}")
    return value


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise BadRecord(f"{field}: expected true or false, got {kind(value)}")
    return value


def integer(value: Any, field: str) -> int:
    # bool is an int subclass in Python; JSON true is not a count.
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRecord(f"{field}: expected an integer, got {kind(value)}")
    # The columns are int64: a larger value would fail the whole Parquet batch, not this record.
    if not INT64_MIN <= value <= INT64_MAX:
        raise BadRecord(f"{field}: {show(value)} does not fit in 64 bits")
    return value


def int32(value: Any, field: str) -> int:
    number = integer(value, field)
    # Compared, not `in range(...)`: a range scans an int subclass element by element.
    if not INT32_MIN <= number <= INT32_MAX:
        raise BadRecord(f"{field}: {number} does not fit in 32 bits")
    return number


def number(value: Any, field: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not _finite(value):
        raise BadRecord(f"{field}: expected a finite number, got {show(value)}")
    return float(value)


def _finite(value: int | float) -> bool:
    # An integer beyond a float's range is as unstorable in a float64 column as an infinity
    # (math.isfinite raises OverflowError for it).
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def string_map(value: Any, field: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise BadRecord(f"{field}: expected an object of strings, got {kind(value)}")
    for key, item in value.items():
        if not isinstance(item, str):
            raise BadRecord(f"{field}: value of {key!r} is {kind(item)}, not a string")
    return dict(value)


def medium_key(value: Any, field: str) -> str | None:
    # The API models the medium as a oneof: {"webRtc": {}}, {"twilio": {...}}; the key is the medium.
    if not isinstance(value, Mapping):
        raise BadRecord(f"{field}: expected an object like {{'webRtc': {{}}}}, got {kind(value)}")
    if len(value) > 1:
        raise BadRecord(f"{field}: more than one medium set: {sorted(value)}")
    return next(iter(value), None)


# --- the per-message fast paths --------------------------------------------------------------------
# These run once per message (several times for timespans): each costs a type test when the value is
# absent or already right, and leaves the general parsers to raise their reasons.


def optional_string(source: Mapping[str, Any], key: str) -> str | None:
    """optional(source, key, string), for the per-message path."""
    value = source.get(key)
    if value is None or type(value) is str:
        return value
    return string(value, key)


def optional_int32(source: Mapping[str, Any], key: str) -> int | None:
    """optional(source, key, int32), for the per-message path."""
    value = source.get(key)
    if value is None or (type(value) is int and INT32_MIN <= value <= INT32_MAX):
        return value
    return int32(value, key)


def timespan(value: Any, field: str) -> tuple[float | None, float | None]:
    if type(value) is not dict and not isinstance(value, Mapping):
        raise BadRecord(f"{field}: expected an object with start and end, got {kind(value)}")
    return _timespan_bound(value, field, "start"), _timespan_bound(value, field, "end")


def _timespan_bound(span: Mapping[str, Any], field: str, key: str) -> float | None:
    value = span.get(key)
    if value is None:
        return None
    if type(value) is str and _DURATION.fullmatch(value):
        return float(value[:-1])
    # parse_duration_s as it would go for the common case, without building the field's name for
    # every message: only an unusual or bad value gets here.
    return parse_duration_s(value, field=f"{field}.{key}")


def kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def show(value: Any) -> str:
    # Reasons end up in logs and quarantine files; keep them short.
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
