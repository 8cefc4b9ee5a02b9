"""Where the small-account case loses time against its bound: the API request rate, second by second.

    .venv/bin/python tests/perf/rate_timeline.py                       # the bench's small_api case
    .venv/bin/python tests/perf/rate_timeline.py -- --config my.toml   # extra archiver arguments

Runs the archiver (a subprocess, as `bench.py` does) against the small-account simulator (1,000
calls, 50 ms latency, 200 req/s server limit, `--max-rps 190`) and a moto S3 server, while a thread
reads the simulator's request counters every 0.1 s. Prints when the first and the last API request
were seen, the exit, and the rate per half second: the steady state, the ramp at the start and the
tail at the end show up separately, which a single wall / bound ratio hides.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

PERF_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(PERF_DIR), str(PERF_DIR.parent)]

import httpx  # noqa: E402
from bench import (  # noqa: E402
    MAX_RPS,
    SMALL_API_RECORDING_BYTES,
    api_bound_sim,
    archiver_command,
    archiver_env,
    new_bucket,
    s3_server,
)

SAMPLE_EVERY_S = 0.1
PRINT_EVERY_S = 0.5

Sample = tuple[float, int]  # (seconds since the archiver started, API requests so far)


def sample_requests(stats_url: str, started: float, samples: list[Sample], stop: threading.Event) -> None:
    with httpx.Client(trust_env=False) as client:
        while not stop.is_set():
            requests = client.get(stats_url).json()["requests"]
            api = sum(count for kind, count in requests.items() if kind != "storage")
            samples.append((time.monotonic() - started, api))
            time.sleep(SAMPLE_EVERY_S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000)
    parser.add_argument("extra", nargs="*", help="more archiver arguments, after --")
    args = parser.parse_args()
    with s3_server() as s3_env, api_bound_sim(args.calls, recording_bytes=SMALL_API_RECORDING_BYTES) as sim:
        env = archiver_env(sim, s3_env, new_bucket("timeline"))
        cmd = archiver_command(sim, max_rps=MAX_RPS, extra=args.extra)
        sim.reset_stats()
        samples: list[Sample] = []
        stop = threading.Event()
        started = time.monotonic()
        stats_url = sim.api_base_url.rsplit("/api", 1)[0] + "/_sim/stats"
        sampler = threading.Thread(target=sample_requests, args=(stats_url, started, samples, stop))
        sampler.start()
        finished = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        wall = time.monotonic() - started
        stop.set()
        sampler.join()
    total = max(api for _, api in samples)
    first = next(at for at, api in samples if api > 0)
    last = next(at for at, api in samples if api == total)
    print(f"exit code {finished.returncode}, wall {wall:.2f} s, {total} API requests")
    print(f"bound {total / MAX_RPS:.2f} s, wall / bound {wall * MAX_RPS / total:.3f}")
    print(f"first API request seen by {first:.2f} s, last by {last:.2f} s, exit at {wall:.2f} s")
    shown_at, shown_api = 0.0, 0
    for at, api in samples:
        if at - shown_at >= PRINT_EVERY_S:
            print(f"{at:6.2f} s  {api:5d} requests  {(api - shown_api) / (at - shown_at):6.1f}/s")
            shown_at, shown_api = at, api


if __name__ == "__main__":
    main()
