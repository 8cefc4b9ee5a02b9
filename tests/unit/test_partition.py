"""Publishing one day's partition: each write is fenced by the lease, and a failed fence stops it.

The end-to-end version (two runs, one frozen past its lease) is `tests/integration/test_lease_fencing.py`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from etl.errors import LeaseLost
from etl.model import RecordingOutcome, RecordingStatus
from etl.pipeline.partition import Partition
from etl.records import call_row, message_rows
from etl.storage import LocalStorage, Storage

DAY = date(2026, 3, 2)
ARCHIVED_AT = datetime(2026, 3, 3, 4, 5, 6, tzinfo=UTC)
MESSAGES_KEY = "messages/call_date=2026-03-02/data.parquet"
CALLS_KEY = "calls/call_date=2026-03-02/data.parquet"


class Journal:
    """Delegates to a storage and notes each write, in order, in `events` (shared with the fence)."""

    def __init__(self, inner: Storage, events: list[str]) -> None:
        self._inner = inner
        self.events = events

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def put_file(self, key: str, path: Path, **kwargs: Any) -> str:
        self.events.append(f"put {key}")
        return self._inner.put_file(key, path, **kwargs)


def _partition(tmp_path: Path) -> Partition:
    spool = tmp_path / "spool"
    spool.mkdir(exist_ok=True)
    partition = Partition(DAY, spool)
    call = {
        "callId": "00000000-0000-4000-8000-000000000001",
        "created": "2026-03-02T10:00:00Z",
        "ended": "2026-03-02T10:05:00Z",
        "recordingEnabled": False,
        "medium": {"webRtc": {}},
    }
    row = call_row(call, RecordingOutcome(status=RecordingStatus.NOT_ENABLED), ARCHIVED_AT, message_count=1)
    partition.add_call(row, message_rows(call["callId"], [{"role": "MESSAGE_ROLE_USER", "text": "hello"}]))
    return partition


def test_a_fence_runs_right_before_each_file_is_published(tmp_path: Path) -> None:
    events: list[str] = []
    storage = Journal(LocalStorage(tmp_path / "archive"), events)

    result = _partition(tmp_path).publish(storage, {}, fence=lambda: events.append("fence"))

    assert events == ["fence", f"put {MESSAGES_KEY}", "fence", f"put {CALLS_KEY}"]
    assert (result.calls, result.messages) == (1, 1)


@pytest.mark.parametrize(("lost_at", "written"), [(1, []), (2, [MESSAGES_KEY])])
def test_a_failed_fence_stops_publishing_there(tmp_path: Path, lost_at: int, written: list[str]) -> None:
    events: list[str] = []
    storage = LocalStorage(tmp_path / "archive")
    partition = _partition(tmp_path)
    fences = 0

    def fence() -> None:
        nonlocal fences
        fences += 1
        if fences == lost_at:
            raise LeaseLost("taken over")

    with pytest.raises(LeaseLost):
        partition.publish(Journal(storage, events), {}, fence=fence)

    assert [e.removeprefix("put ") for e in events] == written
    assert sorted(storage.list_keys()) == written
    partition.discard()
    assert list((tmp_path / "spool").iterdir()) == []  # no spool file left behind


def test_repair_merges_stray_part_files_once_and_removes_them(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "archive")
    _partition(tmp_path).publish(storage, {}, fence=lambda: None)
    # A part file beside data.parquet, as a copy left by hand or another tool: readers see its rows.
    for key in (CALLS_KEY, MESSAGES_KEY):
        storage.put_bytes(key.replace("data.parquet", "copy.parquet"), storage.get_bytes(key) or b"")

    unrepaired = Partition(DAY, tmp_path / "spool")
    unrepaired.load_archived(storage)  # a sync: data.parquet only, no listing
    assert sum(unrepaired.archived_message_counts.values()) == 1
    unrepaired.discard()

    partition = Partition(DAY, tmp_path / "spool")
    partition.load_archived(storage, repair=True)
    assert partition.check_recordings
    # The message counted twice: its transcript no longer matches message_count and is fetched again.
    assert list(partition.archived_message_counts.values()) == [2]
    events: list[str] = []
    result = partition.publish(storage, {}, fence=lambda: events.append("fence"))

    assert (result.calls, result.messages, result.kept_from_archive) == (1, 1, 1)
    assert sorted(storage.list_keys()) == [CALLS_KEY, MESSAGES_KEY]
    assert events == ["fence"] * 4  # the two files, then each stray's delete
