"""A moto standalone S3 server in a subprocess, so tests talk real HTTP to an S3 look-alike.

A subprocess (rather than moto's in-process mocks) keeps our code honest: it finds the server only
through AWS_ENDPOINT_URL, exactly as it would find MinIO or real S3.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

_HOST = "127.0.0.1"
_POLL_INTERVAL_S = 0.1


def aws_test_env(endpoint: str) -> dict[str, str]:
    """The standard AWS environment that points boto3 (and our code) at a test S3 server."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        # A developer's ~/.aws files must not steer the tests (addressing style, endpoint, role).
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def _free_port() -> int:
    # Another process could take the port between close() and moto's bind; on loopback in a test
    # run that is rare enough that a clear startup error is the right answer.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_http(url: str) -> bool:
    # An empty ProxyHandler: a developer's HTTP_PROXY must not swallow requests to loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=1.0):
            return True
    except urllib.error.HTTPError as exc:
        exc.close()
        return True  # any HTTP status means the server is up
    except OSError:
        return False


def _read_log(log: IO[bytes]) -> str:
    log.seek(0)
    return log.read().decode("utf-8", "replace")[-4000:]


def _wait_until_up(process: subprocess.Popen[bytes], url: str, log: IO[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"moto server exited with status {process.returncode} before answering:\n{_read_log(log)}"
            )
        if _answers_http(url):
            return
        time.sleep(_POLL_INTERVAL_S)
    raise RuntimeError(f"moto server did not answer {url} within {timeout_s:.0f} s:\n{_read_log(log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def start_moto_server(*, timeout_s: float = 20.0) -> Iterator[str]:
    """Run `python -m moto.server` on a free loopback port; yield its endpoint URL."""
    port = _free_port()
    endpoint = f"http://{_HOST}:{port}"
    # werkzeug logs every request to stderr; a pipe nobody drains would fill up and stall the
    # server, so the log goes to a file that is read only to explain a failed start.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", _HOST, "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_up(process, f"{endpoint}/moto-api/", log, timeout_s)
            yield endpoint
        finally:
            _stop(process)
