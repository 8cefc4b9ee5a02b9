import io
import json
import logging

from etl.reporting.logs import configure_logging
from etl.secrets import Secret

KEY = "abcdefgh." + "s" * 32


def test_json_lines_with_extras_and_the_key_scrubbed() -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", level="info", secret=Secret(KEY), stream=stream)
    log = logging.getLogger("etl.test")
    log.info("recording archived", extra={"call_id": "c1", "bytes": 10})
    log.warning("retrying request", extra={"error": f"boom {KEY}"})
    log.error("oops %s", KEY)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["msg"] == "recording archived"
    assert lines[0]["call_id"] == "c1" and lines[0]["bytes"] == 10
    assert lines[0]["level"] == "info"
    assert KEY not in stream.getvalue()
    assert "********" in lines[1]["error"]


def test_auto_is_text_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    configure_logging(fmt="auto", level="info", secret=None, stream=stream)
    logging.getLogger("etl.test").info("partition written", extra={"call_date": "2026-03-02"})
    assert stream.getvalue().startswith("info    partition written  call_date=2026-03-02")
