"""The API's documented contract, end to end over real HTTP against the simulator (issue 11, item 6).

Each test switches on one way the simulator, like the real API, departs from what a client might
guess, and checks the archive against the simulator's ground truth.
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from support.archive_truth import Expected, assert_matches_truth, read_archive
from support.simulator_helpers import StartSimulator

from etl.cli import main
from etl.simulator.process import SimulatorHandle


def config_file(tmp_path: Path, *lines: str) -> Path:
    """Short polls and retries, so a test takes seconds."""
    config = tmp_path / "archiver.toml"
    config.write_text(
        "\n".join(
            [
                "[archiver]",
                "recording_wait_s = 2",
                "recording_poll_initial_s = 0.05",
                "recording_poll_max_s = 0.2",
                "retry_initial_s = 0.01",
                "retry_max_s = 0.05",
                "max_rps = 2000",
                *lines,
            ]
        )
        + "\n"
    )
    return config


def backfill(sim: SimulatorHandle, dest: Path, config: Path, *extra: str) -> tuple[int, str]:
    env = {
        "ULTRAVOX_API_KEY": sim.api_key,
        "ULTRAVOX_API_BASE_URL": sim.api_base_url,
        "ARCHIVE_DEST": str(dest),
        "ARCHIVER_CONFIG": str(config),
    }
    args = ["backfill", "--since", sim.since, "--until", sim.until, "--log-format", "json", *extra]
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_each_day_is_listed_exactly_whatever_zone_the_api_reads_a_bare_date_in(
    start_simulator: StartSimulator, tmp_path: Path
) -> None:
    # The simulator reads a bare date at UTC-5 (undocumented, like the real API's zone): a client
    # sending bare dates would miss each day's first five hours and quarantine the next day's calls.
    sim = start_simulator(calls=80, seed=23, days=3, naive_date_offset_h=-5)
    code, output = backfill(sim, tmp_path / "archive", config_file(tmp_path))
    assert code == 0, output
    assert_matches_truth(read_archive(str(tmp_path / "archive")), Expected(sim.truth()))
