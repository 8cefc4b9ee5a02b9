"""Every way out of a run leaves its run record (etl/pipeline/run.py), and a bug costs a day or a
call, not the run (issue 11, item 2). A small fake API over httpx.MockTransport, a local destination."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.api_objects import last_page, listed_call

from etl.api.client import ApiClient, ClientOptions
from etl.config import Settings
from etl.pipeline.run import Command, Run, backfill
from etl.reporting.report import EXIT_FATAL, exit_code, format_summary
from etl.reporting.summary import RunSummary
from etl.secrets import Secret
from etl.storage import LocalStorage, Storage

DAY1, DAY2 = date(2026, 3, 2), date(2026, 3, 3)
NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)
API_KEY = "abcdefgh." + "k" * 32


def api(listing: dict[date, list[Any]]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/")
        if path in ("calls", "deleted_calls"):
            listed = date.fromisoformat(request.url.params["fromDate"][:10])
            return last_page(listing.get(listed, []) if path == "calls" else [])
        return last_page([{"role": "MESSAGE_ROLE_AGENT", "text": "Hi"}])

    return httpx.MockTransport(answer)


def calls_of(on: date, *ids: str) -> list[dict[str, Any]]:
    return [listed_call(call_id, datetime(on.year, on.month, on.day, 9, tzinfo=UTC)) for call_id in ids]


async def _run(root: Path, command: Command, storage: Storage, listing: dict[date, list[Any]]) -> RunSummary:
    settings = Settings(api_key=Secret(API_KEY), api_base_url="https://api.test/api", dest=str(root))
    async with ApiClient(ClientOptions.from_settings(settings), transport=api(listing)) as client:
        spool = root.parent / "spool"
        spool.mkdir(exist_ok=True)
        run = Run(settings, client=client, storage=storage, spool_dir=spool, now=lambda: NOW)
        return await run.execute(command)


def run_record(root: Path) -> dict[str, Any]:
    (record,) = (root / "_runs").iterdir()
    loaded: dict[str, Any] = json.loads(record.read_text())
    return loaded


def test_an_unexpected_error_still_writes_the_run_record_and_exits_fatal(tmp_path: Path) -> None:
    def broken_plan(storage: Storage, today: date) -> list[date]:
        raise RuntimeError("a bug in planning")

    root = tmp_path / "archive"
    summary = asyncio.run(_run(root, Command("sync", broken_plan), LocalStorage(root), {}))

    assert exit_code(summary) == EXIT_FATAL
    record = run_record(root)
    assert record["fatal_error_kind"] == "internal"
    assert "RuntimeError: a bug in planning" in record["fatal_error"]


class FailsPublishingOneDay(LocalStorage):
    def put_file(self, key: str, path: Path, **kwargs: Any) -> Any:
        if f"call_date={DAY1}" in key:
            raise RuntimeError("a bug while publishing")
        return super().put_file(key, path, **kwargs)


def test_a_bug_in_one_day_costs_that_day_and_the_run_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    listing = {DAY1: calls_of(DAY1, "a1", "a2"), DAY2: calls_of(DAY2, "b1")}
    summary = asyncio.run(_run(root, backfill(DAY1, DAY2), FailsPublishingOneDay(root), listing))

    assert summary.fatal_error is None and summary.partitions_written == 1
    assert (root / "calls" / f"call_date={DAY2}" / "data.parquet").exists()
    assert (root / "_state" / "open" / f"call_date={DAY1}").exists()  # the next run does it again
    record = run_record(root)
    (problem,) = [p for p in record["problems"] if p["kind"] == "day_failed"]
    assert problem["call_date"] == DAY1.isoformat() and "a bug while publishing" in problem["reason"]


def test_a_cancelled_run_writes_its_record_before_it_goes(tmp_path: Path) -> None:
    root = tmp_path / "archive"

    async def cancelled() -> None:
        task = asyncio.create_task(_run(root, backfill(DAY1, DAY1), LocalStorage(root), {}))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    assert run_record(root)["fatal_error_kind"] == "interrupted"


def test_a_call_listed_twice_is_archived_once_and_counted(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    twice = calls_of(DAY1, "a1", "a2") + calls_of(DAY1, "a2")
    summary = asyncio.run(_run(root, backfill(DAY1, DAY1), LocalStorage(root), {DAY1: twice}))

    assert summary.calls_archived == 2 and summary.calls_listed_twice == 1 and summary.complete
    assert run_record(root)["calls_listed_twice"] == 1
    assert "listed twice        1 calls (archived once)" in format_summary(summary, str(root))


def test_a_long_transcript_goes_through_its_spool_whole_and_in_order(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from etl.pipeline.transcript import MEMORY_ROWS

    total = MEMORY_ROWS * 2 + 7
    messages = [{"role": "MESSAGE_ROLE_USER", "text": f"m{n}"} for n in range(total)]

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/")
        if path == "calls":
            return last_page(calls_of(DAY1, "long"))
        if path == "deleted_calls":
            return last_page([])
        start = int(request.url.params.get("cursor", "0"))
        stop = min(total, start + 500)
        more = f"https://api.test/api/{path}?cursor={stop}" if stop < total else None
        return httpx.Response(200, json={"next": more, "results": messages[start:stop]})

    async def one_run() -> RunSummary:
        settings = Settings(api_key=Secret(API_KEY), api_base_url="https://api.test/api", dest=str(root))
        async with ApiClient(
            ClientOptions.from_settings(settings), transport=httpx.MockTransport(answer)
        ) as c:
            spool = tmp_path / "spool"
            spool.mkdir()
            run = Run(settings, client=c, storage=LocalStorage(root), spool_dir=spool, now=lambda: NOW)
            summary = await run.execute(backfill(DAY1, DAY1))
            assert not list(spool.iterdir())  # the call's spool file went with it
            return summary

    root = tmp_path / "archive"
    summary = asyncio.run(one_run())
    assert summary.complete and summary.messages_archived == total
    table = pq.read_table(root / "messages" / f"call_date={DAY1}" / "data.parquet")
    assert table.column("message_index").to_pylist() == list(range(total))
    assert table.column("text").to_pylist() == [f"m{n}" for n in range(total)]
