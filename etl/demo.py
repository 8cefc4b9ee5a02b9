"""`ultravox-archiver demo`: simulator -> local archive -> what landed and how to query it."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import click
import pyarrow.dataset as ds

from etl.api import ApiClient, ClientOptions
from etl.config import Settings
from etl.pipeline import Archiver, RunSummary
from etl.report import exit_code, format_summary
from etl.secrets import Secret
from etl.simulator.process import running_simulator
from etl.storage import open_storage

QUERY_HINT = """\
Query it:
  python - <<'PY'
  import pyarrow.dataset as ds
  calls = ds.dataset("{dest}/calls", format="parquet", partitioning="hive").to_table()
  print(calls.group_by("recording_status").aggregate([("call_id", "count")]))
  PY
  # or, with DuckDB:
  duckdb -c "SELECT call_date, count(*) FROM read_parquet('{dest}/calls/*/*.parquet',
             hive_partitioning=true) GROUP BY 1 ORDER BY 1"
"""


def run_demo(*, calls: int, seed: int, dest: Path) -> int:
    click.echo(f"starting the simulator ({calls} calls, seed {seed}) ...")
    with running_simulator(calls=calls, seed=seed) as sim:
        settings = Settings(
            api_key=Secret(sim.api_key),
            api_base_url=sim.api_base_url,
            dest=str(dest),
            # The simulated account holds a few recordings that never finish processing; a demo
            # should not wait two minutes to report them as pending.
            recording_wait_s=5.0,
            recording_poll_initial_s=0.5,
        )
        click.echo(f"archiving {sim.since} .. {sim.until} from {sim.api_base_url} into {dest}")
        summary = asyncio.run(
            _archive(settings, date.fromisoformat(sim.since), date.fromisoformat(sim.until))
        )

    click.echo(format_summary(summary, str(dest)))
    _show_archive(dest)
    click.echo(QUERY_HINT.format(dest=dest))
    return exit_code(summary)


async def _archive(settings: Settings, since: date, until: date) -> RunSummary:
    async with ApiClient(ClientOptions.from_settings(settings)) as client:
        return await Archiver(settings, client=client, storage=open_storage(settings.dest)).backfill(
            since, until
        )


def _show_archive(dest: Path) -> None:
    click.echo("\nWhat landed:")
    for table in ("calls", "messages"):
        root = dest / table
        if not root.exists():
            continue
        dataset = ds.dataset(str(root), format="parquet", partitioning="hive")
        partitions = sorted(p.name for p in root.iterdir() if p.is_dir())
        click.echo(
            f"  {table:9} {dataset.count_rows():6} rows in {len(partitions)} partitions "
            f"({partitions[0]} .. {partitions[-1]})"
        )
    recordings = list((dest / "recordings").glob("*/*.wav"))
    total = sum(path.stat().st_size for path in recordings)
    click.echo(f"  recordings {len(recordings):5} .wav files, {total / 1024 / 1024:.1f} MiB")
    calls = ds.dataset(str(dest / "calls"), format="parquet", partitioning="hive")
    sample = calls.head(3, columns=["call_date", "call_id", "ended", "recording_status", "short_summary"])
    click.echo("\nA few calls:")
    for row in sample.to_pylist():
        click.echo(f"  {row}")
    click.echo("")
