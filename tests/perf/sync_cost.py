"""What an hourly `sync` costs when nothing is new (issue 13's "Done when" figure). Run by hand:

    .venv/bin/python tests/perf/sync_cost.py              # local directory destination
    .venv/bin/python tests/perf/sync_cost.py --s3         # a moto S3 server instead
    .venv/bin/python tests/perf/sync_cost.py --source /tmp/main-copy   # another checkout's code

A 300-call account spread over the 60 days up to today, with exactly 5 recordings that never become
ready (seed 2 at the default stuck-recording rate gives exactly 5, each on a day of its own). The
archiver runs as a user runs it, with default settings (no config file: a 120 s recording wait):
first `sync --since <first day>`, then the same command again with nothing new at the source. Both
are timed and their API requests counted by the simulator; the archive is then compared with the
simulator's truth. Prints one JSON line per sync and a verdict against the issue's bar (second sync
under 15 s and under 40 API requests).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

_TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_TESTS))

from support.archive_truth import Expected, assert_matches_truth, read_archive, s3_filesystem  # noqa: E402
from support.s3server import aws_test_env, start_moto_server  # noqa: E402

from etl.simulator.process import SimulatorHandle, running_simulator  # noqa: E402

CALLS, DAYS, SEED, STUCK = 300, 60, 2, 5
BAR_SECONDS, BAR_REQUESTS = 15.0, 40


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--s3", action="store_true", help="archive into a moto S3 server")
    parser.add_argument("--source", type=Path, help="run the archiver from this source tree")
    args = parser.parse_args()
    first_day = datetime.now(UTC).date() - timedelta(days=DAYS - 1)
    with ExitStack() as stack:
        sim = stack.enter_context(
            running_simulator(
                calls=CALLS, seed=SEED, days=DAYS, start_date=first_day.isoformat(), recording_bytes=48_000
            )
        )
        truth = sim.truth(messages=False)
        stuck = [t for t in truth if t["recording"]["status"] == "pending" and not t["underway"]]
        assert len(stuck) == STUCK, f"expected {STUCK} never-ready recordings, the account has {len(stuck)}"
        env = {**os.environ, "ULTRAVOX_API_KEY": sim.api_key, "ULTRAVOX_API_BASE_URL": sim.api_base_url}
        env.pop("ARCHIVER_CONFIG", None)
        if args.source is not None:
            env["PYTHONPATH"] = str(args.source)
        if args.s3:
            endpoint = stack.enter_context(start_moto_server())
            env.update(aws_test_env(endpoint))
            os.environ.update(aws_test_env(endpoint))  # for this process's boto3 and pyarrow too
            import boto3  # only here: the local case needs no AWS library

            boto3.client("s3").create_bucket(Bucket="sync-cost")
            dest, root, filesystem = "s3://sync-cost/archive", "sync-cost/archive", s3_filesystem(endpoint)
        else:
            root = dest = str(Path(stack.enter_context(tempfile.TemporaryDirectory())) / "archive")
            filesystem = None
        env["ARCHIVE_DEST"] = dest
        cwd = str(args.source) if args.source is not None else None
        for label in ("first", "second"):
            measured = _timed_sync(sim, env, cwd, first_day.isoformat())
            print(json.dumps({"sync": label, **measured}), flush=True)
        second = measured
        assert_matches_truth(read_archive(root, filesystem), Expected(sim.truth()))
        print("archive exact against the simulator's truth")
        ok = second["seconds"] < BAR_SECONDS and second["api_requests"] < BAR_REQUESTS
        verdict = "within" if ok else "OVER"
        print(f"second sync {verdict} the bar ({BAR_SECONDS:g} s, {BAR_REQUESTS} requests)")


def _timed_sync(sim: SimulatorHandle, env: dict[str, str], cwd: str | None, since: str) -> dict[str, Any]:
    sim.reset_stats()
    started = time.monotonic()
    process = subprocess.run(
        [sys.executable, "-m", "etl", "sync", "--since", since, "--summary-format", "json"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    stats = sim.stats()
    summary = json.loads(process.stdout.strip().splitlines()[-1])
    return {
        "seconds": round(seconds, 1),
        "exit_code": process.returncode,
        "api_requests": stats["requests_total"] - stats["requests"]["storage"],
        "storage_downloads": stats["requests"]["storage"],
        "requests_by_kind": {kind: n for kind, n in stats["requests"].items() if n},
        "partitions_written": summary["partitions_written"],
        "recordings_pending": summary["recordings_pending"],
    }


if __name__ == "__main__":
    main()
