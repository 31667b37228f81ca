"""The ``PolicyEngine`` protocol: what the pipeline needs from any Rego engine.

Implementations: :class:`capgate.policy.embedded.EmbeddedEngine` (rego-cpp through
regopy, the default). A remote-OPA engine comes with the bundles issue (DESIGN §9).
"""

from __future__ import annotations

from typing import Any, Protocol

from capgate.decision.model import PolicyResult


class PolicyEngine(Protocol):
    @property
    def revision(self) -> str:
        """Revision of the active bundle (its ``.manifest`` ``revision``)."""
        ...

    def evaluate(self, input_document: dict[str, Any]) -> PolicyResult:
        """Evaluate the entrypoint on ``input_document``.

        Raises:
            PolicyError: evaluation failed, or the result is undefined or malformed.
        """
        ...
