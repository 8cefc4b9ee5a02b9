"""The CLI's options and etl.config stay one source: each option names the environment variable and
shows the default `Settings` has, and the README's settings table says the same."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
from click.testing import CliRunner

from etl.cli import main
from etl.config import ENV_VARS, setting_defaults

README = Path(__file__).resolve().parents[2] / "README.md"
_ROW = re.compile(r"^\| `(--[a-z-]+)`(?: \((\w+)\))? \| ([^|]*) \| ([^|]*) \|", re.MULTILINE)


def options(command: str) -> dict[str, click.Option]:
    params = main.commands[command].params
    return {opt: p for p in params if isinstance(p, click.Option) for opt in p.opts}


def test_every_setting_option_names_its_env_var_and_shows_the_settings_default() -> None:
    defaults = setting_defaults()
    for command in ("backfill", "sync", "status"):
        for option in options(command).values():
            assert option.name is not None
            if command == "backfill" and option.name in ("since", "until"):
                continue  # the window to archive, not the `since` setting of a first sync
            if option.name in ENV_VARS:
                assert option.envvar == ENV_VARS[option.name], option.name
                assert option.show_envvar
            if defaults.get(option.name) is not None:
                assert option.default == defaults[option.name], option.name
                assert option.show_default


def test_only_the_key_and_the_download_concurrency_have_no_option() -> None:
    envvars = {option.envvar for command in ("sync", "backfill") for option in options(command).values()}
    # The key never goes on a command line (ps shows it); downloads rarely need tuning. (The shard
    # count is backfill's only: sync is not sharded.)
    assert set(ENV_VARS.values()) - envvars == {"ULTRAVOX_API_KEY", "ARCHIVER_DOWNLOAD_CONCURRENCY"}


def test_help_shows_the_env_var_and_the_default() -> None:
    result = CliRunner().invoke(main, ["sync", "--help"], terminal_width=200)
    assert result.exit_code == 0
    line = next(line for line in result.output.splitlines() if "--refresh-days" in line)
    assert "[env var: ARCHIVER_REFRESH_DAYS; default: 2.0]" in line
    assert "--crash-at" not in result.output


def test_the_readme_settings_table_matches_the_options() -> None:
    rows = _ROW.findall(README.read_text())
    assert len(rows) >= 10
    for flag, command, env_column, default_column in rows:
        option = options(command or "sync")[flag]
        named = set(re.findall(r"`([A-Z_]+)`", env_column))
        assert (option.envvar in named) if option.envvar else not named, flag
        shown = default_column.strip().strip("`")
        if shown == "—":
            assert option.default is None, flag
        elif isinstance(option.default, float):
            assert float(shown) == option.default, flag
        else:
            assert shown == str(option.default), flag


def test_no_test_only_option_is_left_in_the_cli() -> None:
    result = CliRunner().invoke(main, ["sync", "--crash-at", "put:calls/:1"])
    assert result.exit_code == 2
    assert "--crash-at" in result.output and "No such option" in result.output


def test_backfill_and_sync_both_take_the_lease_options() -> None:
    # A retried crashed backfill needs them as much as a retried sync (README: after a kill).
    for command in ("backfill", "sync"):
        assert {"--lock-wait", "--worker-id"} <= set(options(command)), command


def test_every_option_of_sync_and_backfill_has_a_row_in_the_readme_settings_table() -> None:
    table = README.read_text().split("### Settings", 1)[1].split("\n### ", 1)[0]
    # --config is the paragraph above the table; backfill's window is its own usage line.
    described_elsewhere = {"--config", "--help", "--until"}
    for command in ("sync", "backfill"):
        for flag in set(options(command)) - described_elsewhere:
            if command == "backfill" and flag == "--since":
                continue
            assert f"| `{flag}`" in table, f"{command} {flag}"


def test_help_names_both_ways_to_give_the_key() -> None:
    for command in ("sync", "backfill"):
        text = CliRunner().invoke(main, [command, "--help"], terminal_width=200).output
        assert "ULTRAVOX_API_KEY_FILE" in text and "$ULTRAVOX_API_KEY" in text


def test_a_configuration_error_is_a_json_line_beside_json_logs_and_plain_text_for_a_person() -> None:
    # No key anywhere: the settings cannot be loaded, before any work.
    env = {"ULTRAVOX_API_KEY": "", "ULTRAVOX_API_KEY_FILE": "", "ARCHIVER_CONFIG": ""}
    as_json = CliRunner().invoke(main, ["sync", "--log-format", "json"], env=env)
    assert as_json.exit_code == 2, as_json.output
    [line] = [json.loads(text) for text in as_json.output.splitlines() if text.strip()]
    assert (line["msg"], line["exit_code"]) == ("stopped", 2)
    assert "key" in line["error"].lower()
    as_text = CliRunner().invoke(main, ["sync", "--log-format", "text"], env=env)
    assert as_text.exit_code == 2, as_text.output
    assert as_text.output.startswith("error: ")
