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
        self.kind = kind

    @property
    def engine(self) -> PolicyEngine | None:
        """The active engine, or ``None`` until a bundle has been activated."""
        return self._engine

    def activate(self, engine: PolicyEngine) -> None:
        if self._engine is not None:
            self._metrics.bundle_active.remove(self._engine.revision)
        self._engine = engine
        self._metrics.bundle_active.labels(engine.revision).set(1)
