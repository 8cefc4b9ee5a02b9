from datetime import date
from pathlib import Path

import pytest

from etl.config import load_settings, setting_defaults
from etl.errors import ConfigError
from etl.secrets import Secret

KEY = "abcdefgh." + "x" * 32


def test_flags_beat_env_beat_file(tmp_path: Path) -> None:
    config = tmp_path / "archiver.toml"
    config.write_text('[archiver]\ndest = "s3://from-file/p"\nmax_rps = 10\nconcurrency = 4\n')
    env = {"ULTRAVOX_API_KEY": KEY, "ARCHIVE_DEST": "s3://from-env/p", "ARCHIVER_MAX_RPS": "20"}
    settings = load_settings({"max_rps": 30.0, "config_file": config}, env)
    assert settings.max_rps == 30.0
    assert settings.dest == "s3://from-env/p"
    assert settings.concurrency == 4
    assert settings.api_key == Secret(KEY)


def test_defaults() -> None:
    settings = load_settings({}, {"ULTRAVOX_API_KEY": KEY})
    assert settings.api_base_url == "https://api.ultravox.ai/api"
    assert settings.dest == "./archive"
    assert settings.max_rps == 100.0


def test_key_file_flag_wins_over_env(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("fromfile." + "y" * 32 + "\n")
    settings = load_settings({"api_key_file": key_file}, {"ULTRAVOX_API_KEY": KEY})
    assert settings.api_key.reveal() == "fromfile." + "y" * 32


def test_missing_key_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="ULTRAVOX_API_KEY"):
        load_settings({}, {})


def test_key_never_in_repr() -> None:
    settings = load_settings({}, {"ULTRAVOX_API_KEY": KEY})
    assert KEY not in repr(settings)
    assert KEY not in str(settings.api_key)
    assert KEY not in f"{settings.api_key}"


def test_key_in_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'api_key = "{KEY}"\n')
    with pytest.raises(ConfigError, match="api_key_file"):
        load_settings({"config_file": config}, {})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"api_base_url": "ftp://x"}, "http"),
        ({"max_rps": 0.0}, "max-rps"),
        ({"concurrency": 0}, "concurrency"),
    ],
)
def test_invalid_values(flags: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(flags, {"ULTRAVOX_API_KEY": KEY})


def test_key_with_newline_is_refused() -> None:
    with pytest.raises(ConfigError, match="whitespace"):
        load_settings({}, {"ULTRAVOX_API_KEY": "abc\r\nX-Evil: 1"})


def test_unknown_setting_in_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="colour"):
        load_settings({"config_file": config}, {"ULTRAVOX_API_KEY": KEY})


def test_recording_give_up_days_from_env_and_flag() -> None:
    env = {"ULTRAVOX_API_KEY": KEY, "ARCHIVER_RECORDING_GIVE_UP_DAYS": "3.5"}
    assert load_settings({}, {"ULTRAVOX_API_KEY": KEY}).recording_give_up_days == 7.0
    assert load_settings({}, env).recording_give_up_days == 3.5
    assert load_settings({"recording_give_up_days": 0.0}, env).recording_give_up_days == 0.0
    with pytest.raises(ConfigError, match="recording-give-up-days"):
        load_settings({"recording_give_up_days": -1.0}, env)


def test_values_from_env_and_file_take_each_field_type(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    # TOML gives numbers and dates their own types; the environment gives text.
    config.write_text(f'spool_dir = "{tmp_path}"\nsince = 2026-01-05\npage_size = 50\nretry_max_s = 3\n')
    env = {
        "ULTRAVOX_API_KEY": KEY,
        "ARCHIVER_CONCURRENCY": "7",
        "ARCHIVER_LOCK_WAIT_S": "2.5",
        "ULTRAVOX_API_BASE_URL": "http://127.0.0.1:9/api/",
    }
    settings = load_settings({"config_file": config}, env)
    assert settings.concurrency == 7 and isinstance(settings.concurrency, int)
    assert settings.lock_wait_s == 2.5
    assert settings.page_size == 50
    assert settings.retry_max_s == 3.0 and isinstance(settings.retry_max_s, float)
    assert settings.spool_dir == tmp_path
    assert settings.since == date(2026, 1, 5)
    assert settings.api_base_url == "http://127.0.0.1:9/api"
    assert load_settings({}, {**env, "ARCHIVER_SINCE": "2026-02-01"}).since == date(2026, 2, 1)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ARCHIVER_CONCURRENCY": "4.5"}, "concurrency must be a whole number, got '4.5'"),
        ({"ARCHIVER_MAX_RPS": "fast"}, "max_rps must be a number, got 'fast'"),
        ({"ARCHIVER_SINCE": "01/02/2026"}, "since must be a date YYYY-MM-DD, got '01/02/2026'"),
    ],
)
def test_a_bad_value_names_the_setting_and_the_value(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({}, {"ULTRAVOX_API_KEY": KEY, **env})
    assert str(caught.value) == message


def test_a_bad_value_in_the_file_names_the_setting(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[archiver]\nmax_attempts = "many"\n')
    with pytest.raises(ConfigError, match="max_attempts must be a whole number, got 'many'"):
        load_settings({"config_file": config}, {"ULTRAVOX_API_KEY": KEY})
    config.write_text("[archiver]\nspool_dir = 3\n")
    with pytest.raises(ConfigError, match="spool_dir must be a path, got 3"):
        load_settings({"config_file": config}, {"ULTRAVOX_API_KEY": KEY})


def test_defaults_are_the_ones_settings_declares() -> None:
    defaults = setting_defaults()
    assert "api_key" not in defaults  # required: there is no default key
    settings = load_settings({}, {"ULTRAVOX_API_KEY": KEY})
    assert {name: getattr(settings, name) for name in defaults} == defaults
    assert defaults["max_rps"] == 100.0 and defaults["since"] is None


def test_worker_id_comes_from_flag_or_env_and_must_be_plain_text() -> None:
    env = {"ULTRAVOX_API_KEY": KEY, "ARCHIVER_WORKER_ID": "nightly-sync"}
    assert load_settings({}, env).worker_id == "nightly-sync"
    assert load_settings({"worker_id": "job-7"}, env).worker_id == "job-7"
    assert load_settings({}, {"ULTRAVOX_API_KEY": KEY}).worker_id is None
    for bad in ("", " padded", "two\nlines", "x" * 201):
        with pytest.raises(ConfigError, match="--worker-id"):
            load_settings({"worker_id": bad}, env)


@pytest.mark.parametrize(
    "name", ["api_key", "api-key", "API_KEY", "Api-Key", "apiKey", "APIKEY", "api.key", "ultravox_api_key"]
)
@pytest.mark.parametrize("section", ["", "[archiver]\n"])
def test_the_key_in_a_config_file_is_refused_in_every_spelling(
    tmp_path: Path, name: str, section: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'{section}"{name}" = "{KEY}"\n')
    with pytest.raises(ConfigError, match="api_key_file") as caught:
        load_settings({"config_file": config}, {"ULTRAVOX_API_KEY": KEY})
    assert str(config) in str(caught.value)
    assert KEY not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://api.ultravox.ai/api",
        "http://10.0.0.5/api",
        "http://[2001:db8::1]/api",
        "http://127.0.0.1.example.com/api",
    ],
)
def test_a_non_loopback_http_base_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="https unless"):
        load_settings({"api_base_url": url}, {"ULTRAVOX_API_KEY": KEY})


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8765/api",
        "http://localhost:1/api",
        "http://[::1]:9/api",
        "https://api.ultravox.ai/api",
    ],
)
def test_loopback_http_and_any_https_base_url_are_accepted(url: str) -> None:
    assert load_settings({"api_base_url": url}, {"ULTRAVOX_API_KEY": KEY}).api_base_url == url


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ARCHIVER_S3_SSE": "aes256"}, "s3_sse must be AES256 or aws:kms"),
        ({"ARCHIVER_S3_SSE_KMS_KEY_ID": "alias/x"}, "needs s3_sse = aws:kms"),
        ({"ARCHIVER_S3_EXPECTED_BUCKET_OWNER": "12345"}, "12-digit"),
    ],
)
def test_bad_s3_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({}, {"ULTRAVOX_API_KEY": KEY, **env})


def test_s3_settings_from_env() -> None:
    env = {
        "ULTRAVOX_API_KEY": KEY,
        "ARCHIVER_S3_SSE": "aws:kms",
        "ARCHIVER_S3_SSE_KMS_KEY_ID": "alias/archive",
        "ARCHIVER_S3_EXPECTED_BUCKET_OWNER": "123456789012",
    }
    settings = load_settings({}, env)
    assert (settings.s3_sse, settings.s3_sse_kms_key_id, settings.s3_expected_bucket_owner) == (
        "aws:kms",
        "alias/archive",
        "123456789012",
    )
