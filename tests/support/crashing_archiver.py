"""The archiver's real CLI, with a destination that SIGKILLs its own process at a chosen write.

    python tests/support/crashing_archiver.py put:messages/:2 sync --since 2026-01-01 ...

runs `ultravox-archiver sync --since 2026-01-01 ...` and kills the process right before its second
write of a key under `messages/` (`delete:` counts deletions). It is a real SIGKILL, sent at a
precise moment: no cleanup runs, exactly as when the node is drained or the container is OOM-killed.
The crash tests need it; the installed package knows nothing of it (it only offers `RunHooks`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from etl.cli import RunHooks, main
from etl.errors import ConfigError
from etl.storage.base import ObjectInfo, PartedUpload, Storage


@dataclass(frozen=True)
class CrashPoint:
    operation: str  # "put" or "delete"
    prefix: str
    occurrence: int

    @classmethod
    def parse(cls, spec: str) -> CrashPoint:
        operation, _, rest = spec.partition(":")
        prefix, _, occurrence = rest.rpartition(":")
        if operation not in ("put", "delete") or not occurrence.isdigit() or int(occurrence) < 1:
            raise ConfigError(f"a crash point is put|delete:PREFIX:N, got {spec!r}")
        return cls(operation, prefix, int(occurrence))


class CrashingStorage:
    def __init__(self, inner: Storage, point: CrashPoint) -> None:
        self._inner = inner
        self._point = point
        self._seen = 0
        self._lock = threading.Lock()

    def _maybe_crash(self, operation: str, key: str) -> None:
        if operation != self._point.operation or not key.startswith(self._point.prefix):
            return
        with self._lock:
            self._seen += 1
            if self._seen == self._point.occurrence:
                os.kill(os.getpid(), signal.SIGKILL)

    @property
    def uri(self) -> str:
        return self._inner.uri

    def uri_for(self, key: str) -> str:
        return self._inner.uri_for(key)

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> str:
        self._maybe_crash("put", key)
        return self._inner.put_file(key, path, content_type=content_type)

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> str:
        self._maybe_crash("put", key)
        return self._inner.put_bytes(key, data, content_type=content_type)

    def put_checked(
        self, key: str, data: bytes | bytearray, *, sha256: bytes, content_type: str | None = None
    ) -> str:
        self._maybe_crash("put", key)
        return self._inner.put_checked(key, data, sha256=sha256, content_type=content_type)

    def start_upload(self, key: str, *, content_type: str | None = None) -> PartedUpload:
        # Counted where the object is published: parts sent before the kill stay invisible.
        return _CrashingUpload(self._inner.start_upload(key, content_type=content_type), self, key)

    def put_bytes_if(
        self,
        key: str,
        data: bytes,
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_type: str | None = None,
    ) -> str:
        self._maybe_crash("put", key)
        return self._inner.put_bytes_if(
            key, data, if_none_match=if_none_match, if_match=if_match, content_type=content_type
        )

    def get_bytes(self, key: str) -> bytes | None:
        return self._inner.get_bytes(key)

    def get_with_etag(self, key: str) -> tuple[bytes, str] | None:
        return self._inner.get_with_etag(key)

    def get_file(self, key: str, path: Path) -> bool:
        return self._inner.get_file(key, path)

    def head(self, key: str) -> ObjectInfo | None:
        return self._inner.head(key)

    def digest(self, key: str) -> ObjectInfo | None:
        return self._inner.digest(key)

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        return self._inner.list_keys(prefix)

    def delete(self, key: str) -> None:
        self._maybe_crash("delete", key)
        self._inner.delete(key)

    def delete_if(self, key: str, etag: str) -> None:
        self._maybe_crash("delete", key)
        self._inner.delete_if(key, etag)


class _CrashingUpload:
    def __init__(self, inner: PartedUpload, storage: CrashingStorage, key: str) -> None:
        self._inner = inner
        self._storage = storage
        self._key = key

    def put_part(self, number: int, offset: int, data: bytes | bytearray) -> None:
        self._inner.put_part(number, offset, data)

    def complete(self) -> str:
        self._storage._maybe_crash("put", self._key)
        return self._inner.complete()

    def abort(self) -> None:
        self._inner.abort()


def run_cli(argv: list[str]) -> None:
    """`argv` is the crash point, then the archiver's command line."""
    spec, *args = argv
    point = CrashPoint.parse(spec)
    hooks = RunHooks(wrap_storage=lambda storage: CrashingStorage(storage, point))
    main.main(args, prog_name="ultravox-archiver", obj=hooks)


if __name__ == "__main__":
    run_cli(sys.argv[1:])
