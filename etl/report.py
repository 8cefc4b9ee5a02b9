"""What a run tells the person or scheduler that started it: the summary and the exit code."""

from __future__ import annotations

from etl.pipeline import RunSummary

# Stable, documented in the README: cron and Kubernetes act on these.
EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2
EXIT_FATAL = 3


def exit_code(summary: RunSummary) -> int:
    if summary.fatal_error is not None:
        return EXIT_FATAL
    return EXIT_OK if summary.complete else EXIT_PARTIAL


def format_summary(summary: RunSummary, dest: str) -> str:
    """The human summary goes to stdout; a machine-readable copy is in `_runs/` at the destination."""
    lines = [
        f"run {summary.run_id}: {summary.since} .. {summary.until} -> {dest}",
        f"  calls archived      {summary.calls_archived}",
        f"  messages            {summary.messages_archived}",
        f"  recordings          {summary.recordings_archived} ({_human_bytes(summary.recording_bytes)})",
        f"  recordings off      {summary.recordings_not_enabled}",
        f"  pending             {summary.calls_underway} calls underway, "
        f"{summary.recordings_pending} recordings not ready",
        f"  failed              {summary.calls_failed} calls, {summary.recordings_failed} recordings, "
        f"{summary.records_quarantined} records quarantined",
        f"  kept from archive   {summary.calls_kept_from_archive} calls the source no longer listed "
        "or that failed this run",
        f"  api requests        {summary.api_requests} ({summary.rate_limited} rate-limited, "
        f"{summary.retries} retries)",
    ]
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
