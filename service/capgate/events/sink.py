"""The ``EventSink`` protocol: where decision events go.

``emit`` must not block the event loop for longer than a local write; durable
outboxes and SIEM exporters (DESIGN §8) implement the same protocol.
"""

from __future__ import annotations

from typing import Any, Protocol


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
