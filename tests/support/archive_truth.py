"""Compare an archive with the simulator's ground truth. Shared by every end-to-end test."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

HIVE = ds.partitioning(pa.schema([("call_date", pa.date32())]), flavor="hive")


@dataclass
class Archive:
    calls: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    calls_schema: pa.Schema
    messages_schema: pa.Schema
    read_object: Callable[[str], bytes]


def read_archive(root: str, filesystem: pafs.FileSystem | None = None) -> Archive:
    def table(name: str) -> pa.Table:
        path = f"{root}/{name}"
        return ds.dataset(path, format="parquet", partitioning=HIVE, filesystem=filesystem).to_table()

    calls = table("calls")
    messages = table("messages")

    def read_object(uri: str) -> bytes:
        if uri.startswith("s3://"):
            assert filesystem is not None
            with filesystem.open_input_stream(uri.removeprefix("s3://")) as stream:
                return bytes(stream.read())
        assert uri.startswith("file://"), uri
        with open(uri.removeprefix("file://"), "rb") as handle:
            return handle.read()

    return Archive(calls.to_pylist(), messages.to_pylist(), calls.schema, messages.schema, read_object)


def s3_filesystem(endpoint: str) -> pafs.S3FileSystem:
    scheme, _, host = endpoint.partition("://")
    return pafs.S3FileSystem(
        endpoint_override=host,
        scheme=scheme,
        access_key="testing",
        secret_key="testing",
        region="us-east-1",
    )


@dataclass
class Expected:
    """Which truth calls a run should have archived, and how."""

    truth: list[dict[str, Any]]
    excluded: set[str] = field(default_factory=set)  # ids the run was made to fail on purpose
    # Calls whose recording never became ready and that the archive has given up on.
    recordings_given_up: set[str] = field(default_factory=set)
    # Calls still underway that the archive has given up on waiting for: archived as they are, their
    # recording `unavailable`.
    underway_given_up: set[str] = field(default_factory=set)

    @property
    def archived(self) -> list[dict[str, Any]]:
        return [
            t
            for t in self.truth
            if (not t["underway"] or t["call_id"] in self.underway_given_up)
            and t["call_id"] not in self.excluded
        ]


_RECORDING_STATUS = {"ready": "archived", "not_enabled": "not_enabled", "pending": "pending"}


def assert_matches_truth(archive: Archive, expected: Expected, *, check_audio: bool = True) -> None:
    archived_ids = [row["call_id"] for row in archive.calls]
    assert len(archived_ids) == len(set(archived_ids)), "a call is archived twice"
    want = {t["call_id"]: t for t in expected.archived}
    missing, extra = set(want) - set(archived_ids), set(archived_ids) - set(want)
    assert not missing and not extra, f"missing {sorted(missing)[:5]}, extra {sorted(extra)[:5]}"
    for row in archive.calls:
        truth = want[row["call_id"]]
        assert row["call_date"].isoformat() == truth["call_date"]
        assert json.loads(row["raw_json"]) == truth["call"]
        status = _RECORDING_STATUS[truth["recording"]["status"]]
        if row["call_id"] in expected.recordings_given_up:
            status = "unavailable"
        if row["call_id"] in expected.underway_given_up and status != "not_enabled":
            status = "unavailable"
        _assert_recording(row, truth["recording"], status, archive.read_object if check_audio else None)
    _assert_messages(archive.messages, want.values())


def _assert_recording(
    row: dict[str, Any], truth: dict[str, Any], status: str, read: Callable[[str], bytes] | None
) -> None:
    assert row["recording_status"] == status, (
        row["call_id"],
        row["recording_detail"],
    )
    if truth["status"] != "ready":
        assert row["recording_uri"] is None
        return
    assert row["recording_bytes"] == truth["bytes"]
    assert row["recording_sha256"] == truth["sha256"]
    assert row["recording_uri"].endswith(f"/recordings/call_date={row['call_date']}/{row['call_id']}.wav")
    if read is not None:
        assert hashlib.sha256(read(row["recording_uri"])).hexdigest() == truth["sha256"]


def _assert_messages(rows: list[dict[str, Any]], truths: Iterable[dict[str, Any]]) -> None:
    by_call: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_call[row["call_id"]].append(row)
    truths = list(truths)
    assert set(by_call) <= {t["call_id"] for t in truths}, "messages of a call that is not archived"
    for truth in truths:
        got = sorted(by_call.get(truth["call_id"], []), key=lambda r: r["message_index"])
        assert [r["message_index"] for r in got] == list(range(len(got))), (
            "message_index not 0..n-1 once each"
        )
        assert len(got) == len(truth["messages"]), truth["call_id"]
        for row, message in zip(got, truth["messages"], strict=True):
            assert row["text"] == message.get("text")
            assert json.loads(row["raw_json"]) == message
            assert row["call_date"].isoformat() == truth["call_date"]


_VOLATILE_CALL_COLUMNS = ("archived_at", "last_seen_at")


def comparable(archive: Archive) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    """The archive's content without what legitimately differs between two runs (when a row was
    written, where the archive's root is): calls, messages, and each recording's SHA-256."""
    calls = []
    audio = {}
    for row in sorted(archive.calls, key=lambda r: r["call_id"]):
        row = {k: v for k, v in row.items() if k not in _VOLATILE_CALL_COLUMNS}
        if row["recording_uri"]:
            audio[row["call_id"]] = hashlib.sha256(archive.read_object(row["recording_uri"])).hexdigest()
            row["recording_uri"] = row["recording_uri"].rsplit("/recordings/", 1)[1]
        calls.append(row)
    messages = sorted(archive.messages, key=lambda r: (r["call_id"], r["message_index"]))
    return calls, messages, audio
