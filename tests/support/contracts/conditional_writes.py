"""Conditional writes (`put_bytes_if`/`delete_if`): the contract every storage backend must meet.

Subclassed with a `storage` fixture by `tests/unit/test_storage_local.py` (a local directory) and
`tests/integration/test_storage_s3.py` (S3); only the storage differs.
"""

from __future__ import annotations

import pytest

from etl.errors import PreconditionFailed
from etl.storage import Storage
from support.concurrency import race

LEASE = "_state/leases/day.json"


class ConditionalWriteContract:
    """`put_bytes_if`/`delete_if` behaviour every backend must show; subclasses provide `storage`."""

    def test_create_if_absent_succeeds_once(self, storage: Storage) -> None:
        etag = storage.put_bytes_if(LEASE, b"first", if_none_match=True, content_type="application/json")
        with pytest.raises(PreconditionFailed):
            storage.put_bytes_if(LEASE, b"second", if_none_match=True)
        assert storage.get_with_etag(LEASE) == (b"first", etag)

    def test_replace_if_match(self, storage: Storage) -> None:
        first = storage.put_bytes_if(LEASE, b"v1", if_none_match=True)
        second = storage.put_bytes_if(LEASE, b"v2", if_match=first)
        assert second != first
        assert storage.get_with_etag(LEASE) == (b"v2", second)
        # The old ETag is stale now.
        with pytest.raises(PreconditionFailed):
            storage.put_bytes_if(LEASE, b"v3", if_match=first)
        assert storage.get_bytes(LEASE) == b"v2"

    def test_replace_if_match_on_missing_object_fails(self, storage: Storage) -> None:
        etag = storage.put_bytes_if(LEASE, b"v1", if_none_match=True)
        storage.delete(LEASE)
        with pytest.raises(PreconditionFailed):
            storage.put_bytes_if(LEASE, b"v2", if_match=etag)
        with pytest.raises(PreconditionFailed):
            storage.put_bytes_if("never/written.json", b"v2", if_match=etag)
        assert storage.get_bytes(LEASE) is None

    def test_delete_if_match(self, storage: Storage) -> None:
        first = storage.put_bytes_if(LEASE, b"v1", if_none_match=True)
        second = storage.put_bytes_if(LEASE, b"v2", if_match=first)
        with pytest.raises(PreconditionFailed):
            storage.delete_if(LEASE, first)
        assert storage.get_bytes(LEASE) == b"v2"
        storage.delete_if(LEASE, second)
        assert storage.get_with_etag(LEASE) is None
        # Already gone is not an error: a retried release must be harmless.
        storage.delete_if(LEASE, second)
        storage.delete_if("never/written.json", second)

    def test_exactly_one_condition(self, storage: Storage) -> None:
        with pytest.raises(ValueError, match="exactly one"):
            storage.put_bytes_if(LEASE, b"x")
        with pytest.raises(ValueError, match="exactly one"):
            storage.put_bytes_if(LEASE, b"x", if_none_match=True, if_match="abc")
        with pytest.raises(ValueError, match="non-empty"):
            storage.put_bytes_if(LEASE, b"x", if_match='""')
        assert storage.get_bytes(LEASE) is None

    def test_only_objects_are_listed(self, storage: Storage) -> None:
        etag = storage.put_bytes_if(LEASE, b"v1", if_none_match=True)
        storage.put_bytes_if(LEASE, b"v2", if_match=etag)
        other = storage.put_bytes_if("_state/leases/other.json", b"x", if_none_match=True)
        storage.delete_if("_state/leases/other.json", other)
        assert list(storage.list_keys()) == [LEASE]
        assert list(storage.list_keys("_state/leases/")) == [LEASE]


class ConditionalWriteRaces(ConditionalWriteContract):
    """Truly simultaneous conditional writers: for backends that decide them atomically (moto does not)."""

    def test_racing_creates_exactly_one_wins(self, storage: Storage) -> None:
        for round_ in range(5):
            key = f"_state/leases/create-{round_}.json"
            won = race(
                6,
                lambda i, key=key: storage.put_bytes_if(key, f"{i}".encode(), if_none_match=True),
                lost=PreconditionFailed,
            )
            assert len(won) == 1
            assert storage.get_bytes(key) == f"{won[0]}".encode()

    def test_racing_replaces_exactly_one_wins(self, storage: Storage) -> None:
        for round_ in range(5):
            key = f"_state/leases/swap-{round_}.json"
            etag = storage.put_bytes_if(key, b"old", if_none_match=True)
            won = race(
                6,
                lambda i, key=key, etag=etag: storage.put_bytes_if(key, f"{i}".encode(), if_match=etag),
                lost=PreconditionFailed,
            )
            assert len(won) == 1
            assert storage.get_bytes(key) == f"{won[0]}".encode()
