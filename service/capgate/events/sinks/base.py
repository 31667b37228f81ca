"""What every sink implements, and what the exporter hands it.

A sink delivers batches of events, in order, to one receiver (a file, a syslog
server, Splunk HEC, an HTTP endpoint, Kafka). Delivery is at-least-once: the exporter
retries a batch that raised, so a receiver may see an event twice (deduplicate by
``event_id``); it never skips one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol


@dataclass(frozen=True)
class StoredEvent:
    """One event as the outbox holds it. ``seq``: its place in this instance's chain;
    ``body``: the sealed event as RFC 8785 canonical JSON (UTF-8), hash included;
    ``time``: the event's time, seconds since the epoch (for lag)."""

    seq: int
    event_id: str
    time: float
    body: bytes

    @cached_property
    def event(self) -> dict[str, Any]:
        """The event as a dict (parsed once)."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class SinkError(Exception):
    """The batch was not delivered (connection refused, timeout, 5xx, a negative or
    missing acknowledgement); the exporter retries it."""


class Sink(Protocol):
    name: str

    async def send(self, batch: Sequence[StoredEvent]) -> int:
        """Deliver ``batch`` in order; return how many the receiver acknowledged (the
        batch's length for receivers without acknowledgements).

        Raises:
            SinkError: the batch, or part of it, was not delivered.
        """
        ...

    async def aclose(self) -> None:
        """Close connections; pending sends are abandoned (they are retried later)."""
        ...
