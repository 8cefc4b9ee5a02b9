"""Leases on S3 (moto, or TEST_S3_ENDPOINT_URL): the same contract as on a local directory.

The contract lives in `tests/support/contracts/leases.py`; only the storage differs. Our code reaches the
server only through AWS_ENDPOINT_URL, set by the `s3_endpoint` fixture.
"""

from __future__ import annotations

import os

import pytest
from support.contracts.leases import LeaseContract, LeaseRaces

from etl.storage import Storage, open_storage


class TestS3Leases(LeaseContract):
    @pytest.fixture
    def storage(self, s3_bucket: str) -> Storage:
        return open_storage(f"s3://{s3_bucket}/archive/")


# moto 5.2.5 checks If-Match/If-None-Match and then writes, without a lock around the two, so truly
# simultaneous takers can both win there (3 rounds in 30 did when tried); S3 decides them atomically.
# The races therefore run against a real S3-compatible server named by TEST_S3_ENDPOINT_URL only.
if os.environ.get("TEST_S3_ENDPOINT_URL"):

    class TestS3LeaseRaces(LeaseRaces, TestS3Leases):
        pass
