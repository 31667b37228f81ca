"""Domain types of the Authorize path: frozen, transport-free, JSON-friendly.

Money is integer micro-dollars (``*_usd_micros``); durations carry their unit.
The gRPC servicer converts proto messages to and from these (api/convert.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

JSONObject = Mapping[str, Any]


class Effect(StrEnum):
    """A decision's outcome; precedence DENY > REQUIRE_APPROVAL > ALLOW."""

    ALLOW = "allow"
    DENY = "deny"
    REQUIRE_APPROVAL = "require_approval"


@dataclass(frozen=True, slots=True)
class Principal:
    id: str
    on_behalf_of: str = ""
    delegation_chain: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    attributes: JSONObject = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Resource:
    type: str = ""
    id: str = ""
    attributes: JSONObject = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Run:
    run_id: str = ""
    workflow: str = ""
    step: int = 0
    trace_id: str = ""


@dataclass(frozen=True, slots=True)
class Cost:
    usd_micros: int = 0
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class Evidence:
    kind: str = ""
    uri: str = ""
    digest: str = ""


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    """One Authorize call. ``size_bytes`` is the serialized request size."""

    tenant_id: str
    principal: Principal
    capability: str
    tool: str = ""
    parameters: JSONObject = field(default_factory=dict)
    resource: Resource = field(default_factory=Resource)
    run: Run = field(default_factory=Run)
    estimated_cost: Cost = field(default_factory=Cost)
    idempotency_key: str = ""
    approval_id: str = ""
    dry_run: bool = False
    evidence: tuple[Evidence, ...] = ()
    size_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Reason:
    """``code`` is UPPER_SNAKE; ``message`` is safe to show a model."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Obligation:
    type: str
    parameters: JSONObject = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ApprovalRequirement:
    """Who must approve a REQUIRE_APPROVAL decision, and for how long it may wait."""

    approver_roles: tuple[str, ...]
    min_approvals: int
    ttl_seconds: int


@dataclass(frozen=True, slots=True)
class ApprovalTicket:
    """The approval a REQUIRE_APPROVAL decision created (or found pending for the same
    action): the agent retries with ``approval_id`` once it is approved. ``state`` is
    an :class:`capgate.approvals.model.ApprovalState` value."""

    approval_id: str
    state: str
    expires_at: datetime


class BudgetScope(StrEnum):
    TENANT = "tenant"
    PRINCIPAL = "principal"
    CAPABILITY = "capability"
    RUN = "run"


class BudgetWindow(StrEnum):
    RUN = "run"
    MINUTE = "1m"
    HOUR = "1h"
    DAY = "1d"
    MONTH = "30d"


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """A budget the policy declared; ``None`` limits are not enforced."""

    scope: BudgetScope
    window: BudgetWindow
    limit_usd_micros: int | None = None
    limit_calls: int | None = None
    limit_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class RateLimitSpec:
    """A rate limit the policy declared: at most ``limit`` calls per ``period_seconds``
    on average, and at most ``burst`` at once (GCRA; ``burst`` defaults to ``limit``).
    ``key`` names the bucket's dimensions, e.g. ``"principal+capability"``."""

    key: str
    limit: int
    period_seconds: int
    burst: int


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """Usage of one budget after this decision (including its reservation, if any).

    ``used_calls`` counts allowed calls (an ABANDONED settlement gives one back);
    ``used_tokens`` is spent plus reserved tokens.
    """

    scope: BudgetScope
    window: BudgetWindow
    limit_usd_micros: int | None
    limit_calls: int | None
    limit_tokens: int | None
    spent_usd_micros: int
    reserved_usd_micros: int
    used_calls: int
    used_tokens: int


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """The bundle's answer (DESIGN §5), validated. ``mask`` lists input paths to redact;
    ``audit_required``: deny ``AUDIT_UNAVAILABLE`` when the decision log is full."""

    effect: Effect
    reasons: tuple[Reason, ...] = ()
    obligations: tuple[Obligation, ...] = ()
    approval: ApprovalRequirement | None = None
    budgets: tuple[BudgetSpec, ...] = ()
    rate_limits: tuple[RateLimitSpec, ...] = ()
    reservation_ttl_seconds: int | None = None
    action_class: str = "write"
    enforcement: str = "enforce"
    mask: tuple[str, ...] = ()
    audit_required: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """What Authorize answers. ``policy_revision`` is "" when no bundle decided;
    ``ticket`` names the approval a REQUIRE_APPROVAL waits for."""

    decision_id: str
    effect: Effect
    reasons: tuple[Reason, ...]
    obligations: tuple[Obligation, ...]
    approval: ApprovalRequirement | None
    budgets: tuple[BudgetStatus, ...]
    policy_revision: str
    decided_at: datetime
    ticket: ApprovalTicket | None = None


class Outcome(StrEnum):
    """What happened to an allowed tool call (``Settle``)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REVERTED = "reverted"
    ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class Change:
    """One field a tool call changed: the diff, for the settlement event."""

    resource: str
    field: str
    before: Any = None
    after: Any = None


@dataclass(frozen=True, slots=True)
class SettleRequest:
    """One Settle call. ``actual_cost`` ``None`` commits the estimate; ``size_bytes`` is
    the serialized request size."""

    tenant_id: str
    decision_id: str
    outcome: Outcome | None
    actual_cost: Cost | None = None
    changes: tuple[Change, ...] = ()
    result: JSONObject = field(default_factory=dict)
    size_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Settlement:
    """What Settle answers, and what the settlement event records.

    ``committed`` is the cost added to spend (zero for FAILED and ABANDONED);
    ``overrun_usd_micros`` is how far it went past what was held: past the estimate, or
    all of it when the reservation had expired first (never negative);
    ``expired_first`` is true when the reservation had already been released by its
    TTL; ``repeated`` when this decision was settled before with the same outcome.
    """

    decision_id: str
    outcome: Outcome
    estimated: Cost
    committed: Cost
    overrun_usd_micros: int
    budgets: tuple[BudgetStatus, ...]
    settled_at: datetime
    expired_first: bool
    repeated: bool
