"""The decision as the Authorize path forms it, step by step, and the sidecar's
refusal vocabulary for budgets and approvals. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from capgate.approvals.model import Approval
from capgate.decision import reasons
from capgate.decision.model import (
    ApprovalRequirement,
    ApprovalTicket,
    AuthorizeRequest,
    BudgetScope,
    BudgetSpec,
    BudgetStatus,
    Decision,
    Effect,
    PolicyResult,
    RateLimitSpec,
    Reason,
)
from capgate.identity.model import Identity

UNIT_REASONS = {
    "calls": reasons.CALL_LIMIT_EXCEEDED,
    "usd_micros": reasons.BUDGET_EXCEEDED,
    "tokens": reasons.TOKEN_LIMIT_EXCEEDED,
}


def counts_runs(budgets: Sequence[BudgetSpec], rate_limits: Sequence[RateLimitSpec]) -> bool:
    return any(b.scope is BudgetScope.RUN for b in budgets) or any(
        "run" in r.key.split("+") for r in rate_limits
    )


def event_actor(identity: Identity, request: AuthorizeRequest) -> Identity:
    """Who the approval events of this decision name: the verified caller, or in the
    insecure mode the principal its request body names."""
    if not identity.trusts_body:
        return identity
    p = request.principal
    return replace(identity, principal_id=p.id, tenant_id=request.tenant_id, roles=p.roles)


# Why a presented approval cannot be used, as the agent reads it (safe for a model).
APPROVAL_PROBLEMS = {
    "missing": "it does not exist in this tenant",
    "pending": "it has not been granted yet",
    "rejected": "it was rejected",
    "expired": "it has expired",
    "consumed": "it was already used",
    "mismatch": "it was granted for a different action (principal, capability, tool or parameters)",
}
DEFAULT_APPROVAL = ApprovalRequirement(("approver",), 1, 900)


@dataclass(slots=True)
class Outcome:
    """The decision as it forms, step by step."""

    effect: Effect
    reasons: tuple[Reason, ...] = ()
    policy: PolicyResult | None = None
    shadowed: PolicyResult | None = None
    budgets: tuple[BudgetStatus, ...] = ()
    error: str | None = None
    revision: str = ""
    replayed: Decision | None = None
    approval: Approval | None = None
    ticket: ApprovalTicket | None = None
    caller: Identity | None = None
    refused: bool = False
    latency_ms: dict[str, float] = field(default_factory=dict)

    def deny(self, code: str, error: str | None = None, **fields: str) -> None:
        """DENY with a sidecar reason (never recorded under an idempotency key: a retry
        is decided afresh once the cause has cleared)."""
        self.refused = True
        self.effect = Effect.DENY
        self.reasons = (reasons.sidecar_reason(code, **fields),)
        self.error = error
