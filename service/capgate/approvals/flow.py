"""The approval steps of the Authorize path. Pure.

- :func:`approval_problem`: may this request use the approval it presents?
- :func:`approval_fact`: what the policy sees as ``input.approval`` when it may.
- :func:`approval_request`: the approval a REQUIRE_APPROVAL creates.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from capgate.approvals.binding import action_sha256, parameters_sha256
from capgate.approvals.model import Approval, ApprovalState
from capgate.approvals.store import encode_record
from capgate.budget.store import NewApproval
from capgate.decision.model import ApprovalRequirement, AuthorizeRequest, Reason


def approval_problem(approval: Approval, request: AuthorizeRequest, now: datetime) -> str | None:
    """Why ``request`` may not use ``approval``, or None when it may.

    Returns ``"pending"``, ``"rejected"``, ``"expired"``, ``"consumed"`` (its state is
    not APPROVED, or it is past ``expires_at``), or ``"mismatch"`` (it was granted for
    another tenant, principal, user, capability, tool or parameters). The store checks
    the state again, atomically, when an ALLOW consumes it.
    """
    if approval.state is not ApprovalState.APPROVED:
        return approval.state.value
    if approval.expires_at <= now:
        return ApprovalState.EXPIRED.value
    if approval.tenant_id != request.tenant_id or approval.action_sha256 != action_sha256(request):
        return "mismatch"
    return None


def approval_fact(approval: Approval) -> dict[str, Any]:
    """``input.approval`` (docs/security-teams/approvals.md): only ever built for an
    approval the sidecar verified; each approver once, with its roles."""
    return {
        "approval_id": approval.approval_id,
        "state": approval.state.value,
        "approvers": [
            {"principal_id": v.principal_id, "roles": list(v.roles)} for v in approval.approvers()
        ],
        "approver_roles": list(approval.approver_roles),
        "min_approvals": approval.min_approvals,
    }


def approval_request(
    request: AuthorizeRequest,
    requirement: ApprovalRequirement,
    *,
    approval_id: str,
    decision_id: str,
    policy_revision: str,
    reasons: tuple[Reason, ...],
    now: datetime,
) -> tuple[Approval, NewApproval]:
    """The approval ``request`` asks for (as the event records it) and what the store
    needs to create it. Times are provisional: the store stamps Redis TIME.

    Raises:
        ValueError: the parameters cannot be canonicalized (RFC 8785).
    """
    action = action_sha256(request)
    approval = Approval(
        approval_id=approval_id,
        tenant_id=request.tenant_id,
        state=ApprovalState.PENDING,
        requester_principal_id=request.principal.id,
        on_behalf_of=request.principal.on_behalf_of,
        capability=request.capability,
        tool=request.tool,
        parameters=dict(request.parameters),
        parameters_sha256=parameters_sha256(request.parameters),
        action_sha256=action,
        policy_revision=policy_revision,
        approver_roles=requirement.approver_roles,
        min_approvals=requirement.min_approvals,
        votes=(),
        request_decision_id=decision_id,
        consumed_by_decision_id="",
        run_id=request.run.run_id,
        workflow=request.run.workflow,
        reasons=reasons,
        created_at=now,
        expires_at=now + timedelta(seconds=requirement.ttl_seconds),
        updated_at=now,
    )
    new = NewApproval(
        approval_id=approval_id,
        action_sha256=action,
        requester_principal_id=approval.requester_principal_id,
        on_behalf_of=approval.on_behalf_of,
        approver_roles=approval.approver_roles,
        min_approvals=approval.min_approvals,
        ttl_seconds=requirement.ttl_seconds,
        record=encode_record(approval),
    )
    return approval, new
