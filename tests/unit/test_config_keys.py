"""Config-file keys spelled like the flags, errors that name the file and the valid keys, where each
setting came from, and every setting documented in the README."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import click
import pytest

from etl.cli import main
from etl.config import ENV_VARS, Settings, flag_name, load_settings, load_settings_with_sources
from etl.errors import ConfigError

KEY = "abcdefgh." + "x" * 32
README = Path(__file__).resolve().parents[2] / "README.md"


def _from_file(tmp_path: Path, text: str) -> Settings:
    config = tmp_path / "archiver.toml"
    config.write_text(text)
    return load_settings({"config_file": config}, {"ULTRAVOX_API_KEY": KEY})


@pytest.mark.parametrize("key", ["recording-wait", "recording_wait", "recording_wait_s", "recording-wait-s"])
def test_a_key_may_be_spelled_like_its_flag_or_its_setting(tmp_path: Path, key: str) -> None:
    assert _from_file(tmp_path, f"[archiver]\n{key} = 3\n").recording_wait_s == 3.0


def test_dashes_work_for_every_key(tmp_path: Path) -> None:
    settings = _from_file(tmp_path, "max-rps = 7\nlock-wait = 2\nmax-run-time = 60\nlease-ttl-s = 30\n")
    assert (settings.max_rps, settings.lock_wait_s, settings.max_run_time_s) == (7.0, 2.0, 60.0)
    assert settings.lease_ttl_s == 30.0


def test_two_spellings_of_one_setting_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'recording-wait' and 'recording_wait_s' set the same setting"):
        _from_file(tmp_path, "recording-wait = 3\nrecording_wait_s = 4\n")


def test_an_unknown_key_is_named_with_its_file_and_the_valid_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        _from_file(tmp_path, "[archiver]\nrecording-wiat = 3\n")
    message = str(refused.value)
    assert f"config file {tmp_path / 'archiver.toml'}: unknown key 'recording-wiat'" in message
    valid = message.split("valid keys (- or _ alike): ")[1].split(", ")
    assert {"recording-wait", "max-rps", "api-key-file", "lease-ttl-s"} <= set(valid)
    assert "api-key" not in valid


def test_sources_say_where_each_setting_came_from(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    config.write_text(f'recording-wait = 3\nconcurrency = 4\napi_key_file = "{key_file}"\n')
    env = {"ARCHIVER_CONCURRENCY": "5", "ARCHIVER_CONFIG": str(config)}
    settings, sources = load_settings_with_sources({"max_rps": 9.0}, env)
    assert settings.api_key.reveal() == KEY
    assert sources["max_rps"] == "flag --max-rps"
    assert sources["concurrency"] == "env ARCHIVER_CONCURRENCY"
    assert sources["recording_wait_s"] == f"file {config}"
    assert sources["api_key"] == f"key file {key_file} (file {config})"
    assert sources["dest"] == "default"
    assert set(sources) == {f.name for f in fields(Settings)}


def _commands() -> list[click.Command]:
    found: list[click.Command] = []
    pending: list[click.Command] = [main]
    while pending:
        command = pending.pop()
        found.append(command)
        if isinstance(command, click.Group):
            pending.extend(command.commands.values())
    return found


def test_every_flag_of_a_setting_is_spelled_as_flag_name_says() -> None:
    # The config file accepts what flag_name() says; a flag spelled otherwise would not be accepted.
    names = {f.name for f in fields(Settings)} | {"api_key_file"}
    for command in _commands():
        for param in command.params:
            if isinstance(param, click.Option) and param.name in names:
                assert f"--{flag_name(param.name)}" in param.opts, (command.name, param.opts)


def test_every_setting_is_documented_in_the_readme() -> None:
    # Settings without a flag are accepted from the config file only; the README says so for each.
    readme = README.read_text()
    table = readme.split("### Settings", 1)[1].split("\n### ", 1)[0]
    for setting in fields(Settings):
        if setting.name == "api_key":
            continue
        documented = re.search(rf"`(--{flag_name(setting.name)}|{setting.name})`", table)
        assert documented, f"{setting.name} is not in README's settings tables"
        if setting.name in ENV_VARS:
            assert ENV_VARS[setting.name] in table, setting.name
