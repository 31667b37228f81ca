"""The decision log as a pipeline (DESIGN §8): every event is appended to the durable
outbox before the Authorize response is sent, and one exporter per sink ships it in
the background, in order, at least once.

    pipeline ── emit(event) ──▶ Outbox.append   (sealed into the hash chain, written
                                                 to the OS; fsynced in batches)
                                  │
             Exporter(file) ◀─────┼─────▶ Exporter(syslog) ... (own cursor each; retry
                                                                with backoff and jitter)

A sink outage never slows ``emit``: the outbox absorbs it up to its cap, then drops
the oldest events (counted, and announced by a gap event); capabilities marked
``audit_required`` are denied instead while it is full (:meth:`saturated`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog

from capgate.events.exporter import Exporter
from capgate.events.outbox import Outbox

log = structlog.get_logger("capgate")


class EventPipeline:
    """``fsync_interval_seconds``: at most this long between fsyncs of the outbox."""

    def __init__(
        self, outbox: Outbox, exporters: Sequence[Exporter], *, fsync_interval_seconds: float
    ) -> None:
        self._outbox = outbox
        self._exporters = tuple(exporters)
        self._fsync_interval = fsync_interval_seconds
        self._tasks: list[asyncio.Task[None]] = []

    def emit(self, event: dict[str, Any]) -> None:
        """Seal ``event`` into the chain and append it to the outbox.

        Raises:
            OSError: the outbox could not be written (the caller counts it).
        """
        self._outbox.append(event)

    def saturated(self) -> bool:
        """True while the outbox is at its cap: one more event drops the oldest."""
        return self._outbox.at_cap

    def start(self) -> None:
        """Start the exporters and the batched fsync (on the running loop)."""
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(e.run(), name=f"exporter:{e.name}") for e in self._exporters
        ]
        self._tasks.append(
            asyncio.create_task(self._outbox.run_fsync(self._fsync_interval), name="outbox-fsync")
        )
        for task in self._tasks:
            task.add_done_callback(_log_crash)

    async def drain(self, timeout_seconds: float) -> bool:
        """Deliver what the outbox holds to every sink within ``timeout_seconds``; True
        when every sink caught up (what is left stays in the outbox for the next start)."""
        if not self._exporters:
            return True
        results = await asyncio.gather(*(e.drain(timeout_seconds) for e in self._exporters))
        for exporter, caught_up in zip(self._exporters, results, strict=True):
            if not caught_up:
                log.warning("sink_not_drained", sink=exporter.name)
        return all(results)

    async def aclose(self) -> None:
        """Stop exporting, close the sinks, fsync and close the outbox."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for exporter in self._exporters:
            await exporter.sink.aclose()
        self._outbox.close()


def _log_crash(task: asyncio.Task[None]) -> None:
    """An exporter or the fsync task ended by an error it does not retry (a bug): say so
    loudly; events keep accumulating in the outbox for the next start."""
    if not task.cancelled() and task.exception() is not None:
        log.error("event_task_failed", task=task.get_name(), error=repr(task.exception()))
