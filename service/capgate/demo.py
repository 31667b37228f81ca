"""``capgate demo``: a private Redis, ``capgate serve`` as a real process, and a refund
agent and a deploy agent whose tool calls go through the gRPC API, shown live.

Exit code 0 when every decision matched what the default bundle must decide and the
server drained cleanly on SIGTERM; 1 otherwise.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.json import JSON
from rich.live import Live
from rich.table import Table

from capgate.local.redis_server import RedisServer
from capgate.local.serve_process import ServeProcess
from capgate_client import Client

REFUND = {
    "tenant_id": "acme",
    "principal_id": "refund-agent",
    "scopes": ["refunds:write"],
    "capability": "issue_refund",
    "tool": "payments.create_refund",
    "workflow": "refund_request",
}
DEPLOY = {
    "tenant_id": "acme",
    "principal_id": "deploy-agent",
    "scopes": ["deploy:write"],
    "capability": "deploy_service",
    "tool": "cicd.trigger_deploy",
}
EFFECT_STYLE = {"ALLOW": "green", "DENY": "red", "REQUIRE_APPROVAL": "yellow"}


@dataclass(frozen=True)
class Step:
    run_id: str
    call: dict[str, Any]
    expect: str
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _refund(run: str, expect: str, note: str = "", **params: Any) -> Step:
    cost = params.pop("cost_usd_micros", 20_000)
    call = REFUND | {"parameters": params, "estimated_cost_usd_micros": cost}
    return Step(run, call, expect, note)


SCRIPT: tuple[Step, ...] = (
    _refund(
        "refund-1",
        "ALLOW",
        "small refund",
        amount_usd=30,
        customer_tier="pro",
        reason="damaged item",
    ),
    _refund(
        "refund-1",
        "REQUIRE_APPROVAL",
        "over $50",
        amount_usd=60,
        customer_tier="pro",
        reason="late delivery",
    ),
    _refund(
        "refund-1",
        "REQUIRE_APPROVAL",
        "enterprise customer",
        amount_usd=10,
        customer_tier="enterprise",
        reason="billing error",
    ),
    _refund("refund-1", "DENY", "deny_if reason", amount_usd=10, reason="Suspected FRAUD"),
    _refund("refund-1", "DENY", "over max_amount_usd", amount_usd=250),
    Step(
        "refund-1",
        REFUND | {"tool": "payments.transfer", "parameters": {"amount_usd": 10}},
        "DENY",
        "tool outside the capability",
    ),
    Step(
        "refund-1",
        REFUND | {"capability": "drop_database", "tool": "db.drop"},
        "DENY",
        "unknown capability",
    ),
    *(_refund("refund-2", "ALLOW", f"call {i} of 5", amount_usd=10) for i in range(1, 6)),
    _refund("refund-2", "DENY", "max_tool_calls: 5", amount_usd=10),
    _refund("refund-3", "ALLOW", "spends $0.15 of $0.20", amount_usd=10, cost_usd_micros=150_000),
    _refund("refund-3", "DENY", "would pass $0.20", amount_usd=10, cost_usd_micros=60_000),
    Step(
        "refund-4",
        REFUND | {"parameters": {"amount_usd": 10}, "dry_run": True},
        "ALLOW",
        "dry run: nothing consumed",
    ),
    Step(
        "deploy-1",
        DEPLOY | {"parameters": {"environment": "staging"}},
        "REQUIRE_APPROVAL",
        "deploys always need approval",
    ),
    Step(
        "deploy-1", DEPLOY | {"parameters": {"environment": "production"}}, "DENY", "staging only"
    ),
)


def run_demo(*, bundle: Path, decision_log: Path) -> int:
    console = Console()
    if not console.is_terminal:  # piped or captured: don't squeeze the table into 80 columns
        console = Console(width=140)
    decision_log.unlink(missing_ok=True)
    with RedisServer() as redis:
        server = ServeProcess.start(bundle=bundle, redis_url=redis.url, decision_log=decision_log)
        try:
            target = server.target
            console.print(f"[bold]capgate[/] serving {bundle} on {target}, Redis at {redis.url}")
            mismatches, latencies = _replay(console, target)
        finally:
            drained = server.stop() == 0
    _summary(console, decision_log, mismatches, latencies, drained)
    return 0 if not mismatches and drained else 1


def _replay(console: Console, target: str) -> tuple[int, list[float]]:
    table = Table(title="Agent tool calls through capgate Authorize")
    for column in ("#", "run", "capability / tool", "parameters", "effect", "reasons", "ms"):
        table.add_column(column, overflow="fold")
    mismatches, latencies = 0, []
    with Client(target) as client, Live(table, console=console, refresh_per_second=20):
        for number, step in enumerate(SCRIPT, start=1):
            started = time.perf_counter()
            result = client.authorize(
                **step.call, run_id=step.run_id, idempotency_key=f"demo-{number}"
            )
            latencies.append((time.perf_counter() - started) * 1000)
            ok = result.effect == step.expect
            mismatches += not ok
            style = EFFECT_STYLE[result.effect]
            table.add_row(
                str(number),
                step.run_id,
                f"{step.call['capability']}\n[dim]{step.call['tool']}[/]",
                _parameters(step.call),
                f"[{style}]{result.effect}[/]"
                + ("" if ok else f" [bold red]expected {step.expect}[/]"),
                "\n".join(result.reason_codes) or f"[dim]{step.note}[/]",
                f"{latencies[-1]:.2f}",
            )
    return mismatches, latencies


def _parameters(call: dict[str, Any]) -> str:
    text = " ".join(f"{k}={json.dumps(v)}" for k, v in call.get("parameters", {}).items())
    if call.get("estimated_cost_usd_micros"):
        text += f" [dim]est. {call['estimated_cost_usd_micros']} usd_micros[/]"
    return text + (" [dim](dry run)[/]" if call.get("dry_run") else "")


def _summary(
    console: Console, log: Path, mismatches: int, latencies: list[float], drained: bool
) -> None:
    events = [json.loads(line) for line in log.read_text().splitlines()]
    effects = statistics.multimode([e["effect"] for e in events])
    console.print(
        f"{len(SCRIPT)} decisions, {len(SCRIPT) - mismatches} as the bundle requires; "
        f"latency p50 {statistics.median(latencies):.2f} ms, max {max(latencies):.2f} ms "
        f"(client-side, first call includes connection set-up)"
    )
    console.print(f"decision log: {log} ({len(events)} lines; most common effect {effects[0]})")
    console.print("last decision event:")
    console.print(
        JSON(
            json.dumps(
                {
                    k: events[-1][k]
                    for k in (
                        "event_id",
                        "decision_id",
                        "tenant_id",
                        "capability",
                        "tool",
                        "run",
                        "effect",
                        "reasons",
                        "policy_revision",
                        "latency_ms",
                    )
                }
            )
        )
    )
    console.print(
        "server drained on SIGTERM" if drained else "[red]server did not drain cleanly[/]"
    )
