"""What a refused recording means (etl.api.recordings.refused): by status and `recordingEnabled`."""

from __future__ import annotations

import pytest

from etl.api.recordings import refused
from etl.model import RecordingStatus


@pytest.mark.parametrize("detail", ["Recording is not enabled for this call.", "No recording.", None])
@pytest.mark.parametrize("enabled", [False, None])
def test_a_refusal_for_a_call_not_known_to_record_is_not_enabled(
    detail: str | None, enabled: bool | None
) -> None:
    outcome = refused(404, detail, recording_enabled=enabled)
    assert outcome.status is RecordingStatus.NOT_ENABLED
    assert outcome.detail is not None and outcome.detail.startswith("HTTP 404")


@pytest.mark.parametrize("detail", ["Recording is not enabled for this call.", "Gone."])
def test_a_refusal_for_a_call_with_recording_enabled_is_a_failure_at_the_source(detail: str) -> None:
    # Even the words "not enabled" do not make it `not_enabled`: the call object says otherwise.
    outcome = refused(400, detail, recording_enabled=True)
    assert (outcome.status, outcome.source_failure) == (RecordingStatus.FAILED, True)
    assert outcome.detail is not None and detail in outcome.detail
