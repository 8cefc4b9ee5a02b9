"""Start-up options of the simulator and the one argparse parser that builds them.

The parser lives here (not in `__main__`) so the `ultravox-archiver simulate` click command and the
test helper in `process.py` share one definition of every flag.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from datetime import date

from etl.simulator.account import DEFAULT_DURATION_RANGE

# A fixed demo key with the real shape (8 chars + "." + 32 chars = 41): clients that validate the key
# format accept it, and nobody mistakes it for a production key.
DEFAULT_API_KEY = "simdemo0." + "0123456789abcdef" * 2
DEFAULT_START_DATE = date(2026, 3, 2)


@dataclass(frozen=True)
class SimulatorOptions:
    """Everything fixed when the simulator starts; the fault knobs can change later via `/_sim/config`."""

    port: int = 0
    storage_port: int = 0
    calls: int = 300
    seed: int = 1
    days: int = 5
    start_date: date = DEFAULT_START_DATE
    api_key: str = DEFAULT_API_KEY
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    rate_limit_rps: float | None = None
    # None: real sizes, from each call's duration and WAV format (~16 MB on average, up to ~150 MB);
    # tests and the demo ask for small ones.
    recording_bytes: int | None = None
    huge_recording_bytes: int | None = None
    duration_range: tuple[float, float] = DEFAULT_DURATION_RANGE
    sample_rate: int | None = None
    recording_rate: float = 0.8
    stuck_recording_rate: float = 0.03
    page_size_max: int = 100
    error_rate_5xx: float = 0.0
    reset_rate: float = 0.0
    storage_error_rate: float = 0.0
    storage_reset_rate: float = 0.0
    expired_url_rate: float = 0.0
    duplicate_listing_rate: float = 0.0
    gzip_rate: float = 0.0
    chunked_audio_rate: float = 0.0
    short_page_rate: float = 0.0
    next_query_shuffle_rate: float = 0.0
    signed_url_ttl_s: float = 300.0
    throttle_rate: float = 0.0
    retry_after: tuple[str, ...] = ("1",)
    cut_after_headers_rate: float = 0.0
    storage_cut_after_headers_rate: float = 0.0
    naive_date_offset_h: float = -5.0
    recording_enabled_omitted_rate: float = 0.0
    not_enabled_wordings: bool = False
    broken_recording_rate: float = 0.0
    broken_recording_status: int = 410
    never_ending_rate: float = 0.0
    unsafe_redirect_rate: float = 0.0
    # PEM files: serve both origins over TLS (https); the API's `next` links still say http.
    tls_cert: str | None = None
    tls_key: str | None = None

    def __post_init__(self) -> None:
        if self.calls < 0 or self.days < 1:
            raise ValueError("calls must be >= 0 and days >= 1")
        if (self.recording_bytes is not None and self.recording_bytes < 64) or self.page_size_max < 1:
            raise ValueError("recording_bytes must be >= 64 and page_size_max >= 1")
        low, high = self.duration_range
        if not 0 <= low <= high:
            raise ValueError("duration_range must be LOW,HIGH seconds with 0 <= LOW <= HIGH")
        if self.sample_rate is not None and not 1_000 <= self.sample_rate <= 192_000:
            raise ValueError("sample_rate must be between 1000 and 192000 Hz")


def option_names() -> frozenset[str]:
    return frozenset(field.name for field in dataclasses.fields(SimulatorOptions))


def build_parser(prog: str = "python -m etl.simulator") -> argparse.ArgumentParser:
    d = SimulatorOptions()
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a deterministic stand-in of the Ultravox REST API on 127.0.0.1. "
        "Prints one JSON 'ready' line on stdout, then serves until SIGTERM/SIGINT.",
        epilog="example: python -m etl.simulator --port 8765 --storage-port 8766 --calls 300 --seed 1",
    )
    add = parser.add_argument
    add("--port", type=int, default=d.port, help="API port (0 = pick a free port)")
    add("--storage-port", type=int, default=d.storage_port, help="storage origin port (0 = free port)")
    add("--calls", type=int, default=d.calls, help="number of calls in the account")
    add("--seed", type=int, default=d.seed, help="seed of the generated account")
    add("--days", type=int, default=d.days, help="number of UTC days the calls are spread over")
    add("--start-date", type=date.fromisoformat, default=d.start_date, help="first day, YYYY-MM-DD")
    add("--api-key", default=d.api_key, help="the only X-API-Key accepted")
    add("--latency-ms", type=float, default=d.latency_ms, help="added to every /api response")
    add("--latency-jitter-ms", type=float, default=d.latency_jitter_ms, help="uniform extra latency")
    add("--rate-limit-rps", type=float, default=d.rate_limit_rps, help="token bucket over /api (429)")
    add(
        "--recording-bytes",
        type=int,
        default=d.recording_bytes,
        help="mean recording size (+-50%%); default: real sizes from each call's duration and format",
    )
    add("--huge-recording-bytes", type=int, default=d.huge_recording_bytes, help="size of one huge recording")
    add(
        "--duration-range",
        type=_seconds_range,
        default=d.duration_range,
        metavar="LOW,HIGH",
        help="seconds of joined calls, e.g. 160,900 for 5-29 MB recordings at 16 kHz mono",
    )
    add("--sample-rate", type=int, default=d.sample_rate, help="every recording mono at this rate (Hz)")
    add("--recording-rate", type=float, default=d.recording_rate, help="fraction of calls with recording on")
    add(
        "--stuck-recording-rate",
        type=float,
        default=d.stuck_recording_rate,
        help="fraction of recordings that never finish processing",
    )
    add("--page-size-max", type=int, default=d.page_size_max, help="pageSize above this is clamped")
    add("--error-rate-5xx", type=float, default=d.error_rate_5xx, help="fraction of /api answered 5xx")
    add("--reset-rate", type=float, default=d.reset_rate, help="fraction of /api connections reset")
    add("--storage-error-rate", type=float, default=d.storage_error_rate, help="storage 5xx fraction")
    add("--storage-reset-rate", type=float, default=d.storage_reset_rate, help="storage reset fraction")
    add("--expired-url-rate", type=float, default=d.expired_url_rate, help="calls whose 1st URL is expired")
    add("--signed-url-ttl-s", type=float, default=d.signed_url_ttl_s, help="lifetime of signed URLs")
    add("--throttle-rate", type=float, default=d.throttle_rate, help="fraction of /api answered 429")
    add(
        "--retry-after",
        type=_retry_after_list,
        default=d.retry_after,
        metavar="V,V,...",
        help="Retry-After values of those 429s, picked per seed: as sent (86400, inf, nan, -5, soon), "
        "'none' (no header), 'date+N'/'date-N' (an HTTP-date N s from now)",
    )
    add(
        "--cut-after-headers-rate",
        type=float,
        default=d.cut_after_headers_rate,
        help="fraction of /api answers closed right after their headers",
    )
    add(
        "--storage-cut-after-headers-rate",
        type=float,
        default=d.storage_cut_after_headers_rate,
        help="fraction of storage audio answers closed right after their headers",
    )
    add(
        "--duplicate-listing-rate",
        type=float,
        default=d.duplicate_listing_rate,
        help="fraction of calls pages that repeat the previous page's last call",
    )
    add("--gzip-rate", type=float, default=d.gzip_rate, help="fraction of JSON answers gzip-encoded")
    add(
        "--chunked-audio-rate",
        type=float,
        default=d.chunked_audio_rate,
        help="fraction of recordings whose audio is sent chunked, without Content-Length",
    )
    add(
        "--short-page-rate",
        type=float,
        default=d.short_page_rate,
        help="fraction of list pages far smaller than the pageSize asked for",
    )
    add(
        "--next-query-shuffle-rate",
        type=float,
        default=d.next_query_shuffle_rate,
        help="fraction of next links with the query reordered and a parameter added",
    )
    add(
        "--naive-date-offset-h",
        type=float,
        default=d.naive_date_offset_h,
        help="zone (hours from UTC) of fromDate/toDate given without an offset; undocumented by the API",
    )
    add(
        "--recording-enabled-omitted-rate",
        type=float,
        default=d.recording_enabled_omitted_rate,
        help="fraction of calls with recording off whose object leaves out `recordingEnabled`",
    )
    add(
        "--not-enabled-wordings",
        type=_boolean,
        default=d.not_enabled_wordings,
        help="true: 'recording not enabled' answered with varied 4xx statuses and wordings",
    )
    add(
        "--broken-recording-rate",
        type=float,
        default=d.broken_recording_rate,
        help="fraction of never-ready recordings answered --broken-recording-status for ever, not 425",
    )
    add("--broken-recording-status", type=int, default=d.broken_recording_status, help="e.g. 410 or 500")
    add(
        "--never-ending-rate",
        type=float,
        default=d.never_ending_rate,
        help="fraction of calls underway that never end (/_sim/advance end_underway skips them)",
    )
    add(
        "--unsafe-redirect-rate",
        type=float,
        default=d.unsafe_redirect_rate,
        help="fraction of ready recordings whose 302 points at 169.254.169.254 (to be refused)",
    )
    add("--tls-cert", default=d.tls_cert, help="PEM certificate: serve https (next links still say http)")
    add("--tls-key", default=d.tls_key, help="PEM private key of --tls-cert (if not in the same file)")
    return parser


def parse_options(argv: list[str] | None = None, prog: str | None = None) -> SimulatorOptions:
    """Parse command-line flags into options; exits with status 2 on bad flags (argparse convention)."""
    parser = build_parser(prog) if prog else build_parser()
    namespace = parser.parse_args(argv)
    try:
        return SimulatorOptions(**vars(namespace))
    except ValueError as exc:
        parser.error(str(exc))


def _retry_after_list(text: str) -> tuple[str, ...]:
    return tuple(text.split(","))


def _boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes", "on"):
        return True
    if text.lower() in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _seconds_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    try:
        return float(low), float(high)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH seconds, got {text!r}") from None


def option_argv(**options: object) -> list[str]:
    """The inverse of `parse_options`: keyword options -> command-line flags (for subprocesses)."""
    unknown = set(options) - option_names()
    if unknown:
        raise TypeError(f"unknown simulator options: {sorted(unknown)}")
    argv: list[str] = []
    for name, value in options.items():
        if value is None:
            continue
        argv += ["--" + name.replace("_", "-"), _flag_value(value)]
    return argv


def _flag_value(value: object) -> str:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return ",".join(map(str, value))
    return str(value)
