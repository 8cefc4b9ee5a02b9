"""Table contracts (schemas/*.json) -> Arrow schemas."""

from __future__ import annotations

import copy
from typing import Any

import pyarrow as pa
import pytest

from etl.errors import ContractError
from etl.schema import contracts_dir, load_table_schema, parse_contract, table_names

CALLS_COLUMNS = [
    "call_id",
    "created",
    "joined",
    "ended",
    "end_reason",
    "model",
    "voice",
    "system_prompt",
    "temperature",
    "language_hint",
    "max_duration_s",
    "time_exceeded_message",
    "recording_enabled",
    "metadata",
    "summary",
    "short_summary",
    "billed_duration_s",
    "billing_status",
    "billed_side_input_tokens",
    "billed_side_output_tokens",
    "retention_policy",
    "agent_id",
    "medium",
    "error_count",
    "recording_status",
    "recording_uri",
    "recording_bytes",
    "recording_sha256",
    "recording_detail",
    "raw_json",
    "archived_at",
    "message_count",
    "last_seen_at",
    "source_deleted_at",
]
MESSAGES_COLUMNS = [
    "call_id",
    "message_index",
    "role",
    "text",
    "medium",
    "tool_name",
    "invocation_id",
    "error_details",
    "call_stage_id",
    "call_stage_message_index",
    "start_s",
    "end_s",
    "wall_clock_start_s",
    "wall_clock_end_s",
    "raw_json",
]

UTC_MICROS = pa.timestamp("us", tz="UTC")


def test_contracts_are_found_in_the_repository() -> None:
    assert (contracts_dir() / "calls.json").is_file()
    assert table_names() == ("calls", "messages")


def test_calls_file_schema_has_every_column_but_the_partition() -> None:
    calls = load_table_schema("calls")

    assert calls.name == "calls"
    assert calls.version == 1
    assert calls.partition_column == "call_date"
    assert calls.arrow_schema.names == CALLS_COLUMNS
    assert [c.name for c in calls.columns] == [*CALLS_COLUMNS, "call_date"]


def test_messages_file_schema_has_every_column_but_the_partition() -> None:
    messages = load_table_schema("messages")

    assert messages.arrow_schema.names == MESSAGES_COLUMNS
    assert messages.partition.name == "call_date"
    assert messages.partition.type == "date"


def test_arrow_types_follow_the_contract_vocabulary() -> None:
    calls = load_table_schema("calls").arrow_schema
    messages = load_table_schema("messages").arrow_schema

    assert calls.field("created").type == UTC_MICROS
    assert calls.field("archived_at").type == UTC_MICROS
    assert calls.field("metadata").type == pa.map_(pa.string(), pa.string())
    assert calls.field("temperature").type == pa.float64()
    assert calls.field("recording_enabled").type == pa.bool_()
    assert calls.field("recording_bytes").type == pa.int64()
    assert messages.field("message_index").type == pa.int32()
    assert messages.field("call_stage_message_index").type == pa.int32()
    assert messages.field("start_s").type == pa.float64()


def test_nullability_follows_the_contract() -> None:
    calls = load_table_schema("calls").arrow_schema

    required = [f.name for f in calls if not f.nullable]

    assert required == ["call_id", "created", "recording_status", "raw_json", "archived_at"]


def test_arrow_schema_carries_table_and_version_and_descriptions() -> None:
    schema = load_table_schema("calls").arrow_schema

    assert schema.metadata == {b"table": b"calls", b"contract_version": b"1"}
    assert schema.field("call_id").metadata[b"description"].startswith(b"Ultravox call id")


def test_load_is_cached() -> None:
    assert load_table_schema("calls") is load_table_schema("calls")


def test_unknown_table_is_a_contract_error() -> None:
    with pytest.raises(ContractError, match="cannot read table contract"):
        load_table_schema("no_such_table")


def _minimal_contract() -> dict[str, Any]:
    return {
        "table": "t",
        "version": 1,
        "partition_column": "call_date",
        "description": "A test table.",
        "columns": [
            {"name": "id", "type": "string", "nullable": False, "description": "Id."},
            {"name": "call_date", "type": "date", "nullable": False, "description": "Partition."},
        ],
    }


def test_minimal_contract_parses() -> None:
    table = parse_contract(_minimal_contract(), expected_name="t")

    assert table.arrow_schema.names == ["id"]
    assert [c.name for c in table.file_columns] == ["id"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(table="other"), "'table' is 'other'"),
        (lambda d: d.update(version=0), "version"),
        (lambda d: d.update(version=True), "version"),
        (lambda d: d.update(columns=[]), "non-empty list"),
        (lambda d: d["columns"][0].update(type="varchar"), "unknown type 'varchar'"),
        (lambda d: d["columns"][0].update(name="CallId"), "not snake_case"),
        (lambda d: d["columns"][0].update(nullable="no"), "boolean 'nullable'"),
        (lambda d: d["columns"][0].update(description=""), "non-empty single line"),
        (lambda d: d["columns"][0].update(description="two\nlines"), "non-empty single line"),
        (lambda d: d["columns"].append(dict(d["columns"][0])), "duplicate columns \\['id'\\]"),
        (lambda d: d.update(partition_column="day"), "partition column 'day' not declared"),
        (lambda d: d["columns"][1].update(nullable=True), "non-null date or string"),
        (lambda d: d["columns"][1].update(type="int64"), "non-null date or string"),
    ],
)
def test_malformed_contracts_are_rejected(change: Any, message: str) -> None:
    document = copy.deepcopy(_minimal_contract())
    change(document)

    with pytest.raises(ContractError, match=message):
        parse_contract(document, expected_name="t")


def test_non_object_contract_is_rejected() -> None:
    with pytest.raises(ContractError, match="expected a JSON object"):
        parse_contract([], expected_name="t")
