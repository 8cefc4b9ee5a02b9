"""Warehouse DDL generated from the contracts, and the committed copies in schemas/ddl/."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from etl import ddl
from etl.schema import TableSchema, load_table_schema, parse_contract, table_names

TABLES = [load_table_schema(name) for name in table_names()]

# How a column definition starts, per file: a name (quoted or not) at the start of a line, then a space.
_DEFINITION = {
    "athena.sql": "`{name}` ",
    "bigquery.sql": "`{name}` ",
    "duckdb.sql": '"{name}"',
    "snowflake.sql": "{name} ",
}


def _unquoted(text: str) -> str:
    return text.replace("\\", "").replace("'", "")


def test_committed_ddl_is_up_to_date() -> None:
    stale = ddl.stale_files(ddl.default_output_dir(), ddl.generate())

    assert stale == [], "run: python -m etl.ddl"


def test_generation_is_deterministic() -> None:
    assert ddl.generate() == ddl.generate()
    assert sorted(ddl.generate()) == ["athena.sql", "bigquery.sql", "duckdb.sql", "snowflake.sql"]


@pytest.mark.parametrize("file_name", sorted(ddl.RENDERERS))
@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_every_contract_column_is_defined(file_name: str, table: TableSchema) -> None:
    text = ddl.RENDERERS[file_name]([table])

    for column in table.columns:
        pattern = re.escape(_DEFINITION[file_name].format(name=column.name))
        assert re.search(rf"^\s*(PARTITIONED BY \()?{pattern}", text, re.M), f"{column.name} missing"
        assert _unquoted(column.description) in _unquoted(text), f"{column.name}: no description"


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_athena_partitions_by_call_date_with_projection(table: TableSchema) -> None:
    text = ddl.render_athena([table])

    assert "PARTITIONED BY (`call_date` string COMMENT" in text
    assert text.count("`call_date`") == 1, "the partition column must not also be a file column"
    assert f"LOCATION 's3://YOUR-BUCKET/YOUR-PREFIX/{table.name}/'" in text
    assert "'projection.call_date.type' = 'date'" in text
    assert f"{table.name}/call_date=${{call_date}}/'" in text
    assert "`created` timestamp" in text or table.name != "calls"
    assert "`metadata` map<string,string>" in text or table.name != "calls"


@pytest.mark.parametrize(
    ("render", "expected"),
    [
        pytest.param(
            ddl.render_bigquery,
            [
                "WITH PARTITION COLUMNS (\n  `call_date` DATE  -- Hive partition",
                "hive_partition_uri_prefix = 'gs://YOUR-BUCKET/YOUR-PREFIX/calls'",
                "`created` TIMESTAMP",
                "`message_index` INT64",
            ],
            id="bigquery-uses-hive-partitioning",
        ),
        pytest.param(
            ddl.render_snowflake,
            [
                "created TIMESTAMP_TZ AS (VALUE:created::TIMESTAMP_TZ)",
                "metadata VARIANT AS (VALUE:metadata)",
                "METADATA$FILENAME, 'call_date=', 2",
                "PARTITION BY (call_date)",
                "LOCATION = @YOUR_STAGE/messages/",
            ],
            id="snowflake-reads-columns-from-value-and-partition-from-path",
        ),
        pytest.param(
            ddl.render_duckdb,
            [
                "read_parquet(\n    'YOUR-ARCHIVE-ROOT/calls/*/*.parquet',",
                'NULL::TIMESTAMP WITH TIME ZONE AS "created"',
                "WHERE false\n  UNION ALL BY NAME\n  SELECT * FROM read_parquet(",
                "hive_partitioning = true",
                "hive_types = {'call_date': DATE}",
                "union_by_name = true",
            ],
            id="duckdb-reads-the-hive-layout",
        ),
    ],
)
def test_dialect_specific_statements(
    render: Callable[[Sequence[TableSchema]], str], expected: list[str]
) -> None:
    text = render(TABLES)

    for snippet in expected:
        assert snippet in text


def test_quotes_in_descriptions_are_escaped() -> None:
    table = parse_contract(
        {
            "table": "t",
            "version": 2,
            "partition_column": "call_date",
            "description": "The caller's table.",
            "columns": [
                {"name": "id", "type": "string", "nullable": False, "description": "It's an id."},
                {"name": "call_date", "type": "date", "nullable": False, "description": "Day."},
            ],
        },
        expected_name="t",
    )

    assert "COMMENT 'It\\'s an id.'" in ddl.render_athena([table])
    assert "description = 'It\\'s an id.'" in ddl.render_bigquery([table])
    assert "COMMENT = 'The caller''s table.';" in ddl.render_snowflake([table])
    assert "'contract_version' = '2'" in ddl.render_athena([table])


def test_main_writes_then_check_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ddl"

    assert ddl.main(["--check", "--out", str(out)]) == 1
    assert "stale:" in capsys.readouterr().err

    assert ddl.main(["--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(ddl.RENDERERS)
    assert ddl.main(["--check", "--out", str(out)]) == 0


def test_check_reports_an_edited_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ddl.main(["--out", str(tmp_path)])
    capsys.readouterr()
    (tmp_path / "duckdb.sql").write_text("-- edited by hand\n", encoding="utf-8")

    assert ddl.main(["--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "duckdb.sql" in err
    assert "athena.sql" not in err


def test_rewrite_touches_only_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ddl.main(["--out", str(tmp_path)])
    (tmp_path / "athena.sql").write_text("stale", encoding="utf-8")
    capsys.readouterr()

    assert ddl.main(["--out", str(tmp_path)]) == 0

    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'athena.sql'}"


def test_snowflake_says_how_its_tables_see_new_files() -> None:
    # AUTO_REFRESH = FALSE leaves new partitions invisible until a refresh: the file must say so.
    header = ddl.generate()["snowflake.sql"].split("CREATE", 1)[0]
    assert "AUTO_REFRESH = FALSE" in header and "REFRESH" in header and "notification_channel" in header
