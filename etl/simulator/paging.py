"""Query-parameter semantics shared by the list endpoints: cursors, page sizes, date filters; pure.

Cursors are opaque to clients (urlsafe base64 of a small JSON object) but carry a keyset position
rather than an offset, so a walk over /api/calls neither skips nor repeats a call when new calls are
created between two pages, as the real API promises.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import urlencode

from etl.simulator.account import US_PER_DAY, date_to_us, us_to_datetime

T = TypeVar("T")
Key = tuple[int, str]

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
# An unencoded "+00:00" in a query string is decoded as " 00:00"; accept it the way servers do.
_SPACE_OFFSET = re.compile(r" (\d{2}(:?\d{2})?)$")


class BadRequest(ValueError):
    """A client error, answered 400 with {"detail": <message>}."""


@dataclass(frozen=True, slots=True)
class Cursor:
    kind: str
    key: Key | None = None  # keyset position (list of calls)
    reverse: bool = False  # True: the page *before* `key` (a `previous` link)
    offset: int = 0  # position in a fixed list (messages, stages)


def encode_cursor(cursor: Cursor) -> str:
    payload: dict[str, Any] = {"k": cursor.kind}
    if cursor.key is not None:
        payload["p"] = list(cursor.key)
        payload["r"] = int(cursor.reverse)
    else:
        payload["o"] = cursor.offset
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, kind: str) -> Cursor:
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        payload = json.loads(raw)
    except (ValueError, binascii.Error) as exc:
        raise BadRequest("Invalid cursor") from exc
    if not isinstance(payload, dict) or payload.get("k") != kind:
        raise BadRequest("Invalid cursor")
    position, offset = payload.get("p"), payload.get("o")
    if isinstance(position, list) and len(position) == 2:
        created, call_id = position
        if type(created) is int and isinstance(call_id, str) and payload.get("r") in (0, 1):
            return Cursor(kind, key=(created, call_id), reverse=bool(payload["r"]))
    if type(offset) is int and offset >= 0:
        return Cursor(kind, offset=offset)
    raise BadRequest("Invalid cursor")


def page_size(raw: str | None, default: int, maximum: int) -> int:
    # Like Django REST framework: a page size that is not a positive integer falls back to the
    # default rather than failing, and one above the maximum is clamped.
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        value = default
    return min(value if value > 0 else default, maximum)


def parse_date_filter(name: str, text: str, *, end_of_day: bool, naive_offset_h: float = 0.0) -> int:
    """fromDate/toDate -> microseconds since the epoch. Both bounds are inclusive.

    A date without a time means the start of that day for fromDate and its last microsecond
    (23:59:59.999999) for toDate. The zone of a bare date, or of a date-time without an offset, is
    not documented: it is read at UTC`naive_offset_h` (the simulator's default is not UTC, so that a
    client relying on a guess gets the wrong day, as it may against the real API).
    """
    value = text.strip()
    zone = timezone(timedelta(hours=naive_offset_h))
    try:
        if _DATE_ONLY.fullmatch(value):
            local_midnight = date_to_us(date.fromisoformat(value)) - round(naive_offset_h * 3600 * 1_000_000)
            return local_midnight + US_PER_DAY - 1 if end_of_day else local_midnight
        moment = datetime.fromisoformat(_SPACE_OFFSET.sub(r"+\1", value))
    except ValueError as exc:
        raise BadRequest(f"{name}: Enter a valid date/time.") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    delta = moment - us_to_datetime(0)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def page_url(host: str, path: str, params: Sequence[tuple[str, str]], cursor: str) -> str:
    """Absolute link to another page, carrying every original filter (as the real API does)."""
    kept = [(name, value) for name, value in params if name != "cursor"]
    return f"http://{host}{path}?{urlencode([('cursor', cursor), *kept])}"


def keyset_page(
    items: Sequence[T], key: Callable[[T], Key], lo: int, hi: int, cursor: Cursor | None, size: int
) -> tuple[int, int]:
    """Slice bounds of one page of the sorted `items[lo:hi]`, positioned by a keyset cursor."""
    if cursor is None or cursor.key is None:
        return lo, min(hi, lo + size)
    if cursor.reverse:
        stop = bisect.bisect_left(items, cursor.key, lo, hi, key=key)
        return max(lo, stop - size), stop
    start = bisect.bisect_right(items, cursor.key, lo, hi, key=key)
    return start, min(hi, start + size)
