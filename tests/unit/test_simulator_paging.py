"""Query semantics of the simulated list endpoints: date filters, cursors, page sizes, keyset pages."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from etl.simulator.paging import (
    BadRequest,
    Cursor,
    decode_cursor,
    encode_cursor,
    keyset_page,
    page_size,
    page_url,
    parse_date_filter,
)


def us(text: str) -> int:
    moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


@pytest.mark.parametrize(
    ("text", "end_of_day", "expected"),
    [
        ("2026-03-02", False, us("2026-03-02T00:00:00")),
        ("2026-03-02", True, us("2026-03-02T23:59:59.999999")),
        ("2026-03-02T10:00:00Z", False, us("2026-03-02T10:00:00")),
        ("2026-03-02T10:00:00Z", True, us("2026-03-02T10:00:00")),
        ("2026-03-02T10:00:00+00:00", False, us("2026-03-02T10:00:00")),
        ("2026-03-02T10:00:00 00:00", False, us("2026-03-02T10:00:00")),  # '+' decoded as a space
        ("2026-03-02T12:00:00+02:00", False, us("2026-03-02T10:00:00")),
        ("2026-03-02T10:00:00.25Z", False, us("2026-03-02T10:00:00.250000")),
        ("2026-03-02T10:00:00.123456789Z", False, us("2026-03-02T10:00:00.123456")),
        ("2026-03-02T10:00:00", False, us("2026-03-02T10:00:00")),  # no offset: UTC here
    ],
)
def test_date_filters(text: str, end_of_day: bool, expected: int) -> None:
    assert parse_date_filter("fromDate", text, end_of_day=end_of_day) == expected


@pytest.mark.parametrize(
    ("text", "end_of_day", "expected"),
    [
        ("2026-03-02", False, us("2026-03-02T05:00:00")),
        ("2026-03-02", True, us("2026-03-03T04:59:59.999999")),
        ("2026-03-02T10:00:00", False, us("2026-03-02T15:00:00")),
        ("2026-03-02T10:00:00Z", False, us("2026-03-02T10:00:00")),  # an explicit offset is exact
        ("2026-03-02T23:59:59.999999+00:00", True, us("2026-03-02T23:59:59.999999")),
    ],
)
def test_dates_without_an_offset_are_read_in_the_configured_zone(
    text: str, end_of_day: bool, expected: int
) -> None:
    assert parse_date_filter("fromDate", text, end_of_day=end_of_day, naive_offset_h=-5) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-02-30", "2026-03-02T25:00:00Z", "03/02/2026", ""])
def test_invalid_dates_are_bad_requests(text: str) -> None:
    with pytest.raises(BadRequest, match="toDate"):
        parse_date_filter("toDate", text, end_of_day=True)


def test_cursor_round_trip_and_opacity() -> None:
    for cursor in (
        Cursor("calls", key=(1772409600000000, "abc")),
        Cursor("calls", key=(5, "x"), reverse=True),
    ):
        text = encode_cursor(cursor)
        assert "=" not in text and "abc" not in text
        assert decode_cursor(text, "calls") == cursor
    assert decode_cursor(encode_cursor(Cursor("messages", offset=40)), "messages") == Cursor(
        "messages", offset=40
    )


@pytest.mark.parametrize("text", ["garbage!", "bm90IGpzb24", "eyJrIjoiY2FsbHMifQ", "W10"])
def test_garbage_cursors_are_bad_requests(text: str) -> None:
    with pytest.raises(BadRequest, match="Invalid cursor"):
        decode_cursor(text, "calls")


def test_a_cursor_of_another_list_is_rejected() -> None:
    with pytest.raises(BadRequest):
        decode_cursor(encode_cursor(Cursor("messages", offset=20)), "calls")


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, 100), ("7", 7), ("1000", 250), ("0", 100), ("-3", 100), ("x", 100)]
)
def test_page_size_defaults_and_clamps(raw: str | None, expected: int) -> None:
    assert page_size(raw, 100, 250) == expected


def test_page_url_is_absolute_and_keeps_filters() -> None:
    url = page_url(
        "127.0.0.1:81", "/api/calls", [("cursor", "old"), ("fromDate", "2026-03-02T00:00:00+00:00")], "new"
    )
    assert url == "http://127.0.0.1:81/api/calls?cursor=new&fromDate=2026-03-02T00%3A00%3A00%2B00%3A00"


def test_keyset_pages_survive_inserts_before_the_cursor() -> None:
    items = [(t, f"id{t}") for t in range(0, 100, 10)]
    start, stop = keyset_page(items, lambda item: item, 0, len(items), None, 3)
    assert items[start:stop] == [(0, "id0"), (10, "id10"), (20, "id20")]
    cursor = Cursor("calls", key=items[stop - 1])
    items.insert(1, (5, "id5"))  # created before the cursor: must not shift the next page
    start, stop = keyset_page(items, lambda item: item, 0, len(items), cursor, 3)
    assert items[start:stop] == [(30, "id30"), (40, "id40"), (50, "id50")]
    back = Cursor("calls", key=items[start], reverse=True)
    start, stop = keyset_page(items, lambda item: item, 0, len(items), back, 3)
    assert items[start:stop] == [(5, "id5"), (10, "id10"), (20, "id20")]
