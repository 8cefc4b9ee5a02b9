"""`ultravox-archiver config show`: every setting in effect and where it came from, the key masked."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields
from datetime import date
from pathlib import Path
from typing import Any

from etl.config import Settings, flag_name, setting_defaults
from etl.secrets import MASK, Secret


def settings_rows(values: Mapping[str, Any], sources: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(name as a flag or config-file key spells it, value shown, source) for every setting: the
    given `values` (those of `resolve_settings`, valid or not), else the default."""
    defaults = setting_defaults()
    return [
        (flag_name(f.name), _shown(values.get(f.name, defaults.get(f.name))), sources.get(f.name, "default"))
        for f in fields(Settings)
    ]


def format_settings(values: Mapping[str, Any], sources: Mapping[str, str], fmt: str) -> str:
    rows = settings_rows(values, sources)
    if fmt == "json":
        return json.dumps({name: {"value": value, "source": source} for name, value, source in rows})
    width = max(len(name) for name, _, _ in rows)
    value_width = min(40, max(len(value) for _, value, _ in rows))
    return "\n".join(f"{name:<{width}}  {value:<{value_width}}  {source}" for name, value, source in rows)


def _shown(value: Any) -> str:
    # The key is never printed, not even in part: only whether there is one.
    if isinstance(value, Secret):
        return MASK if value else "(none)"
    if value is None:
        return "-"
    if isinstance(value, date | Path):
        return str(value)
    return repr(value) if isinstance(value, str) and not value.strip() else str(value)
