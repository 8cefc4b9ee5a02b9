"""The command line: a thin click layer. Options -> Settings -> pipeline -> exit code.

Exit codes (documented in the README, stable for cron and Kubernetes):
  0  everything in the window was archived, or is legitimately pending (calls underway, recordings
     not yet ready)
  1  the run finished, but some calls, records or recordings could not be archived (see the summary
     and `_quarantine/` in the destination); re-run the same window to retry them. Also when the
     run reached --max-run-time: it published what it finished, and the next run continues
  2  usage or configuration error (bad flag, missing API key, unreadable config file), or one of the
     checks before any work failed (etl.pipeline.preflight: key rejected, base URL not the API's,
     host unreachable, destination a file or not writable, a day in the future)
  3  fatal: the run stopped (API key rejected once under way, destination unusable)
  4  nothing failed, but some partitions were skipped because another run holds them (overlapping
     runs); the next run picks them up
  8  `verify` only: the archive disagrees with the source; a backfill of the window repairs it
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from click.core import ParameterSource

from etl.config import (
    ENV_VARS,
    Settings,
    load_destination,
    load_settings,
    resolve_settings,
    setting_defaults,
)
from etl.errors import ArchiverError, ConfigError, StorageError
from etl.parquet import release_memory_promptly
from etl.pipeline import run as pipeline
from etl.pipeline.dry_run import dry_run, format_plan
from etl.reporting.config_show import format_settings
from etl.reporting.health import Thresholds
from etl.reporting.logs import JsonFormatter, configure_logging
from etl.reporting.progress import progress_for
from etl.reporting.report import EXIT_FATAL, EXIT_PARTIAL, EXIT_USAGE, exit_code, format_summary
from etl.reporting.summary import RunSummary
from etl.shard import INDEX_VARS
from etl.storage import LocalStorage, S3Options, Storage, open_storage
from etl.storage.local import cleanup_stale_temp_files

log = logging.getLogger("etl.cli")
F = TypeVar("F", bound=Callable[..., Any])
_DEFAULTS = setting_defaults()


@dataclass(frozen=True)
class RunHooks:
    """What a program that embeds the CLI may change about a run: `main.main(args, obj=RunHooks(...))`.

    `wrap_storage` receives the opened destination and returns the storage the run writes through
    (the crash tests wrap it with one that SIGKILLs the process at a chosen write).
    """

    wrap_storage: Callable[[Storage], Storage] | None = None


def setting_option(*decls: str, setting: str, **kwargs: Any) -> Callable[[F], F]:
    """An option for one setting, showing the environment variable and the default etl.config has for it.

    click reads that variable and fills in that default, but only what the user typed reaches
    `load_settings` (see `_typed_flags`): it applies the environment, the config file and the
    defaults itself, in their order, exactly as for callers that are not the CLI.
    """
    return click.option(
        *decls,
        setting,
        envvar=ENV_VARS.get(setting),
        show_envvar=setting in ENV_VARS,
        default=_DEFAULTS.get(setting),
        show_default=True,
        **kwargs,
    )


def settings_options(func: F) -> F:
    """Options shared by every command that talks to the API and the destination."""
    options = [
        setting_option(
            "--api-key-file",
            setting="api_key_file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="File holding the API key (else $ULTRAVOX_API_KEY).",
        ),
        setting_option("--api-base-url", setting="api_base_url", help="API base URL."),
        setting_option("--dest", setting="dest", help="s3://bucket/prefix or a local directory."),
        setting_option(
            "--max-rps", setting="max_rps", type=float, help="Client-side limit on API requests per second."
        ),
        setting_option("--concurrency", setting="concurrency", type=int, help="Calls processed at once."),
        setting_option(
            "--recording-wait",
            setting="recording_wait_s",
            type=float,
            help="Seconds to keep polling a recording that is not ready (425) before reporting it pending.",
        ),
        setting_option(
            "--recording-heartbeat",
            setting="recording_heartbeat_s",
            type=float,
            help="Seconds between log lines saying how many recordings are still being waited for.",
        ),
        setting_option(
            "--recording-give-up-days",
            setting="recording_give_up_days",
            type=float,
            help="Days after a recording was first found pending to stop keeping its day open for it; "
            "it is then archived as unavailable.",
        ),
        setting_option(
            "--retry-budget",
            setting="retry_budget",
            type=int,
            help="Retries all requests of the run may spend together; once spent, a failure costs its "
            "call or day (the next run tries again). 0: never retry.",
        ),
        setting_option(
            "--max-run-time",
            setting="max_run_time_s",
            type=float,
            help="Seconds after which the run takes no new work, publishes what it finished and "
            "exits 1 (partial); the next run continues. Default: no limit.",
        ),
        setting_option(
            "--max-page-mib",
            setting="max_page_mib",
            type=float,
            help="Largest JSON page (decoded) read; a larger one fails its day or its call.",
        ),
        setting_option(
            "--max-pages-per-listing",
            setting="max_pages_per_listing",
            type=int,
            help="Most pages one listing (a day's calls, a call's messages) may have.",
        ),
        setting_option(
            "--max-recording-mib",
            setting="max_recording_mib",
            type=float,
            help="Largest recording archived (0: no cap); a larger one is reported failed.",
        ),
        setting_option(
            "--min-transfer-kib-s",
            setting="min_transfer_kib_s",
            type=float,
            help="Slowest recording transfer tolerated over transfer_window_s (0: no minimum); "
            "a slower one is dropped and retried.",
        ),
        setting_option(
            "--s3-sse",
            setting="s3_sse",
            type=click.Choice(["AES256", "aws:kms"]),
            help="Server-side encryption of every object written to S3 (default: the bucket's).",
        ),
        setting_option(
            "--s3-sse-kms-key-id", setting="s3_sse_kms_key_id", help="KMS key of --s3-sse aws:kms."
        ),
        setting_option(
            "--s3-expected-bucket-owner",
            setting="s3_expected_bucket_owner",
            help="AWS account id that must own the bucket; S3 refuses every request otherwise.",
        ),
        setting_option(
            "--allowed-recording-hosts",
            setting="allowed_recording_hosts",
            help="Hosts (comma-separated) recordings may come from on private or loopback addresses.",
        ),
        setting_option(
            "--underway-give-up-hours",
            setting="underway_give_up_hours",
            type=float,
            help="Hours after a call was first found underway to archive it as it is (never ended).",
        ),
        setting_option(
            "--config",
            setting="config_file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="TOML config file.",
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


def lease_options(func: F) -> F:
    """Options of the commands that lease partitions (`backfill`, `sync`): overlapping and retried runs."""
    lock_wait = setting_option(
        "--lock-wait",
        setting="lock_wait_s",
        type=float,
        help="Seconds to wait for a partition another run holds; 0 skips it. "
        "75 lets a run started right after a killed one take over its partitions.",
    )
    worker_id = setting_option(
        "--worker-id",
        setting="worker_id",
        help="This worker's identity (e.g. the cron or Job name); at most one live run per id. "
        "A run takes over its own worker's leases at once, so a retry after a kill does not wait.",
    )
    dry = click.option(
        "--dry-run",
        is_flag=True,
        help="Print the plan (days, calls, estimated API requests and time at --max-rps) and write "
        "nothing; only the days' listings are requested.",
    )
    return dry(lock_wait(worker_id(func)))


def shard_options(func: F) -> F:
    """`--shard I/N` and `--shard-count N` (sharded backfill, etl.shard); `config show` takes them too,
    to show a shard's share of the rate limit."""
    shard = setting_option(
        "--shard",
        setting="shard",
        help="This worker's shard of a backfill, I/N with I from 0: it takes the days whose ordinal "
        "modulo N is I. Without it, --shard-count with JOB_COMPLETION_INDEX or AWS_BATCH_JOB_ARRAY_INDEX.",
    )
    count = setting_option(
        "--shard-count",
        setting="shard_count",
        type=int,
        help="Number of shards, the index coming from the scheduler (JOB_COMPLETION_INDEX, then "
        "AWS_BATCH_JOB_ARRAY_INDEX). Each shard's default --max-rps is the default divided by it.",
    )
    return shard(count(func))


@click.group()
@click.version_option(package_name="ultravox-archiver")
def main() -> None:
    """Archive Ultravox calls, transcripts and recordings to Parquet and audio files."""


@main.command()
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First UTC day, YYYY-MM-DD.")
@click.option(
    "--until", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Last UTC day (inclusive), YYYY-MM-DD."
)
@shard_options
@lease_options
@settings_options
def backfill(since: Any, until: Any, log_format: str, log_level: str, **flags: Any) -> None:
    """Archive every call created in a window of UTC days.

    \b
    Example:
      ULTRAVOX_API_KEY=... ultravox-archiver backfill --since 2026-01-01 --until 2026-01-31 \\
          --dest s3://my-bucket/ultravox

    \b
    One shard of four (each worker gets one index, 0-3; see "Operating at scale" in the README):
      ultravox-archiver backfill --since 2025-01-01 --until 2025-12-31 --shard 2/4
    """
    first, last = since.date(), until.date()
    if last < first:
        raise click.BadParameter("--until is before --since", param_hint="--until")
    settings = _settings_with_logging(flags, log_format, log_level)
    command = pipeline.backfill(first, last, settings.shard)
    _log_shard(settings, first, last)
    if flags["dry_run"]:
        _dry_run(settings, command, flags["summary_format"])
    summary = _run(settings, command)
    _finish(settings, summary, flags["summary_format"])


@main.command()
@setting_option(
    "--since",
    setting="since",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Where the history starts, for a first sync into an empty destination; later syncs only add "
    "days from it on that were never archived (it reopens no archived day, so it may stay set).",
)
@setting_option(
    "--refresh-days",
    setting="refresh_days",
    type=float,
    help="Days after which a partition stops being revisited.",
)
@lease_options
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
    settings = _settings_with_logging(flags, log_format, log_level)
    if settings.shard is not None:
        # A sync's days come from the destination's state at the moment it reads it, and are few:
        # shards reading it at different moments would not agree on them, and need not split them.
        _fail(
            f"sync is not sharded (shard {settings.shard} from the environment or the config file): "
            "sharding is for backfill; unset ARCHIVER_SHARD_COUNT / shard-count for sync",
            EXIT_USAGE,
        )
    if flags["dry_run"]:
        _dry_run(settings, pipeline.sync(settings.since), flags["summary_format"])
    summary = _run(settings, pipeline.sync(settings.since))
    _finish(settings, summary, flags["summary_format"])


@main.command()
@setting_option("--dest", setting="dest", help="s3://bucket/prefix or a local directory.")
@setting_option(
    "--config",
    setting="config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML config file (its dest is read).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="For people, or one JSON object (with every alert) for monitors.",
)
@click.option(
    "--max-lag-hours",
    type=click.FloatRange(min=0),
    help="Alert (exit 6) when the archive has not been brought up to date for longer than this.",
)
@click.option(
    "--max-open-days",
    type=click.FloatRange(min=0),
    help="Alert (exit 7) when a partition is still open more than this many days after its day.",
)
def status(
    dest: str | None,
    config_file: Path | None,
    output_format: str,
    max_lag_hours: float | None,
    max_open_days: float | None,
) -> None:
    """Show what the archive's state says: partitions final and open, pending work, the last run, lag.

    \b
    Exit codes, for monitors (the most urgent one when several hold; --format json lists all):
      0  nothing to alert on
      1  failures: calls, recordings or listings failed (see _quarantine/), or the last run
         stopped on a fatal error
      2  usage error
      3  the destination could not be read
      5  the destination does not exist, or nothing is published there yet
      6  lag over --max-lag-hours
      7  a partition open more than --max-open-days after its day

    \b
    Example (a monitor, every hour):
      ultravox-archiver status --dest s3://my-bucket/ultravox --format json \\
          --max-lag-hours 3 --max-open-days 10
    """
    from etl.reporting.status_command import show_status

    try:
        typed = _typed_flags({"dest": dest, "config_file": config_file})
        destination = load_destination(typed.get("dest"), os.environ, config_file=typed.get("config_file"))
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    thresholds = Thresholds(max_lag_hours=max_lag_hours, max_open_days=max_open_days)
    sys.exit(show_status(destination, output_format, thresholds))


@main.group("config")
def config_group() -> None:
    """Inspect the settings the archiver would run with."""


@config_group.command("show")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@setting_option(
    "--since",
    setting="since",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Where the history starts, for a first sync into an empty destination.",
)
@setting_option("--refresh-days", setting="refresh_days", type=float, help="As for sync.")
@shard_options
@lease_options
@settings_options
def config_show(fmt: str, since: Any, log_format: str, log_level: str, **flags: Any) -> None:
    """Print every setting in effect (the same flags as sync, then the environment, the config file,
    the defaults) and where each came from. The API key is never printed, only whether there is one.

    \b
    Example:
      ultravox-archiver config show --config /etc/ultravox-archiver.toml
    """
    flags["since"] = since.date() if since else None
    given = {k: v for k, v in _typed_flags(flags).items() if k not in _NOT_SETTINGS}
    try:
        values, sources = resolve_settings(given, os.environ)
    except ConfigError as exc:  # a file that cannot be read, an unknown key, a value of the wrong type
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    # Shown even when they do not go together (no key, a negative wait): where each came from is
    # what the user needs to fix them.
    click.echo(format_settings(values, sources, fmt))
    try:
        Settings(**values)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)


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


@main.command("ddl")
@click.option(
    "--dialect",
    type=click.Choice(["athena", "bigquery", "snowflake", "duckdb"]),
    required=True,
    help="The warehouse.",
)
@click.option(
    "--dest",
    envvar=ENV_VARS["dest"],
    show_envvar=True,
    help="s3://bucket/prefix or a local directory (BigQuery: gs://bucket/prefix, a copy in Cloud "
    "Storage). None at all: the template with placeholders.",
)
@setting_option(
    "--config",
    setting="config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML config file (its dest is read).",
)
def ddl_command(dialect: str, dest: str | None, config_file: Path | None) -> None:
    """Print the warehouse DDL (tables or views over the archive) with the destination filled in.

    Nothing is read from the destination and no API key is needed: the statements are printed, for
    you to run in the warehouse.

    \b
    Example (DuckDB, with the archive in a local directory):
      ultravox-archiver ddl --dialect duckdb --dest ./archive > views.sql
      duckdb archive.db < views.sql
    """
    from etl.config import given_destination
    from etl.warehouse import render

    try:
        typed = _typed_flags({"dest": dest, "config_file": config_file})
        destination = given_destination(typed.get("dest"), os.environ, config_file=typed.get("config_file"))
        click.echo(render(dialect, destination), nl=False)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)


@main.command()
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First UTC day, YYYY-MM-DD.")
@click.option(
    "--until", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Last UTC day (inclusive), YYYY-MM-DD."
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="For people, or one JSON object with every finding (kind, day, call id, detail).",
)
@settings_options
def verify(since: Any, until: Any, output_format: str, log_format: str, log_level: str, **flags: Any) -> None:
    """Reconcile the source and the archive for a window of UTC days, without downloading audio.

    Lists each day's calls and each archived call's messages at the source (API requests under
    --max-rps), reads the archived rows and HEADs each archived recording; writes nothing.

    \b
    Exit codes:
      0  the archive agrees with the source
      1  no drift found, but a listing could not be read (not_checked findings)
      2  usage or configuration error
      3  fatal: the destination is unusable or the key was rejected once under way
      8  drift: calls missing, duplicated rows, message counts that differ, recordings missing or
         disagreeing with their row; `backfill` of the window repairs it

    \b
    Example:
      ULTRAVOX_API_KEY=... ultravox-archiver verify --since 2026-01-01 --until 2026-01-31 \\
          --dest s3://my-bucket/ultravox --format json
    """
    from etl.verify.findings import format_report
    from etl.verify.reconcile import verify as reconcile

    first, last = since.date(), until.date()
    if last < first:
        raise click.BadParameter("--until is before --since", param_hint="--until")
    settings = _settings_with_logging(flags, log_format, log_level)
    try:
        # Opened without open_destination's clean-up of stale temp files: verify writes nothing.
        storage = open_storage(settings.dest, s3_options=_s3_options(settings))
        today = datetime.now(UTC).date()
        report = asyncio.run(reconcile(settings, storage, first, last, today=today))
    except ArchiverError as exc:
        _fail(settings.api_key.redact(str(exc)), EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FATAL)
    # `--summary-format json`, which a job may give every command, asks for JSON here too.
    as_json = "json" in (output_format, flags["summary_format"])
    click.echo(format_report(report, "json" if as_json else "text"))
    sys.exit(report.exit_code)


# Options that steer this invocation only, not the archiver's settings.
_NOT_SETTINGS = frozenset({"summary_format", "dry_run"})


def _typed_flags(flags: dict[str, Any]) -> dict[str, Any]:
    """Only the values typed on the command line; click's environment values and defaults are dropped.

    They are the same values `load_settings` finds itself, but a value click took from the environment
    must keep the environment's rank: an explicit `--api-key-file` beats an inherited
    ULTRAVOX_API_KEY, an inherited ULTRAVOX_API_KEY_FILE does not.
    """
    ctx = click.get_current_context()
    return {
        name: value
        for name, value in flags.items()
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    }


def _settings_with_logging(flags: dict[str, Any], log_format: str, log_level: str) -> Settings:
    """The settings, with logging set up to scrub their key. Logging comes first, so that a
    configuration error is a log line like the others (there is no key to scrub yet)."""
    configure_logging(fmt=log_format, level=log_level, secret=None)
    given = {k: v for k, v in _typed_flags(flags).items() if k not in _NOT_SETTINGS}
    try:
        settings = load_settings(given, os.environ)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    configure_logging(fmt=log_format, level=log_level, secret=settings.api_key)
    return settings


def _log_shard(settings: Settings, first: date, last: date) -> None:
    """Say which days this worker takes and at what rate: N workers share one key's limit."""
    shard = settings.shard
    if shard is None:
        scheduler_index = [name for name in INDEX_VARS if os.environ.get(name)]
        if scheduler_index:
            log.warning(
                "a scheduler's array index is set but no shard count: this worker takes every day "
                "(give --shard-count N to split the window)",
                extra={"variable": scheduler_index[0]},
            )
        return
    window = pipeline.days_between(first, last)
    log.info(
        "backfill shard",
        extra={
            "shard": str(shard),
            "days": len(shard.days(window)),
            "window_days": len(window),
            "max_rps": settings.max_rps,
        },
    )


def _s3_options(settings: Settings) -> S3Options:
    return S3Options(
        sse=settings.s3_sse,
        sse_kms_key_id=settings.s3_sse_kms_key_id,
        expected_bucket_owner=settings.s3_expected_bucket_owner,
    )


def open_destination(settings: Settings) -> Storage:
    try:
        storage = open_storage(settings.dest, s3_options=_s3_options(settings))
        if isinstance(storage, LocalStorage):
            # A run killed mid-write leaves its temp files behind; only old ones go, as a younger
            # one may belong to a run writing now. (S3 keeps no partial objects to clean up.)
            removed = cleanup_stale_temp_files(storage)
            if removed:
                log.info("stale temp files removed", extra={"count": removed, "dest": storage.uri})
        return storage
    except StorageError as exc:
        _fail(str(exc), EXIT_FATAL)


def _fail(message: str, code: int) -> NoReturn:
    """Say why the command stops, and exit with `code`: as a JSON log line when the logs are JSON (a
    scheduler's log file must hold nothing else), as `error: ...` on stderr for a person."""
    if any(isinstance(handler.formatter, JsonFormatter) for handler in logging.getLogger("etl").handlers):
        log.error("stopped", extra={"error": message, "exit_code": code})
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _run(settings: Settings, command: pipeline.Command) -> RunSummary:
    release_memory_promptly()
    storage = open_destination(settings)
    hooks = click.get_current_context().find_object(RunHooks)
    if hooks is not None and hooks.wrap_storage is not None:
        storage = hooks.wrap_storage(storage)
    progress = progress_for(sys.stderr)

    try:
        return asyncio.run(pipeline.archive(settings, storage, command, progress=progress))
    except ArchiverError as exc:
        _fail(settings.api_key.redact(str(exc)), EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FATAL)
    finally:
        if progress is not None:
            progress.finish()


def _dry_run(settings: Settings, command: pipeline.Command, summary_format: str) -> None:
    """Print the plan of `command` and exit; nothing is written (etl.pipeline.dry_run)."""
    try:
        # Opened without open_destination's clean-up of stale temp files: a dry run deletes nothing.
        storage = open_storage(settings.dest, s3_options=_s3_options(settings))
        plan = asyncio.run(dry_run(settings, storage, command))
    except ArchiverError as exc:
        _fail(settings.api_key.redact(str(exc)), EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FATAL)
    click.echo(format_plan(plan, summary_format))
    # A day whose listing failed would fail the run the same way: partial (1), as the run would be.
    sys.exit(EXIT_PARTIAL if plan.failed_days else 0)


def _finish(settings: Settings, summary: RunSummary, summary_format: str) -> None:
    if summary_format == "json":
        click.echo(json.dumps(summary.to_json(), ensure_ascii=False))
    else:
        click.echo(format_summary(summary, settings.dest))
    sys.exit(exit_code(summary))
