"""Evaluate recorded policy inputs against a bundle, in the embedded engine.

The bundle is loaded and compiled once (``load_bundle`` + ``EmbeddedEngine``, no
signature check: the bundle is a local candidate, not one being activated). Each
input is evaluated as recorded, ``request_time`` and verified ``approval`` facts
included; a :class:`~capgate.errors.PolicyError` becomes the outcome ``error``.

    candidate = Evaluator.load(Path("bundles/agentdojo-banking"))
    candidate.outcome(record.input)   # PolicyOutcome("allow")
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from capgate.errors import PolicyError
from capgate.impact.outcome import PolicyOutcome, error_outcome, result_outcome
from capgate.policy.bundle import load_bundle
from capgate.policy.embedded import EmbeddedEngine

DEFAULT_ENTRYPOINT = "data.capgate.authz.decision"


class Evaluator:
    """One compiled bundle. Not thread-safe (rego-cpp): one per thread."""

    def __init__(self, engine: EmbeddedEngine, source: str) -> None:
        self._engine = engine
        self.source = source

    @classmethod
    def load(cls, path: Path, entrypoint: str = DEFAULT_ENTRYPOINT) -> Evaluator:
        """Load and compile the bundle at ``path`` (a directory or ``.tar.gz``).
        Raises :class:`~capgate.errors.BundleError`."""
        return cls(EmbeddedEngine(load_bundle(path), entrypoint), str(path))

    @property
    def revision(self) -> str:
        return self._engine.revision

    def outcome(self, input_document: Mapping[str, Any]) -> PolicyOutcome:
        """The policy's outcome for ``input_document``; ``error`` if evaluation fails."""
        try:
            return result_outcome(self._engine.evaluate(dict(input_document)))
        except PolicyError as exc:
            return error_outcome(str(exc))
