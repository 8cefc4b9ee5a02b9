"""The checks before a run: their messages say what to do (end-to-end: test_preflight_e2e.py)."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import httpx
import pytest

from etl.config import Settings
from etl.errors import ConfigError
from etl.pipeline.preflight import check_api, check_destination, check_window
from etl.secrets import Secret

TODAY = date(2026, 12, 2)


def test_today_is_not_in_the_future() -> None:
    check_window(date(2026, 11, 1), TODAY, TODAY)
    check_window(None, None, TODAY)


@pytest.mark.parametrize(
    ("since", "until", "flag"), [(None, date(2026, 12, 3), "--until"), (date(2027, 1, 1), None, "--since")]
)
def test_a_day_after_today_is_refused_naming_the_flag(
    since: date | None, until: date | None, flag: str
) -> None:
    with pytest.raises(ConfigError, match=f"{flag} .* is in the future \\(today is 2026-12-02 UTC\\)"):
        check_window(since, until, TODAY)


def test_a_missing_directory_below_a_writable_one_is_fine(tmp_path: Path) -> None:
    check_destination(str(tmp_path / "new" / "archive"))
    check_destination(f"file://{tmp_path}/new")
    check_destination("s3://bucket/prefix")  # checked by the run's first storage request
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_directory_is_refused(tmp_path: Path) -> None:
    # Injected: the tests may run as root, for whom every directory is writable.
    with pytest.raises(ConfigError, match=r"the parent directory .* is not writable by this user"):
        check_destination(str(tmp_path / "new"), access=lambda _path, _mode: False)
    with pytest.raises(ConfigError, match=r"the directory is not writable"):
        check_destination(str(tmp_path), access=lambda _path, _mode: False)


def _settings() -> Settings:
    return Settings(api_key=Secret("k" * 20), api_base_url="http://127.0.0.1:1/api", retry_initial_s=0.0)


def _check(handler: httpx.MockTransport) -> None:
    asyncio.run(check_api(_settings(), transport=handler))


def test_a_404_means_the_base_url_is_wrong() -> None:
    missing = httpx.MockTransport(lambda _: httpx.Response(404, json={"detail": "Not found."}))
    with pytest.raises(ConfigError, match=r"HTTP 404\): --api-base-url must end in /api, e.g. https://api"):
        _check(missing)


def test_a_page_that_cannot_be_read_is_left_to_the_run() -> None:
    # The run reports an unreadable listing per day, with its reason (a fault, not a wrong setting).
    _check(httpx.MockTransport(lambda _: httpx.Response(200, text="<html>not json</html>")))


def test_a_server_error_leaves_it_to_the_run() -> None:
    seen: list[str] = []

    def failing(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(503)

    _check(httpx.MockTransport(failing))
    assert seen == ["http://127.0.0.1:1/api/calls?pageSize=1"] * 3  # a bounded retry, then the run's
