"""The ``EventSink`` protocol: where decision events go.

``emit`` must not block the event loop for longer than a local write; durable
outboxes and SIEM exporters (DESIGN §8) implement the same protocol.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Protocol

import structlog
from prometheus_client import Counter

log = structlog.get_logger("capgate")


class EventSink(Protocol):
    def emit(self, event: dict[str, Any]) -> None:
        """Record one event (a JSON-serialisable dict) durably before returning.

        Raises:
            OSError: it could not be recorded.
        """
        ...

    def saturated(self) -> bool:
        """True when recording one more event would drop older ones (a full outbox)."""
        ...

    def start(self) -> None:
        """Start background delivery (on the running event loop)."""
        ...

    async def drain(self, timeout_seconds: float) -> bool:
        """Deliver what is recorded within the timeout; True when everything was."""
        ...

    async def aclose(self) -> None:
        """Flush and release resources."""
        ...


class NopSink:
    """Discards events; used when no decision log or sink is configured."""

    def emit(self, event: dict[str, Any]) -> None:
        return None

    def saturated(self) -> bool:
        return False

    def start(self) -> None:
        return None

    async def drain(self, timeout_seconds: float) -> bool:
        return True

    async def aclose(self) -> None:
        return None


def emit_counted(sink: EventSink, event: dict[str, Any], failures: Counter) -> None:
    """``sink.emit(event)``; an ``OSError``, a SQLite error or an event JSON cannot
    represent (``ValueError``: NaN in a parameter) is counted in ``failures`` and
    logged, never raised: the decision or settlement it records stands."""
    try:
        sink.emit(event)
    except (OSError, sqlite3.Error, ValueError) as exc:
        failures.inc()
        log.error("decision_log_write_failed", decision_id=event.get("decision_id"), error=str(exc))
