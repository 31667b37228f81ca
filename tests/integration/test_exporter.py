"""Exporters on a real outbox: backoff with jitter, same batch retried in order,
at-least-once, per-sink pace, lag, drain, restart from the cursors."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from capgate.clock import SystemClock
from capgate.events.config import RetrySettings
from capgate.events.exporter import Exporter
from capgate.events.outbox import Outbox
from capgate.events.sinks.base import SinkError, StoredEvent
from capgate.observability.metrics import Metrics

FAST_RETRY = RetrySettings(initial_backoff_ms=1, max_backoff_ms=5)


class RecordingSink:
    """Records every batch it is sent; fails the next ``failures`` sends; acknowledges
    at most ``accept`` events of a batch when set."""

    def __init__(self, name: str, failures: int = 0, accept: int | None = None) -> None:
        self.name = name
        self.failures = failures
        self.accept = accept
        self.attempts: list[list[int]] = []
        self.delivered: list[int] = []  # seqs acknowledged, in order
        self._arrived = asyncio.Event()

    async def wait_delivered(self, count: int) -> None:
        while len(self.delivered) < count:
            self._arrived.clear()
            await self._arrived.wait()

    async def wait_attempts(self, count: int) -> None:
        while len(self.attempts) < count:
            self._arrived.clear()
            await self._arrived.wait()

    async def send(self, batch: Sequence[StoredEvent]) -> int:
        self.attempts.append([e.seq for e in batch])
        self._arrived.set()
        if self.failures:
            self.failures -= 1
            raise SinkError("receiver down")
        taken = len(batch) if self.accept is None else min(self.accept, len(batch))
        self.delivered.extend(e.seq for e in batch[:taken])
        self._arrived.set()
        return taken

    async def aclose(self) -> None:
        return None


class ShiftedClock(SystemClock):
    """The system clock, ``offset`` seconds ahead (events look that old)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return super().now() + timedelta(seconds=self.offset)


def open_outbox(path: Path, *sinks: str) -> tuple[Outbox, Metrics]:
    metrics = Metrics(CollectorRegistry())
    outbox = Outbox.open(
        path,
        instance_id="capgate-0",
        max_bytes=1 << 30,
        sink_names=sinks,
        clock=SystemClock(),
        metrics=metrics,
    )
    return outbox, metrics


def append(outbox: Outbox, count: int, at: datetime | None = None) -> None:
    moment = (at or datetime.now(UTC)).isoformat()
    for _ in range(count):
        outbox.append({"event_type": "decision", "event_id": "e", "time": moment})


def exporter(outbox: Outbox, sink: RecordingSink, metrics: Metrics, **kwargs: Any) -> Exporter:
    options: dict[str, Any] = {"batch_size": 10, "retry": FAST_RETRY, "clock": SystemClock()}
    options.update(kwargs)
    return Exporter(outbox, sink, metrics=metrics, **options)


def value(metric: Any, sink: str) -> float:
    return float(metric.labels(sink)._value.get())


async def test_backoff_grows_with_full_jitter_and_the_same_batch_is_resent(
    tmp_path: Path,
) -> None:
    outbox, metrics = open_outbox(tmp_path / "o.db", "siem")
    append(outbox, 7, at=datetime.now(UTC) - timedelta(seconds=30))
    sink = RecordingSink("siem", failures=6)
    delays: list[float] = []
    draws = iter([0.5, 1.0, 0.25, 1.0, 1.0, 0.5])

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        # While failing, the lag is the age of the oldest undelivered event.
        assert value(metrics.sink_lag, "siem") >= 30

    retry = RetrySettings(initial_backoff_ms=100, max_backoff_ms=1000)
    ex = exporter(outbox, sink, metrics, retry=retry, sleep=sleep, random=lambda: next(draws))
    assert await ex.drain(timeout_seconds=5)
    # caps 0.1, 0.2, 0.4, 0.8, 1.0, 1.0 (seconds) times the draws
    assert delays == pytest.approx([0.05, 0.2, 0.1, 0.8, 1.0, 0.5])
    assert sink.attempts == [list(range(1, 8))] * 7  # the same batch, in order
    assert sink.delivered == list(range(1, 8))
    assert value(metrics.sink_failures, "siem") == 6
    assert value(metrics.sink_retries, "siem") == 6
    assert value(metrics.sink_sent, "siem") == 7 * 7
    assert value(metrics.sink_acknowledged, "siem") == 7
    assert value(metrics.sink_lag, "siem") == 0
    outbox.close()


async def test_partial_acknowledgements_deliver_everything_in_order(tmp_path: Path) -> None:
    outbox, metrics = open_outbox(tmp_path / "o.db", "siem")
    append(outbox, 25)
    sink = RecordingSink("siem", accept=3)
    assert await exporter(outbox, sink, metrics).drain(timeout_seconds=5)
    assert sink.delivered == list(range(1, 26))
    assert sink.attempts[:2] == [list(range(1, 11)), list(range(4, 14))]
    assert value(metrics.sink_acknowledged, "siem") == 25
    outbox.close()


async def test_each_sink_keeps_its_own_pace_and_a_restart_resumes_at_the_cursors(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.db"
    outbox, metrics = open_outbox(path, "good", "flaky")
    good, flaky = RecordingSink("good"), RecordingSink("flaky", failures=10**9)
    exporters = [exporter(outbox, s, metrics) for s in (good, flaky)]
    tasks = [asyncio.create_task(e.run()) for e in exporters]
    append(outbox, 50)
    assert await exporters[0].drain(timeout_seconds=5)
    assert good.delivered == list(range(1, 51))
    await asyncio.wait_for(flaky.wait_attempts(3), timeout=2)
    assert flaky.delivered == [] and flaky.attempts[:3] == [list(range(1, 11))] * 3
    assert outbox.cursor("flaky") == 0 and stored_seqs(path) == list(range(1, 51))

    flaky.failures = 0  # the receiver is back
    assert await exporters[1].drain(timeout_seconds=5)
    assert flaky.delivered == list(range(1, 51))
    assert stored_seqs(path) == []  # both passed: rows gone
    assert value(metrics.sink_lag, "flaky") == 0

    append(outbox, 5)  # delivered by the running exporters, woken by the append
    await asyncio.wait_for(good.wait_delivered(55), timeout=2)
    for ex in exporters:
        ex.stop()
    await asyncio.gather(*tasks)  # stop() ends run() normally
    append(outbox, 5)  # nobody delivers these
    outbox.close()

    outbox, metrics = open_outbox(path, "good", "flaky")
    append(outbox, 3)
    for sink in (good, flaky):
        sink.delivered, sink.attempts = [], []
        assert await exporter(outbox, sink, metrics).drain(timeout_seconds=5)
    assert good.delivered == list(range(56, 64))  # nothing lost, nothing resent
    assert flaky.delivered[0] > 50 and flaky.delivered[-1] == 63
    outbox.close()


async def test_a_caught_up_exporter_wakes_on_append_without_polling(tmp_path: Path) -> None:
    outbox, metrics = open_outbox(tmp_path / "o.db", "siem")
    sink = RecordingSink("siem")
    ex = exporter(outbox, sink, metrics)
    task = asyncio.create_task(ex.run())
    await asyncio.sleep(0.05)
    assert sink.attempts == []  # nothing stored: no sends, no reads in a loop
    loop = asyncio.get_running_loop()
    started = loop.time()
    append(outbox, 1)
    await asyncio.wait_for(sink.wait_delivered(1), timeout=2)
    # Woken by the append (the exporter has no poll to fall back on), in one send. The
    # bound is loose: this shared 2-CPU machine stalls for 100+ ms now and then.
    assert loop.time() - started < 0.5
    assert len(sink.attempts) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    outbox.close()


async def test_drain_returns_false_on_timeout(tmp_path: Path) -> None:
    outbox, metrics = open_outbox(tmp_path / "o.db", "siem")
    append(outbox, 3)
    sink = RecordingSink("siem", failures=10**9)
    ex = exporter(outbox, sink, metrics, clock=ShiftedClock(12.0))
    assert not await ex.drain(timeout_seconds=0.1)
    assert outbox.cursor("siem") == 0
    assert value(metrics.sink_lag, "siem") >= 12
    task = asyncio.create_task(ex.run())  # drain waits on a running exporter too
    assert not await ex.drain(timeout_seconds=0.1)
    sink.failures = 0
    assert await ex.drain(timeout_seconds=2)
    ex.stop()
    await task
    outbox.close()


def stored_seqs(path: Path) -> list[int]:
    with sqlite3.connect(path) as db:
        return [seq for (seq,) in db.execute("SELECT seq FROM events ORDER BY seq")]
