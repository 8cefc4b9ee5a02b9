"""LocalStorage and destination parsing: everything that needs no S3 server."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from support.contracts.conditional_writes import LEASE, ConditionalWriteRaces

from etl.errors import PreconditionFailed, StorageError
from etl.storage import LocalStorage, ObjectInfo, S3Storage, open_storage
from etl.storage.local import cleanup_stale_temp_files

KEY = "recordings/call_date=2026-03-02/abc.wav"


def _temp_files(root: Path) -> list[Path]:
    return list(root.rglob(".tmp-*"))


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "archive")


# --- destinations ---------------------------------------------------------------------------------


def test_plain_path_opens_local_storage(tmp_path: Path) -> None:
    opened = open_storage(str(tmp_path / "out"))
    assert isinstance(opened, LocalStorage)
    assert opened.uri == f"file://{tmp_path}/out"


def test_file_uri_opens_local_storage(tmp_path: Path) -> None:
    opened = open_storage((tmp_path / "out").as_uri())
    assert isinstance(opened, LocalStorage)
    assert opened.uri_for(KEY) == f"file://{tmp_path}/out/{KEY}"


def test_relative_path_resolves_to_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    opened = open_storage("sub/../out")
    assert opened.uri == f"file://{tmp_path}/out"


def test_file_uris_keep_hive_partitions_readable(tmp_path: Path) -> None:
    opened = open_storage(f"file://{tmp_path}/my%20archive")
    assert isinstance(opened, LocalStorage)
    assert opened.root == tmp_path / "my archive"
    # "=" is legal in a URI path; escaping it would hide the partition column from readers.
    assert opened.uri_for(KEY) == f"file://{tmp_path}/my%20archive/{KEY}"


@pytest.mark.parametrize(
    ("dest", "uri"),
    [
        ("s3://bucket", "s3://bucket"),
        ("s3://bucket/", "s3://bucket"),
        ("s3://bucket/archive/ultravox/", "s3://bucket/archive/ultravox"),
    ],
)
def test_s3_destinations(dest: str, uri: str) -> None:
    opened = open_storage(dest)
    assert isinstance(opened, S3Storage)
    assert opened.uri == uri
    assert opened.uri_for("a/b.wav") == f"{uri}/a/b.wav"


@pytest.mark.parametrize(
    "dest", ["gs://bucket/prefix", "http://example.com/x", "", "s3:///prefix", "file://otherhost/x"]
)
def test_unsupported_destinations_are_refused(dest: str) -> None:
    with pytest.raises(StorageError):
        open_storage(dest)


def test_unknown_scheme_message_names_destination() -> None:
    with pytest.raises(StorageError, match=r"gs://bucket.*s3://"):
        open_storage("gs://bucket/prefix")


def test_s3_prefix_escaping_is_refused() -> None:
    with pytest.raises(StorageError):
        open_storage("s3://bucket/a/../b")


# --- keys -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../outside", "a/../../outside", "a//b", "./a", "a\\b", "a/.tmp-x", "a/.lock-x"],
)
def test_escaping_or_ambiguous_keys_are_refused(storage: LocalStorage, key: str) -> None:
    with pytest.raises(StorageError):
        storage.put_bytes(key, b"x")
    with pytest.raises(StorageError):
        storage.get_bytes(key)


def test_escaping_list_prefix_is_refused(storage: LocalStorage) -> None:
    with pytest.raises(StorageError):
        list(storage.list_keys("../"))


# --- round trips ----------------------------------------------------------------------------------


def test_put_bytes_then_get_and_head(storage: LocalStorage) -> None:
    uri = storage.put_bytes("manifests/run.json", b'{"ok": true}', content_type="application/json")
    assert uri == storage.uri_for("manifests/run.json")
    assert uri.startswith("file:///")
    assert storage.get_bytes("manifests/run.json") == b'{"ok": true}'
    assert storage.head("manifests/run.json") == ObjectInfo(key="manifests/run.json", size=12)


def test_put_file_copies_content(storage: LocalStorage, tmp_path: Path) -> None:
    source = tmp_path / "audio.wav"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    uri = storage.put_file(KEY, source, content_type="audio/wav")
    assert uri == f"{storage.uri}/{KEY}"
    assert storage.get_bytes(KEY) == source.read_bytes()
    assert _temp_files(storage.root) == []


def test_put_replaces_existing_object(storage: LocalStorage) -> None:
    storage.put_bytes("a.json", b"old")
    storage.put_bytes("a.json", b"new")
    assert storage.get_bytes("a.json") == b"new"


def test_missing_objects(storage: LocalStorage) -> None:
    assert storage.get_bytes("nothing/here.json") is None
    assert storage.head("nothing/here.json") is None
    storage.put_bytes("dir/file.json", b"x")
    # A "directory" is not an object, and neither is a path below a file.
    assert storage.get_bytes("dir") is None
    assert storage.head("dir") is None
    assert storage.get_bytes("dir/file.json/deeper") is None
    assert storage.head("dir/file.json/deeper") is None


def test_delete_is_idempotent(storage: LocalStorage) -> None:
    storage.put_bytes("a/b.json", b"x")
    storage.delete("a/b.json")
    assert storage.get_bytes("a/b.json") is None
    storage.delete("a/b.json")


def test_list_keys_is_recursive_sorted_and_relative(storage: LocalStorage) -> None:
    for key in ["b/2.json", "a/1.json", "a/x/3.json", "top.json", "ab.json"]:
        storage.put_bytes(key, b"x")
    # A temp file left by a crashed writer is never listed.
    (storage.root / "a" / ".tmp-crashed").write_bytes(b"partial")

    assert list(storage.list_keys()) == ["a/1.json", "a/x/3.json", "ab.json", "b/2.json", "top.json"]
    assert list(storage.list_keys("a/")) == ["a/1.json", "a/x/3.json"]
    # Like S3, a prefix is a string prefix, not a directory name.
    assert list(storage.list_keys("a")) == ["a/1.json", "a/x/3.json", "ab.json"]
    assert list(storage.list_keys("a/x/3")) == ["a/x/3.json"]
    assert list(storage.list_keys("missing/")) == []


def test_list_keys_of_missing_root_is_empty(tmp_path: Path) -> None:
    assert list(LocalStorage(tmp_path / "never-created").list_keys()) == []


# --- atomicity ------------------------------------------------------------------------------------


def test_missing_source_leaves_old_object_and_no_temp(storage: LocalStorage, tmp_path: Path) -> None:
    storage.put_bytes(KEY, b"previous")
    with pytest.raises(StorageError, match=r"copy to file:///.*abc\.wav failed"):
        storage.put_file(KEY, tmp_path / "does-not-exist.wav")
    assert storage.get_bytes(KEY) == b"previous"
    assert _temp_files(storage.root) == []


def test_failed_rename_removes_temp_file(storage: LocalStorage) -> None:
    storage.put_bytes("taken/child.json", b"x")
    # "taken" is a directory, so the final rename fails after the temp file was fully written.
    with pytest.raises(StorageError, match="taken"):
        storage.put_bytes("taken", b"y")
    assert _temp_files(storage.root) == []
    assert storage.get_bytes("taken/child.json") == b"x"


def test_unwritable_root_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    with pytest.raises(StorageError, match="a-file"):
        LocalStorage(blocker).put_bytes("x.json", b"x")


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_archive_files_and_directories_are_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    # The archive holds transcripts and recordings: no other user may read them.
    storage = LocalStorage(tmp_path / "new-root")
    old = os.umask(umask)
    try:
        storage.put_bytes("calls/call_date=2026-03-02/data.parquet", b"x")
        upload = storage.start_upload("recordings/call_date=2026-03-02/c.wav")
        upload.put_part(1, 0, b"RIFF")
        upload.complete()
        storage.put_bytes_if("_state/leases/day.json", b"{}", if_none_match=True)
    finally:
        os.umask(old)
    modes = {p.relative_to(tmp_path).as_posix(): p.stat().st_mode & 0o777 for p in tmp_path.rglob("*")}
    assert modes, "nothing written"
    for name, mode in modes.items():
        expected = 0o700 if (tmp_path / name).is_dir() else 0o600
        assert mode == expected, (name, oct(mode))


def test_cleanup_removes_only_stale_temp_files(storage: LocalStorage) -> None:
    storage.put_bytes("a/keep.json", b"x")
    stale = storage.root / "a" / ".tmp-stale"
    fresh = storage.root / "a" / ".tmp-fresh"
    stale.write_bytes(b"old")
    fresh.write_bytes(b"new")
    os.utime(stale, (1_000, 1_000))
    os.utime(fresh, (5_000, 5_000))

    assert cleanup_stale_temp_files(storage, older_than_s=3_600, now=5_000) == 1
    assert not stale.exists()
    assert fresh.exists()
    assert storage.get_bytes("a/keep.json") == b"x"


# --- conditional writes: the backend contract (tests/support/contracts/), plus local specifics ------


class TestLocalConditionalWrites(ConditionalWriteRaces):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> LocalStorage:
        return LocalStorage(tmp_path / "archive")

    def test_etag_is_the_content_sha256(self, storage: LocalStorage) -> None:
        etag = storage.put_bytes_if(LEASE, b"v1", if_none_match=True)
        assert etag == hashlib.sha256(b"v1").hexdigest()
        # Quoted, as S3 spells them, works the same.
        assert storage.put_bytes_if(LEASE, b"v2", if_match=f'"{etag}"') == hashlib.sha256(b"v2").hexdigest()

    def test_lock_files_are_hidden_and_kept(self, storage: LocalStorage) -> None:
        etag = storage.put_bytes_if(LEASE, b"v1", if_none_match=True)
        storage.put_bytes_if(LEASE, b"v2", if_match=etag)
        lock = storage.root / "_state" / "leases" / ".lock-day.json"
        assert lock.is_file()
        assert list(storage.list_keys()) == [LEASE]
        assert _temp_files(storage.root) == []

        os.utime(lock, (1_000, 1_000))
        assert cleanup_stale_temp_files(storage, older_than_s=3_600, now=1_000_000) == 0
        assert lock.exists()

    def test_create_below_a_file_is_a_storage_error(self, storage: LocalStorage) -> None:
        storage.put_bytes("_state", b"a file where a directory should be")
        with pytest.raises(StorageError, match="_state") as caught:
            storage.put_bytes_if(LEASE, b"x", if_none_match=True)
        assert not isinstance(caught.value, PreconditionFailed)
        storage.delete_if(LEASE, "abc")


# --- the audio path: put_checked and parted uploads ---------------------------------------------


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".tmp-")]


def test_put_checked_writes_the_bytes(storage: LocalStorage) -> None:
    data = bytearray(os.urandom(5000))
    uri = storage.put_checked(KEY, data, sha256=hashlib.sha256(data).digest(), content_type="audio/wav")
    assert uri == storage.uri_for(KEY)
    assert storage.get_bytes(KEY) == data
    assert _temp_files(storage.root) == []


def test_a_parted_upload_is_invisible_until_complete_whatever_the_part_order(storage: LocalStorage) -> None:
    parts = [os.urandom(1000), os.urandom(1000), os.urandom(10)]
    upload = storage.start_upload(KEY, content_type="audio/wav")
    for number in (3, 1, 2):
        upload.put_part(number, (number - 1) * 1000, parts[number - 1])
    assert storage.head(KEY) is None
    assert list(storage.list_keys()) == []

    assert upload.complete() == storage.uri_for(KEY)

    assert storage.get_bytes(KEY) == b"".join(parts)
    assert _temp_files(storage.root) == []


def test_an_aborted_parted_upload_leaves_nothing_and_the_old_object_stands(storage: LocalStorage) -> None:
    storage.put_bytes(KEY, b"old")
    upload = storage.start_upload(KEY)
    upload.put_part(1, 0, b"new bytes")
    upload.abort()
    upload.abort()  # a second abort (cleanup after a failed one) is harmless

    assert storage.get_bytes(KEY) == b"old"
    assert _temp_files(storage.root) == []
    with pytest.raises(StorageError, match="closed"):
        upload.put_part(2, 9, b"late")


def test_digest_hashes_the_file(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes("recordings/a.wav", b"RIFF" * 1000)
    info = storage.digest("recordings/a.wav")
    assert info == ObjectInfo("recordings/a.wav", 4000, sha256=hashlib.sha256(b"RIFF" * 1000).digest())
    assert storage.digest("recordings/missing.wav") is None
