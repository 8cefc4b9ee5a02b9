"""requirements.lock, what the image installs with --require-hashes, agrees with pyproject's runtime
dependencies: each is pinned there, at a version its specifier allows, with hashes; and the README
gives the command that regenerates it."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
BUILD_LOCK = ROOT / "requirements-build.lock"  # the image builder's build backend
# `name==version ; marker \` followed by `--hash=sha256:...` lines (pip's hash-checking format).
_ENTRY = re.compile(r"^(?P<requirement>[A-Za-z0-9][^\s\\]*(?: ;[^\\]+)?)\s*\\?\s*$")
_HASH = re.compile(r"^\s+--hash=sha256:[0-9a-f]{64}\s*\\?\s*$")


@dataclass(frozen=True)
class Pin:
    requirement: Requirement
    hashes: int

    @property
    def version(self) -> Version:
        (specifier,) = self.requirement.specifier
        assert specifier.operator == "==", self.requirement
        return Version(specifier.version)


def read_lock(text: str) -> dict[str, Pin]:
    pins: dict[str, Pin] = {}
    current: Requirement | None = None
    hashes = 0
    for line in [*text.splitlines(), ""]:
        if _HASH.match(line):
            hashes += 1
            continue
        if current is not None:
            pins[canonicalize_name(current.name)] = Pin(current, hashes)
            current, hashes = None, 0
        entry = _ENTRY.match(line)
        if entry and not line.lstrip().startswith("#"):
            current = Requirement(entry["requirement"])
    return pins


def runtime_dependencies(pyproject: str) -> list[Requirement]:
    return [Requirement(text) for text in tomllib.loads(pyproject)["project"]["dependencies"]]


def build_dependencies(pyproject: str) -> list[Requirement]:
    return [Requirement(text) for text in tomllib.loads(pyproject)["build-system"]["requires"]]


def disagreements(
    pyproject: str, lock: str, wanted: Callable[[str], list[Requirement]] = runtime_dependencies
) -> list[str]:
    """Each dependency `wanted` names that the lock does not pin at an allowed version, with hashes."""
    pins = read_lock(lock)
    problems = []
    for requirement in wanted(pyproject):
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement.name}: not in the lock")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{requirement.name}: locked at {pin.version}, pyproject asks {requirement}")
        elif pin.hashes == 0:
            problems.append(f"{requirement.name}: no hash")
    return problems


def test_every_runtime_dependency_is_pinned_in_the_lock_at_an_allowed_version() -> None:
    assert disagreements((ROOT / "pyproject.toml").read_text(), LOCK.read_text()) == []


def test_the_build_backend_is_pinned_in_the_build_lock_at_an_allowed_version() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert disagreements(pyproject, BUILD_LOCK.read_text(), build_dependencies) == []


@pytest.mark.parametrize("lock", [LOCK, BUILD_LOCK], ids=lambda path: path.name)
def test_every_pin_in_the_locks_is_exact_and_hashed(lock: Path) -> None:
    pins = read_lock(lock.read_text())
    assert pins
    for name, pin in pins.items():
        assert pin.hashes > 0, name  # pip --require-hashes refuses an unhashed line
        assert pin.version  # exactly one == specifier


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda p: p.replace('"click>=8.1",', '"click>=8.1",\n    "rich>=13",'), "rich: not in the lock"),
        (lambda p: p.replace('"httpx>=0.27"', '"httpx>=99"'), "httpx: locked at"),
    ],
    ids=["a dependency added to pyproject only", "a specifier the lock's pin no longer meets"],
)
def test_a_pyproject_change_without_a_new_lock_is_caught(change: Callable[[str], str], problem: str) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    changed = change(pyproject)
    assert changed != pyproject
    (found,) = disagreements(changed, LOCK.read_text())
    assert found.startswith(problem)


@pytest.mark.parametrize("lock", [LOCK, BUILD_LOCK], ids=lambda path: path.name)
def test_the_readme_gives_the_command_that_regenerates_the_lock(lock: Path) -> None:
    (command,) = re.findall(r"^#\s+(uv pip compile .*)$", lock.read_text(), re.MULTILINE)
    assert command in (ROOT / "README.md").read_text()
