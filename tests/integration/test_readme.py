"""Every shell example of the README runs as printed, so the docs cannot rot.

Each ```sh or ```bash block is run with bash (`-e -o pipefail`), in order, in one temporary directory
(so a later block sees what an earlier one made, as a reader's shell would), with the archiver's
commands on PATH. A block that needs what one machine does not have (an API key, an AWS account)
says so on its first line, `# docs-test: skip (reason)`, visible to readers too; one that serves
until stopped (`# docs-test: server`) is started, must answer on its ports, and is stopped.

One substitution, said here: the quick start's `python3 -m venv .venv && .venv/bin/pip install -q
-e .` is the very install `scripts/check` does before the tests run; here `.venv` is the
environment under test, so the block runs from `.venv/bin/ultravox-archiver` on.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
_FENCE = re.compile(r"^```(sh|bash)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_MARKER = re.compile(r"^# docs-test: (skip|server)\b(.*)$")
_INSTALL = "python3 -m venv .venv && .venv/bin/pip install -q -e . && "


def shell_blocks() -> list[tuple[int, str]]:
    text = README.read_text()
    return [(text[: m.start()].count("\n") + 1, m.group(2)) for m in _FENCE.finditer(text)]


def marker(block: str) -> str | None:
    match = _MARKER.match(block.splitlines()[0])
    return match.group(1) if match else None


def test_every_block_is_run_or_says_why_not() -> None:
    blocks = shell_blocks()
    assert len(blocks) >= 6
    for line, block in blocks:
        if marker(block) == "skip":
            reason = _MARKER.match(block.splitlines()[0])
            assert reason and reason.group(2).strip(" ()"), f"README.md:{line} skips without a reason"
    runnable = [b for _, b in blocks if marker(b) is None]
    assert any("ultravox-archiver demo" in b for b in runnable)
    assert any("ultravox-archiver status" in b for b in runnable)


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ULTRAVOX_", "ARCHIVE"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(block: str, cwd: Path, env: dict[str, str], where: str) -> None:
    script = block.replace(_INSTALL, "")
    finished = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert finished.returncode == 0, f"{where} failed:\n{script}\n{finished.stdout}\n{finished.stderr}"


def _serve(block: str, cwd: Path, env: dict[str, str], where: str) -> None:
    ports = [int(p) for p in re.findall(r"--(?:storage-)?port (\d+)", block)]
    assert ports, f"{where}: a server block names its ports"
    with subprocess.Popen(
        ["bash", "-e", "-c", block], cwd=cwd, env=env, start_new_session=True, stdout=subprocess.DEVNULL
    ) as process:
        try:
            deadline = time.monotonic() + 60
            for port in ports:
                while not _answers(port):
                    assert process.poll() is None, f"{where}: the server exited ({process.returncode})"
                    assert time.monotonic() < deadline, f"{where}: nothing answers on port {port}"
                    time.sleep(0.2)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return connection.recv(16).startswith(b"HTTP/1.")
    except OSError:
        return False


def test_the_readme_examples_run(tmp_path: Path) -> None:
    env = _environment()
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    ran = 0
    for line, block in shell_blocks():
        where = f"README.md:{line}"
        kind = marker(block)
        if kind == "skip":
            continue
        if kind == "server":
            _serve(block, tmp_path, env, where)
        else:
            _run(block, tmp_path, env, where)
        ran += 1
    assert ran >= 3
    assert (tmp_path / "demo-archive" / "calls").is_dir()
