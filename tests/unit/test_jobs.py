"""The scheduling examples in jobs/ stay in step with the CLI: every `ultravox-archiver` command
line they contain parses (commands, flags, values), and every setting they pass through the
environment is one the archiver reads (or the standard AWS chain does)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from etl.cli import main
from etl.config import ENV_VARS

JOBS = Path(__file__).resolve().parents[2] / "jobs"
# A command line ends where the shell (&&, |, ;, >), a line or a quoted string ends.
_INVOCATION = re.compile(r"ultravox-archiver\s+([^&|;>\n\"'`]+)")
# Read by botocore's credential and configuration chain, not by us.
_AWS_ENV = re.compile(r"AWS_[A-Z_]+")
COMMANDS = frozenset(main.commands)


def invocations(text: str) -> list[list[str]]:
    """The argument lists of every `ultravox-archiver ...` command line in `text`."""
    found = (shlex.split(match.group(1)) for match in _INVOCATION.finditer(text))
    # "ultravox-archiver" also names files and locks (/run/lock/ultravox-archiver.lock): only a
    # word that is one of our commands makes an invocation.
    return [words for words in found if words and words[0] in COMMANDS]


def parse(argv: list[str]) -> None:
    """Parse like click would at run time; raises click.UsageError on an unknown command or flag."""
    name, *rest = argv
    with click.Context(main, info_name="ultravox-archiver") as parent:
        command = main.get_command(parent, name)
        if command is None:
            raise click.UsageError(f"no such command: {name}")
        command.make_context(name, rest, parent=parent).close()


def kubernetes_containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((JOBS / "kubernetes").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            spec = document["spec"]
            pod = spec["jobTemplate"]["spec"]["template"] if "jobTemplate" in spec else spec["template"]
            for container in pod["spec"]["containers"]:
                yield path.name, container


def job_files() -> list[Path]:
    return sorted(p for p in JOBS.rglob("*") if p.is_file() and p.name != "README.md")


@pytest.mark.parametrize("path", job_files(), ids=lambda p: str(p.relative_to(JOBS)))
def test_every_command_line_parses(path: Path) -> None:
    commands = invocations(path.read_text())
    assert commands, f"{path.name} runs no ultravox-archiver command"
    for argv in commands:
        parse(argv)


def test_a_misspelled_flag_would_be_caught() -> None:
    with pytest.raises(click.UsageError):
        parse(["sync", "--log-formats", "json"])
    with pytest.raises(click.UsageError):
        parse(["archive", "--since", "2025-01-01"])


def test_kubernetes_jobs_pass_only_settings_the_archiver_reads() -> None:
    known = set(ENV_VARS.values())
    containers = list(kubernetes_containers())
    assert containers
    for file_name, container in containers:
        names = {item["name"] for item in container.get("env", [])}
        unknown = {name for name in names - known if not _AWS_ENV.fullmatch(name)}
        assert not unknown, f"{file_name}: {sorted(unknown)}"
        # The key comes from a mounted Secret file, never as a literal value in the manifest.
        assert "ULTRAVOX_API_KEY" not in names


def test_the_airflow_dag_is_valid_python_and_passes_only_settings_the_archiver_reads() -> None:
    path = JOBS / "airflow" / "ultravox_archiver_dag.py"
    source = path.read_text()
    compile(source, str(path), "exec")  # Airflow itself is not a dependency: syntax, not import
    names = set(re.findall(r'"([A-Z][A-Z0-9_]+)":', source))
    assert names == {"ULTRAVOX_API_KEY_FILE", "ARCHIVE_DEST", "ARCHIVER_SINCE"}
    assert names <= set(ENV_VARS.values())


def test_cron_environment_file_names_only_settings_the_archiver_reads() -> None:
    text = (JOBS / "cron" / "ultravox-archiver.cron").read_text()
    names = set(re.findall(r"export ([A-Z_]+)=", text))
    assert names
    unknown = {name for name in names - set(ENV_VARS.values()) if not _AWS_ENV.fullmatch(name)}
    assert not unknown, sorted(unknown)
