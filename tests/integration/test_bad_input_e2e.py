"""End to end: bad and oversized answers cost one call or one day, never the run (issue 11, items 2-4).

Each misbehaviour is a simulator switch: targeted rules for the answers no real page should be
(deep JSON, oversized pages, a gzip bomb, endless or broken `next` links), rates for what a real API
does now and then (a call listed twice across pages, gzip, short pages, reordered `next` queries).
"""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from pathlib import Path

from click.testing import CliRunner
from support.archive_truth import Expected, assert_matches_truth, read_archive
from support.archiver_process import write_config
from support.simulator_helpers import StartSimulator

from etl.cli import main
from etl.simulator.process import SimulatorHandle

MIB = 1024 * 1024


def backfill(sim: SimulatorHandle, dest: Path, config: Path) -> tuple[int, str]:
    env = {
        "ULTRAVOX_API_KEY": sim.api_key,
        "ULTRAVOX_API_BASE_URL": sim.api_base_url,
        "ARCHIVE_DEST": str(dest),
        "ARCHIVER_CONFIG": str(config),
    }
    args = ["backfill", "--since", sim.since, "--until", sim.until, "--log-format", "json"]
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    return result.exit_code, result.output


def _run_record(dest: Path) -> dict[str, object]:
    (record,) = (dest / "_runs").iterdir()
    loaded: dict[str, object] = json.loads(record.read_text())
    return loaded


def _problems(dest: Path) -> list[dict[str, str]]:
    (quarantine,) = (dest / "_quarantine").iterdir()
    return [json.loads(line) for line in quarantine.read_text().splitlines()]


def test_bad_answers_cost_one_day_or_one_call_each(start_simulator: StartSimulator, tmp_path: Path) -> None:
    sim = start_simulator(calls=72, seed=7, days=6)
    first = date.fromisoformat(sim.since)
    deep_day, bad_next_day, bomb_day, endless_day, *good_days = (
        (first + timedelta(days=n)).isoformat() for n in range(6)
    )
    truth = sim.truth()
    ended = [t for t in truth if t["call_date"] in good_days and not t["underway"]]
    deep_call, huge_call = ended[0]["call_id"], ended[1]["call_id"]

    def day(d: str) -> str:
        return f"^/api/calls\\?.*fromDate={d}"

    sim.configure(
        rules=[
            {"path": day(deep_day), "action": "deep_json"},
            {"path": day(bad_next_day), "action": "bad_next"},
            {"path": day(bomb_day), "action": "gzip_bomb", "bytes": 64 * MIB},
            {"path": day(endless_day), "action": "endless_next"},
            {"path": f"/api/calls/{deep_call}/messages", "action": "deep_json"},
            {"path": f"/api/calls/{huge_call}/messages", "action": "huge_json", "bytes": 2 * MIB},
        ]
    )
    dest = tmp_path / "archive"
    config = write_config(tmp_path / "a.toml", max_page_mib=1, max_pages_per_listing=40)
    code, output = backfill(sim, dest, config)

    assert code == 1, output
    kept = [t for t in sim.truth() if t["call_date"] in good_days]
    assert_matches_truth(read_archive(str(dest)), Expected(kept, excluded={deep_call, huge_call}))
    for bad_day in (deep_day, bad_next_day, bomb_day, endless_day):
        assert not (dest / "calls" / f"call_date={bad_day}").exists()
        assert (dest / "_state" / "open" / f"call_date={bad_day}").exists()  # the next run tries again

    reasons = {(p["call_date"], p.get("call_id")): p["reason"] for p in _problems(dest)}
    assert "nested too deeply" in reasons[(deep_day, None)]
    assert "not a valid URL" in reasons[(bad_next_day, None)]
    assert "larger than 1048576 bytes" in reasons[(bomb_day, None)]
    assert "more than 40 pages" in reasons[(endless_day, None)]
    call_day = {t["call_id"]: t["call_date"] for t in truth}
    assert "nested too deeply" in reasons[(call_day[deep_call], deep_call)]
    assert "larger than 1048576 bytes" in reasons[(call_day[huge_call], huge_call)]

    record = _run_record(dest)
    assert record["fatal_error"] is None and record["calls_failed"] == 6
    # The endless listing was stopped by the page cap, not by the run's end.
    assert sim.stats()["requests"]["list_calls"] < 40 + 20


def test_misbehaving_pages_still_give_one_row_per_call(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    sim = start_simulator(
        calls=160,
        seed=12,
        days=2,
        duplicate_listing_rate=0.5,
        gzip_rate=0.5,
        short_page_rate=0.3,
        next_query_shuffle_rate=0.5,
    )
    dest = tmp_path / "archive"
    config = write_config(tmp_path / "a.toml", page_size=20)
    code, output = backfill(sim, dest, config)

    assert code == 0, output
    assert_matches_truth(read_archive(str(dest)), Expected(sim.truth()))
    record = _run_record(dest)
    assert isinstance(record["calls_listed_twice"], int) and record["calls_listed_twice"] > 0
    assert record["calls_archived"] == len(Expected(sim.truth()).archived)


def test_an_oversized_recording_costs_its_recording_only(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    sim = start_simulator(calls=16, seed=3, days=1, huge_recording_bytes=3 * MIB)
    huge = next(t["call_id"] for t in sim.truth() if t["recording"].get("bytes") == 3 * MIB)
    dest = tmp_path / "archive"
    config = write_config(tmp_path / "a.toml", max_recording_mib=1)
    code, output = backfill(sim, dest, config)

    assert code == 1, output
    archive = read_archive(str(dest))
    (row,) = [r for r in archive.calls if r["call_id"] == huge]
    assert row["recording_status"] == "failed" and "max_recording_mib" in row["recording_detail"]
    assert not list((dest / "recordings").rglob(f"{huge}.wav"))
    archive.calls = [r for r in archive.calls if r["call_id"] != huge]
    archive.messages = [r for r in archive.messages if r["call_id"] != huge]
    assert_matches_truth(archive, Expected(sim.truth(), excluded={huge}))


def test_a_trickling_recording_transfer_is_dropped_and_retried(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    sim = start_simulator(calls=12, seed=3, days=1)
    slow = next(t["call_id"] for t in sim.truth() if t["recording"]["status"] == "ready")
    # Whichever way its audio comes (a redirect to storage, or the API's own 200), the first
    # transfer trickles: 2 KiB/s, each read well within the read timeout, 1 MiB in all.
    path = f"(/recordings/{slow}\\.wav|/api/calls/{slow}/recording)"
    sim.configure(rules=[{"path": path, "action": "trickle", "times": 1, "bytes": MIB}])
    dest = tmp_path / "archive"
    config = write_config(tmp_path / "a.toml", min_transfer_kib_s=64, transfer_window_s=1)
    started = time.monotonic()
    code, output = backfill(sim, dest, config)

    assert code == 0, output
    assert_matches_truth(read_archive(str(dest)), Expected(sim.truth()))
    assert time.monotonic() - started < 60  # not the 8+ minutes the trickle would take
    assert _run_record(dest)["retries"] >= 1
