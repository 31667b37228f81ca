"""The ``PolicyEngine`` protocol: what the pipeline needs from any Rego engine.

Implementations: :class:`capgate.policy.embedded.EmbeddedEngine` (rego-cpp through
regopy, the default) and :class:`capgate.policy.opa.OpaEngine` (a running OPA server
through opa-python-client's async client; DESIGN §5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from capgate.decision.model import PolicyResult


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One answer of the entrypoint, and the revision of the bundle that gave it."""

    result: PolicyResult
    revision: str


class PolicyEngine(Protocol):
    @property
    def revision(self) -> str:
        """Revision of the bundle this engine last answered with ("" when unknown)."""
        ...

    async def decide(self, input_document: dict[str, Any]) -> Evaluation:
        """Evaluate the entrypoint on ``input_document``.

        Raises:
            PolicyError: evaluation failed or timed out, or the result is undefined or
                malformed.
        """
        ...
