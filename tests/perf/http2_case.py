"""Run the HTTP/2 against HTTP/1.1 measurement (http2_bench.py) from the project's venv.

http2_bench.py needs httpx's h2 extra and hypercorn, which the project does not depend on, so it runs
with the python of a venv of its own, tests/perf/.venv-h2, built here on demand from
requirements-h2.txt and rebuilt only when that file changes (alternatives.ensure_venv, as for
.venv-dlt).

Not collected by pytest; import it with tests/perf on sys.path, as bench.py does alternatives.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from alternatives import ensure_venv

PERF_DIR = Path(__file__).resolve().parent
H2_VENV = PERF_DIR / ".venv-h2"
H2_REQUIREMENTS = PERF_DIR / "requirements-h2.txt"
H2_BENCH = PERF_DIR / "http2_bench.py"
_STDERR_TAIL = 4000
TIMEOUT_S = 900.0


def ensure_h2_venv() -> Path:
    """tests/perf/.venv-h2, from requirements-h2.txt; return its python."""
    return ensure_venv(H2_VENV, H2_REQUIREMENTS)


def run_http2_case(quick: bool) -> dict[str, Any]:
    """Run http2_bench.py (both scenarios, h1/h2/h2c) in .venv-h2; return its JSON report."""
    cmd = [str(ensure_h2_venv()), str(H2_BENCH)]
    if quick:
        cmd.append("--quick")
    completed = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"http2_bench.py exited with {completed.returncode}:\n{completed.stderr[-_STDERR_TAIL:]}"
        )
    # The report is the last JSON line; anything before it (warnings) is not ours to parse.
    for line in reversed(completed.stdout.strip().splitlines()):
        if line.startswith("{"):
            report: dict[str, Any] = json.loads(line)
            return report
    raise RuntimeError(f"http2_bench.py printed no JSON report; stderr:\n{completed.stderr[-_STDERR_TAIL:]}")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Build .venv-h2 if needed and run http2_bench.py.")
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run_http2_case(parser.parse_args().quick), indent=2))
