from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from etl.merge import (
    ArchivedCall,
    carried_over_rows,
    count_messages,
    mark_deleted,
    read_archived_calls,
    transcript_is_reusable,
)
from etl.model import RecordingOutcome, RecordingStatus

T = datetime(2026, 3, 2, tzinfo=UTC)


def archived(ended: datetime | None, message_count: int | None) -> ArchivedCall:
    return ArchivedCall(T, ended, message_count, RecordingOutcome(RecordingStatus.PENDING))


def test_transcript_reused_only_when_ended_and_complete() -> None:
    assert transcript_is_reusable(archived(T, 3), 3)
    assert not transcript_is_reusable(archived(T, 3), 2)  # a crash left part of it behind
    assert not transcript_is_reusable(archived(None, 3), 3)
    assert not transcript_is_reusable(archived(T, None), 0)  # archived before message_count existed
    assert not transcript_is_reusable(None, 0)


def test_mark_deleted_stamps_only_unmarked_rows() -> None:
    earlier = datetime(2026, 3, 1, tzinfo=UTC)
    rows = [
        {"call_id": "a", "source_deleted_at": None},
        {"call_id": "b", "source_deleted_at": earlier},
        {"call_id": "c", "source_deleted_at": None},
    ]
    assert mark_deleted(rows, {"a": T, "b": T}) == 1
    assert [r["source_deleted_at"] for r in rows] == [T, earlier, None]


def test_reads_archived_files_batch_by_batch(tmp_path: Path) -> None:
    calls = tmp_path / "calls.parquet"
    pq.write_table(
        pa.table(
            {
                "call_id": ["a", "b"],
                "archived_at": pa.array([T, T], pa.timestamp("us", tz="UTC")),
                "ended": pa.array([T, None], pa.timestamp("us", tz="UTC")),
                "recording_status": ["archived", "pending"],
                "recording_bytes": pa.array([10, None], pa.int64()),
            }
        ),
        calls,
    )
    index = read_archived_calls(calls)
    assert index["a"].recording.status is RecordingStatus.ARCHIVED
    assert index["a"].recording.size_bytes == 10
    assert index["a"].message_count is None  # a column the old file lacks reads as null
    assert index["b"].ended is None
    messages = tmp_path / "messages.parquet"
    pq.write_table(pa.table({"call_id": ["a", "a", "b"], "message_index": [0, 1, 0]}), messages)
    assert count_messages(messages) == {"a": 2, "b": 1}
    kept = [row for rows in carried_over_rows(messages, {"a"}.__contains__) for row in rows]
    assert kept == [{"call_id": "a", "message_index": 0}, {"call_id": "a", "message_index": 1}]
