"""`status` for monitors: alerts and exit codes over what the destination's state says."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from support.manifests import manifest_for

from etl.cli import main
from etl.reporting.health import Thresholds, alerts_for, status_exit_code
from etl.reporting.status import format_status, read_status, status_json
from etl.state import PartitionManifest, manifest_key, open_marker_key
from etl.storage import LocalStorage

D = date(2026, 3, 2)
NOW = datetime(2026, 3, 4, 12, tzinfo=UTC)


def _manifest(day: date = D, **fields: Any) -> PartitionManifest:
    return manifest_for(day, **fields)


def _archive(tmp_path: Path, *manifests: PartitionManifest, open_only: tuple[date, ...] = ()) -> LocalStorage:
    storage = LocalStorage(tmp_path / "archive")
    for manifest in manifests:
        storage.put_bytes(manifest_key(manifest.call_date), manifest.to_json())
        if not manifest.final:
            storage.put_bytes(open_marker_key(manifest.call_date), b"r0")
    for day in open_only:
        storage.put_bytes(open_marker_key(day), b"r1")
    return storage


def _status(storage: LocalStorage, thresholds: Thresholds | None = None) -> tuple[int, dict[str, Any]]:
    status = read_status(storage, now=lambda: NOW)
    document = status_json(status, "dest", thresholds)
    assert document["exit_code"] == status_exit_code(alerts_for(status, thresholds or Thresholds()))
    return document["exit_code"], document


def test_a_destination_that_does_not_exist_is_an_alert(tmp_path: Path) -> None:
    code, document = _status(LocalStorage(tmp_path / "typo"))
    assert (code, document["exists"], document["alerts"][0]["kind"]) == (5, False, "missing")
    assert not (tmp_path / "typo").exists()  # status never creates it


def test_an_empty_destination_is_an_alert(tmp_path: Path) -> None:
    (tmp_path / "archive").mkdir()
    code, document = _status(LocalStorage(tmp_path / "archive"))
    assert (code, [a["kind"] for a in document["alerts"]]) == (5, ["empty"])


def test_a_healthy_archive_exits_0_with_its_facts(tmp_path: Path) -> None:
    storage = _archive(tmp_path, _manifest(D - timedelta(days=1)), _manifest(D, final=False))
    code, document = _status(storage, Thresholds(max_lag_hours=48, max_open_days=3))
    assert code == 0 and document["alerts"] == []
    assert (document["partitions"], document["final"], document["open"]) == (2, 1, 1)
    assert document["calls_archived"] == 6
    # The newest day was written 30 h after its start, i.e. after it ended: complete through its end.
    assert document["covered_through"] == "2026-03-03T00:00:00+00:00"
    assert document["lag_hours"] == 36.0


def test_failed_calls_and_recordings_exit_1_but_a_deadline_cut_does_not(tmp_path: Path) -> None:
    cut = _archive(tmp_path / "a", _manifest(final=False, failed_kinds=("unfinished",)))
    assert _status(cut)[0] == 0
    failed = _archive(tmp_path / "b", _manifest(final=False, failed_call_ids=("c1",), failed_kinds=("x",)))
    code, document = _status(failed)
    assert (code, document["failed"], document["alerts"][0]["kind"]) == (1, 2, "failures")


def test_a_last_run_stopped_by_a_fatal_error_exits_1(tmp_path: Path) -> None:
    storage = _archive(tmp_path, _manifest())
    run = {"command": "sync", "run_id": "r9", "complete": False, "fatal_error": "API key rejected"}
    storage.put_bytes("_runs/r9.json", json.dumps(run).encode())
    code, document = _status(storage)
    assert (code, document["alerts"][0]["kind"]) == (1, "last_run_fatal")
    assert document["last_run"]["fatal_error"] == "API key rejected"


def test_lag_over_the_threshold_exits_6(tmp_path: Path) -> None:
    storage = _archive(tmp_path, _manifest())
    assert _status(storage, Thresholds(max_lag_hours=36))[0] == 0
    code, document = _status(storage, Thresholds(max_lag_hours=35.5))
    assert (code, document["alerts"][0]["kind"]) == (6, "lag")


def test_a_partition_open_too_long_exits_7_and_failures_come_first(tmp_path: Path) -> None:
    old = D - timedelta(days=9)
    storage = _archive(tmp_path, _manifest(old, final=False), _manifest(), open_only=(D - timedelta(days=8),))
    code, document = _status(storage, Thresholds(max_open_days=7))
    assert (code, [a["kind"] for a in document["alerts"]]) == (7, ["stuck_open"])
    assert "2 partitions" in document["alerts"][0]["message"]
    assert _status(storage, Thresholds(max_open_days=30))[0] == 0
    failing = _archive(tmp_path / "f", _manifest(old, final=False, failed_call_ids=("c",)))
    code, document = _status(failing, Thresholds(max_open_days=7, max_lag_hours=1))
    assert code == 1
    assert [a["kind"] for a in document["alerts"]] == ["failures", "stuck_open", "lag"]


def test_a_first_run_that_never_published_is_not_promised_to_the_next_sync(tmp_path: Path) -> None:
    storage = _archive(tmp_path, open_only=(D,))
    status = read_status(storage, now=lambda: NOW)
    text = format_status(status, "dest")
    assert "the next sync completes it" not in text
    assert "--since" in text
    assert _status(storage)[0] == 5
    # Once something is published, a sync plans every open day: then it does complete it.
    storage = _archive(tmp_path / "later", _manifest(D - timedelta(days=1)), open_only=(D,))
    assert "the next sync completes it" in format_status(read_status(storage, now=lambda: NOW), "dest")


def test_the_cli_prints_json_and_exits_with_the_alert_code(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["status", "--dest", str(tmp_path / "nothing"), "--format", "json"])
    assert result.exit_code == 5
    assert json.loads(result.stdout)["alerts"][0]["kind"] == "missing"
    storage = _archive(tmp_path, _manifest(final=False, failed_call_ids=("c1",)))
    result = CliRunner().invoke(main, ["status", "--dest", str(storage.root)])
    assert result.exit_code == 1
    assert "ALERT failures" in result.stdout


def test_status_help_documents_the_exit_codes() -> None:
    text = CliRunner().invoke(main, ["status", "--help"]).output
    for line in ("5  the destination does not exist", "6  lag over --max-lag-hours", "7  a partition open"):
        assert line in text
