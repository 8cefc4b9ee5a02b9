"""Shared pytest fixtures. Each block below belongs to one area; add new areas as their own block."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import boto3
import pytest

# Before any helper is imported: a failed assert in a contract class or in archive_truth then shows
# its values, as one in a test module does.
pytest.register_assert_rewrite("support")

from support.s3server import aws_test_env, start_moto_server  # noqa: E402
from support.simulator_helpers import SMALL_RECORDING_BYTES, StartSimulator  # noqa: E402

from etl.simulator.process import SimulatorHandle, running_simulator  # noqa: E402

# --- S3 (storage) ---------------------------------------------------------------------------------
#
# Tests reach S3 only through the standard AWS environment, exactly as production does: our code is
# never handed an endpoint. Set TEST_S3_ENDPOINT_URL to use an already running S3-compatible server
# (it must accept the access key "testing"); otherwise a moto server is started once per session.


# Each of these would override or add to the test settings above.
_AWS_ENV_TO_CLEAR = ("AWS_PROFILE", "AWS_REGION", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3")


def _run_with_aws_env(endpoint: str) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in aws_test_env(endpoint).items():
            mp.setenv(name, value)
        for name in _AWS_ENV_TO_CLEAR:
            mp.delenv(name, raising=False)
        yield endpoint


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Endpoint URL of the test S3 server; the AWS env points at it for the rest of the session."""
    external = os.environ.get("TEST_S3_ENDPOINT_URL")
    if external:
        yield from _run_with_aws_env(external)
        return
    with start_moto_server() as endpoint:
        yield from _run_with_aws_env(endpoint)


@pytest.fixture
def s3(s3_endpoint: str) -> Iterator[Any]:
    """An independent client of the test S3 server, for checking what it holds."""
    client = boto3.session.Session().client("s3")
    yield client
    client.close()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> Iterator[str]:
    """A fresh, empty bucket for one test; emptied and removed afterwards."""
    client = boto3.session.Session().client("s3")
    name = f"archiver-test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=name, Key=item["Key"])
        client.delete_bucket(Bucket=name)
        client.close()


# --- end S3 ---------------------------------------------------------------------------------------


# --- simulator (the stand-in Ultravox API) --------------------------------------------------------
#
# Tests start simulator processes through one of these two, with the SimulatorOptions they want:
# `sim = start_simulator(calls=60, seed=5)`. Each simulator started is stopped when the fixture's
# scope ends. Two fixtures around one factory because a module-scoped fixture (one account shared by
# a module's tests) cannot use a function-scoped one. Recordings are small (SMALL_RECORDING_BYTES)
# unless a test passes `recording_bytes` (None: real sizes).


def _simulators() -> Iterator[StartSimulator]:
    with ExitStack() as running:

        def start(**options: Any) -> SimulatorHandle:
            options.setdefault("recording_bytes", SMALL_RECORDING_BYTES)
            return running.enter_context(running_simulator(**options))

        yield start


@pytest.fixture
def start_simulator() -> Iterator[StartSimulator]:
    """Start a simulator in a test (or a function-scoped fixture); stopped when the test ends."""
    yield from _simulators()


@pytest.fixture(scope="module")
def start_shared_simulator() -> Iterator[StartSimulator]:
    """Start a simulator shared by a module's tests (module-scoped fixtures); stopped after them."""
    yield from _simulators()


# --- end simulator --------------------------------------------------------------------------------
