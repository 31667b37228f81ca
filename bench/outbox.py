"""What the durable outbox adds to each Authorize: the latency of ``Outbox.append``
(seal into the hash chain with RFC 8785 canonical JSON and SHA-256, INSERT, COMMIT to
the OS) on the event loop, while the batched fsync task and one exporter (to a JSON
Lines file) run beside it, as in ``capgate serve`` (issue 6).

    .venv/bin/python bench/outbox.py [--events 20000] [--rate 1000]
                                      [--out bench/results/outbox.json]

Appends at a fixed rate (open loop) and prints one JSON document: p50/p99/max µs per
append, the canonicalization alone (ours vs the ``rfc8785`` package), fsyncs done.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import rfc8785
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from exporters import sample_event  # noqa: E402

from capgate.clock import SystemClock  # noqa: E402
from capgate.events.canonical import canonical_json  # noqa: E402
from capgate.events.config import FileSinkSettings, RetrySettings  # noqa: E402
from capgate.events.exporter import Exporter  # noqa: E402
from capgate.events.outbox import Outbox  # noqa: E402
from capgate.events.sinks.file import FileSink  # noqa: E402
from capgate.observability.metrics import Metrics  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


async def measure(events: int, rate: float, directory: Path) -> dict[str, float]:
    metrics = Metrics(CollectorRegistry())
    outbox = Outbox.open(
        directory / "outbox.db",
        instance_id="bench",
        max_bytes=1 << 30,
        sink_names=["file"],
        clock=SystemClock(),
        metrics=metrics,
    )
    sink = FileSink(FileSinkSettings(type="file", name="file", path=directory / "d.jsonl"))
    exporter = Exporter(
        outbox,
        sink,
        batch_size=500,
        retry=RetrySettings(),
        metrics=metrics,
        clock=SystemClock(),
        linger_seconds=0.05,
    )
    tasks = [asyncio.create_task(exporter.run()), asyncio.create_task(outbox.run_fsync(0.5))]
    prepared = [sample_event(n) for n in range(events)]
    loop = asyncio.get_running_loop()
    start = loop.time()
    durations = []
    for n, event in enumerate(prepared):
        delay = start + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        began = time.perf_counter()
        outbox.append(event)
        durations.append((time.perf_counter() - began) * 1e6)
    assert await exporter.drain(60)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    fsyncs = metrics.registry.get_sample_value("capgate_outbox_fsyncs_total") or 0
    outbox.close()
    return {
        "append_p50_us": percentile(durations, 0.50),
        "append_p99_us": percentile(durations, 0.99),
        "append_max_us": round(max(durations), 1),
        "append_mean_us": round(statistics.fmean(durations), 1),
        "fsyncs": fsyncs,
    }


def canonical_us(iterations: int = 2000) -> dict[str, float]:
    event = sample_event(1)
    figures = {}
    for name, encode in (("capgate", canonical_json), ("rfc8785_package", rfc8785.dumps)):
        started = time.perf_counter()
        for _ in range(iterations):
            encode(event)
        figures[f"canonical_json_{name}_us"] = round(
            (time.perf_counter() - started) / iterations * 1e6, 1
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="appends per second")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/outbox.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(measure(args.events, args.rate, Path(tmp)))
    document = {
        "benchmark": "outbox_append",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version()},
        "events": args.events,
        "rate_per_second": args.rate,
        "event_bytes": len(canonical_json(sample_event(1))),
        **figures,
        **canonical_us(),
    }
    text = json.dumps(document, indent=2)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
