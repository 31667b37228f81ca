"""The ``EventSink`` protocol: where decision events go.

``emit`` must not block the event loop for longer than a local write; durable
outboxes and SIEM exporters (DESIGN §8) implement the same protocol.
"""

from __future__ import annotations

from typing import Any, Protocol

import structlog
from prometheus_client import Counter

log = structlog.get_logger("capgate")


class EventSink(Protocol):
    def emit(self, event: dict[str, Any]) -> None:
        """Record one event (a JSON-serialisable dict)."""
        ...

    async def aclose(self) -> None:
        """Flush and release resources."""
        ...


class NopSink:
    """Discards events; used when no decision log is configured."""

    def emit(self, event: dict[str, Any]) -> None:
        return None

    async def aclose(self) -> None:
        return None


def emit_counted(sink: EventSink, event: dict[str, Any], failures: Counter) -> None:
    """``sink.emit(event)``; an ``OSError`` is counted in ``failures`` and logged, never
    raised: the decision or settlement it records stands."""
    try:
        sink.emit(event)
    except OSError as exc:
        failures.inc()
        log.error("decision_log_write_failed", decision_id=event.get("decision_id"), error=str(exc))
