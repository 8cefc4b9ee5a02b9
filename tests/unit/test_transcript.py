"""A call's transcript made page by page, and spooled beyond a bound (etl/pipeline/transcript.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from etl.errors import BadRecord
from etl.pipeline.transcript import Transcript
from etl.records import message_rows


def page(start: int, count: int) -> list[dict[str, Any]]:
    return [
        {"role": "MESSAGE_ROLE_USER", "text": f"m{n}", "timespan": {"start": f"{n}s"}}
        for n in range(start, start + count)
    ]


def test_a_long_transcript_keeps_only_a_bounded_number_of_rows_in_memory(tmp_path: Path) -> None:
    transcript = Transcript("call-1", tmp_path, memory_rows=5)
    pages = [page(n * 4, 4) for n in range(6)]
    held = []
    for messages in pages:
        transcript.add_page(messages)
        held.append(transcript.rows_in_memory)

    assert max(held) <= 5 and transcript.spooled
    everything = [m for messages in pages for m in messages]
    assert list(transcript.rows()) == message_rows("call-1", everything)
    assert list(tmp_path.iterdir())  # read back from its spool file
    assert transcript.count == 24
    transcript.discard()
    assert not list(tmp_path.iterdir())


def test_a_short_transcript_never_touches_the_disk(tmp_path: Path) -> None:
    transcript = Transcript("call-1", tmp_path, memory_rows=5)
    transcript.add_page(page(0, 3))
    transcript.add_page(page(3, 2))
    assert list(transcript.rows()) == message_rows("call-1", page(0, 5))
    assert not transcript.spooled and not list(tmp_path.iterdir())


def test_a_bad_message_on_a_later_page_is_named_by_its_place_in_the_whole_transcript(tmp_path: Path) -> None:
    transcript = Transcript("call-1", tmp_path, memory_rows=2)
    transcript.add_page(page(0, 3))
    with pytest.raises(BadRecord, match="message 4 of call call-1"):
        transcript.add_page([*page(3, 1), {"role": 7}])
    transcript.discard()
    assert not list(tmp_path.iterdir())
