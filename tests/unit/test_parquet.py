"""Spooling rows to local Parquet files, and Hive partition keys."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from etl.model import RecordingOutcome, RecordingStatus
from etl.parquet import ParquetSpool, partition_key
from etl.records import call_row, message_rows
from etl.schema import load_table_schema

CALLS = load_table_schema("calls")
MESSAGES = load_table_schema("messages")
ARCHIVED_AT = datetime(2026, 3, 3, 4, 5, 6, 123456, tzinfo=UTC)


def _call(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "callId": f"00000000-0000-4000-8000-{n:012d}",
        "created": "2026-03-02T10:00:00.654321+01:00",
        "ended": "2026-03-02T09:05:00Z",
        "temperature": 0.5,
        "maxDuration": "300s",
        "recordingEnabled": True,
        "metadata": {"customer": "ACME", "note": "çà 🎧"},
        "billedSideInputTokens": 2**40,
        "medium": {"webRtc": {}},
        **extra,
    }


def _call_rows(count: int) -> list[dict[str, Any]]:
    outcome = RecordingOutcome(status=RecordingStatus.NOT_ENABLED)
    return [call_row(_call(n), outcome, ARCHIVED_AT) for n in range(count)]


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_call_rows_round_trip_with_exact_types(tmp_path: Path) -> None:
    rows = _call_rows(2)

    with ParquetSpool(CALLS, tmp_path) as spool:
        spool.add_many(rows)
        path = spool.close()

    assert path is not None
    table = pq.read_table(path)
    assert table.schema.equals(CALLS.arrow_schema)
    assert table.schema.field("created").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("metadata").type == pa.map_(pa.string(), pa.string())
    assert not table.schema.field("call_id").nullable
    read = table.to_pylist()
    assert read[0]["created"] == datetime(2026, 3, 2, 9, 0, 0, 654321, tzinfo=UTC)
    assert read[0]["archived_at"] == ARCHIVED_AT
    assert read[0]["metadata"] == [("customer", "ACME"), ("note", "çà 🎧")]
    assert read[0]["billed_side_input_tokens"] == 2**40
    assert read[0]["max_duration_s"] == 300.0
    assert read[0]["medium"] == "webRtc"
    assert [r["call_id"] for r in read] == [r["call_id"] for r in rows]
    assert read[1]["raw_json"] == rows[1]["raw_json"]


def test_message_rows_round_trip_with_int32(tmp_path: Path) -> None:
    messages = [
        {"role": "MESSAGE_ROLE_USER", "text": "hi", "callStageMessageIndex": 4, "timespan": {"start": "1s"}},
        {"ordinal": 2, "role": "AGENT", "text": "hello"},
    ]
    spool = ParquetSpool(MESSAGES, tmp_path)
    spool.add_many(message_rows("call-1", messages))

    path = spool.close()

    assert path is not None
    table = pq.read_table(path)
    assert table.schema.field("message_index").type == pa.int32()
    assert table.column("message_index").to_pylist() == [0, 1]
    assert table.column("call_stage_message_index").to_pylist() == [4, None]
    assert table.column("start_s").to_pylist() == [1.0, None]
    assert table.column("role").to_pylist() == ["user", "agent"]


def test_metadata_accepts_dicts_pairs_and_nulls(tmp_path: Path) -> None:
    base = _call_rows(1)[0]
    spool = ParquetSpool(CALLS, tmp_path)
    spool.add({**base, "metadata": {"a": "1"}})
    spool.add({**base, "metadata": [("b", "2")]})
    spool.add({**base, "metadata": {}})
    spool.add({**base, "metadata": None})

    path = spool.close()

    assert path is not None
    assert pq.read_table(path).column("metadata").to_pylist() == [[("a", "1")], [("b", "2")], [], None]


def test_file_is_zstd_compressed_with_statistics(tmp_path: Path) -> None:
    spool = ParquetSpool(CALLS, tmp_path)
    spool.add_many(_call_rows(3))

    path = spool.close()

    assert path is not None
    metadata = pq.ParquetFile(path).metadata
    for i in range(metadata.num_columns):
        column = metadata.row_group(0).column(i)
        assert column.compression == "ZSTD"
    created = metadata.row_group(0).column(CALLS.arrow_schema.names.index("created"))
    assert created.is_stats_set
    assert created.statistics.has_min_max


def test_batches_become_row_groups(tmp_path: Path) -> None:
    spool = ParquetSpool(CALLS, tmp_path, batch_rows=3)
    spool.add_many(_call_rows(10))

    assert spool.rows_written == 10
    path = spool.close()

    assert path is not None
    metadata = pq.ParquetFile(path).metadata
    assert metadata.num_rows == 10
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [3, 3, 3, 1]


def test_empty_spool_writes_nothing(tmp_path: Path) -> None:
    spool = ParquetSpool(CALLS, tmp_path)

    assert spool.close() is None
    assert spool.rows_written == 0
    assert _files(tmp_path) == []


def test_file_appears_under_its_final_name_only_when_closed(tmp_path: Path) -> None:
    spool = ParquetSpool(CALLS, tmp_path, batch_rows=1, file_name="part-0001.parquet")
    spool.add_many(_call_rows(2))

    assert _files(tmp_path) == [".part-0001.parquet.tmp"]
    path = spool.close()

    assert path == tmp_path / "part-0001.parquet"
    assert _files(tmp_path) == ["part-0001.parquet"]


def test_default_file_names_are_unique(tmp_path: Path) -> None:
    paths = []
    for _ in range(2):
        spool = ParquetSpool(CALLS, tmp_path)
        spool.add_many(_call_rows(1))
        paths.append(spool.close())

    assert paths[0] != paths[1]
    assert all(p is not None and p.name.startswith("calls-") and p.suffix == ".parquet" for p in paths)


def test_close_is_idempotent(tmp_path: Path) -> None:
    spool = ParquetSpool(CALLS, tmp_path)
    spool.add_many(_call_rows(1))

    first = spool.close()

    assert first is not None
    assert spool.close() == first


def test_abort_deletes_the_unfinished_file(tmp_path: Path) -> None:
    spool = ParquetSpool(CALLS, tmp_path, batch_rows=2)
    spool.add_many(_call_rows(5))
    assert _files(tmp_path) != []

    spool.abort()

    assert _files(tmp_path) == []


def test_context_manager_aborts_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), ParquetSpool(CALLS, tmp_path, batch_rows=1) as spool:
        spool.add_many(_call_rows(3))
        raise RuntimeError("upload failed")

    assert _files(tmp_path) == []


def test_context_manager_closes_on_success(tmp_path: Path) -> None:
    with ParquetSpool(CALLS, tmp_path, file_name="calls.parquet") as spool:
        spool.add_many(_call_rows(2))

    assert _files(tmp_path) == ["calls.parquet"]
    assert pq.read_metadata(tmp_path / "calls.parquet").num_rows == 2


def test_add_after_close_is_refused(tmp_path: Path) -> None:
    spool = ParquetSpool(CALLS, tmp_path)
    spool.close()

    with pytest.raises(ValueError, match="closed"):
        spool.add(_call_rows(1)[0])


def test_unknown_columns_are_refused(tmp_path: Path) -> None:
    spool = ParquetSpool(CALLS, tmp_path)

    with pytest.raises(ValueError, match=r"not in the contract: \['calId', 'call_date'\]"):
        spool.add({**_call_rows(1)[0], "calId": "typo", "call_date": date(2026, 3, 2)})


def test_null_in_required_column_is_refused(tmp_path: Path) -> None:
    spool = ParquetSpool(CALLS, tmp_path)
    row = _call_rows(1)[0]
    del row["raw_json"]

    with pytest.raises(ValueError, match=r"required columns are null: \['call_id', 'raw_json'\]"):
        spool.add({**row, "call_id": None})


def test_wrongly_typed_value_fails_loudly(tmp_path: Path) -> None:
    spool = ParquetSpool(CALLS, tmp_path)
    spool.add({**_call_rows(1)[0], "recording_bytes": "many"})

    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        spool.close()


def test_batch_rows_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_rows"):
        ParquetSpool(CALLS, tmp_path, batch_rows=0)


def test_partition_key() -> None:
    assert partition_key("calls", date(2026, 3, 2), "p.parquet") == "calls/call_date=2026-03-02/p.parquet"
    assert (
        partition_key("messages", date(2026, 1, 9), "m.parquet") == "messages/call_date=2026-01-09/m.parquet"
    )


@pytest.mark.parametrize("file_name", ["", "a/b.parquet", "..", "."])
def test_partition_key_refuses_paths(file_name: str) -> None:
    with pytest.raises(ValueError, match="not a plain file name"):
        partition_key("calls", date(2026, 3, 2), file_name)


def test_partition_key_refuses_datetimes() -> None:
    with pytest.raises(TypeError, match="not a datetime"):
        partition_key("calls", datetime(2026, 3, 2, tzinfo=UTC), "x.parquet")


def test_hive_layout_reads_back_with_call_date(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    for day, first in [(date(2026, 3, 1), 0), (date(2026, 3, 2), 10)]:
        spool = ParquetSpool(CALLS, tmp_path / "spool")
        spool.add_many(_call_rows(12)[first : first + 2])
        local = spool.close()
        assert local is not None
        target = root / partition_key("calls", day, local.name)
        target.parent.mkdir(parents=True)
        local.rename(target)

    dataset = ds.dataset(root / "calls", format="parquet", partitioning="hive")
    rows = sorted(dataset.to_table().to_pylist(), key=lambda r: r["call_id"])

    assert [(r["call_id"][-2:], r["call_date"]) for r in rows] == [
        ("00", "2026-03-01"),
        ("01", "2026-03-01"),
        ("10", "2026-03-02"),
        ("11", "2026-03-02"),
    ]
    assert dataset.schema.field("created").type == pa.timestamp("us", tz="UTC")


# --- row checks and conversion: the spool's per-row path -------------------------------------------


def _message_rows(count: int) -> list[dict[str, Any]]:
    messages = [
        {
            "role": "MESSAGE_ROLE_USER" if n % 2 else "MESSAGE_ROLE_AGENT",
            "text": f"message {n} à Zürich 🌧" if n % 5 else None,
            "medium": "MESSAGE_MEDIUM_VOICE",
            "callStageMessageIndex": n,
            "timespan": {"start": f"{n}.5s", "end": f"{n + 1}s"},
            **({"toolName": "lookup", "invocationId": f"inv-{n}"} if n % 7 == 0 else {}),
        }
        for n in range(count)
    ]
    return message_rows("call-1", messages)


def _spooled(table: Any, rows: list[Any], directory: Path, **options: Any) -> pa.Table:
    spool = ParquetSpool(table, directory, **options)
    spool.add_many(rows)
    path = spool.close()
    assert path is not None
    return pq.read_table(path)


def _expected(table: Any, rows: list[dict[str, Any]]) -> pa.Table:
    """What the spool wrote before it had fast paths: pyarrow's own conversion of the rows."""
    converted = [
        {key: list(value.items()) if isinstance(value, dict) else value for key, value in row.items()}
        for row in rows
    ]
    return pa.Table.from_pylist(converted, schema=table.arrow_schema)


@pytest.mark.parametrize(("count", "batch_rows"), [(1, 100_000), (2_500, 100_000), (2_500, 700)])
def test_message_file_holds_exactly_the_rows(tmp_path: Path, count: int, batch_rows: int) -> None:
    rows = _message_rows(count)

    table = _spooled(MESSAGES, rows, tmp_path, batch_rows=batch_rows)

    assert table.equals(_expected(MESSAGES, rows))
    assert table.to_pylist() == rows


def test_call_file_holds_exactly_the_rows(tmp_path: Path) -> None:
    rows = _call_rows(1_200)

    table = _spooled(CALLS, rows, tmp_path)

    assert table.equals(_expected(CALLS, rows))


def test_key_order_and_absent_nullable_columns_do_not_matter(tmp_path: Path) -> None:
    rows = _message_rows(30)
    reordered = [dict(reversed(row.items())) for row in rows[:10]]
    sparse = [{key: value for key, value in row.items() if value is not None} for row in rows[10:20]]
    mixed = reordered + sparse + rows[20:]

    table = _spooled(MESSAGES, mixed, tmp_path)

    assert table.equals(_expected(MESSAGES, rows))


def test_any_mapping_is_a_row(tmp_path: Path) -> None:
    rows = _message_rows(3)

    table = _spooled(MESSAGES, [MappingProxyType(row) for row in rows], tmp_path)

    assert table.equals(_expected(MESSAGES, rows))


def test_add_leaves_the_row_as_it_was(tmp_path: Path) -> None:
    row = _call_rows(1)[0]
    before = dict(row)
    spool = ParquetSpool(CALLS, tmp_path)

    spool.add(row)

    assert row == before
    assert isinstance(row["metadata"], dict)
    spool.abort()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"call_date": date(2026, 3, 2)}, r"^messages: columns not in the contract: \['call_date'\]$"),
        # A key set of the right size with one name wrong.
        ({"callId": "x", "call_id": ...}, r"^messages: columns not in the contract: \['callId'\]$"),
        ({"role": None}, r"^messages: required columns are null: \['role'\]$"),
        (
            {"raw_json": None, "call_id": None},
            r"^messages: required columns are null: \['call_id', 'raw_json'\]$",
        ),
        ({"message_index": ...}, r"^messages: required columns are null: \['message_index'\]$"),
        # Unknown columns are reported before null ones.
        ({"extra": 1, "role": None}, r"^messages: columns not in the contract: \['extra'\]$"),
        ({"zeta": 1, "alpha": 2}, r"^messages: columns not in the contract: \['alpha', 'zeta'\]$"),
    ],
)
def test_bad_rows_are_refused_and_not_counted(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    row = _message_rows(1)[0]
    for key, value in change.items():
        if value is ...:
            del row[key]
        else:
            row[key] = value
    spool = ParquetSpool(MESSAGES, tmp_path)
    spool.add(_message_rows(1)[0])

    with pytest.raises(ValueError, match=message):
        spool.add(row)

    assert spool.rows_written == 1
    path = spool.close()
    assert path is not None
    assert pq.read_table(path).equals(_expected(MESSAGES, _message_rows(1)))


def test_a_required_zero_or_empty_string_is_not_null(tmp_path: Path) -> None:
    row = {**_message_rows(1)[0], "call_id": "", "raw_json": "", "message_index": 0}

    table = _spooled(MESSAGES, [row], tmp_path)

    assert table.to_pylist() == [row]
