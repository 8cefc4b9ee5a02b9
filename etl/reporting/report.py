"""What a run tells the person or scheduler that started it: the summary and the exit code."""

from __future__ import annotations

from etl.reporting.summary import RunSummary

# Stable, documented in the README: cron and Kubernetes act on these.
EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_FATAL = 3
EXIT_LOCKED = 4


def exit_code(summary: RunSummary) -> int:
    if summary.fatal_error is not None:
        return EXIT_FATAL
    if summary.complete:
        return EXIT_OK
    only_locked = summary.partitions_locked and summary.complete_but_locked
    return EXIT_LOCKED if only_locked else EXIT_PARTIAL


def format_summary(summary: RunSummary, dest: str) -> str:
    """The human summary goes to stdout; a machine-readable copy is in `_runs/` at the destination."""
    lines = [
        f"{summary.command} {summary.run_id}: {summary.since or '-'} .. {summary.until or '-'} -> {dest}",
        f"  calls archived      {summary.calls_archived}",
        f"  messages            {summary.messages_archived}",
        f"  recordings          {summary.recordings_archived} ({_human_bytes(summary.recording_bytes)}), "
        f"{summary.recordings_reused} already archived",
        f"  transcripts reused  {summary.transcripts_reused}",
        f"  recordings off      {summary.recordings_not_enabled}",
        f"  pending             {summary.calls_underway} calls underway, "
        f"{summary.recordings_pending} recordings not ready",
        f"  given up            {summary.recordings_unavailable} recordings never became ready "
        "(archived as unavailable)",
        f"  failed              {summary.calls_failed} calls, {summary.recordings_failed} recordings, "
        f"{summary.records_quarantined} records quarantined",
        f"  kept from archive   {summary.calls_kept_from_archive} calls the source no longer listed "
        f"or that failed this run ({summary.calls_deleted_at_source} deleted at the source)",
        f"  partitions          {summary.partitions_written} written, {summary.partitions_final} final, "
        f"{len(summary.partitions_locked)} locked by another run",
        f"  api requests        {summary.api_requests} ({summary.rate_limited} rate-limited, "
        f"{summary.retries} retries)",
    ]
    if summary.shard is not None:
        rate = "" if summary.max_rps is None else f", at most {summary.max_rps:g} API requests/s"
        lines.append(f"  shard               {summary.shard}{rate}")
    if summary.deadline_reached:
        days = ", ".join(summary.days_unfinished) or "none"
        lines.append(
            f"  deadline            reached (--max-run-time); days left open for the next run: {days}"
        )
    if summary.retries_refused:
        lines.append(
            f"  not retried         {summary.retries_refused} failures (retry budget spent or deadline)"
        )
    if summary.calls_listed_twice:
        lines.append(f"  listed twice        {summary.calls_listed_twice} calls (archived once)")
    for locked in summary.partitions_locked:
        lines.append(f"  skipped {locked}")
    if summary.fatal_error:
        lines.append(f"  FATAL               {summary.fatal_error}")
    for problem in summary.problems[:20]:
        lines.append(f"  ! {problem.kind}: {problem.reason}")
    if len(summary.problems) > 20:
        lines.append(f"  ! ... {len(summary.problems) - 20} more in _quarantine/{summary.run_id}.jsonl")
    return "\n".join(lines)


def _human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{count} B"
        size /= 1024
    return f"{count} B"
