"""The progress bar's total: estimated from the days listed so far, exact once every day is listed."""

from __future__ import annotations

import io
import logging

from etl.reporting.progress import ProgressBar, progress_for
from etl.reporting.summary import RunSummary


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _summary(archived: int) -> RunSummary:
    return RunSummary(run_id="r", command="sync", since="", until="", started_at="", calls_archived=archived)


def test_the_total_is_estimated_per_day_then_exact() -> None:
    bar = ProgressBar(Terminal())
    bar.planned(4)
    bar.listed(30)
    assert bar._bar.total is None  # no day fully listed: nothing to estimate from
    bar.day_listed()
    assert bar._bar.total == 120  # 30 calls a day, four days
    bar.listed(25)
    assert bar._bar.total == 120  # a day half listed says nothing of its size yet
    bar.listed(95)
    assert bar._bar.total == 150  # but the total is never below what is listed
    bar.day_listed()
    assert bar._bar.total == 300  # 75 a day
    bar.listed(5)
    bar.day_listed()
    bar.listed(5)
    bar.day_listed()
    assert bar._bar.total == 160  # every day listed: exact
    bar.update(_summary(160))
    assert bar._bar.n == 160
    bar.finish()


def test_log_lines_print_above_the_bar_and_the_handler_gets_its_stream_back() -> None:
    terminal = Terminal()
    handler = logging.StreamHandler(terminal)
    logger = logging.getLogger("etl")
    logger.addHandler(handler)
    try:
        bar = ProgressBar(terminal)
        assert handler.stream is not terminal
        logger.warning("a line")
        bar.finish()
        assert handler.stream is terminal
    finally:
        logger.removeHandler(handler)
    assert "a line\n" in terminal.getvalue()


def test_nothing_but_a_terminal_gets_a_bar() -> None:
    assert progress_for(io.StringIO()) is None
