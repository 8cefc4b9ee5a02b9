"""`python -m etl.simulator`: serve the simulated Ultravox API until SIGTERM/SIGINT."""

from __future__ import annotations

import json
import logging
import sys

from etl.simulator.options import parse_options
from etl.simulator.server import ReadyInfo, run


def print_ready(info: ReadyInfo) -> None:
    # Exactly one line on stdout, flushed: `process.running_simulator` and scripts wait for it.
    sys.stdout.write(json.dumps(info.as_json()) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Parse `argv` (default: sys.argv[1:]) and serve until SIGTERM/SIGINT; `prog` is shown in --help."""
    options = parse_options(argv, prog)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    return run(options, print_ready)


if __name__ == "__main__":
    sys.exit(main())
