"""One exporter per sink: ships the outbox to the sink in order, at least once.

Loop: read a batch after the sink's cursor (in a worker thread), ``n = await
sink.send(batch)``, acknowledge through ``batch[n - 1].seq`` (the outbox persists the
cursor), repeat; when caught up, wait for the outbox's next append (no polling), then
``linger_seconds`` more, so that at a trickle one batch carries what arrived
meanwhile instead of one read, send and acknowledgement per event. A
failed send (``SinkError``, ``OSError``, ``TimeoutError``) is counted, followed by a
sleep with exponential backoff and full jitter, ``random() * min(max_backoff,
initial_backoff * 2**attempt)`` (AWS Architecture Blog, "Exponential Backoff And
Jitter"), and the same batch is sent again; a send that acknowledges nothing counts
as a failure too. A partial acknowledgement resends the rest at once.

Metrics (label ``sink``): ``capgate_sink_events_sent_total``,
``..._acknowledged_total``, ``capgate_sink_retries_total``,
``capgate_sink_failures_total``, ``capgate_sink_lag_seconds`` (age of the oldest
unacknowledged event; 0 when caught up).

:meth:`Exporter.drain` delivers beside a running :meth:`Exporter.run` (they take turns,
one batch at a time, so nothing is sent twice by the two). Stopping
(:meth:`Exporter.stop` or cancelling the task) abandons the send in flight;
the cursor is persisted at every acknowledgement, so a restart resends at most the
unacknowledged batch (receivers deduplicate by ``event_id``).

Example::

    exporter = Exporter(outbox, sink, batch_size=500, retry=RetrySettings(),
                        metrics=metrics, clock=SystemClock())
    task = asyncio.create_task(exporter.run())
    ...
    caught_up = await exporter.drain(timeout_seconds=10)   # on SIGTERM
    exporter.stop()
"""

from __future__ import annotations

import asyncio
import random as _random
from collections.abc import Awaitable, Callable, Sequence

import structlog

from capgate.backoff import full_jitter
from capgate.clock import Clock
from capgate.events.config import RetrySettings
from capgate.events.outbox import Outbox, OutboxError
from capgate.events.sinks.base import Sink, SinkError, StoredEvent
from capgate.observability.metrics import Metrics

_SEND_FAILURES = (SinkError, OSError, TimeoutError)
log = structlog.get_logger("capgate")


class Exporter:
    """Ships ``outbox`` to ``sink``; the sink's name is its cursor and metrics label."""

    def __init__(
        self,
        outbox: Outbox,
        sink: Sink,
        *,
        batch_size: int,
        retry: RetrySettings,
        metrics: Metrics,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        linger_seconds: float = 0.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.sink = sink
        self.name = sink.name
        self._outbox = outbox
        self._batch_size = batch_size
        self._initial = retry.initial_backoff_ms / 1000
        self._max = retry.max_backoff_ms / 1000
        self._clock = clock
        self._sleep = sleep
        self._random = random
        self._linger = linger_seconds
        self._sent = metrics.sink_sent.labels(self.name)
        self._acknowledged = metrics.sink_acknowledged.labels(self.name)
        self._retries = metrics.sink_retries.labels(self.name)
        self._failures = metrics.sink_failures.labels(self.name)
        self._lag = metrics.sink_lag.labels(self.name)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._delivering = asyncio.Lock()  # run() and drain() take turns, batch by batch

    def caught_up(self) -> bool:
        """True when the sink acknowledged everything the outbox sealed."""
        return self._outbox.cursor(self.name) >= self._outbox.head_seq

    async def run(self) -> None:
        """Deliver forever; returns after :meth:`stop`. An outbox that cannot be read
        or written is retried every ``max_backoff``. Raises what a sink raises besides
        ``SinkError``, ``OSError`` and ``TimeoutError`` (a sink bug)."""
        self._task = asyncio.current_task()
        self._stopping = False
        try:
            while True:
                try:
                    delivered = await self._step()
                except OutboxError as exc:  # the disk, not the sink: wait, read again
                    log.error("outbox_unavailable", sink=self.name, error=str(exc))
                    await self._sleep(self._max)
                    continue
                if not delivered:
                    self._lag.set(0)
                    await self._outbox.wait_for_append(self._outbox.cursor(self.name))
                    if self._linger:  # let a few more arrive: one batch, not one per event
                        await asyncio.sleep(self._linger)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            if self._task is not None:
                self._task.uncancel()
        finally:
            self._task = None

    def stop(self) -> None:
        """Stop :meth:`run` (the send in flight is abandoned; nothing to persist)."""
        if self._task is not None:
            self._stopping = True
            self._task.cancel()

    async def drain(self, timeout_seconds: float) -> bool:
        """Deliver until the sink's cursor reaches the outbox head or
        ``timeout_seconds`` pass; True when caught up (False as well when the outbox
        cannot be read or written). Safe beside a running :meth:`run` (one batch is in
        delivery at a time)."""
        try:
            async with asyncio.timeout(timeout_seconds):
                while not self.caught_up():
                    await self._step()
        except TimeoutError:
            return self.caught_up()
        except OutboxError as exc:
            log.error("outbox_unavailable", sink=self.name, error=str(exc))
            return False
        return True

    async def _step(self) -> bool:
        """Read one batch after the cursor and deliver it (retrying until the sink
        takes some of it); False when there was nothing to read."""
        async with self._delivering:
            batch = await asyncio.to_thread(self._outbox.read, self.name, self._batch_size)
            if not batch:
                return False
            await self._deliver(batch)
            return True

    async def _deliver(self, batch: Sequence[StoredEvent]) -> None:
        attempt = 0
        while True:
            acknowledged = 0
            self._sent.inc(len(batch))
            try:
                acknowledged = min(await self.sink.send(batch), len(batch))
            except _SEND_FAILURES as exc:
                log.warning("sink_send_failed", sink=self.name, attempt=attempt, error=str(exc))
            if acknowledged > 0:
                self._acknowledged.inc(acknowledged)
                self._outbox.ack(self.name, batch[acknowledged - 1].seq)
                self._update_lag()
                return
            self._failures.inc()
            self._lag.set(max(0.0, self._clock.now().timestamp() - batch[0].time))
            await self._sleep(self._backoff(attempt))
            attempt += 1
            self._retries.inc()

    def _backoff(self, attempt: int) -> float:
        """Seconds before retry ``attempt`` + 1: full jitter over the exponential cap."""
        return full_jitter(
            attempt, initial_seconds=self._initial, max_seconds=self._max, random=self._random
        )

    def _update_lag(self) -> None:
        oldest = self._outbox.oldest_unacknowledged_time(self.name)
        lag = 0.0 if oldest is None else self._clock.now().timestamp() - oldest
        self._lag.set(max(0.0, lag))
