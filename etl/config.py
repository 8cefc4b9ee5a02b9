"""Settings, built and validated once: flags, then environment variables, then an optional config file.

`Settings` holds every default and its field types say how a value from the environment or a TOML
file is converted. Nothing else in the package reads `os.environ` for a setting: the CLI hands the
environment over (click also shows and checks the variables of ENV_VARS, but passes on only the
values typed on the command line). AWS settings are the exception: boto3 reads the standard AWS
chain itself, and we deliberately offer no flags of our own for it.
"""

from __future__ import annotations

import math
import tomllib
import types
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from etl.addresses import is_loopback_host
from etl.errors import ConfigError
from etl.secrets import Secret
from etl.shard import Shard, check_shard, index_from_env, parse_shard

DEFAULT_API_BASE_URL = "https://api.ultravox.ai/api"
DEFAULT_DEST = "./archive"
# The longest wait one `Retry-After` may impose (see Settings.retry_after_max_s).
DEFAULT_RETRY_AFTER_MAX_S = 60.0
DEFAULT_MAX_PAGE_MIB = 16.0
DEFAULT_MAX_PAGES_PER_LISTING = 10_000

# Environment variable for each setting that has one. Flags win over these, these over the file.
ENV_VARS: Mapping[str, str] = {
    "api_key": "ULTRAVOX_API_KEY",
    "api_key_file": "ULTRAVOX_API_KEY_FILE",
    "api_base_url": "ULTRAVOX_API_BASE_URL",
    "dest": "ARCHIVE_DEST",
    "max_rps": "ARCHIVER_MAX_RPS",
    "concurrency": "ARCHIVER_CONCURRENCY",
    "download_concurrency": "ARCHIVER_DOWNLOAD_CONCURRENCY",
    "recording_wait_s": "ARCHIVER_RECORDING_WAIT_S",
    "recording_heartbeat_s": "ARCHIVER_RECORDING_HEARTBEAT_S",
    "recording_give_up_days": "ARCHIVER_RECORDING_GIVE_UP_DAYS",
    "underway_give_up_hours": "ARCHIVER_UNDERWAY_GIVE_UP_HOURS",
    "refresh_days": "ARCHIVER_REFRESH_DAYS",
    "lock_wait_s": "ARCHIVER_LOCK_WAIT_S",
    "worker_id": "ARCHIVER_WORKER_ID",
    "retry_budget": "ARCHIVER_RETRY_BUDGET",
    "max_run_time_s": "ARCHIVER_MAX_RUN_TIME_S",
    "since": "ARCHIVER_SINCE",
    "max_page_mib": "ARCHIVER_MAX_PAGE_MIB",
    "max_pages_per_listing": "ARCHIVER_MAX_PAGES_PER_LISTING",
    "max_recording_mib": "ARCHIVER_MAX_RECORDING_MIB",
    "min_transfer_kib_s": "ARCHIVER_MIN_TRANSFER_KIB_S",
    "s3_sse": "ARCHIVER_S3_SSE",
    "s3_sse_kms_key_id": "ARCHIVER_S3_SSE_KMS_KEY_ID",
    "s3_expected_bucket_owner": "ARCHIVER_S3_EXPECTED_BUCKET_OWNER",
    "allowed_recording_hosts": "ARCHIVER_ALLOWED_RECORDING_HOSTS",
    "config_file": "ARCHIVER_CONFIG",
    # The index comes from --shard or the scheduler's own variable (etl.shard.INDEX_VARS).
    "shard_count": "ARCHIVER_SHARD_COUNT",
}


@dataclass(frozen=True)
class Settings:
    api_key: Secret = field(repr=False)
    api_base_url: str = DEFAULT_API_BASE_URL
    dest: str = DEFAULT_DEST
    # The key is shared with production traffic: stay well under the documented 200 req/s.
    max_rps: float = 100.0
    # Calls processed at once; each holds at most one API request in flight at a time.
    concurrency: int = 32
    # Downloads from the storage host; they do not count against the API limit.
    download_concurrency: int = 8
    page_size: int = 100
    message_page_size: int = 100
    request_timeout_s: float = 60.0
    max_attempts: int = 8
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    # Retries all requests of one run may spend together (max_attempts bounds one request): against
    # an API that is down, a large run stops hammering it and ends, reporting what failed; the next
    # run tries again. A 120-call run with every simulated fault on spends about 70.
    retry_budget: int = 10_000
    # A server may ask for a day (86400) or send `inf`: obeyed as given, one header would stop the run
    # while it keeps renewing its leases. Longer waits are cut to this; the request is then retried
    # (with the rate limiter's and the backoff's pacing) and a 429 that keeps coming costs the request.
    retry_after_max_s: float = DEFAULT_RETRY_AFTER_MAX_S
    # How long one run keeps polling recordings that answer 425 before reporting them pending.
    recording_wait_s: float = 120.0
    # While recordings are being waited for, a log line this often says how many and for how much
    # longer at most: a run waiting minutes must not look hung to whoever watches its log.
    recording_heartbeat_s: float = 30.0
    # A recording still not ready this long after the archive first found it pending is given up
    # on (`unavailable`), so one that never finishes processing does not keep its day open for ever.
    recording_give_up_days: float = 7.0
    # A call still underway (no `ended`) this long after the archive first found it underway is
    # archived as it is (its recording `unavailable`), so a call the API never ends does not keep its
    # day open for ever. Calls last at most their maxDuration (an hour is common): 48 h is far past it.
    underway_give_up_hours: float = 48.0
    # The first re-poll of a 425 comes soon: a recording that needs one or two more polls at the end
    # of a run otherwise keeps the whole run waiting (small_api case: 1.21-1.25x the rate-limit
    # bound at 0.5 s, 1.15-1.16x at 0.25 s); the delay doubles from here up to the maximum.
    recording_poll_initial_s: float = 0.25
    recording_poll_max_s: float = 15.0
    # How often a fresh signed URL is requested after the storage host refused an expired one.
    recording_url_refreshes: int = 3
    spool_dir: Path | None = None
    # Memory all recordings in flight may buffer together, in MiB: one 32 MiB buffer per recording
    # moving at once (96: three), and a download waits for a free one rather than grow the process.
    # At least 16 (one buffer of two 8 MiB multipart parts).
    audio_memory_mib: int = 96
    # Partitions whose day ended less than this long ago are revisited by `sync`: summaries and
    # billing fields are filled in after a call ends.
    refresh_days: float = 2.0
    # A run holds each partition's lease this long between renewals (renewed every quarter of it,
    # and before each publishing write); a killed run's lease expires after it. A minute, so that a
    # run started right after a killed one takes its days over with `--lock-wait 75` (issue 11).
    lease_ttl_s: float = 60.0
    # How long to wait for a partition another run holds; 0 = skip it and say so.
    lock_wait_s: float = 0.0
    # Who runs: at most one live run per worker id (a cron line under flock, a one-pod Job). A run
    # takes over its own worker's leases at once, so a retry after a kill need not wait for them.
    worker_id: str | None = None
    # `--max-run-time`: seconds after which the run takes no new work, publishes what it finished and
    # exits "partial" (1); None: no deadline. A scheduled sync should end before the next one starts.
    max_run_time_s: float | None = None
    # Where a first `sync` starts when nothing is archived yet; later, only never-archived days from it
    # on are added (see state.plan_sync): left set, it must not make every sync rewrite history.
    since: date | None = None
    # A JSON page (listing or transcript) larger than this, decoded, fails its day or its call: a
    # broken API or a gzip bomb must not grow the process. A page of 100 calls is well under 1 MiB.
    max_page_mib: float = DEFAULT_MAX_PAGE_MIB
    # A listing (a day's calls, a call's messages) of more pages than this fails that day or call:
    # an API that hands out `next` links for ever must not keep the run for ever.
    max_pages_per_listing: int = DEFAULT_MAX_PAGES_PER_LISTING
    # A recording larger than this is not archived (recording_status failed): an hour of 48 kHz
    # stereo is ~660 MiB, so this is far past any real call. 0: no cap.
    max_recording_mib: float = 2048.0
    # A recording transfer slower than this over `transfer_window_s` is dropped and retried: a
    # trickling server would otherwise hold a download slot for hours within the read timeout.
    # 0: no minimum.
    min_transfer_kib_s: float = 16.0
    transfer_window_s: float = 60.0
    # Server-side encryption of every object written to S3: "AES256" (SSE-S3) or "aws:kms" (SSE-KMS,
    # with s3_sse_kms_key_id or the account's default KMS key). None: the bucket's default.
    s3_sse: str | None = None
    s3_sse_kms_key_id: str | None = None
    # The AWS account id that must own the bucket (ExpectedBucketOwner on every request): S3 refuses
    # the run rather than write the archive into a bucket someone else owns.
    s3_expected_bucket_owner: str | None = None
    # Host names (comma-separated) a recording may be downloaded from although they resolve to a
    # private, link-local or loopback address (an S3-compatible store inside your network). Any
    # other such address is refused: the recording redirect must not reach internal services.
    allowed_recording_hosts: str | None = None
    # This worker's share of a sharded backfill (etl.shard): `--shard I/N`, or the count alone
    # (`--shard-count N`) with the index a scheduler sets (JOB_COMPLETION_INDEX, then
    # AWS_BATCH_JOB_ARRAY_INDEX), filled in by `resolve_settings`. None: one worker takes every day.
    shard: Shard | None = None
    shard_count: int | None = None

    def __post_init__(self) -> None:
        validate(self)


def validate(settings: Settings) -> None:
    for setting in fields(settings):
        value = getattr(settings, setting.name)
        # float("nan") and float("inf") parse from a flag, the environment or TOML; every number
        # here ends up in a sleep, a deadline or a comparison, where neither means anything.
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{setting.name} must be a finite number, got {value}")
    key = settings.api_key.reveal()
    if not key:
        raise ConfigError("no API key: set ULTRAVOX_API_KEY or pass --api-key-file")
    if any(ch.isspace() or not ch.isprintable() for ch in key):
        raise ConfigError("the API key contains whitespace or control characters")
    parts = urlsplit(settings.api_base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"ULTRAVOX_API_BASE_URL must be an http(s) URL, got {settings.api_base_url!r}")
    if parts.query or parts.fragment:
        raise ConfigError("ULTRAVOX_API_BASE_URL must not carry a query or fragment")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
        # The key goes in a header of every request: in clear, anyone on the path reads it. Plain
        # http stays for loopback (the simulator, a local proxy that speaks TLS onwards).
        raise ConfigError(
            f"ULTRAVOX_API_BASE_URL must be https unless it is on this machine (loopback), got {parts.scheme}://"
            f"{parts.hostname}"
        )
    if settings.max_rps <= 0:
        raise ConfigError("--max-rps must be positive")
    for name in ("concurrency", "download_concurrency", "page_size", "message_page_size", "max_attempts"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"{name} must be at least 1")
    if settings.max_run_time_s is not None and settings.max_run_time_s <= 0:
        raise ConfigError("--max-run-time must be a positive number of seconds")
    if settings.retry_budget < 0:
        raise ConfigError("--retry-budget must not be negative (0: never retry)")
    if settings.audio_memory_mib < 16:
        raise ConfigError("audio_memory_mib must be at least 16")
    if settings.lease_ttl_s < 1:
        raise ConfigError("lease_ttl_s must be at least 1 second")
    if settings.worker_id is not None and not (
        0 < len(settings.worker_id) <= 200
        and settings.worker_id.isprintable()
        and settings.worker_id.strip() == settings.worker_id
    ):
        raise ConfigError("--worker-id must be 1-200 printable characters, without surrounding spaces")
    if settings.refresh_days < 0 or settings.lock_wait_s < 0:
        raise ConfigError("refresh_days and lock_wait_s must not be negative")
    waits = ["retry_initial_s", "retry_max_s", "retry_after_max_s", "recording_poll_initial_s"]
    waits.append("recording_poll_max_s")
    if any(getattr(settings, name) < 0 for name in waits):
        raise ConfigError(f"{', '.join(waits)} must not be negative")
    if settings.recording_wait_s < 0:
        raise ConfigError("--recording-wait must not be negative")
    if settings.recording_heartbeat_s <= 0:
        raise ConfigError("--recording-heartbeat must be a positive number of seconds")
    if settings.recording_give_up_days < 0:
        raise ConfigError("--recording-give-up-days must not be negative")
    if settings.max_page_mib <= 0 or settings.max_pages_per_listing < 1:
        raise ConfigError("--max-page-mib must be positive and --max-pages-per-listing at least 1")
    if settings.max_recording_mib < 0 or settings.min_transfer_kib_s < 0 or settings.transfer_window_s <= 0:
        raise ConfigError(
            "--max-recording-mib and --min-transfer-kib-s must not be negative, transfer_window_s positive"
        )
    if settings.s3_sse not in (None, "AES256", "aws:kms"):
        raise ConfigError(f"s3_sse must be AES256 or aws:kms, got {settings.s3_sse!r}")
    if settings.s3_sse_kms_key_id and settings.s3_sse != "aws:kms":
        raise ConfigError("s3_sse_kms_key_id needs s3_sse = aws:kms")
    owner = settings.s3_expected_bucket_owner
    if owner is not None and not (len(owner) == 12 and owner.isascii() and owner.isdigit()):
        raise ConfigError(f"s3_expected_bucket_owner must be a 12-digit AWS account id, got {owner!r}")
    if settings.underway_give_up_hours < 0:
        raise ConfigError("--underway-give-up-hours must not be negative")
    check_shard(settings.shard, settings.shard_count)


_SETTING_NAMES = {f.name for f in fields(Settings)}
# A key in a config file ends up in git; point to a key file instead. Names compared by `_plain_name`.
_FILE_ONLY_FORBIDDEN_PLAIN = frozenset({"apikey", "ultravoxapikey", "xapikey"})


def load_settings(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    config_file: Path | None = None,
) -> Settings:
    """Merge flags > environment > config file > defaults into validated Settings.

    `flags` holds only the options the user gave (None values are ignored). `env` is passed in (the CLI
    hands over `os.environ`) so that tests never patch the process environment.
    """
    return load_settings_with_sources(flags, env, config_file=config_file)[0]


def load_settings_with_sources(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    config_file: Path | None = None,
) -> tuple[Settings, dict[str, str]]:
    """`load_settings`, and where each setting came from (`config show`): "flag --x", "env VAR",
    "file PATH" or "default"."""
    values, sources = resolve_settings(flags, env, config_file=config_file)
    return Settings(**values), sources


def resolve_settings(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    config_file: Path | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The values given (converted, not yet validated together) and where each setting came from;
    `Settings(**values)` validates them."""
    given_flags = {k: v for k, v in flags.items() if v is not None}
    file_path = config_file or _path_or_none(
        given_flags.pop("config_file", None) or env.get(ENV_VARS["config_file"])
    )
    from_file = _read_config_file(file_path) if file_path else {}
    from_env = {name: env[var] for name, var in ENV_VARS.items() if var in env and env[var] != ""}
    from_env.pop("config_file", None)

    merged: dict[str, Any] = {**from_file, **from_env, **given_flags}
    sources = {name: f"file {file_path}" for name in from_file}
    sources.update({name: f"env {ENV_VARS[name]}" for name in from_env})
    sources.update({name: f"flag --{flag_name(name)}" for name in given_flags})

    key_file = merged.pop("api_key_file", None)
    if given_flags.get("api_key_file") is not None:
        merged.pop("api_key", None)  # an explicit key file flag wins over an inherited env key
    if key_file is not None and "api_key" not in merged:
        merged["api_key"] = _read_key_file(Path(key_file))
        sources["api_key"] = f"key file {key_file} ({sources['api_key_file']})"
    merged["api_key"] = Secret(str(merged.get("api_key", "")).strip())

    unknown = set(merged) - _SETTING_NAMES
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    values = {name: _coerce(name, value) for name, value in merged.items()}
    if "api_base_url" in values:
        # Paths are joined onto it with a "/" of their own.
        values["api_base_url"] = values["api_base_url"].rstrip("/")
    sources.pop("api_key_file", None)
    _apply_shard(values, sources, env)
    return values, {name: sources.get(name, "default") for name in _SETTING_NAMES}


def _apply_shard(values: dict[str, Any], sources: dict[str, str], env: Mapping[str, str]) -> None:
    """The shard index from the scheduler's environment when only a count was given (a `--shard`
    flag wins over it), and each shard's share of the default `--max-rps`.

    All shards spend one API key's budget: N workers at the single-worker default would together
    ask for N times what one worker does. A `--max-rps` given anywhere (flag, environment, file) is
    taken as the user's own per-worker figure and left alone.
    """
    count = values.get("shard_count")
    found = index_from_env(env) if isinstance(count, int) else None
    if isinstance(count, int) and found is not None and not sources.get("shard", "").startswith("flag"):
        index, variable = found
        values["shard"] = Shard(index, count)
        sources["shard"] = f"env {variable}, count from {sources['shard_count']}"
    shard = values.get("shard")
    if isinstance(shard, Shard) and shard.count > 1 and "max_rps" not in values:
        default = setting_defaults()["max_rps"]
        values["max_rps"] = default / shard.count
        sources["max_rps"] = f"default {default:g} / {shard.count} shards"


# Settings whose flag leaves out the unit in their name (`--recording-wait` sets recording_wait_s).
# A config file may spell every setting like its flag or like the setting, with `-` or `_`.
_FLAG_SPELLINGS: Mapping[str, str] = {
    "recording_wait_s": "recording-wait",
    "lock_wait_s": "lock-wait",
    "max_run_time_s": "max-run-time",
    "recording_heartbeat_s": "recording-heartbeat",
}


def flag_name(setting: str) -> str:
    """A setting as a flag (or config-file key) spells it, without `--`: recording_wait_s -> recording-wait.
    Settings that have no flag are spelled the same way: they are config-file keys only."""
    return _FLAG_SPELLINGS.get(setting, setting.replace("_", "-"))


def setting_defaults() -> dict[str, Any]:
    """The default of every setting that has one, as `Settings` declares it (for `--help`)."""
    return {f.name: f.default for f in fields(Settings) if f.default is not MISSING}


def load_destination(flag: str | None, env: Mapping[str, str], *, config_file: Path | None = None) -> str:
    """Only the destination, for commands that read the archive and need no API key."""
    return given_destination(flag, env, config_file=config_file) or DEFAULT_DEST


def given_destination(
    flag: str | None, env: Mapping[str, str], *, config_file: Path | None = None
) -> str | None:
    """The destination the flag, the environment or the config file names; None if none does."""
    if flag:
        return flag
    if env.get(ENV_VARS["dest"]):
        return env[ENV_VARS["dest"]]
    path = config_file or _path_or_none(env.get(ENV_VARS["config_file"]))
    dest = _read_config_file(path).get("dest") if path else None
    return str(dest) if dest else None


def _path_or_none(value: object) -> Path | None:
    return Path(str(value)) if value else None


def _read_key_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read API key file {path}: {exc.strerror}") from None


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    section = data.get("archiver", data)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: [archiver] must be a table")
    # The rule holds for every spelling of the name (`api-key`, `API_KEY`, `apiKey`, ...), and for
    # names of settings that do not exist, so that it is this error and not "unknown setting" (or
    # worse, silence) that a user who wrote their key into the file sees.
    if any(_plain_name(str(name)) in _FILE_ONLY_FORBIDDEN_PLAIN for name in section):
        raise ConfigError(f"config file {path}: do not put the API key in a config file; use api_key_file")
    return _file_keys_to_settings(path, section)


def _file_keys_to_settings(path: Path, section: Mapping[str, Any]) -> dict[str, Any]:
    """Every spelling of a key (`recording-wait`, `recording_wait`, `recording_wait_s`) as its setting;
    an unknown key is named with the file and the keys it may hold."""
    settings: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    unknown = []
    for key, value in section.items():
        name = _FILE_KEYS.get(str(key).replace("-", "_"))
        if name is None:
            unknown.append(str(key))
        elif name in settings:
            raise ConfigError(f"config file {path}: {spelled[name]!r} and {key!r} set the same setting")
        else:
            settings[name], spelled[name] = value, str(key)
    if unknown:
        valid = ", ".join(sorted({flag_name(name) for name in _FILE_KEYS.values()}))
        raise ConfigError(
            f"config file {path}: unknown {'key' if len(unknown) == 1 else 'keys'} "
            f"{', '.join(repr(k) for k in unknown)}; valid keys (- or _ alike): {valid}"
        )
    return settings


# A config file's keys, `-` read as `_`: every setting but the key itself (the file names a key file).
_FILE_KEYS: Mapping[str, str] = {
    spelling: name
    for name in (_SETTING_NAMES - {"api_key"}) | {"api_key_file"}
    for spelling in (name, flag_name(name).replace("-", "_"))
}


def _plain_name(name: str) -> str:
    """A setting name without case, dashes, underscores, dots or spaces: `apiKey` -> `apikey`."""
    return "".join(ch for ch in name.casefold() if ch.isalnum())


def _date(value: Any) -> date:
    # A TOML date arrives as a date already; the environment and flags give text.
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _secret(value: Any) -> Secret:
    return value if isinstance(value, Secret) else Secret(str(value))


# How a value from a flag, the environment or a TOML file becomes each type a setting may have, and
# how a bad value is described in the error.
_CONVERTERS: dict[type, tuple[Callable[[Any], Any], str]] = {
    int: (int, "a whole number"),
    float: (float, "a number"),
    str: (str, "text"),
    Path: (Path, "a path"),
    date: (_date, "a date YYYY-MM-DD"),
    Secret: (_secret, "a secret"),
    Shard: (parse_shard, "I/N, shard I (from 0) of N, e.g. 2/4"),
}


@dataclass(frozen=True)
class _Conversion:
    convert: Callable[[Any], Any]
    what: str
    optional: bool


def _conversion(name: str, annotation: Any) -> _Conversion:
    """How to convert values for a field of this type (`X` or `X | None`)."""
    args = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    kinds = [arg for arg in args if arg is not type(None)]
    if len(kinds) != 1 or kinds[0] not in _CONVERTERS:
        # Fails at import, not for the first user who sets it: a new kind of field needs a converter.
        raise TypeError(f"Settings.{name}: no converter for {annotation!r}")
    convert, what = _CONVERTERS[kinds[0]]
    return _Conversion(convert, what, optional=len(kinds) < len(args))


_CONVERSIONS = {name: _conversion(name, kind) for name, kind in get_type_hints(Settings).items()}


def _coerce(name: str, value: Any) -> Any:
    conversion = _CONVERSIONS[name]
    if value is None and conversion.optional:
        return None
    try:
        return conversion.convert(value)
    except (TypeError, ValueError):
        # Never a secret here: _secret cannot fail, so no key reaches this message.
        raise ConfigError(f"{name} must be {conversion.what}, got {value!r}") from None
