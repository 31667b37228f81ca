"""Build the decision event: the audit record of one Authorize. Pure.

Shape (schema_version ``capgate.decision_event.v1``; all times RFC 3339 UTC)::

    {"schema_version", "event_id" (UUIDv7, RFC 9562), "event_type": "decision", "time",
     "decision_id", "tenant_id", "principal": {id, on_behalf_of, delegation_chain, scopes,
     roles}, "capability", "tool", "run": {run_id, workflow, step, trace_id},
     "effect", "reasons": [{code, message}], "obligations", "approval", "budgets",
     "policy_revision", "dry_run", "idempotent_replay": bool,
     "shadow": {effect, reasons} | null,
     "input": <the policy input document, masked>, "masked": [erased paths],
     "error": str | null,
     "latency_ms": {"total", "policy", "budget"}}

``error`` carries details kept out of the caller's reason messages (DESIGN §4).

A settlement event (``event_type: "settlement"``) records how an allowed call ended::

    {"schema_version", "event_id", "event_type": "settlement", "time", "decision_id",
     "tenant_id", "principal": {"id"}, "capability", "tool",
     "run": {run_id, workflow}, "outcome": "succeeded" | "failed" | "reverted" | "abandoned",
     "estimated_cost": {usd_micros, tokens}, "actual_cost": {usd_micros, tokens} | null,
     "committed_cost": {usd_micros, tokens}, "overrun_usd_micros",
     "expired_before_settlement": bool, "changes": [{resource, field, before, after}],
     "result": {...}, "budgets": [...]}
"""

from __future__ import annotations

from typing import Any

from capgate.clock import rfc3339
from capgate.decision.codec import ReservationInfo
from capgate.decision.model import (
    AuthorizeRequest,
    Cost,
    Decision,
    PolicyResult,
    Reason,
    Settlement,
    SettleRequest,
)
from capgate.events.mask import erase_paths

SCHEMA_VERSION = "capgate.decision_event.v1"


def decision_event(
    *,
    event_id: str,
    request: AuthorizeRequest,
    decision: Decision,
    input_document: dict[str, Any],
    shadowed: PolicyResult | None,
    error: str | None,
    latency_ms: dict[str, float],
    mask: tuple[str, ...] = (),
    replayed: bool = False,
) -> dict[str, Any]:
    """The event for ``decision``; ``shadowed`` is the policy result a shadow ALLOW hid;
    ``mask`` lists input paths to erase (the policy result's ``log.mask``); ``replayed``
    marks a retry answered from its idempotency key (the same ``decision_id``)."""
    principal = request.principal
    logged_input, masked = erase_paths(input_document, mask)
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": event_id,
        "event_type": "decision",
        "time": rfc3339(decision.decided_at),
        "decision_id": decision.decision_id,
        "tenant_id": request.tenant_id,
        "principal": {
            "id": principal.id,
            "on_behalf_of": principal.on_behalf_of,
            "delegation_chain": list(principal.delegation_chain),
            "scopes": list(principal.scopes),
            "roles": list(principal.roles),
        },
        "capability": request.capability,
        "tool": request.tool,
        "run": {
            "run_id": request.run.run_id,
            "workflow": request.run.workflow,
            "step": request.run.step,
            "trace_id": request.run.trace_id,
        },
        "effect": decision.effect.value,
        "reasons": _reasons(decision.reasons),
        "obligations": [{"type": o.type, "parameters": o.parameters} for o in decision.obligations],
        "approval": _shallow(decision.approval) if decision.approval else None,
        "budgets": [_shallow(b) for b in decision.budgets],
        "policy_revision": decision.policy_revision,
        "dry_run": request.dry_run,
        "idempotent_replay": replayed,
        "shadow": (
            {"effect": shadowed.effect.value, "reasons": _reasons(shadowed.reasons)}
            if shadowed
            else None
        ),
        "input": logged_input,
        "masked": masked,
        "error": error,
        "latency_ms": {k: round(v, 3) for k, v in latency_ms.items()},
    }


def settlement_event(
    *,
    event_id: str,
    request: SettleRequest,
    settlement: Settlement,
    reservation: ReservationInfo,
) -> dict[str, Any]:
    """The event for ``settlement``; who and what come from the ``reservation``."""
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": event_id,
        "event_type": "settlement",
        "time": rfc3339(settlement.settled_at),
        "decision_id": settlement.decision_id,
        "tenant_id": reservation.tenant_id,
        "principal": {"id": reservation.principal_id},
        "capability": reservation.capability,
        "tool": reservation.tool,
        "run": {"run_id": reservation.run_id, "workflow": reservation.workflow},
        "outcome": settlement.outcome.value,
        "estimated_cost": _cost(settlement.estimated),
        "actual_cost": _cost(request.actual_cost) if request.actual_cost else None,
        "committed_cost": _cost(settlement.committed),
        "overrun_usd_micros": settlement.overrun_usd_micros,
        "expired_before_settlement": settlement.expired_first,
        "changes": [_shallow(c) for c in request.changes],
        "result": dict(request.result),
        "budgets": [_shallow(b) for b in settlement.budgets],
    }


def _cost(cost: Cost) -> dict[str, int]:
    return {"usd_micros": cost.usd_micros, "tokens": cost.tokens}


def _shallow(record: Any) -> dict[str, Any]:
    """A flat dataclass as a dict, without asdict's deep copy."""
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


def _reasons(reasons: tuple[Reason, ...]) -> list[dict[str, str]]:
    return [{"code": r.code, "message": r.message} for r in reasons]
