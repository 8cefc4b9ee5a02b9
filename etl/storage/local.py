"""The local-directory backend.

Objects are files under a root directory, published by write-temp-then-rename, so a reader sees a
whole object or none. Conditional writes need a local POSIX filesystem: create-if-absent links a
finished temp file onto the name (`os.link` refuses an existing name), and replace/delete-if-match
hold an exclusive `flock` on a hidden lock file beside the object. flock serialises writers on ONE
machine only: two hosts sharing a network filesystem get no guarantee from it, so use S3 when runs
may overlap across machines.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from etl.errors import PreconditionFailed, StorageError
from etl.storage.base import (
    LOCK_PREFIX,
    RESERVED_PREFIXES,
    TEMP_PREFIX,
    ByteData,
    ObjectInfo,
    PartedUpload,
    check_condition,
    check_key,
    check_prefix,
)

_COPY_BUFFER = 1024 * 1024
# A temp file this old cannot belong to a write still in progress.
_STALE_TEMP_AGE_S = 3600.0


@contextmanager
def _os_errors(operation: str, uri: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise StorageError(f"{operation} {uri} failed: {type(exc).__name__}: {exc.strerror or exc}") from exc


def _file_uri(path: Path) -> str:
    # Path.as_uri() escapes "=", which would turn Hive partitions (call_date=...) into
    # call_date%3D...; RFC 3986 allows sub-delims in a path, so only what must be escaped is.
    return "file://" + quote(path.as_posix(), safe="/:@!$&'()*+,;=")


# The archive holds transcripts, recordings and call metadata: readable by its owner only, whatever
# the umask of the process that writes it (cron's is often 022).
FILE_MODE = 0o600
DIR_MODE = 0o700


def make_private_dirs(directory: Path) -> None:
    """Create `directory` and its missing parents with DIR_MODE (the umask cannot widen or narrow
    it); directories that exist already are left as their owner set them."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            continue  # another writer made it first
        os.chmod(path, DIR_MODE)


def _open_private(path: Path, flags: int) -> int:
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def _new_temp_file(target: Path) -> tuple[Path, int]:
    """A new, empty temp file beside `target` (same filesystem, so a rename onto it is atomic),
    opened for writing, readable by its owner only (the rename keeps the mode)."""
    make_private_dirs(target.parent)
    temp = target.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex}")
    # O_EXCL: never write into someone else's file.
    return temp, _open_private(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)


def _fsync_dir(directory: Path) -> None:
    # The rename lives in the directory entry; without this a crash can forget a "published" file.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def local_etag(data: bytes) -> str:
    """The local backend's ETag: hex SHA-256 of the content, unquoted."""
    return hashlib.sha256(data).hexdigest()


def _read_existing(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    # A "directory" key or a file in place of a parent is simply no object, as on S3.
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


class LocalStorage:
    """Objects as files under a root directory, published by write-temp-then-rename."""

    def __init__(self, root: Path) -> None:
        # Resolved once, so every URI we hand out is absolute and free of `..`.
        self._root = root.expanduser().resolve()

    @property
    def root(self) -> Path:
        return self._root

    @property
    def uri(self) -> str:
        return _file_uri(self._root)

    def uri_for(self, key: str) -> str:
        return _file_uri(self._path_for(key))

    def _path_for(self, key: str) -> Path:
        check_key(key)
        return self._root.joinpath(*key.split("/"))

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> str:
        # A filesystem has nowhere to keep content_type; S3 is where it matters.
        uri = self.uri_for(key)
        with _os_errors("copy to", uri), path.open("rb") as source:
            self._publish(self._path_for(key), lambda out: shutil.copyfileobj(source, out, _COPY_BUFFER))
        return uri

    def put_bytes(self, key: str, data: ByteData, *, content_type: str | None = None) -> str:
        uri = self.uri_for(key)
        with _os_errors("write", uri):
            self._publish(self._path_for(key), lambda out: out.write(data))
        return uri

    def put_checked(self, key: str, data: ByteData, *, sha256: bytes, content_type: str | None = None) -> str:
        # No server here to verify the digest, and hashing again would be the second pass over the
        # bytes the caller just hashed: the rename in `put_bytes` is what makes the write whole.
        return self.put_bytes(key, data, content_type=content_type)

    def start_upload(self, key: str, *, content_type: str | None = None) -> PartedUpload:
        target = self._path_for(key)
        uri = _file_uri(target)
        with _os_errors("start writing", uri):
            temp, fd = _new_temp_file(target)
        return _LocalUpload(target, temp, fd, uri)

    def _write_temp(self, target: Path, write: Callable[[BinaryIO], object]) -> Path:
        """A fully written and synced temp file beside `target` (same filesystem, so renames are atomic)."""
        temp, fd = _new_temp_file(target)
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return temp

    def _publish(self, target: Path, write: Callable[[BinaryIO], object]) -> None:
        """Write to a temp file beside `target`, then rename over it."""
        temp = self._write_temp(target, write)
        try:
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)

    def get_bytes(self, key: str) -> bytes | None:
        path = self._path_for(key)
        with _os_errors("read", _file_uri(path)):
            return _read_existing(path)

    def get_file(self, key: str, path: Path) -> bool:
        source = self._path_for(key)
        with _os_errors("read", _file_uri(source)):
            try:
                shutil.copyfile(source, path)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return False
            return True

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path_for(key)
        with _os_errors("stat", _file_uri(path)):
            try:
                info = path.stat()
            except (FileNotFoundError, NotADirectoryError):
                return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return ObjectInfo(key=key, size=info.st_size)

    def digest(self, key: str) -> ObjectInfo | None:
        # A filesystem keeps no checksum: the file is read and hashed (local disk, no network).
        path = self._path_for(key)
        with _os_errors("hash", _file_uri(path)):
            try:
                with path.open("rb") as source:
                    digest = hashlib.file_digest(source, "sha256")
                    size = source.tell()  # the bytes hashed, read to the end
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return None
        return ObjectInfo(key=key, size=size, sha256=digest.digest())

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        check_prefix(prefix)
        # S3 prefixes are plain string prefixes, so walk the deepest directory the prefix names in
        # full and filter the rest by string.
        directory = prefix.rpartition("/")[0]
        base = self._root.joinpath(*directory.split("/")) if directory else self._root
        with _os_errors("list", _file_uri(base)):
            keys = [key for key in self._walk(base) if key.startswith(prefix)]
        yield from sorted(keys)

    def _walk(self, base: Path) -> Iterator[str]:
        if not base.is_dir():
            return

        def fail(exc: OSError) -> None:
            raise exc

        for dirpath, _dirnames, filenames in os.walk(base, onerror=fail):
            relative = Path(dirpath).relative_to(self._root).as_posix()
            for name in filenames:
                if not name.startswith(RESERVED_PREFIXES):
                    yield name if relative == "." else f"{relative}/{name}"

    def delete(self, key: str) -> None:
        path = self._path_for(key)
        with _os_errors("delete", _file_uri(path)):
            # Deleting a missing object succeeds, as on S3, so retried cleanups are harmless.
            path.unlink(missing_ok=True)

    # --- conditional writes: one machine only (flock) -------------------------------------------

    def get_with_etag(self, key: str) -> tuple[bytes, str] | None:
        # Objects are replaced by rename, so one read sees one version and its hash is its ETag.
        data = self.get_bytes(key)
        return None if data is None else (data, local_etag(data))

    def put_bytes_if(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_type: str | None = None,
    ) -> str:
        check_condition(if_none_match, if_match)
        target = self._path_for(key)
        uri = _file_uri(target)
        with _os_errors("conditional write to", uri):
            if if_match is None:
                self._create(target, data, uri)
            elif not target.parent.is_dir():
                raise PreconditionFailed(f"conditional write to {uri} failed: no such object")
            else:
                with self._key_lock(target):
                    current = _read_existing(target)
                    if current is None or local_etag(current) != if_match.strip('"'):
                        raise PreconditionFailed(f"conditional write to {uri} failed: ETag does not match")
                    self._publish(target, lambda out: out.write(data))
        return local_etag(data)

    def _create(self, target: Path, data: bytes, uri: str) -> None:
        temp = self._write_temp(target, lambda out: out.write(data))
        try:
            # link() fails if the name exists and never exposes a partly written file: an atomic
            # create-if-absent that needs no lock, even against writers in other processes.
            os.link(temp, target)
        except FileExistsError as exc:
            if target.is_dir():
                raise  # a directory in the way is no lost race, and no object either
            raise PreconditionFailed(f"conditional write to {uri} failed: object already exists") from exc
        finally:
            temp.unlink(missing_ok=True)
        _fsync_dir(target.parent)

    def delete_if(self, key: str, etag: str) -> None:
        target = self._path_for(key)
        uri = _file_uri(target)
        with _os_errors("conditional delete of", uri):
            if not target.parent.is_dir():
                return
            with self._key_lock(target):
                current = _read_existing(target)
                if current is None:
                    return
                if local_etag(current) != etag.strip('"'):
                    raise PreconditionFailed(f"conditional delete of {uri} failed: ETag does not match")
                target.unlink()
                _fsync_dir(target.parent)

    @contextmanager
    def _key_lock(self, target: Path) -> Iterator[None]:
        """Hold an exclusive flock on `<dir>/.lock-<name>` while comparing and swapping `target`.

        Each call opens its own descriptor, so the lock also excludes other threads of this process.
        The lock file is never deleted: unlinking it while another writer waits on the old inode
        would let a third writer lock a fresh file, and two writers would both "hold" the lock.
        """
        make_private_dirs(target.parent)
        fd = _open_private(target.with_name(f"{LOCK_PREFIX}{target.name}"), os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            # Closing the descriptor releases the lock.
            os.close(fd)


class _LocalUpload:
    """A temp file beside the object, written part by part at each part's offset, then renamed."""

    def __init__(self, target: Path, temp: Path, fd: int, uri: str) -> None:
        self._target = target
        self._temp = temp
        self._fd: int | None = fd
        self._uri = uri

    def put_part(self, number: int, offset: int, data: ByteData) -> None:
        if self._fd is None:
            raise StorageError(f"write part {number} of {self._uri} failed: the upload is closed")
        with _os_errors(f"write part {number} of", self._uri):
            # pwrite: parts written from several threads never share a file position.
            view = memoryview(data)
            while view:
                written = os.pwrite(self._fd, view, offset)
                view, offset = view[written:], offset + written

    def complete(self) -> str:
        if self._fd is None:
            raise StorageError(f"complete {self._uri} failed: the upload is closed")
        with _os_errors("complete", self._uri):
            try:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None
                os.replace(self._temp, self._target)
            except BaseException:
                self.abort()
                raise
            _fsync_dir(self._target.parent)
        return self._uri

    def abort(self) -> None:
        with _os_errors("abort writing", self._uri):
            if self._fd is not None:
                fd, self._fd = self._fd, None
                os.close(fd)
            self._temp.unlink(missing_ok=True)


def cleanup_stale_temp_files(
    storage: LocalStorage, *, older_than_s: float = _STALE_TEMP_AGE_S, now: float | None = None
) -> int:
    """Remove temp files left by crashed writes; returns how many were removed.

    Only files older than `older_than_s` go: a younger one may belong to a concurrent run. Lock
    files are left alone.
    """
    cutoff = (time.time() if now is None else now) - older_than_s
    removed = 0
    with _os_errors("clean temp files in", storage.uri):
        if not storage.root.is_dir():
            return 0
        for temp in storage.root.rglob(f"{TEMP_PREFIX}*"):
            if temp.is_file() and temp.stat().st_mtime < cutoff:
                temp.unlink(missing_ok=True)
                removed += 1
    return removed
