"""Decisions and budget specs as JSON, for what the budget store keeps. Pure.

The store records a decision with its idempotency key (returned verbatim to a retry)
and reservation metadata with each reservation (read back by Settle). Shapes::

    decision: {"decision_id", "effect", "reasons": [{code, message}],
               "obligations": [{type, parameters}],
               "approval": {approver_roles, min_approvals, ttl_seconds} | null,
               "budgets": [budget spec], "policy_revision", "decided_at" (RFC 3339)}
    budget spec: {"scope", "window", "limit_usd_micros", "limit_calls", "limit_tokens"}
    reservation: {"tenant_id", "principal_id", "capability", "tool", "run_id",
                  "workflow", "budgets": [budget spec]}

Raises nothing on encode; ``decode_*`` raise ``KeyError``/``ValueError`` on text they
did not produce.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from capgate.clock import rfc3339
from capgate.decision.model import (
    ApprovalRequirement,
    AuthorizeRequest,
    BudgetScope,
    BudgetSpec,
    BudgetWindow,
    Decision,
    Effect,
    Obligation,
    Reason,
)


@dataclass(frozen=True, slots=True)
class ReservationInfo:
    """Who and what a reservation was for; Settle labels metrics and events with it."""

    tenant_id: str
    principal_id: str
    capability: str
    tool: str
    run_id: str
    workflow: str
    budgets: tuple[BudgetSpec, ...]


def encode_decision(decision: Decision, budgets: Sequence[BudgetSpec]) -> str:
    """``decision`` without its budget statuses, plus the specs they are computed from."""
    approval = decision.approval
    return json.dumps(
        {
            "decision_id": decision.decision_id,
            "effect": decision.effect.value,
            "reasons": [{"code": r.code, "message": r.message} for r in decision.reasons],
            "obligations": [
                {"type": o.type, "parameters": o.parameters} for o in decision.obligations
            ],
            "approval": (
                {
                    "approver_roles": list(approval.approver_roles),
                    "min_approvals": approval.min_approvals,
                    "ttl_seconds": approval.ttl_seconds,
                }
                if approval
                else None
            ),
            "budgets": [_spec(b) for b in budgets],
            "policy_revision": decision.policy_revision,
            "decided_at": rfc3339(decision.decided_at),
        },
        separators=(",", ":"),
    )


def decode_decision(text: str) -> tuple[Decision, tuple[BudgetSpec, ...]]:
    """The decision (with no budget statuses) and its budget specs."""
    data = json.loads(text)
    approval = data["approval"]
    decision = Decision(
        decision_id=data["decision_id"],
        effect=Effect(data["effect"]),
        reasons=tuple(Reason(r["code"], r["message"]) for r in data["reasons"]),
        obligations=tuple(Obligation(o["type"], o["parameters"]) for o in data["obligations"]),
        approval=(
            ApprovalRequirement(
                tuple(approval["approver_roles"]),
                approval["min_approvals"],
                approval["ttl_seconds"],
            )
            if approval
            else None
        ),
        budgets=(),
        policy_revision=data["policy_revision"],
        decided_at=datetime.fromisoformat(data["decided_at"]),
    )
    return decision, tuple(_from_spec(b) for b in data["budgets"])


def encode_reservation(request: AuthorizeRequest, budgets: Sequence[BudgetSpec]) -> str:
    return json.dumps(
        {
            "tenant_id": request.tenant_id,
            "principal_id": request.principal.id,
            "capability": request.capability,
            "tool": request.tool,
            "run_id": request.run.run_id,
            "workflow": request.run.workflow,
            "budgets": [_spec(b) for b in budgets],
        },
        separators=(",", ":"),
    )


def decode_reservation(text: str) -> ReservationInfo:
    data = json.loads(text)
    return ReservationInfo(
        tenant_id=data["tenant_id"],
        principal_id=data["principal_id"],
        capability=data["capability"],
        tool=data["tool"],
        run_id=data["run_id"],
        workflow=data["workflow"],
        budgets=tuple(_from_spec(b) for b in data["budgets"]),
    )


def _spec(spec: BudgetSpec) -> dict[str, Any]:
    return {
        "scope": spec.scope.value,
        "window": spec.window.value,
        "limit_usd_micros": spec.limit_usd_micros,
        "limit_calls": spec.limit_calls,
        "limit_tokens": spec.limit_tokens,
    }


def _from_spec(data: dict[str, Any]) -> BudgetSpec:
    return BudgetSpec(
        scope=BudgetScope(data["scope"]),
        window=BudgetWindow(data["window"]),
        limit_usd_micros=data["limit_usd_micros"],
        limit_calls=data["limit_calls"],
        limit_tokens=data["limit_tokens"],
    )
