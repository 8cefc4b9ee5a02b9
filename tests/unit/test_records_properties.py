"""Property-based tests of the pure transform (etl/records.py, etl/fields.py; issue 11, item 8): any JSON
the API could send becomes rows that the Parquet writer takes, or a BadRecord whose quarantine entry can
be written, never another exception.

"Any JSON" is what `json.loads` can return: unbounded integers, NaN and infinities, lone surrogates
(the escape "\\ud800" decodes to one), any nesting; mixed with plausible values for the fields the
tables model, so that the valid path is explored as well as the refusals.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl import records
from etl.errors import BadRecord
from etl.model import ProblemKind, RecordingOutcome, RecordingStatus
from etl.parquet import ParquetSpool
from etl.reporting.ledger import Ledger, PartitionBook
from etl.reporting.summary import RunSummary, run_records
from etl.schema import load_table_schema

NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text as the decoder may hand it over: any code point, lone surrogates included.
odd_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12) | st.sampled_from(
    ["", " ", "\ud800", "a\udfffb", "\x00", "Zürich 🌧", "1e999s", "300s", "-0.5s", "nans"]
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**62, max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | odd_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(odd_text, children, max_size=4),
    max_leaves=16,
)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


ODD_TIMESTAMPS = [
    "2026-03-02T10:00:00.123456789Z",
    "2026-03-02 10:00",
    "2026-03-02T10:00+14:00",
    "0001-01-01T00:00+14:00",  # before the first moment a datetime can hold, once in UTC
    "9999-12-31T23:59-14:00",
]
timestamps = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
).map(_iso) | st.sampled_from(ODD_TIMESTAMPS)
durations = st.floats(min_value=-1e20, max_value=1e20).map(lambda s: f"{s:f}s") | st.sampled_from(
    ["300s", "1e3s"]
)


def field(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return plausible | json_values


CALL_FIELDS = {
    "callId": field(st.text(st.characters(codec="ascii"), min_size=1, max_size=20)),
    "created": field(timestamps),
    "joined": field(timestamps),
    "ended": field(timestamps),
    "endReason": field(st.sampled_from(["hangup", "timeout"])),
    "temperature": field(st.floats()),
    "maxDuration": field(durations),
    "billedDuration": field(durations),
    "recordingEnabled": field(st.booleans()),
    "metadata": field(st.dictionaries(odd_text, odd_text, max_size=3)),
    "medium": field(st.dictionaries(st.sampled_from(["webRtc", "twilio", "sip"]), json_values, max_size=2)),
    "billedSideInputTokens": field(st.integers()),
    "errorCount": field(st.integers()),
    "systemPrompt": field(odd_text),
}
MESSAGE_FIELDS = {
    "role": field(st.sampled_from(["MESSAGE_ROLE_USER", "MESSAGE_ROLE_AGENT", "USER", "TOOL_CALL"])),
    "text": field(odd_text),
    "medium": field(st.sampled_from(["MESSAGE_MEDIUM_VOICE", "MESSAGE_MEDIUM_TEXT"])),
    "callStageMessageIndex": field(st.integers()),
    "timespan": field(st.fixed_dictionaries({}, optional={"start": durations, "end": durations})),
    "wallClockTimespan": field(st.fixed_dictionaries({}, optional={"start": durations, "end": durations})),
    "toolName": field(odd_text),
}
calls = st.fixed_dictionaries({}, optional=CALL_FIELDS).flatmap(
    lambda known: st.dictionaries(odd_text, json_values, max_size=3).map(lambda extra: {**extra, **known})
)
messages = st.fixed_dictionaries({}, optional=MESSAGE_FIELDS)
listed = calls | json_values  # a listing item may be anything at all


@pytest.fixture(scope="module")
def spool_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


def _written(table: str, rows: list[dict[str, Any]], directory: Path) -> None:
    """The rows go into a Parquet file as the run writes them (the contract's schema, UTF-8 strings)."""
    spool = ParquetSpool(load_table_schema(table), directory)
    spool.add_many(rows)
    path = spool.close()
    assert path is not None and path.stat().st_size > 0
    path.unlink()


def _quarantined(exc: BadRecord, raw: object) -> None:
    """The BadRecord's quarantine entry and the run record that carries it can be written."""
    summary = RunSummary(run_id="r", command="backfill", since="", until="", started_at=_iso(NOW))
    Ledger(summary).problem(ProblemKind.BAD_RECORD, exc.reason, PartitionBook(NOW.date()), raw=raw)
    quarantine, run = run_records(summary)
    # JSON Lines are split at "\n" only: str.splitlines() would also split inside a string at U+0085.
    for line in quarantine[1].decode("utf-8").rstrip("\n").split("\n"):
        assert json.loads(line)["reason"] == exc.reason
    json.loads(run[1])


def _call_outcome(raw: object) -> list[dict[str, Any]]:
    """What admitting and archiving a listed call does with the API object, as `pipeline.calls` does it."""
    if not isinstance(raw, dict):
        raise BadRecord("not an object", record=raw)
    records.call_id_of(raw)
    records.call_date_of(raw)
    row = records.call_row(raw, RecordingOutcome(RecordingStatus.PENDING), NOW)
    outcome = RecordingOutcome(RecordingStatus.ARCHIVED, uri="file:///x.wav", size_bytes=1, sha256="0" * 64)
    return [records.with_outcome(row, outcome, NOW, message_count=0, last_seen_at=NOW + timedelta(hours=1))]


@SETTINGS
@given(raw=listed)
def test_any_listed_call_becomes_a_row_or_a_quarantine_entry(raw: Any, spool_dir: Path) -> None:
    try:
        rows = _call_outcome(raw)
    except BadRecord as exc:
        _quarantined(exc, exc.record if exc.record is not None else raw)
        return
    _written("calls", rows, spool_dir)


@SETTINGS
@given(page=st.lists(messages | json_values, max_size=5))
def test_any_transcript_becomes_rows_or_a_quarantine_entry(page: list[Any], spool_dir: Path) -> None:
    try:
        rows = records.message_rows("call-1", page)
    except BadRecord as exc:
        _quarantined(exc, exc.record)
        return
    assert [row["message_index"] for row in rows] == list(range(len(page)))
    if rows:
        _written("messages", rows, spool_dir)


@SETTINGS
@given(items=st.lists(listed, max_size=5))
def test_any_tombstone_page_is_read_or_counted_unreadable(items: list[Any]) -> None:
    found = records.tombstones(items)
    assert len(found.deleted) + found.unreadable <= len(items)


@pytest.mark.parametrize("depth", [50, 400, 900])
def test_deep_but_decodable_nesting_is_a_row_or_a_quarantine_entry(depth: int, spool_dir: Path) -> None:
    text = (
        '{"callId":"c1","created":"2026-03-02T10:00:00Z","ended":null,"x":' + "[" * depth + "]" * depth + "}"
    )
    raw = json.loads(text)
    try:
        rows = _call_outcome(raw)
    except BadRecord as exc:
        assert "nested too deeply" in exc.reason
        _quarantined(exc, raw)
        return
    _written("calls", rows, spool_dir)
