import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.manifests import manifest_for

from etl.errors import ConfigError
from etl.reporting.status import format_status, read_status
from etl.state import (
    PartitionManifest,
    day_from_key,
    is_final,
    manifest_key,
    open_marker_key,
    plan_sync,
)
from etl.storage import LocalStorage

D = date(2026, 3, 2)


def test_first_sync_needs_a_start() -> None:
    with pytest.raises(ConfigError, match="--since"):
        plan_sync(archived_days=[], open_days=[], today=D, since=None)


def test_first_sync_runs_from_since_through_today() -> None:
    assert plan_sync(archived_days=[], open_days=[], today=D + timedelta(days=2), since=D) == [
        D,
        D + timedelta(days=1),
        D + timedelta(days=2),
    ]


def test_later_syncs_revisit_open_days_and_continue_from_the_newest() -> None:
    archived = [D, D + timedelta(days=1), D + timedelta(days=5)]
    plan = plan_sync(
        archived_days=archived, open_days=[D + timedelta(days=1)], today=D + timedelta(days=6), since=None
    )
    assert plan == [D + timedelta(days=1), D + timedelta(days=5), D + timedelta(days=6)]


def test_since_before_the_archive_extends_it_backwards() -> None:
    plan = plan_sync(archived_days=[D], open_days=[], today=D, since=D - timedelta(days=1))
    assert plan == [D - timedelta(days=1), D]


def test_since_left_set_reopens_no_archived_day() -> None:
    # ARCHIVER_SINCE kept on an hourly sync: the plan is the plan without it, plus only the days
    # from `since` on that were never archived (here D+2, which a run left unstarted).
    archived = [D + timedelta(days=n) for n in (0, 1, 3, 4, 5)]
    today = D + timedelta(days=6)
    without = plan_sync(archived_days=archived, open_days=[D + timedelta(days=3)], today=today, since=None)
    assert without == [D + timedelta(days=3), D + timedelta(days=5), today]
    plan = plan_sync(archived_days=archived, open_days=[D + timedelta(days=3)], today=today, since=D)
    assert plan == [D + timedelta(days=2), *without]
    later = plan_sync(archived_days=archived, open_days=[], today=today, since=D + timedelta(days=5))
    assert later == [D + timedelta(days=5), today]


def test_final_needs_nothing_open_and_the_refresh_window_past() -> None:
    window = timedelta(days=2)
    end = datetime(2026, 3, 3, tzinfo=UTC)
    quiet = {"underway": 0, "pending_recordings": 0, "failed": 0}
    assert not is_final(D, **quiet, now=end + window - timedelta(seconds=1), refresh_window=window)
    assert is_final(D, **quiet, now=end + window, refresh_window=window)
    for open_item in ("underway", "pending_recordings", "failed"):
        items = {**quiet, open_item: 1}
        assert not is_final(D, **items, now=end + timedelta(days=30), refresh_window=window)


def test_manifest_round_trips() -> None:
    manifest = PartitionManifest(
        call_date=D,
        run_id="r1",
        written_at=datetime(2026, 3, 5, tzinfo=UTC),
        final=False,
        calls=3,
        messages=40,
        recordings_archived=2,
        recording_bytes=1000,
        calls_kept_from_archive=1,
        calls_deleted_at_source=1,
        schema_versions={"calls": 1, "messages": 1},
        underway_call_ids=("a",),
        pending_recording_call_ids=("b",),
        failed_call_ids=(),
        newest_call_created=datetime(2026, 3, 2, 23, 59, tzinfo=UTC),
    )
    assert PartitionManifest.from_json(manifest.to_json()) == manifest
    assert manifest.open_items == 2


def test_keys_name_their_day() -> None:
    assert day_from_key(manifest_key(D)) == D
    assert day_from_key(open_marker_key(D)) == D
    assert day_from_key("_state/partitions/README") is None
    assert day_from_key("_state/open/call_date=2026-13-40") is None


def _manifest(**fields: Any) -> PartitionManifest:
    return manifest_for(D, **{"written_at": datetime(2026, 3, 3, tzinfo=UTC), "final": False, **fields})


def _legacy_manifest(failed_call_ids: list[str]) -> bytes:
    """A manifest as written before failures without a call id had a field of their own."""
    document = json.loads(_manifest().to_json())
    del document["failed_kinds"]
    document["failed_call_ids"] = failed_call_ids
    return json.dumps(document).encode()


def test_failure_kinds_round_trip_apart_from_call_ids() -> None:
    manifest = _manifest(failed_call_ids=("c1",), failed_kinds=("bad_record",))
    document = json.loads(manifest.to_json())
    assert (document["failed_call_ids"], document["failed_kinds"]) == (["c1"], ["bad_record"])
    assert PartitionManifest.from_json(manifest.to_json()) == manifest
    assert (manifest.failed, manifest.open_items) == (2, 2)


def test_an_old_manifest_with_a_kind_among_the_call_ids_reads_as_a_kind() -> None:
    manifest = PartitionManifest.from_json(_legacy_manifest(["c1", "bad_record", "bad_record"]))
    assert manifest.failed_call_ids == ("c1",)
    assert manifest.failed_kinds == ("bad_record", "bad_record")
    # Still open for exactly as many failures as before.
    assert (manifest.failed, manifest.open_items) == (3, 3)
    assert PartitionManifest.from_json(_legacy_manifest(["c1"])).failed_kinds == ()


def test_status_counts_the_failures_of_old_and_new_manifests_alike(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes(manifest_key(D), _legacy_manifest(["c1", "bad_record"]))
    text = format_status(read_status(storage, now=lambda: datetime(2026, 3, 4, tzinfo=UTC)), "dest")
    assert f"{D}  3 calls; underway 0, recordings pending 0, failed 2" in text
