"""The DuckDB DDL that `ultravox-archiver ddl` prints, run by DuckDB itself over a real archive.

The archive is written by the real CLI from the simulator, into a local directory and into the moto
S3 server; DuckDB reads it through the printed views only (S3 through the httpfs extension, loaded
from the `duckdb-extension-httpfs` package's own file: nothing is downloaded). Every query result is
compared with the simulator's ground truth, never with what the archiver wrote.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import duckdb_extension_httpfs
import pytest
from click.testing import CliRunner
from support.archive_truth import _RECORDING_STATUS, Expected
from support.archiver_process import write_config
from support.simulator_helpers import StartSimulator

from etl.cli import main
from etl.schema import Column, load_table_schema
from etl.simulator.process import SimulatorHandle
from etl.warehouse import render

# The DuckDB column of the type table in schemas/README.md, as DuckDB's DESCRIBE spells the types.
DUCKDB_TYPES = {
    "string": "VARCHAR",
    "bool": "BOOLEAN",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "timestamp_us_utc": "TIMESTAMP WITH TIME ZONE",
    "date": "DATE",
    "map<string,string>": "MAP(VARCHAR, VARCHAR)",
}


@pytest.fixture(scope="module")
def account(start_shared_simulator: StartSimulator) -> SimulatorHandle:
    # Small, but with every recording status: ready, not enabled, and stuck (archived as pending).
    return start_shared_simulator(calls=60, seed=23, stuck_recording_rate=0.1)


@pytest.fixture(scope="module")
def local_archive(account: SimulatorHandle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("local")
    dest = tmp_path / "archive"
    _backfill(account, str(dest), tmp_path)
    return dest


def _backfill(sim: SimulatorHandle, dest: str, tmp_path: Path) -> None:
    env = {
        "ULTRAVOX_API_KEY": sim.api_key,
        "ULTRAVOX_API_BASE_URL": sim.api_base_url,
        "ARCHIVE_DEST": dest,
        "ARCHIVER_CONFIG": str(write_config(tmp_path / "archiver.toml", recording_wait_s=2)),
    }
    args = ["backfill", "--since", sim.since, "--until", sim.until, "--log-format", "json"]
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def _ddl(dest: str) -> str:
    result = CliRunner().invoke(main, ["ddl", "--dialect", "duckdb", "--dest", dest], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "YOUR-" not in result.output
    return result.output


def _httpfs_extension() -> Path:
    [path] = Path(duckdb_extension_httpfs.__file__).parent.glob("extensions/*/httpfs.duckdb_extension")
    return path


@pytest.fixture
def connection() -> Iterator[duckdb.DuckDBPyConnection]:
    # No extension may be fetched from the network (CI machines reach PyPI only): httpfs is loaded
    # from the package's file, and DuckDB's automatic install and load are off.
    config = {"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"}
    with duckdb.connect(config=config) as con:
        con.execute(f"LOAD '{_httpfs_extension()}'")
        yield con


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return con.sql(sql).fetchall()


def _assert_queries_match_truth(con: duckdb.DuckDBPyConnection, truth: list[dict[str, Any]]) -> None:
    archived = Expected(truth).archived
    assert archived

    # The view columns have the contract's types; call_date comes from the directory, as a DATE.
    for table in ("calls", "messages"):
        described = {row[0]: row[1] for row in _rows(con, f"DESCRIBE {table}")}
        contract = load_table_schema(table)
        assert described == {c.name: DUCKDB_TYPES[c.type] for c in contract.columns}, table

    days = _rows(con, "SELECT call_date, count(*) FROM calls GROUP BY 1")
    per_day = {day.isoformat(): n for day, n in days}
    assert per_day == Counter(t["call_date"] for t in archived)

    per_call = dict(_rows(con, "SELECT call_id, count(*) FROM messages GROUP BY 1"))
    assert per_call == {t["call_id"]: len(t["messages"]) for t in archived if t["messages"]}

    # The join key and the partition agree: every message meets its call, on the call's day, in order.
    joined = _rows(
        con,
        """
        SELECT c.call_id, m.message_index, m.text, m.call_date = c.call_date
        FROM calls AS c JOIN messages AS m USING (call_id)
        ORDER BY c.call_id, m.message_index
        """,
    )
    want = [
        (t["call_id"], i, message.get("text"), True)
        for t in sorted(archived, key=lambda t: t["call_id"])
        for i, message in enumerate(t["messages"])
    ]
    assert joined == want
    counts = dict(_rows(con, "SELECT call_id, message_count FROM calls"))
    assert counts == {t["call_id"]: len(t["messages"]) for t in archived}

    statuses = dict(_rows(con, "SELECT recording_status, count(*) FROM calls GROUP BY 1"))
    want_statuses = Counter(_RECORDING_STATUS[t["recording"]["status"]] for t in archived)
    assert statuses == want_statuses
    assert set(statuses) == {"archived", "not_enabled", "pending"}
    recordings = _rows(
        con,
        "SELECT call_id, recording_bytes, recording_sha256 FROM calls WHERE recording_status = 'archived'",
    )
    ready = {t["call_id"]: t["recording"] for t in archived if t["recording"]["status"] == "ready"}
    assert {call_id: (size, sha) for call_id, size, sha in recordings} == {
        call_id: (r["bytes"], r["sha256"]) for call_id, r in ready.items()
    }


def test_duckdb_views_over_a_local_archive(
    account: SimulatorHandle, connection: duckdb.DuckDBPyConnection, local_archive: Path
) -> None:
    connection.execute(_ddl(str(local_archive)))

    _assert_queries_match_truth(connection, account.truth())


def test_a_column_added_to_the_contract_reads_as_null_in_older_files(
    account: SimulatorHandle, connection: duckdb.DuckDBPyConnection, local_archive: Path
) -> None:
    # The schema evolution rule (schemas/README.md): a nullable column added at the end of a later
    # contract version; no file of this archive has it yet.
    calls = load_table_schema("calls")
    added = Column("sentiment_score", "float64", True, "Added by a later contract version.")
    newer = dataclasses.replace(calls, version=calls.version + 1, columns=(*calls.columns, added))

    connection.execute(render("duckdb", str(local_archive), tables=[newer, load_table_schema("messages")]))

    described = dict(connection.sql("SELECT column_name, column_type FROM (DESCRIBE calls)").fetchall())
    assert described["sentiment_score"] == "DOUBLE"
    rows = connection.sql("SELECT count(*), count(sentiment_score) FROM calls").fetchall()
    assert rows == [(len(Expected(account.truth()).archived), 0)]


def test_duckdb_views_over_an_s3_archive(
    account: SimulatorHandle,
    connection: duckdb.DuckDBPyConnection,
    s3_endpoint: str,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    dest = f"s3://{s3_bucket}/ultravox"
    _backfill(account, dest, tmp_path)
    scheme, _, host = s3_endpoint.partition("://")
    # What the DDL expects to find on the connection: the S3 settings, here the moto server's.
    connection.execute(
        f"""
        CREATE SECRET moto (
            TYPE s3, KEY_ID 'testing', SECRET 'testing', REGION 'us-east-1',
            ENDPOINT '{host}', URL_STYLE 'path', USE_SSL {str(scheme == "https").lower()}
        )
        """
    )

    connection.execute(_ddl(dest))

    _assert_queries_match_truth(connection, account.truth())


def test_a_table_without_files_fails_naming_its_path(
    connection: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    # Decided: no empty view over a destination that holds nothing yet, so that a mistyped
    # destination is an error that names the path rather than a table that silently has no rows.
    with pytest.raises(duckdb.IOException, match=r"No files found .*/empty/calls/\*/\*\.parquet"):
        connection.execute(_ddl(str(tmp_path / "empty")))
