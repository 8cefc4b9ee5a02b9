"""`config show` (every setting in effect, where it came from, the key masked) and `--config` on every
command that reads settings."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from etl.cli import main

KEY = "abcdefgh." + "s" * 32


def test_config_show_says_where_each_setting_came_from_and_never_prints_the_key(tmp_path: Path) -> None:
    config = tmp_path / "archiver.toml"
    config.write_text('[archiver]\nrecording-wait = 30\ndest = "s3://from-file/p"\nlease_ttl_s = 90\n')
    env = {"ULTRAVOX_API_KEY": KEY, "ARCHIVER_CONCURRENCY": "5", "ARCHIVER_CONFIG": str(config)}
    result = CliRunner().invoke(main, ["config", "show", "--max-rps", "7", "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    assert KEY not in result.output
    shown = json.loads(result.output)
    assert shown["api-key"] == {"value": "********", "source": "env ULTRAVOX_API_KEY"}
    assert shown["max-rps"] == {"value": "7.0", "source": "flag --max-rps"}
    assert shown["concurrency"] == {"value": "5", "source": "env ARCHIVER_CONCURRENCY"}
    assert shown["recording-wait"] == {"value": "30.0", "source": f"file {config}"}
    assert shown["lease-ttl-s"] == {"value": "90.0", "source": f"file {config}"}
    assert shown["api-base-url"] == {"value": "https://api.ultravox.ai/api", "source": "default"}


def test_config_show_as_text_masks_a_key_from_a_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    result = CliRunner().invoke(main, ["config", "show", "--api-key-file", str(key_file)], env={})
    assert result.exit_code == 0, result.output
    assert KEY not in result.output and KEY[:9] not in result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("api-key ")]
    assert line.split() == ["api-key", "********", "key", "file", str(key_file), "(flag", "--api-key-file)"]


def test_config_show_reports_a_bad_file_as_a_configuration_error(tmp_path: Path) -> None:
    config = tmp_path / "archiver.toml"
    config.write_text("recording-wiat = 30\n")
    result = CliRunner().invoke(
        main, ["config", "show", "--config", str(config)], env={"ULTRAVOX_API_KEY": KEY}
    )
    assert result.exit_code == 2
    assert f"config file {config}: unknown key 'recording-wiat'" in result.output


def test_status_takes_its_destination_from_config(tmp_path: Path) -> None:
    dest = tmp_path / "from-config"
    config = tmp_path / "archiver.toml"
    config.write_text(f'dest = "{dest}"\n')
    result = CliRunner().invoke(main, ["status", "--config", str(config)], env={})
    assert str(dest) in result.output, result.output


def test_config_show_shows_settings_that_do_not_go_together_then_the_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["config", "show", "--max-rps", "-1"], env={"ULTRAVOX_API_KEY": ""})
    assert result.exit_code == 2
    rows = {line.split()[0]: line.split()[1:] for line in result.output.splitlines() if line[:1].isalpha()}
    assert rows["api-key"] == ["(none)", "default"]
    assert rows["max-rps"] == ["-1.0", "flag", "--max-rps"]
    assert "error: no API key" in result.output
