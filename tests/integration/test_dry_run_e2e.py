"""`--dry-run` on `backfill` and `sync`: the plan printed, nothing written, only listings requested."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from support.archiver_process import write_config
from support.simulator_helpers import StartSimulator

from etl.cli import main
from etl.simulator.process import SimulatorHandle


@pytest.fixture(scope="module")
def sim(start_shared_simulator: StartSimulator) -> SimulatorHandle:
    # Through today, so that a sync visits these days only.
    start = datetime.now(UTC).date() - timedelta(days=2)
    return start_shared_simulator(calls=24, seed=17, days=3, start_date=start)


def _invoke(sim: SimulatorHandle, *args: str) -> Result:
    env = {"ULTRAVOX_API_KEY": sim.api_key, "ULTRAVOX_API_BASE_URL": sim.api_base_url}
    return CliRunner().invoke(main, [*args, "--log-level", "error"], env=env)


def _requests(sim: SimulatorHandle) -> dict[str, Any]:
    return {kind: n for kind, n in sim.stats()["requests"].items() if n}


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_a_backfill_dry_run_lists_the_window_and_writes_nothing(sim: SimulatorHandle, tmp_path: Path) -> None:
    dest = tmp_path / "archive"
    sim.reset_stats()
    window = ["--since", sim.since, "--until", sim.until]
    result = _invoke(sim, "backfill", *window, "--dest", str(dest), "--dry-run", "--summary-format", "json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output.strip().splitlines()[-1])
    truth = sim.truth(messages=False)
    assert plan["dry_run"] is True
    assert [d["day"] for d in plan["days"]] == sorted({t["call_date"] for t in truth})
    assert plan["calls"] == len(truth)
    ended = [t for t in truth if not t["underway"]]
    with_recording = [t for t in ended if t["call"]["recordingEnabled"] is True]
    pages = sum(d["listing_pages"] for d in plan["days"])
    assert plan["estimated_api_requests"] == pages + len(ended) + len(with_recording)
    assert plan["estimated_seconds"] == pytest.approx(plan["estimated_api_requests"] / 100, abs=0.05)
    # The check request and the days' listings, nothing else; and not even the directory.
    assert _requests(sim) == {"list_calls": 1 + pages}
    assert not dest.exists()


def test_a_sync_dry_run_on_an_archive_leaves_it_unchanged(sim: SimulatorHandle, tmp_path: Path) -> None:
    dest, config = tmp_path / "archive", write_config(tmp_path / "fast.toml")
    window = ["--since", sim.since, "--until", sim.until]
    backfilled = _invoke(sim, "backfill", *window, "--dest", str(dest), "--config", str(config))
    assert backfilled.exit_code == 0, backfilled.output
    before = _tree(dest)
    sim.reset_stats()
    result = _invoke(sim, "sync", "--dest", str(dest), "--dry-run", "--config", str(config))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("dry run of sync: ")
    assert "(nothing written)" in result.output
    assert f"{sim.until}  on file, rewritten" in result.output
    assert "API requests, ~" in result.output and "at --max-rps 2000" in result.output
    assert set(_requests(sim)) == {"list_calls"}
    assert _tree(dest) == before


def test_a_dry_run_is_refused_like_the_run_would_be(sim: SimulatorHandle, tmp_path: Path) -> None:
    sim.reset_stats()
    result = _invoke(sim, "sync", "--dest", str(tmp_path / "empty"), "--dry-run")
    assert result.exit_code == 2, result.output
    assert "the first sync needs --since" in result.output
    assert _requests(sim) == {}


def test_a_day_whose_listing_fails_is_shown_and_the_dry_run_exits_1(
    sim: SimulatorHandle, tmp_path: Path
) -> None:
    sim.configure(rules=[{"path": f"^/api/calls\\?.*fromDate={sim.since}", "action": "not_json"}])
    try:
        window = ["--since", sim.since, "--until", sim.until, "--dest", str(tmp_path / "a")]
        result = _invoke(sim, "backfill", *window, "--dry-run")
    finally:
        sim.configure(rules=[])
    assert result.exit_code == 1, result.output
    (failed,) = [line for line in result.output.splitlines() if "LISTING FAILED" in line]
    assert failed.startswith(f"  {sim.since}  new")
    assert not (tmp_path / "a").exists()
