"""requirements/image.lock, read: the image's Python dependencies, pinned with hashes
(pip-compile --generate-hashes; `make lock`)."""

from __future__ import annotations

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import ROOT

LOCK = ROOT / "requirements" / "image.lock"


def locked() -> dict[str, tuple[Version, list[str]]]:
    """The lock's pins: canonical name -> (version, its sha256 hashes). pip-compile's
    format: ``name==version \\`` then ``--hash=sha256:...`` lines, ``#`` comments."""
    pins: dict[str, tuple[Version, list[str]]] = {}
    current = ""
    for line in LOCK.read_text().splitlines():
        text = line.strip().removesuffix("\\").strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("--hash="):
            assert current, f"{LOCK.name}: a hash before any requirement: {line!r}"
            algorithm, _, digest = text.removeprefix("--hash=").partition(":")
            assert algorithm == "sha256" and len(digest) == 64, line
            pins[current][1].append(digest)
            continue
        assert not text.startswith("-"), f"{LOCK.name}: an option pip would apply: {line!r}"
        requirement = Requirement(text)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{LOCK.name}: not a pin: {line!r}"
        current = canonicalize_name(requirement.name)
        assert current not in pins, f"{LOCK.name}: {current} pinned twice"
        pins[current] = (Version(specifier.version), [])
    return pins
