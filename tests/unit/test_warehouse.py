"""`ultravox-archiver ddl`: the warehouse DDL with the destination filled in (etl/warehouse.py).

DuckDB runs what it prints in tests/integration/test_ddl_duckdb.py; here, the text and the errors.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from etl import ddl
from etl.cli import main
from etl.warehouse import DIALECTS

PLACEHOLDERS = ("YOUR", ddl.S3_ROOT, ddl.GCS_ROOT, ddl.DUCKDB_ROOT, ddl.SNOWFLAKE_STAGE, ddl.BIGQUERY_DATASET)
# Nothing from the test's own environment may choose the destination.
CLEAN_ENV: dict[str, str | None] = {"ARCHIVE_DEST": None, "ARCHIVER_CONFIG": None, "ULTRAVOX_API_KEY": None}


def run_ddl(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(main, ["ddl", *args], env={**CLEAN_ENV, **(env or {})})


@pytest.mark.parametrize("dialect", DIALECTS)
def test_without_a_destination_it_prints_the_committed_template(dialect: str) -> None:
    result = run_ddl("--dialect", dialect)

    assert result.exit_code == 0, result.output
    committed = (ddl.default_output_dir() / f"{dialect}.sql").read_text(encoding="utf-8")
    assert result.output == committed


@pytest.mark.parametrize(
    ("dialect", "dest", "root"),
    [
        ("athena", "s3://my-bucket/ultravox", "s3://my-bucket/ultravox"),
        ("snowflake", "s3://my-bucket/ultravox/", "s3://my-bucket/ultravox"),
        ("bigquery", "gs://my-bucket/ultravox", "gs://my-bucket/ultravox"),
        ("duckdb", "s3://my-bucket", "s3://my-bucket"),
        ("duckdb", "/srv/archive/", "/srv/archive"),
        ("duckdb", "file:///srv/archive", "/srv/archive"),
    ],
)
def test_a_destination_is_filled_in_everywhere(dialect: str, dest: str, root: str) -> None:
    result = run_ddl("--dialect", dialect, "--dest", dest)

    assert result.exit_code == 0, result.output
    for placeholder in PLACEHOLDERS:
        assert placeholder not in result.output
    for table in ("calls", "messages"):
        assert f"{root}/{table}" in result.output or f"/{table}/" in result.output
    assert f"{root}//" not in result.output


def test_athena_locations_and_projection_template_are_under_the_destination() -> None:
    text = run_ddl("--dialect", "athena", "--dest", "s3://b/p").output

    assert "LOCATION 's3://b/p/calls/'" in text
    assert "LOCATION 's3://b/p/messages/'" in text
    assert "'storage.location.template' = 's3://b/p/messages/call_date=${call_date}/'" in text


def test_snowflake_creates_a_stage_on_the_destination_and_reads_through_it() -> None:
    text = run_ddl("--dialect", "snowflake", "--dest", "s3://b/p").output

    stage = text.index("CREATE STAGE IF NOT EXISTS ultravox_archive\n  URL = 's3://b/p/'")
    assert stage < text.index("CREATE EXTERNAL TABLE IF NOT EXISTS calls")
    assert "LOCATION = @ultravox_archive/calls/" in text
    assert "LOCATION = @ultravox_archive/messages/" in text
    assert "STORAGE_INTEGRATION" in text.split("CREATE", 1)[0], "the header says what a private bucket needs"


def test_bigquery_reads_a_copy_in_cloud_storage_into_the_default_dataset() -> None:
    text = run_ddl("--dialect", "bigquery", "--dest", "gs://b/p").output

    assert "CREATE EXTERNAL TABLE IF NOT EXISTS `calls` (" in text
    assert "uris = ['gs://b/p/calls/*']" in text
    assert "hive_partition_uri_prefix = 'gs://b/p/messages'" in text
    assert "--dataset_id" in text


def test_duckdb_views_read_the_hive_layout_under_the_destination() -> None:
    text = run_ddl("--dialect", "duckdb", "--dest", "s3://b/p").output

    assert "read_parquet(\n    's3://b/p/calls/*/*.parquet',\n    hive_partitioning = true," in text
    assert "hive_types = {'call_date': DATE}" in text
    assert "httpfs" in text.split("CREATE", 1)[0], "the header says what S3 needs on the connection"


def test_a_relative_directory_becomes_absolute_and_is_not_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    result = run_ddl("--dialect", "duckdb", "--dest", "arch'ive")

    # The statements run wherever DuckDB runs; quotes are doubled inside the SQL string.
    assert f"'{tmp_path}/arch''ive/calls/*/*.parquet'" in result.output
    assert not (tmp_path / "arch'ive").exists(), "printing the DDL creates nothing"


def test_the_destination_comes_from_the_environment_then_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "archiver.toml"
    config.write_text('[archiver]\ndest = "s3://from-file/p"\n', encoding="utf-8")

    from_file = run_ddl("--dialect", "athena", env={"ARCHIVER_CONFIG": str(config)}).output
    assert "s3://from-file/p/calls/" in from_file
    from_flag_file = run_ddl("--dialect", "athena", "--config", str(config)).output
    assert "s3://from-file/p/calls/" in from_flag_file

    both = {"ARCHIVE_DEST": "s3://from-env/p", "ARCHIVER_CONFIG": str(config)}
    from_env = run_ddl("--dialect", "athena", env=both)
    assert "s3://from-env/p/calls/" in from_env.output

    from_flag = run_ddl("--dialect", "athena", "--dest", "s3://from-flag/p", env={"ARCHIVE_DEST": "s3://e/p"})
    assert "s3://from-flag/p/calls/" in from_flag.output
    assert "s3://e/p" not in from_flag.output


def test_a_config_file_without_dest_prints_the_template(tmp_path: Path) -> None:
    config = tmp_path / "archiver.toml"
    config.write_text("[archiver]\nmax_rps = 5\n", encoding="utf-8")

    result = run_ddl("--dialect", "athena", "--config", str(config))

    assert result.exit_code == 0, result.output
    assert ddl.S3_ROOT in result.output


@pytest.mark.parametrize(
    ("dialect", "dest", "message"),
    [
        ("athena", "/srv/archive", "Athena reads the archive from S3 only"),
        ("snowflake", "./archive", "Snowflake reads the archive from S3 only"),
        ("athena", "gs://b/p", "Athena reads the archive from S3 only"),
        ("bigquery", "/srv/archive", "BigQuery reads Cloud Storage, not a local directory"),
        ("bigquery", "s3://b/p", "BigQuery reads Cloud Storage, not S3: give --dest gs://"),
        ("duckdb", "gs://b/p", "not gs://"),
        ("duckdb", "http://example.com/archive", "unsupported destination"),
        ("duckdb", "file://otherhost/srv", "file:///absolute/path"),
        ("duckdb", "s3:///prefix", "no bucket"),
        ("duckdb", " ", "empty"),
    ],
)
def test_a_destination_the_warehouse_cannot_read_exits_2(dialect: str, dest: str, message: str) -> None:
    result = run_ddl("--dialect", dialect, "--dest", dest)

    assert result.exit_code == 2
    assert message in result.output
    assert "CREATE" not in result.output


def test_an_unknown_dialect_or_an_unreadable_config_exits_2(tmp_path: Path) -> None:
    assert run_ddl("--dialect", "postgres").exit_code == 2
    assert run_ddl().exit_code == 2
    missing = run_ddl("--dialect", "duckdb", "--config", str(tmp_path / "nope.toml"))
    assert missing.exit_code == 2
    assert "cannot read config file" in missing.output
