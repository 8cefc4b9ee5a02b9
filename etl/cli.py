"""The command line: a thin click layer. Options -> Settings -> pipeline -> exit code.

Exit codes (documented in the README, stable for cron and Kubernetes):
  0  everything in the window was archived, or is legitimately pending (calls underway, recordings
     not yet ready)
  1  the run finished, but some calls, records or recordings could not be archived (see the summary
     and `_quarantine/` in the destination); re-run the same window to retry them
  2  usage or configuration error (bad flag, missing API key, unreadable config file)
  3  fatal: the run stopped (API key rejected, destination unusable)
  4  nothing failed, but some partitions were skipped because another run holds them (overlapping
     runs); the next run picks them up
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from etl.config import Settings, load_destination, load_settings
from etl.crashpoints import CrashingStorage, CrashPoint
from etl.errors import ArchiverError, ConfigError, StorageError
from etl.parquet import release_memory_promptly
from etl.pipeline import run as pipeline
from etl.reporting.logs import configure_logging
from etl.reporting.progress import progress_for
from etl.reporting.report import EXIT_FATAL, EXIT_USAGE, exit_code, format_summary
from etl.reporting.status import format_status, read_status
from etl.reporting.summary import RunSummary
from etl.storage import Storage, open_storage

log = logging.getLogger("etl.cli")
F = TypeVar("F", bound=Callable[..., Any])


def settings_options(func: F) -> F:
    """Options shared by every command that talks to the API and the destination."""
    options = [
        click.option(
            "--api-key-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="File holding the API key (else $ULTRAVOX_API_KEY).",
        ),
        click.option(
            "--api-base-url",
            help="API base URL [env ULTRAVOX_API_BASE_URL; default https://api.ultravox.ai/api].",
        ),
        click.option(
            "--dest", help="s3://bucket/prefix or a local directory [env ARCHIVE_DEST; default ./archive]."
        ),
        click.option(
            "--max-rps", type=float, help="Client-side limit on API requests per second [default 100]."
        ),
        click.option("--concurrency", type=int, help="Calls processed at once [default 32]."),
        click.option(
            "--recording-wait",
            "recording_wait_s",
            type=float,
            help="Seconds to keep polling a recording that is not ready (425) before reporting it "
            "pending [default 120].",
        ),
        click.option(
            "--recording-give-up-days",
            "recording_give_up_days",
            type=float,
            help="Days after a recording was first found pending to stop keeping its day open for it; "
            "it is then archived as unavailable [default 7].",
        ),
        click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="TOML config file [env ARCHIVER_CONFIG].",
        ),
        click.option(
            "--log-format",
            type=click.Choice(["auto", "json", "text"]),
            default="auto",
            show_default=True,
            help="auto: JSON lines unless stderr is a terminal.",
        ),
        click.option(
            "--summary-format",
            type=click.Choice(["text", "json"]),
            default="text",
            show_default=True,
            help="The run summary on stdout: for people, or one JSON object for schedulers and scripts.",
        ),
        # Fault tests only: SIGKILL this process at a precise storage write (see etl/crashpoints.py).
        click.option("--crash-at", hidden=True),
        click.option(
            "--log-level",
            type=click.Choice(["debug", "info", "warning", "error"]),
            default="info",
            show_default=True,
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group()
@click.version_option(package_name="ultravox-archiver")
def main() -> None:
    """Archive Ultravox calls, transcripts and recordings to Parquet and audio files."""


@main.command()
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First UTC day, YYYY-MM-DD.")
@click.option(
    "--until", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Last UTC day (inclusive), YYYY-MM-DD."
)
@settings_options
def backfill(since: Any, until: Any, log_format: str, log_level: str, **flags: Any) -> None:
    """Archive every call created in a window of UTC days.

    \b
    Example:
      ULTRAVOX_API_KEY=... ultravox-archiver backfill --since 2026-01-01 --until 2026-01-31 \\
          --dest s3://my-bucket/ultravox
    """
    first, last = since.date(), until.date()
    if last < first:
        raise click.BadParameter("--until is before --since", param_hint="--until")
    settings = _settings_or_exit(flags)
    configure_logging(fmt=log_format, level=log_level, secret=settings.api_key)
    summary = _run(settings, pipeline.backfill(first, last), flags["crash_at"])
    _finish(settings, summary, flags["summary_format"])


@main.command()
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Where the history starts, for a first sync into an empty destination [env ARCHIVER_SINCE].",
)
@click.option(
    "--refresh-days", type=float, help="Days after which a partition stops being revisited [default 2]."
)
@click.option(
    "--lock-wait", "lock_wait_s", type=float, help="Seconds to wait for a partition another run holds."
)
@settings_options
def sync(since: Any, log_format: str, log_level: str, **flags: Any) -> None:
    """The scheduled job: archive what is new or changed since the last run.

    Works out from the destination what to do: every partition that is not final yet (calls underway,
    recordings pending, failures, or inside the refresh window) and every day since the newest one.

    \b
    Example (cron, every hour):
      ULTRAVOX_API_KEY=... ARCHIVE_DEST=s3://my-bucket/ultravox ultravox-archiver sync
    """
    flags["since"] = since.date() if since else None
    settings = _settings_or_exit(flags)
    configure_logging(fmt=log_format, level=log_level, secret=settings.api_key)
    summary = _run(settings, pipeline.sync(settings.since), flags["crash_at"])
    _finish(settings, summary, flags["summary_format"])


@main.command()
@click.option("--dest", help="s3://bucket/prefix or a local directory [env ARCHIVE_DEST; default ./archive].")
def status(dest: str | None) -> None:
    """Show what the archive's state says: partitions final and open, pending work, the last run, lag."""
    try:
        destination = load_destination(dest, os.environ)
        click.echo(format_status(read_status(open_storage(destination)), destination))
    except (StorageError, ConfigError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FATAL if isinstance(exc, StorageError) else EXIT_USAGE)


@main.command()
@click.option("--calls", type=int, default=300, show_default=True, help="Calls in the simulated account.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("./demo-archive"),
    show_default=True,
    help="Local directory for the demo archive.",
)
def demo(calls: int, seed: int, dest: Path) -> None:
    """Start the simulator, archive its whole account into a local directory, show what landed."""
    from etl.demo import run_demo

    sys.exit(run_demo(calls=calls, seed=seed, dest=dest.resolve()))


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}
)
@click.pass_context
def simulate(ctx: click.Context) -> None:
    """Serve the stand-in Ultravox API (see `ultravox-archiver simulate --help`)."""
    from etl.simulator.__main__ import main as simulator_main

    sys.exit(simulator_main(list(ctx.args), prog="ultravox-archiver simulate"))


# Options that steer this invocation only, not the archiver's settings.
_NOT_SETTINGS = frozenset({"crash_at", "summary_format"})


def _settings_or_exit(flags: dict[str, Any]) -> Settings:
    try:
        return load_settings({k: v for k, v in flags.items() if k not in _NOT_SETTINGS}, os.environ)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)


def open_destination(settings: Settings) -> Storage:
    try:
        return open_storage(settings.dest)
    except StorageError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FATAL)


def _run(settings: Settings, command: pipeline.Command, crash_at: str | None = None) -> RunSummary:
    release_memory_promptly()
    storage = open_destination(settings)
    if crash_at:
        storage = CrashingStorage(storage, CrashPoint.parse(crash_at))
    progress = progress_for(sys.stderr)

    try:
        return asyncio.run(pipeline.archive(settings, storage, command, progress=progress))
    except ArchiverError as exc:
        click.echo(f"error: {settings.api_key.redact(str(exc))}", err=True)
        sys.exit(EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FATAL)
    finally:
        if progress is not None:
            progress.finish()


def _finish(settings: Settings, summary: RunSummary, summary_format: str) -> None:
    if summary_format == "json":
        click.echo(json.dumps(summary.to_json(), ensure_ascii=False))
    else:
        click.echo(format_summary(summary, settings.dest))
    sys.exit(exit_code(summary))
