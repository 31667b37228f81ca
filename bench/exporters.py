"""Events per second one exporter sustains from the outbox to a real receiver (issue 6).

Fills an outbox (SQLite, as capgate writes it) with N realistic decision events, then
times one :class:`capgate.events.exporter.Exporter` draining it — reading batches from
the outbox, formatting, sending, acknowledging — to:

- the local HEC receiver (``capgate.local.hec_receiver``, Splunk's wire protocol),
  indexer acknowledgement off and on;
- a real rsyslogd (``capgate.local.rsyslog``) over TCP with octet counting; the figure
  counts what rsyslog wrote to its output, not what the sink wrote to the socket.

    .venv/bin/python bench/exporters.py [--events 20000] [--out bench/results/exporters.json]

Prints one JSON document (events/s per receiver).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parent.parent

from capgate.app import new_id  # noqa: E402
from capgate.clock import SystemClock  # noqa: E402
from capgate.decision.model import (  # noqa: E402
    AuthorizeRequest,
    Decision,
    Effect,
    Principal,
    Reason,
    Run,
)
from capgate.events.config import (  # noqa: E402
    HecSinkSettings,
    RetrySettings,
    SyslogSinkSettings,
)
from capgate.events.event import decision_event  # noqa: E402
from capgate.events.exporter import Exporter  # noqa: E402
from capgate.events.outbox import Outbox  # noqa: E402
from capgate.events.sinks.base import Sink  # noqa: E402
from capgate.events.sinks.hec import HecSink  # noqa: E402
from capgate.events.sinks.syslog import SyslogSink  # noqa: E402
from capgate.local.hec_receiver import HecReceiver  # noqa: E402
from capgate.local.rsyslog import Rsyslog  # noqa: E402
from capgate.observability.metrics import Metrics  # noqa: E402
from capgate.policy.input import build_input  # noqa: E402

TOKEN = "bench-token"


def sample_event(n: int) -> dict[str, Any]:
    """A decision event like the default bundle's: a refund, its input, two reasons."""
    now = datetime.now(UTC)
    request = AuthorizeRequest(
        tenant_id="acme",
        principal=Principal("refund-agent", scopes=("refunds:write",)),
        capability="issue_refund",
        tool="payments.create_refund",
        parameters={"amount_usd": 60 + n % 100, "reason": "damaged item", "order": f"o-{n}"},
        run=Run(run_id=f"run-{n // 5}", workflow="refund_request", step=n % 5),
        idempotency_key=f"call-{n}",
    )
    decision = Decision(
        decision_id=new_id(),
        effect=Effect.REQUIRE_APPROVAL,
        reasons=(
            Reason("REFUND_AMOUNT_NEEDS_APPROVAL", "refunds of $50 or more need approval"),
            Reason("REFUND_OVER_APPROVAL_THRESHOLD", "refunds over $50 need a human approval"),
        ),
        obligations=(),
        approval=None,
        budgets=(),
        policy_revision="default-2026.11.21-1",
        decided_at=now,
    )
    return decision_event(
        event_id=new_id(),
        request=request,
        decision=decision,
        input_document=build_input(request, identity={"method": "jwt"}, request_time=now),
        shadowed=None,
        error=None,
        latency_ms={"total": 1.234, "policy": 0.9, "budget": 0.2},
    )


async def drain_rate(directory: Path, sink: Sink, events: int, delivered: Any) -> float:
    """Events/s from the first read to the receiver holding all ``events``."""
    metrics = Metrics(CollectorRegistry())
    outbox = Outbox.open(
        directory / f"{sink.name}.db",
        instance_id=f"bench-{sink.name}",
        max_bytes=1 << 30,
        sink_names=[sink.name],
        clock=SystemClock(),
        metrics=metrics,
    )
    for n in range(events):
        outbox.append(sample_event(n))
    exporter = Exporter(
        outbox,
        sink,
        batch_size=500,
        retry=RetrySettings(),
        metrics=metrics,
        clock=SystemClock(),
    )
    started = time.perf_counter()
    assert await exporter.drain(600)
    for _ in range(60_000):  # the receiver may still be writing: up to 10 min
        if delivered() >= events:
            break
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    await sink.aclose()
    outbox.close()
    return round(events / elapsed)


async def measure(events: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for ack in (False, True):
            with HecReceiver(token=TOKEN, ack_enabled=ack, keep_events=False) as hec:
                sink = HecSink(
                    HecSinkSettings(
                        type="hec",
                        name=f"hec-ack-{ack}".lower(),
                        url=hec.url,
                        token_env="CAPGATE_BENCH_HEC_TOKEN",
                        ack=ack,
                    )
                )
                figures[f"hec_ack_{'on' if ack else 'off'}_events_per_second"] = await drain_rate(
                    directory, sink, events, lambda h=hec: h.counts()["events"]
                )
        with Rsyslog() as rsyslog:
            sink = SyslogSink(
                SyslogSinkSettings(
                    type="syslog", name="syslog", host="127.0.0.1", port=rsyslog.tcp_port
                ),
                hostname="bench",
            )
            figures["rsyslog_tcp_events_per_second"] = await drain_rate(
                directory, sink, events, lambda r=rsyslog: len(r.messages())
            )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/exporters.json")
    args = parser.parse_args()
    os.environ["CAPGATE_BENCH_HEC_TOKEN"] = TOKEN
    figures = asyncio.run(measure(args.events))
    document = {
        "benchmark": "exporter_drain",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "events": args.events,
        "event_bytes": len(json.dumps(sample_event(0))),
        "batch_size": 500,
        **figures,
    }
    text = json.dumps(document, indent=2)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
