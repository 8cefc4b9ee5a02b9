"""The archiver runs the files in jobs/ would start, read from the files themselves: which image,
which arguments to its entry point (`ultravox-archiver`), which environment. Shared by the unit
tests (every command parses, every variable is read) and the end-to-end test (each command runs).

Airflow is not a dependency of the tests: the DAG file is read as Python source. Its module-level
constants that are plain literals (IMAGE, SYNC, BACKFILL, SHARDS, ENV) are evaluated, and the
expressions the operators are given are evaluated against them; nothing of Airflow is imported."""

from __future__ import annotations

import ast
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
JOBS = ROOT / "jobs"
IMAGE_REPOSITORY = "ghcr.io/ultravox-archiver/ultravox-archiver"
CRON_FILE = JOBS / "cron" / "ultravox-archiver.cron"
DAG_FILE = JOBS / "airflow" / "ultravox_archiver_dag.py"


@dataclass(frozen=True)
class JobRun:
    """One archiver process a job file starts: `ultravox-archiver *argv` with `env` in `image`."""

    file: str  # relative to jobs/
    name: str
    image: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


def image_tag() -> str:
    """The tag every job runs: the package's version, so that a release bumps them together."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return f"{IMAGE_REPOSITORY}:{version}"


def kubernetes_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted((JOBS / "kubernetes").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            yield path, document


def pod_spec(document: Mapping[str, Any]) -> dict[str, Any]:
    spec = document["spec"]
    template = spec["jobTemplate"]["spec"]["template"] if "jobTemplate" in spec else spec["template"]
    pod: dict[str, Any] = template["spec"]
    return pod


def kubernetes_runs() -> Iterator[JobRun]:
    for path, document in kubernetes_documents():
        for container in pod_spec(document)["containers"]:
            # An overridden `command` would bypass the image's entry point (and could install things).
            assert "command" not in container, f"{path.name}: the container overrides the entry point"
            yield JobRun(
                file=str(path.relative_to(JOBS)),
                name=f"{document['metadata']['name']}/{container['name']}",
                image=container["image"],
                argv=tuple(str(arg) for arg in container["args"]),
                env={item["name"]: str(item["value"]) for item in container.get("env", [])},
            )


def cron_runs() -> Iterator[JobRun]:
    text = CRON_FILE.read_text()
    # docker's --env-file, shown commented under the cron line: NAME=value.
    env = dict(re.findall(r"^#\s+([A-Z][A-Z0-9_]*)=(\S+)", text, re.MULTILINE))
    for line in text.splitlines():
        if line.startswith("#") or "docker run" not in line:
            continue
        # The command ends where the shell's redirection starts.
        words = shlex.split(line.split(">>")[0])
        run = words.index("run", words.index("docker"))
        image_at = next(i for i, word in enumerate(words) if i > run and word.startswith(IMAGE_REPOSITORY))
        yield JobRun(
            file=str(CRON_FILE.relative_to(JOBS)),
            name=words[image_at + 1],
            image=words[image_at],
            argv=tuple(words[image_at + 1 :]),
            env=env,
        )


def _literal_constants(tree: ast.Module) -> dict[str, Any]:
    constants: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue  # not a literal (k8s models, Secret): not needed to know what runs
    return constants


def _evaluate(node: ast.expr, constants: Mapping[str, Any]) -> Any:
    """An expression of the DAG file (a name, a list comprehension over range) over its literals."""
    code = compile(ast.Expression(node), str(DAG_FILE), "eval")
    # The constants as globals: a comprehension's body sees its module's globals, not eval's locals.
    return eval(code, {"__builtins__": {"range": range}, **constants})


def _pod_settings(tree: ast.Module, constants: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of the DAG's shared POD dict that are plain values (image, env_vars)."""
    (pod,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id == "POD"
        and isinstance(node.value, ast.Dict)
    ]
    settings: dict[str, Any] = {}
    for key, value in zip(pod.keys, pod.values, strict=True):
        if isinstance(key, ast.Constant):
            try:
                settings[key.value] = _evaluate(value, constants)
            except NameError:
                continue
    return settings


def _task_id(call: ast.Call) -> str:
    return next(ast.literal_eval(k.value) for k in call.keywords if k.arg == "task_id")


def airflow_runs() -> Iterator[JobRun]:
    tree = ast.parse(DAG_FILE.read_text())
    constants = _literal_constants(tree)
    pod = _pod_settings(tree, constants)
    file = str(DAG_FILE.relative_to(JOBS))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        # KubernetesPodOperator(task_id=..., arguments=SYNC, **POD)
        if isinstance(node.func, ast.Name) and node.func.id == "KubernetesPodOperator":
            (arguments,) = [k.value for k in node.keywords if k.arg == "arguments"]
            yield JobRun(
                file, _task_id(node), pod["image"], tuple(_evaluate(arguments, constants)), pod["env_vars"]
            )
        # KubernetesPodOperator.partial(task_id=..., **POD).expand(arguments=[... for shard in ...])
        if isinstance(node.func, ast.Attribute) and node.func.attr == "expand":
            partial = node.func.value
            assert isinstance(partial, ast.Call)
            (arguments,) = [k.value for k in node.keywords if k.arg == "arguments"]
            for index, argv in enumerate(_evaluate(arguments, constants)):
                yield JobRun(
                    file, f"{_task_id(partial)}[{index}]", pod["image"], tuple(argv), pod["env_vars"]
                )


def all_runs() -> list[JobRun]:
    return [*kubernetes_runs(), *cron_runs(), *airflow_runs()]


def job_files() -> list[Path]:
    return sorted(p for p in JOBS.rglob("*") if p.is_file() and p.name != "README.md")
