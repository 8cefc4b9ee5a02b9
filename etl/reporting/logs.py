"""Logging: JSON lines for machines, plain lines for people, the API key scrubbed from both."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from etl.secrets import Secret

# Attributes every LogRecord has; anything else on a record came from `extra=` and is data.
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(extra_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in extra_fields(record).items())
        line = f"{record.levelname.lower():7} {record.getMessage()}" + (f"  {fields}" if fields else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class SecretScrubber(logging.Filter):
    """Last line of defence: no formatted log line may contain the API key."""

    def __init__(self, secret: Secret) -> None:
        super().__init__()
        self._secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._secret.redact(str(record.msg))
        if record.args:
            record.args = tuple(self._secret.redact(str(arg)) for arg in record.args)
        for key, value in extra_fields(record).items():
            if isinstance(value, str):
                setattr(record, key, self._secret.redact(value))
        return True


def configure_logging(
    *, fmt: str, level: str, secret: Secret | None, stream: TextIO | None = None
) -> logging.Handler:
    """Install one handler on the `etl` logger. `fmt` is json, text, or auto (json unless a terminal)."""
    out = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if out.isatty() else "json"
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    if secret is not None:
        handler.addFilter(SecretScrubber(secret))
    logger = logging.getLogger("etl")
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return handler
