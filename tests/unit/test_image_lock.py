"""requirements/image.lock against pyproject.toml and this environment: the lock pins
every runtime dependency (pyproject's, their extras', and theirs, as installed here) at
a version every requirement on it admits, with hashes; and the tests run on the pinned
versions (scripts/bootstrap.sh installs with the pins as constraints), the ones the image
ships. A change to pyproject's dependencies without `make lock` fails here."""

from __future__ import annotations

import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import ROOT
from tests.image_lock import locked


def runtime_closure() -> dict[str, list[Requirement]]:
    """Every distribution pyproject's [project] dependencies need here (markers evaluated
    for this interpreter, extras followed), from the installed metadata: canonical name ->
    the requirements on it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [(Requirement(text), "") for text in project["dependencies"]]
    needed: dict[str, list[Requirement]] = {}
    seen: set[tuple[str, str]] = set()
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        needed.setdefault(name, []).append(requirement)
        for wanted in ["", *sorted(requirement.extras)]:
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            todo += [(Requirement(text), wanted) for text in metadata.requires(name) or []]
    return needed


def test_every_line_is_a_pin_with_hashes() -> None:
    pins = locked()
    assert pins
    assert all(hashes for _, hashes in pins.values()), [n for n, (_, h) in pins.items() if not h]


def test_the_lock_pins_exactly_the_runtime_dependencies_at_versions_they_admit() -> None:
    pins = locked()
    needed = runtime_closure()
    assert sorted(needed) == sorted(pins), "requirements/image.lock is stale: run `make lock`"
    refused = {
        name: [str(r) for r in requirements if not r.specifier.contains(pins[name][0], True)]
        for name, requirements in needed.items()
    }
    assert not {n: r for n, r in refused.items() if r}, "run `make lock`"


@pytest.mark.parametrize("name", sorted(locked()))
def test_the_tests_run_on_the_pinned_version(name: str) -> None:
    assert Version(metadata.version(name)) == locked()[name][0]
