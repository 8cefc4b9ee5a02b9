"""What the image installs, installed in a clean venv the way the Dockerfile does it: the
repository's own wheel built by scripts/build-image-wheel (its build backend from
requirements-build.lock, with hashes), then scripts/install-image-packages (the lock with
--require-hashes, the wheel with --no-deps, pip check). The installed archiver then answers --help
and archives a simulated account from its own copy of the table contracts, away from the checkout.

No container builder runs where the tests run; this is the part of the image build that can."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "scripts" / "build-image-wheel"
INSTALL = ROOT / "scripts" / "install-image-packages"


def _run(argv: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    finished = subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout
    return finished.stdout


def _clean_environment(venv: Path) -> dict[str, str]:
    """The venv first on PATH, nothing pointing back into the checkout or the test's venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


def test_the_wheel_and_the_lock_install_in_a_clean_venv_and_run(tmp_path: Path) -> None:
    # pip's cache (its default location) is reused: on a warm machine nothing is downloaded again.
    build = tmp_path / "build"
    _run([sys.executable, "-m", "venv", build], cwd=tmp_path)
    dist = tmp_path / "dist"
    _run(["sh", BUILD, build / "bin" / "python", ROOT, dist], cwd=tmp_path)
    (wheel,) = dist.glob("ultravox_archiver-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        contracts = {name for name in archive.namelist() if name.startswith("etl/_schemas/")}
    assert "etl/_schemas/calls.json" in contracts and "etl/_schemas/messages.json" in contracts

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    _run(["sh", INSTALL, python, ROOT / "requirements.lock", wheel], cwd=tmp_path)

    env = _clean_environment(venv)
    # Installed from the wheel into the venv, not found in the checkout.
    location = _run([python, "-c", "import etl; print(etl.__file__)"], cwd=tmp_path, env=env)
    assert Path(location.strip()).is_relative_to(venv)
    help_text = _run([venv / "bin" / "ultravox-archiver", "--help"], cwd=tmp_path, env=env)
    assert "backfill" in help_text and "sync" in help_text

    # A real run: the demo starts the simulator and archives its account into a local directory.
    dest = tmp_path / "demo-archive"
    _run([venv / "bin" / "ultravox-archiver", "demo", "--calls", "12", "--dest", dest], cwd=tmp_path, env=env)
    calls = pq.read_table(sorted(dest.glob("calls/**/*.parquet"))[0])
    assert calls.num_rows > 0
