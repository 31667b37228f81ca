"""Cost per completed outcome, read from a decision log. Pure.

The seeds' meta-metric is "cost per completed, policy-compliant outcome": everything
a workflow spent (failed and reverted attempts included) divided by the calls that
SUCCEEDED. Every settlement event (``event_type: "settlement"``, see
:mod:`capgate.events.event`) counts once per ``decision_id``: a log shipped twice, or a
repeated Settle, does not double-count.

Input: decision events as dicts (a JSONL decision log, one event a line). Output: one
:class:`OutcomeCosts` per (tenant, workflow), money in integer micro-dollars.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

OUTCOMES = ("succeeded", "failed", "reverted", "abandoned")


@dataclass
class OutcomeCosts:
    """``cost_usd_micros``: committed by every settlement (SUCCEEDED and REVERTED commit;
    FAILED and ABANDONED commit nothing); ``overrun_usd_micros``: above the estimates."""

    tenant_id: str
    workflow: str
    settled: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    cost_usd_micros: int = 0
    overrun_usd_micros: int = 0
    overruns: int = 0

    @property
    def cost_per_succeeded_usd_micros(self) -> int | None:
        """All committed cost / SUCCEEDED outcomes; None when nothing succeeded."""
        succeeded = self.settled["succeeded"]
        return self.cost_usd_micros // succeeded if succeeded else None

    @property
    def rollback_rate(self) -> float | None:
        """REVERTED / (SUCCEEDED + REVERTED): how often a completed action was undone."""
        done = self.settled["succeeded"] + self.settled["reverted"]
        return self.settled["reverted"] / done if done else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "workflow": self.workflow,
            "settled": dict(self.settled),
            "cost_usd_micros": self.cost_usd_micros,
            "cost_per_succeeded_usd_micros": self.cost_per_succeeded_usd_micros,
            "rollback_rate": self.rollback_rate,
            "overruns": self.overruns,
            "overrun_usd_micros": self.overrun_usd_micros,
        }


def outcome_costs(events: Iterable[dict[str, Any]]) -> list[OutcomeCosts]:
    """Aggregate settlement events by (tenant, workflow), sorted by both; other event
    types are skipped.

    Raises:
        KeyError, TypeError: a settlement event lacks a documented field.
    """
    rows: dict[tuple[str, str], OutcomeCosts] = {}
    seen: set[tuple[str, str]] = set()
    for event in events:
        if event.get("event_type") != "settlement":
            continue
        tenant, decision = event["tenant_id"], event["decision_id"]
        if (tenant, decision) in seen:
            continue
        seen.add((tenant, decision))
        workflow = event["run"]["workflow"]
        row = rows.setdefault((tenant, workflow), OutcomeCosts(tenant, workflow))
        row.settled[event["outcome"]] += 1
        row.cost_usd_micros += event["committed_cost"]["usd_micros"]
        if event["overrun_usd_micros"] > 0:
            row.overruns += 1
            row.overrun_usd_micros += event["overrun_usd_micros"]
    return [rows[key] for key in sorted(rows)]
