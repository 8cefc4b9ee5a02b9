"""The scheduling examples in jobs/ stay in step with the CLI and the image: each runs the archiver's
image of this version (never an install at start-up), every command line they give its entry point
parses (commands, flags, values), every setting they pass through the environment is one the
archiver reads (or the standard AWS chain does), and the Kubernetes manifests are valid objects of
the Kubernetes API."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
from support.job_files import (
    CRON_FILE,
    JOBS,
    JobRun,
    all_runs,
    image_tag,
    job_files,
    kubernetes_documents,
    pod_spec,
)

from etl.cli import main
from etl.config import ENV_VARS

# Read by botocore's credential and configuration chain, not by us.
_AWS_ENV = re.compile(r"AWS_[A-Z_]+")
# The oldest Kubernetes the manifests claim (backoffLimitPerIndex is beta and on by default from
# 1.29) and the newest the validator bundles, which catches a field since removed.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
RUNS = all_runs()


def parse(argv: tuple[str, ...] | list[str]) -> None:
    """Parse like click would at run time; raises click.UsageError on an unknown command or flag."""
    name, *rest = argv
    with click.Context(main, info_name="ultravox-archiver") as parent:
        command = main.get_command(parent, name)
        if command is None:
            raise click.UsageError(f"no such command: {name}")
        command.make_context(name, rest, parent=parent).close()


def _run_id(run: JobRun) -> str:
    return f"{run.file}:{run.name}"


def test_every_job_file_runs_the_archiver() -> None:
    files = {run.file for run in RUNS}
    assert files == {str(path.relative_to(JOBS)) for path in job_files()}


@pytest.mark.parametrize("run", RUNS, ids=_run_id)
def test_every_command_line_parses(run: JobRun) -> None:
    parse(run.argv)


def test_a_misspelled_flag_would_be_caught() -> None:
    with pytest.raises(click.UsageError):
        parse(["sync", "--log-formats", "json"])
    with pytest.raises(click.UsageError):
        parse(["archive", "--since", "2025-01-01"])


@pytest.mark.parametrize("run", RUNS, ids=_run_id)
def test_every_job_runs_the_image_of_this_version(run: JobRun) -> None:
    # The tag is pyproject's version: a release bumps the package and every job file together.
    assert run.image == image_tag()


@pytest.mark.parametrize("path", job_files(), ids=lambda p: str(p.relative_to(JOBS)))
def test_no_job_installs_anything_at_start_up(path: Path) -> None:
    text = path.read_text()
    assert "pip install" not in text and "pip3 install" not in text
    # Every image a file names is the archiver's, of this version.
    images = set(re.findall(r"ghcr\.io/[\w./-]+:[\w.-]+", text))
    assert images == {image_tag()}


@pytest.mark.parametrize("run", RUNS, ids=_run_id)
def test_jobs_pass_only_settings_the_archiver_reads(run: JobRun) -> None:
    unknown = {name for name in set(run.env) - set(ENV_VARS.values()) if not _AWS_ENV.fullmatch(name)}
    assert not unknown, sorted(unknown)
    # The key comes from a mounted Secret file, never as a literal value in a job file.
    assert "ULTRAVOX_API_KEY" not in run.env
    assert {"ULTRAVOX_API_KEY_FILE", "ARCHIVE_DEST"} <= set(run.env)


def test_the_cron_environment_file_is_one_docker_reads() -> None:
    text = CRON_FILE.read_text()
    # docker's --env-file takes NAME=value lines: an `export` or quotes would end up in the value.
    assert "export " not in text
    assert "--env-file /etc/ultravox-archiver.env" in text


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    ("path", "document"),
    list(kubernetes_documents()),
    ids=lambda value: value.name if isinstance(value, Path) else "",
)
def test_kubernetes_manifests_validate(path: Path, document: dict[str, Any], version: str) -> None:
    # strict: a misspelled field (an unknown property) fails too, not only a wrong type.
    kubernetes_validate.validate(document, version, strict=True)


def test_the_validator_catches_a_misspelled_field() -> None:
    _, document = next(iter(kubernetes_documents()))
    document["spec"]["concurrencyPolicyy"] = "Forbid"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(document, KUBERNETES_VERSIONS[0], strict=True)


def _documents_of_kind(kind: str) -> list[dict[str, Any]]:
    return [document for _, document in kubernetes_documents() if document["kind"] == kind]


@pytest.mark.parametrize("document", list(kubernetes_documents()), ids=lambda d: d[0].name)
def test_kubernetes_pods_run_as_the_images_user_on_a_read_only_root(document: tuple[Path, Any]) -> None:
    pod = pod_spec(document[1])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's USER
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # The spool ($TMPDIR) is the only place the archiver writes: an emptyDir on /tmp.
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # The key from a Secret, mounted read-only where ULTRAVOX_API_KEY_FILE points.
    key_file = {item["name"]: item["value"] for item in container["env"]}["ULTRAVOX_API_KEY_FILE"]
    key_dir = str(Path(key_file).parent)
    assert "secret" in volumes[mounts[key_dir]]
    # Memory from the benchmark's peak RSS (~250 MiB): requested with headroom, and a limit.
    assert container["resources"]["requests"]["memory"] == "320Mi"
    assert container["resources"]["limits"]["memory"] == "512Mi"


def test_the_sync_cronjob_never_runs_twice_at_once() -> None:
    (cronjob,) = _documents_of_kind("CronJob")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = pod_spec(cronjob)["containers"]
    assert container["args"][0] == "sync"


def test_the_backfill_is_an_indexed_job_with_one_shard_per_index() -> None:
    (job,) = _documents_of_kind("Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    (container,) = pod_spec(job)["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    # Kubernetes sets JOB_COMPLETION_INDEX (0 .. completions-1); the count must match.
    assert int(env["ARCHIVER_SHARD_COUNT"]) == spec["completions"]
    assert "JOB_COMPLETION_INDEX" not in env
    assert container["args"][0] == "backfill" and "--shard" not in container["args"]


def test_the_airflow_backfill_maps_over_every_shard_once() -> None:
    shards = [run.argv for run in RUNS if run.file.startswith("airflow/") and run.argv[0] == "backfill"]
    assert len(shards) > 1
    count = len(shards)
    assert sorted(argv[argv.index("--shard") + 1] for argv in shards) == sorted(
        f"{index}/{count}" for index in range(count)
    )
    # Apart from --shard, every shard runs the same command.
    assert len({argv[: argv.index("--shard")] for argv in shards}) == 1


@pytest.mark.parametrize("name", ["README.md", "Dockerfile", "jobs/README.md"])
def test_the_docs_name_the_same_image_tag(name: str) -> None:
    text = (JOBS.parent / name).read_text()
    assert set(re.findall(r"ghcr\.io/ultravox-archiver/ultravox-archiver:[\w.-]+", text)) == {image_tag()}
