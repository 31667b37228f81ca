"""Build the decision event: the audit record of one Authorize. Pure.

Shape (schema_version ``capgate.decision_event.v1``; all times RFC 3339 UTC)::

    {"schema_version", "event_id" (UUIDv7, RFC 9562), "event_type": "decision", "time",
     "decision_id", "tenant_id", "principal": {id, on_behalf_of, delegation_chain, scopes,
     roles}, "capability", "tool", "run": {run_id, workflow, step, trace_id},
     "effect", "reasons": [{code, message}], "obligations",
     "approval": {approver_roles, min_approvals, ttl_seconds, approval_id, state,
                  expires_at} | null, "budgets",
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

An approval event (``event_type: "approval"``) records one transition of an approval
(created, approved or rejected by a vote, a vote short of the quorum, consumed,
expired); a control event (``event_type: "control"``) one operator action::

    {"schema_version", "event_id", "event_type": "approval", "time", "tenant_id",
     "approval_id", "transition": {"from": state | null, "to": state},
     "actor": {"principal_id", "roles", "method"} | null, "decision_id",
     "approval": {requester_principal_id, on_behalf_of, capability, tool,
                  parameters_sha256, action_sha256, policy_revision, approver_roles,
                  min_approvals, votes: [{principal_id, roles, verdict, comment, time}],
                  expires_at} | null,
     "comment"}
    {"schema_version", "event_id", "event_type": "control", "time", "tenant_id",
     "action": "stop_run" | "set_tenant_mode", "actor": {...}, "run_id", "mode",
     "previous_mode", "reason"}
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from capgate.approvals.model import Approval
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
from capgate.events.config import DEFAULT_MASKED_PARAMETER_NAMES
from capgate.events.mask import mask_input
from capgate.identity.model import Identity

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
    masked_names: Sequence[str] = DEFAULT_MASKED_PARAMETER_NAMES,
    replayed: bool = False,
) -> dict[str, Any]:
    """The event for ``decision``; ``shadowed`` is the policy result a shadow ALLOW hid;
    ``mask`` lists input paths to erase (the policy result's ``log.mask``); ``replayed``
    marks a retry answered from its idempotency key (the same ``decision_id``)."""
    principal = request.principal
    logged_input, masked = mask_input(input_document, paths=mask, names=masked_names)
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
        "approval": _approval_asked(decision) if decision.approval else None,
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


def approval_event(
    *,
    event_id: str,
    time: datetime,
    tenant_id: str,
    approval_id: str,
    previous: str | None,
    state: str,
    actor: Identity | None,
    approval: Approval | None = None,
    decision_id: str = "",
    comment: str = "",
) -> dict[str, Any]:
    """The event of one approval transition; ``approval`` is None for an expiry found
    by a sweep (only the id is known), ``actor`` None for an expiry."""
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": event_id,
        "event_type": "approval",
        "time": rfc3339(time),
        "tenant_id": tenant_id,
        "approval_id": approval_id,
        "transition": {"from": previous, "to": state},
        "actor": _actor(actor) if actor else None,
        "decision_id": decision_id,
        "approval": _approval(approval) if approval else None,
        "comment": comment,
    }


def control_event(
    *,
    event_id: str,
    time: datetime,
    tenant_id: str,
    action: str,
    actor: Identity,
    reason: str,
    run_id: str = "",
    mode: str = "",
    previous_mode: str = "",
) -> dict[str, Any]:
    """The event of one operator action (``stop_run`` or ``set_tenant_mode``)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": event_id,
        "event_type": "control",
        "time": rfc3339(time),
        "tenant_id": tenant_id,
        "action": action,
        "actor": _actor(actor),
        "run_id": run_id,
        "mode": mode,
        "previous_mode": previous_mode,
        "reason": reason,
    }


def _approval_asked(decision: Decision) -> dict[str, Any]:
    """What a REQUIRE_APPROVAL asked for, and the approval it waits for."""
    asked: dict[str, Any] = _shallow(decision.approval)
    ticket = decision.ticket
    if ticket is not None:
        asked.update(
            approval_id=ticket.approval_id,
            state=ticket.state,
            expires_at=rfc3339(ticket.expires_at),
        )
    return asked


def _actor(identity: Identity) -> dict[str, Any]:
    return {
        "principal_id": identity.principal_id,
        "roles": list(identity.roles),
        "method": identity.method,
    }


def _approval(approval: Approval) -> dict[str, Any]:
    return {
        "requester_principal_id": approval.requester_principal_id,
        "on_behalf_of": approval.on_behalf_of,
        "capability": approval.capability,
        "tool": approval.tool,
        "parameters_sha256": approval.parameters_sha256,
        "action_sha256": approval.action_sha256,
        "policy_revision": approval.policy_revision,
        "approver_roles": list(approval.approver_roles),
        "min_approvals": approval.min_approvals,
        "votes": [
            {
                "principal_id": v.principal_id,
                "roles": list(v.roles),
                "verdict": v.verdict.value,
                "comment": v.comment,
                "time": rfc3339(v.decided_at),
            }
            for v in approval.votes
        ],
        "expires_at": rfc3339(approval.expires_at),
    }


def _cost(cost: Cost) -> dict[str, int]:
    return {"usd_micros": cost.usd_micros, "tokens": cost.tokens}


def _shallow(record: Any) -> dict[str, Any]:
    """A flat dataclass as a dict, without asdict's deep copy."""
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


def _reasons(reasons: tuple[Reason, ...]) -> list[dict[str, str]]:
    return [{"code": r.code, "message": r.message} for r in reasons]
