"""`ultravox-archiver demo`: simulator -> local archive -> what landed and how to query it."""

from __future__ import annotations

import asyncio
import shlex
import sys
from datetime import date
from pathlib import Path

import click
import pyarrow.dataset as ds

from etl.config import Settings
from etl.pipeline.run import archive, backfill
from etl.reporting.logs import configure_logging
from etl.reporting.progress import progress_for
from etl.reporting.report import exit_code, format_summary
from etl.secrets import Secret
from etl.simulator.process import running_simulator
from etl.storage import open_storage

QUERY_HINT = """\
Query it (with this archiver's own Python, which has pyarrow):
  {python} - <<'PY'
  import pyarrow.dataset as ds
  calls = ds.dataset("{dest}/calls", format="parquet", partitioning="hive").to_table()
  print(calls.group_by("recording_status").aggregate([("call_id", "count")]))
  PY
  # or, with DuckDB:
  duckdb -c "SELECT call_date, count(*) FROM read_parquet('{dest}/calls/*/*.parquet',
             hive_partitioning=true) GROUP BY 1 ORDER BY 1"
"""


# Real recordings run ~1-2 MB per minute of call (the simulator serves such sizes by default); the demo
# asks for ~200 KB ones so that it finishes in seconds and its archive stays small.
DEMO_RECORDING_BYTES = 200_000


def run_demo(*, calls: int, seed: int, dest: Path) -> int:
    configure_logging(fmt="text", level="warning", secret=None)
    click.echo(
        f"starting the simulator ({calls} calls, seed {seed}; recordings of "
        f"~{DEMO_RECORDING_BYTES // 1000} KB for a quick demo, real ones are ~1-2 MB per minute) ..."
    )
    with running_simulator(calls=calls, seed=seed, recording_bytes=DEMO_RECORDING_BYTES) as sim:
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
        since, until = date.fromisoformat(sim.since), date.fromisoformat(sim.until)
        storage = open_storage(settings.dest)
        progress = progress_for(sys.stderr)
        try:
            summary = asyncio.run(archive(settings, storage, backfill(since, until), progress=progress))
        finally:
            if progress is not None:
                progress.finish()

    click.echo(format_summary(summary, str(dest)))
    _show_archive(dest)
    # The interpreter running the demo has pyarrow; the system `python` may not.
    click.echo(QUERY_HINT.format(dest=dest, python=shlex.quote(sys.executable)))
    return exit_code(summary)


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
    calls = ds.dataset(str(dest / "calls"), format="parquet", partitioning="hive").to_table()
    archived = [uri for uri in calls.column("recording_uri").to_pylist() if uri]
    total = sum(size or 0 for size in calls.column("recording_bytes").to_pylist())
    click.echo(
        f"  recordings {len(archived):5} .wav files, {total / 1024 / 1024:.1f} MiB, e.g. {archived[0]}"
    )
    by_status = calls.group_by("recording_status").aggregate([("call_id", "count")]).to_pylist()
    click.echo(
        "  recording_status: " + ", ".join(f"{r['recording_status']}={r['call_id_count']}" for r in by_status)
    )
    messages = ds.dataset(str(dest / "messages"), format="parquet", partitioning="hive")
    first_call = calls.column("call_id")[0].as_py()
    transcript = messages.to_table(
        columns=["message_index", "role", "text"], filter=ds.field("call_id") == first_call
    ).sort_by("message_index")
    click.echo(f"\nThe start of call {first_call}:")
    for row in transcript.slice(0, 4).to_pylist():
        text = (row["text"] or "").replace("\n", " ")
        click.echo(f"  {row['message_index']:>3} {row['role']:<11} {text[:90]}")
    click.echo("")
