"""The `status` command's work: read the destination's state, print it, return the exit code."""

from __future__ import annotations

import json

import click

from etl.errors import StorageError
from etl.reporting.health import Thresholds, alerts_for, status_exit_code
from etl.reporting.report import EXIT_FATAL
from etl.reporting.status import format_status, read_status, status_json
from etl.storage import open_storage


def show_status(destination: str, output_format: str, thresholds: Thresholds) -> int:
    try:
        status = read_status(open_storage(destination))
    except StorageError as exc:
        click.echo(f"error: {exc}", err=True)
        if output_format == "json":
            # A monitor reading stdout still gets one object, with the reason.
            alert = {"kind": "unreadable", "exit_code": EXIT_FATAL, "message": str(exc)}
            click.echo(json.dumps({"dest": destination, "exit_code": EXIT_FATAL, "alerts": [alert]}))
        return EXIT_FATAL
    if output_format == "json":
        click.echo(json.dumps(status_json(status, destination, thresholds), ensure_ascii=False))
    else:
        click.echo(format_status(status, destination, thresholds))
    return status_exit_code(alerts_for(status, thresholds))
