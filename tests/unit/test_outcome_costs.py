"""Unit tests for capgate.report.outcomes: cost per completed outcome from settlements."""

from __future__ import annotations

from typing import Any

from capgate.report.outcomes import outcome_costs


def settlement(
    decision_id: str,
    outcome: str,
    cost: int,
    *,
    tenant: str = "acme",
    workflow: str = "wf",
    overrun: int = 0,
) -> dict[str, Any]:
    return {
        "event_type": "settlement",
        "decision_id": decision_id,
        "tenant_id": tenant,
        "run": {"run_id": "r", "workflow": workflow},
        "outcome": outcome,
        "committed_cost": {"usd_micros": cost, "tokens": 0},
        "overrun_usd_micros": overrun,
    }


def test_cost_per_succeeded_counts_every_attempt_and_each_decision_once() -> None:
    events = [
        {"event_type": "decision", "decision_id": "x"},
        settlement("d1", "succeeded", 300_000, overrun=100_000),
        settlement("d1", "succeeded", 300_000, overrun=100_000),  # the log shipped twice
        settlement("d2", "succeeded", 100_000),
        settlement("d3", "reverted", 200_000),
        settlement("d4", "failed", 0),
        settlement("d5", "abandoned", 0),
        settlement("d6", "succeeded", 50_000, workflow="other"),
        settlement("d1", "succeeded", 70_000, tenant="beta"),
    ]
    rows = {(r.tenant_id, r.workflow): r for r in outcome_costs(events)}
    acme, other, beta = rows[("acme", "wf")], rows[("acme", "other")], rows[("beta", "wf")]
    assert acme.settled == {"succeeded": 2, "failed": 1, "reverted": 1, "abandoned": 1}
    assert acme.cost_usd_micros == 600_000
    assert acme.cost_per_succeeded_usd_micros == 300_000  # 600,000 / 2 succeeded
    assert acme.rollback_rate == 1 / 3
    assert (acme.overruns, acme.overrun_usd_micros) == (1, 100_000)
    assert other.cost_per_succeeded_usd_micros == 50_000 and other.rollback_rate == 0
    assert beta.cost_usd_micros == 70_000


def test_nothing_succeeded_has_no_cost_per_outcome() -> None:
    (row,) = outcome_costs([settlement("d", "failed", 0)])
    assert row.cost_per_succeeded_usd_micros is None and row.rollback_rate is None
    assert row.as_dict()["settled"]["failed"] == 1
