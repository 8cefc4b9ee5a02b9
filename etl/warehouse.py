"""The DDL of one warehouse with the archive's destination filled in (`ultravox-archiver ddl`).

Pure: the destination is only parsed, never opened, so printing the DDL needs no credentials and
touches nothing. etl.ddl renders the statements; the committed templates in schemas/ddl/ are the
same renderers with placeholder roots, which is what `render(dialect, None)` returns.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from etl import ddl
from etl.errors import ConfigError
from etl.schema import TableSchema, load_table_schema, table_names

DIALECTS = ("athena", "bigquery", "snowflake", "duckdb")


@dataclass(frozen=True)
class Destination:
    """Where the archive is: `kind` is "s3", "gs" or "local"; `root` has no trailing slash
    (`s3://bucket/prefix`, `gs://bucket/prefix`, or an absolute directory)."""

    kind: str
    root: str


def parse_destination(dest: str) -> Destination:
    """The archive root `dest` names, spelled as the archiver takes it (etl.storage.open_storage)."""
    if not dest.strip():
        raise ConfigError("the destination is empty")
    if "://" not in dest:
        # Absolute, because the statements run wherever the warehouse client runs; abspath does no I/O.
        return Destination("local", os.path.abspath(dest))
    parts = urlsplit(dest)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"file destination must be file:///absolute/path, got {dest!r}")
        return Destination("local", os.path.abspath(unquote(parts.path)))
    if parts.scheme in ("s3", "gs"):
        if not parts.netloc:
            raise ConfigError(f"destination has no bucket: {dest!r}")
        prefix = parts.path.strip("/")
        root = f"{parts.scheme}://{parts.netloc}" + (f"/{prefix}" if prefix else "")
        return Destination(parts.scheme, root)
    raise ConfigError(f"unsupported destination {dest!r}: use s3://bucket/prefix or a directory path")


def render(dialect: str, dest: str | None, tables: Sequence[TableSchema] | None = None) -> str:
    """The statements of `dialect` for the archive at `dest`; with no `dest`, the template with
    placeholders (the text of schemas/ddl/<dialect>.sql). ConfigError when the warehouse cannot read
    that destination."""
    if dialect not in DIALECTS:
        raise ConfigError(f"unknown dialect {dialect!r}: use one of {', '.join(DIALECTS)}")
    if tables is None:
        tables = [load_table_schema(name) for name in table_names()]
    if dest is None:
        return ddl.RENDERERS[f"{dialect}.sql"](tables)
    where = parse_destination(dest)
    if dialect == "duckdb":
        if where.kind == "gs":
            raise ConfigError("the archiver writes to S3 or a local directory, not gs://; give either")
        return ddl.render_duckdb(tables, root=where.root)
    if dialect == "bigquery":
        return _bigquery(tables, where)
    if where.kind != "s3":
        raise ConfigError(
            f"{_NAMES[dialect]} reads the archive from S3 only: give --dest s3://bucket/prefix "
            f"(got {where.root!r})"
        )
    if dialect == "athena":
        return ddl.render_athena(tables, root=where.root)
    return ddl.render_snowflake(tables, stage_url=where.root)


_NAMES = {"athena": "Athena", "bigquery": "BigQuery", "snowflake": "Snowflake", "duckdb": "DuckDB"}


def _bigquery(tables: Sequence[TableSchema], where: Destination) -> str:
    # BigQuery reads Cloud Storage. An archive on S3 is readable only through a BigQuery Omni
    # connection in the bucket's AWS region, which only its owner can name; printing statements that
    # cannot run as printed would be worse than saying what to do.
    if where.kind == "gs":
        return ddl.render_bigquery(tables, root=where.root, dataset=None)
    raise ConfigError(
        "BigQuery reads Cloud Storage, not "
        + ("S3" if where.kind == "s3" else "a local directory")
        + ": give --dest gs://bucket/prefix for a copy of the archive in Cloud Storage, or, for the "
        "archive on S3 through a BigQuery Omni connection, print the template (no --dest) and add "
        "WITH CONNECTION and s3:// URIs"
    )
