"""Table contracts: `schemas/*.json` loaded into Arrow schemas.

The JSON contracts are the single source of truth for what the archive's tables look like. Parquet
files are written with the Arrow schema built here, never with one inferred from whatever the API sent
today, and the warehouse DDL in `schemas/ddl/` is generated from the same files (`etl.ddl`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa

from etl.errors import ContractError

# The small type vocabulary a contract may use. Kept deliberately short: every type here must map
# cleanly onto Parquet and onto each warehouse in etl.ddl.
ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "bool": pa.bool_(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "timestamp_us_utc": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "map<string,string>": pa.map_(pa.string(), pa.string()),
}

# Hive partition values live in directory names, so only types with a plain text form qualify.
_PARTITION_TYPES = frozenset({"date", "string"})
# snake_case only: every warehouse accepts it unquoted and case-folding cannot change it.
_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool
    description: str

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.type]


@dataclass(frozen=True)
class TableSchema:
    """One table contract. `columns` includes the partition column; `file_columns` does not."""

    name: str
    version: int
    partition_column: str
    description: str
    columns: tuple[Column, ...]

    @property
    def partition(self) -> Column:
        return next(c for c in self.columns if c.name == self.partition_column)

    @property
    def file_columns(self) -> tuple[Column, ...]:
        # The partition value is the Hive directory (call_date=YYYY-MM-DD); storing it inside the
        # files as well would make readers see the column twice.
        return tuple(c for c in self.columns if c.name != self.partition_column)

    @cached_property
    def arrow_schema(self) -> pa.Schema:
        """The schema of the Parquet files: every column but the partition column."""
        fields = [
            pa.field(c.name, c.arrow_type, nullable=c.nullable, metadata={"description": c.description})
            for c in self.file_columns
        ]
        # Stamped into every file so a reader can tell which contract version wrote it.
        return pa.schema(fields, metadata={"table": self.name, "contract_version": str(self.version)})


def contracts_dir() -> Path:
    """Where the contracts are: inside an installed wheel (etl/_schemas) or at the repository top."""
    package_copy = Path(__file__).parent / "_schemas"
    if package_copy.is_dir():
        return package_copy
    return Path(__file__).parent.parent / "schemas"


def table_names() -> tuple[str, ...]:
    """Names of all tables with a contract, sorted."""
    return tuple(sorted(p.stem for p in contracts_dir().glob("*.json")))


@cache
def load_table_schema(name: str) -> TableSchema:
    """Load and validate `schemas/<name>.json`. Cached: contracts do not change during a run."""
    path = contracts_dir() / f"{name}.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ContractError(f"cannot read table contract {path}: {exc}") from exc
    return parse_contract(document, expected_name=name)


def parse_contract(document: Any, *, expected_name: str) -> TableSchema:
    """Validate a contract document and build its TableSchema."""
    if not isinstance(document, dict):
        raise ContractError(f"contract {expected_name}: expected a JSON object")
    if document.get("table") != expected_name:
        raise ContractError(f"contract {expected_name}: 'table' is {document.get('table')!r}")
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ContractError(f"contract {expected_name}: 'version' must be a positive integer")
    raw_columns = document.get("columns")
    if not isinstance(raw_columns, list) or not raw_columns:
        raise ContractError(f"contract {expected_name}: 'columns' must be a non-empty list")
    columns = tuple(_parse_column(expected_name, raw) for raw in raw_columns)
    table = TableSchema(
        name=expected_name,
        version=version,
        partition_column=str(document.get("partition_column")),
        description=_text(expected_name, "description", document.get("description")),
        columns=columns,
    )
    _check_columns(table)
    return table


def _parse_column(table: str, raw: Any) -> Column:
    if not isinstance(raw, dict):
        raise ContractError(f"contract {table}: every column must be an object")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ContractError(f"contract {table}: column name {name!r} is not snake_case")
    if raw.get("type") not in ARROW_TYPES:
        raise ContractError(f"contract {table}: column {name} has unknown type {raw.get('type')!r}")
    if not isinstance(raw.get("nullable"), bool):
        raise ContractError(f"contract {table}: column {name} needs a boolean 'nullable'")
    return Column(
        name=name,
        type=raw["type"],
        nullable=raw["nullable"],
        description=_text(table, f"description of {name}", raw.get("description")),
    )


def _text(table: str, what: str, value: Any) -> str:
    # Descriptions become SQL comments in the generated DDL, where a line break would end the comment.
    if not isinstance(value, str) or not value.strip() or "\n" in value or "\r" in value:
        raise ContractError(f"contract {table}: {what} must be a non-empty single line")
    return value


def _check_columns(table: TableSchema) -> None:
    names = [c.name for c in table.columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ContractError(f"contract {table.name}: duplicate columns {duplicates}")
    partition = next((c for c in table.columns if c.name == table.partition_column), None)
    if partition is None:
        raise ContractError(
            f"contract {table.name}: partition column {table.partition_column!r} not declared"
        )
    if partition.type not in _PARTITION_TYPES or partition.nullable:
        raise ContractError(f"contract {table.name}: partition column must be a non-null date or string")
