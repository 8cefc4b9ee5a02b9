"""Shared pytest fixtures. Each block below belongs to one area; add new areas as their own block."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import boto3
import pytest
from s3server import aws_test_env, start_moto_server

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
