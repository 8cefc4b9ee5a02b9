"""A stand-in for the Ultravox REST API, served over real HTTP on 127.0.0.1.

Start it with `python -m etl.simulator` (or `process.running_simulator` in tests); it serves a
deterministic account under /api, signed recording URLs on a second "storage" port, and ground truth,
stats and fault switches under /_sim. See `server.serve` for embedding it in another event loop.
"""

from etl.simulator.options import DEFAULT_API_KEY, SimulatorOptions, build_parser, parse_options
from etl.simulator.server import ReadyInfo, run, serve

__all__ = [
    "DEFAULT_API_KEY",
    "ReadyInfo",
    "SimulatorOptions",
    "build_parser",
    "parse_options",
    "run",
    "serve",
]
