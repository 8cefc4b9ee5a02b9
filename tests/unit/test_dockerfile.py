"""The Dockerfile builds what the tests check: it runs the same build and install scripts that
tests/integration/test_image_install.py runs, on a base pinned by tag, as the non-root user the job
files expect, with the archiver as the entry point. (No container builder runs where the tests do;
these are the facts about the image that can be checked without one.)"""

from __future__ import annotations

import re
from pathlib import Path

from support.job_files import kubernetes_documents, pod_spec

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
# Instructions with their continuation lines joined, comments dropped.
INSTRUCTIONS = [
    line.strip()
    for line in re.sub(r"\\\n\s*", " ", DOCKERFILE).splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]


def _instructions(keyword: str) -> list[str]:
    return [line[len(keyword) :].strip() for line in INSTRUCTIONS if line.split()[0] == keyword]


def test_the_base_image_is_pinned_to_a_patch_release_of_python_311_slim() -> None:
    (base,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    assert _instructions("FROM") == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE}"]


def test_the_image_builds_and_installs_with_the_scripts_the_tests_run() -> None:
    runs = " ".join(_instructions("RUN"))
    assert "build-image-wheel" in runs
    assert "install-image-packages" in runs and "requirements.lock" in runs
    assert "pip install" not in runs  # every install goes through the scripts
    for script in ("build-image-wheel", "install-image-packages"):
        assert "--require-hashes" in (ROOT / "scripts" / script).read_text()


def test_the_image_runs_the_archiver_as_the_user_the_job_files_expect() -> None:
    (user,) = _instructions("USER")
    uid = int(user.split(":")[0])  # numeric, so that runAsNonRoot can check it
    assert uid != 0
    for _, document in kubernetes_documents():
        assert pod_spec(document)["securityContext"]["runAsUser"] == uid
    assert _instructions("ENTRYPOINT") == ['["ultravox-archiver"]']


def test_the_build_context_holds_only_what_the_image_is_built_from() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    # Everything excluded first, then only the sources re-included.
    first_included = min(i for i, line in enumerate(ignore) if line.startswith("!"))
    assert "*" in ignore[:first_included]
    included = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = set()
    for line in _instructions("COPY"):
        if line.startswith("--from"):
            continue
        copied.update(source.rstrip("/") for source in line.split()[:-1])
    assert copied <= included
