"""The active policy: which compiled bundle answers right now, if any.

Decisions read ``engine`` once per request, so a swap takes effect between requests.
"""

from __future__ import annotations

from capgate.observability.metrics import Metrics
from capgate.policy.engine import PolicyEngine


class ActivePolicy:
    """``kind``: the engine family, ``embedded`` or ``opa``."""

    def __init__(self, metrics: Metrics, kind: str = "embedded") -> None:
        self._engine: PolicyEngine | None = None
        self._metrics = metrics
        self._label: str | None = None
        self.kind = kind

    @property
    def engine(self) -> PolicyEngine | None:
        """The active engine, or ``None`` until a bundle has been activated."""
        return self._engine

    def activate(self, engine: PolicyEngine) -> None:
        """Make ``engine`` answer from the next decision on. ``capgate_bundle_active``
        names its revision (none for an OPA engine before OPA first answers)."""
        if self._label is not None:
            self._metrics.bundle_active.remove(self._label)
            self._label = None
        self._engine = engine
        if engine.revision:
            self._label = engine.revision
            self._metrics.bundle_active.labels(engine.revision).set(1)
