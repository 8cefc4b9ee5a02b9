"""Run the HTTP/2 against HTTP/1.1 measurement (http2_bench.py) from the project's venv.

http2_bench.py needs httpx's h2 extra and hypercorn, which the project does not depend on, so it runs
with the python of a venv of its own, tests/perf/.venv-h2, built here on demand from
requirements-h2.txt and rebuilt only when that file changes (the same scheme as .venv-dlt in
alternatives.py, whose ensure function is tied to dlt's paths, hence a small generic one here).

Not collected by pytest; import it with tests/perf on sys.path, as bench.py does alternatives.py.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

PERF_DIR = Path(__file__).resolve().parent
H2_VENV = PERF_DIR / ".venv-h2"
H2_REQUIREMENTS = PERF_DIR / "requirements-h2.txt"
H2_BENCH = PERF_DIR / "http2_bench.py"
_STAMP = ".requirements-sha256"
_STDERR_TAIL = 4000
TIMEOUT_S = 900.0


def ensure_venv(venv: Path, requirements: Path) -> Path:
    """Create (or reuse, if built from the same requirements) `venv`; return its python."""
    python = venv / "bin" / "python"
    wanted = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = venv / _STAMP
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    # As Python 3.13's venv does by itself: git, and so ruff and pytest, never look inside.
    (venv / ".gitignore").write_text("*\n")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(requirements)], check=True)
    # Written last: an install that died half-way is redone on the next call.
    stamp.write_text(wanted + "\n")
    return python


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
