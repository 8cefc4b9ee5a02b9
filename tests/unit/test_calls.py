"""The give-up rule for recordings that never become ready (etl.calls.give_up_if_overdue)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from etl.model import RecordingOutcome, RecordingStatus
from etl.pipeline.calls import give_up_if_overdue

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)
PENDING = RecordingOutcome(RecordingStatus.PENDING, detail="not ready after polling for 120 s (HTTP 425)")


def test_a_recording_pending_for_longer_than_the_limit_becomes_unavailable() -> None:
    outcome = give_up_if_overdue(PENDING, NOW - timedelta(days=8), NOW, WEEK)
    assert outcome.status is RecordingStatus.UNAVAILABLE
    assert outcome.detail is not None
    assert "8.0 days" in outcome.detail
    assert "backfill" in outcome.detail
    assert (outcome.uri, outcome.size_bytes, outcome.sha256) == (None, None, None)


def test_a_recording_pending_for_less_than_the_limit_stays_pending() -> None:
    assert give_up_if_overdue(PENDING, NOW - timedelta(days=6, hours=23), NOW, WEEK) is PENDING


def test_a_recording_first_seen_pending_by_this_run_stays_pending_whatever_the_limit() -> None:
    assert give_up_if_overdue(PENDING, None, NOW, timedelta(0)) is PENDING


def test_the_limit_is_inclusive_and_zero_gives_up_on_the_next_visit() -> None:
    assert give_up_if_overdue(PENDING, NOW - WEEK, NOW, WEEK).status is RecordingStatus.UNAVAILABLE
    assert give_up_if_overdue(PENDING, NOW, NOW, timedelta(0)).status is RecordingStatus.UNAVAILABLE


@pytest.mark.parametrize(
    "outcome",
    [
        RecordingOutcome(RecordingStatus.ARCHIVED, uri="s3://b/k.wav", size_bytes=10, sha256="ab"),
        RecordingOutcome(RecordingStatus.NOT_ENABLED),
        RecordingOutcome(RecordingStatus.FAILED, detail="HTTP 500"),
    ],
)
def test_other_outcomes_are_left_alone(outcome: RecordingOutcome) -> None:
    assert give_up_if_overdue(outcome, NOW - timedelta(days=365), NOW, WEEK) is outcome


def test_a_recording_failing_at_the_source_is_given_up_on_like_a_pending_one() -> None:
    failing = RecordingOutcome(RecordingStatus.FAILED, detail="HTTP 410: gone", source_failure=True)
    assert give_up_if_overdue(failing, NOW - timedelta(days=6), NOW, WEEK) is failing
    outcome = give_up_if_overdue(failing, NOW - timedelta(days=8), NOW, WEEK)
    assert outcome.status is RecordingStatus.UNAVAILABLE
    assert outcome.detail is not None and "still failing (HTTP 410: gone) 8.0 days" in outcome.detail


def test_a_failure_of_our_own_destination_is_never_given_up_on() -> None:
    ours = RecordingOutcome(RecordingStatus.FAILED, detail="storage: disk full")
    assert give_up_if_overdue(ours, NOW - timedelta(days=365), NOW, WEEK) is ours
