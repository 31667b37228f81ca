"""The ``BudgetStore`` protocol: admit a decision and settle it, each in one step.

A decision is *admitted* atomically (DESIGN §6): its rate limits and budgets are all
checked and, when it is an ALLOW, all consumed, or nothing is. *Settling* replaces the
reservation with the actual cost, or releases it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal, Protocol

from capgate.decision.model import BudgetSpec, BudgetStatus, Cost, Outcome, RateLimitSpec

Unit = Literal["calls", "usd_micros", "tokens"]
# One usage key's values, in the scripts' USAGE_FIELDS order:
# calls, spent_usd_micros, reserved_usd_micros, spent_tokens, reserved_tokens.
Usage = tuple[int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class Subjects:
    """The ids budgets and rate limits are counted against."""

    principal_id: str
    capability: str
    tool: str
    run_id: str


@dataclass(frozen=True, slots=True)
class Idempotency:
    """An ``idempotency_key`` to look up and record with the decision.

    ``fingerprint``: hex SHA-256 of the request (a key reused for another request is
    refused); ``base_fingerprint``: the same without the request's ``approval_id``, so
    a retry that adds a verified approval to a recorded REQUIRE_APPROVAL continues it
    instead of conflicting; ``decision``: the decision to record, opaque to the store.
    """

    key: str
    fingerprint: str
    base_fingerprint: str
    decision: str


@dataclass(frozen=True, slots=True)
class PresentedApproval:
    """The verified approval a request presents. ``consume`` (a non-dry-run ALLOW):
    consumed atomically with the budgets, if it is still APPROVED and bound to
    ``action_sha256``; otherwise it only lets the request continue the
    REQUIRE_APPROVAL recorded under its idempotency key."""

    approval_id: str
    action_sha256: str
    consume: bool


@dataclass(frozen=True, slots=True)
class NewApproval:
    """The approval a REQUIRE_APPROVAL asks for; the pending approval of the same
    action is reused instead when there is one. ``record`` is the JSON of the
    immutable fields, opaque to the store; ``ttl_seconds`` bounds how long it may
    wait (pending) and be used (approved)."""

    approval_id: str
    action_sha256: str
    requester_principal_id: str
    on_behalf_of: str
    approver_roles: tuple[str, ...]
    min_approvals: int
    ttl_seconds: int
    record: str


@dataclass(frozen=True, slots=True)
class Admission:
    """What one decision asks of the store.

    ``consume``: reserve budgets, take rate-limit tokens, consume the presented
    approval and record a reservation that ``settle`` can find (an ALLOW); otherwise
    only check. ``metadata`` is stored with the reservation and handed back by
    ``settle``. ``action_class`` (``"read"`` | ``"write"``) is checked against the
    run's stop and the tenant's mode; ``""`` skips that check (a policy DENY).
    """

    tenant_id: str
    decision_id: str
    subjects: Subjects
    budgets: Sequence[BudgetSpec]
    rate_limits: Sequence[RateLimitSpec]
    cost: Cost
    consume: bool
    reservation_ttl_seconds: int
    metadata: str = ""
    idempotency: Idempotency | None = None
    action_class: str = ""
    presented_approval: PresentedApproval | None = None
    new_approval: NewApproval | None = None


class Verdict(StrEnum):
    ADMITTED = "admitted"
    BUDGET_EXCEEDED = "budget_exceeded"
    RATE_LIMITED = "rate_limited"
    REPLAYED = "replayed"
    CONTROLLED = "controlled"
    APPROVAL_INVALID = "approval_invalid"


@dataclass(frozen=True, slots=True)
class Overrun:
    """The budget, and the unit in it, that one more call would exceed."""

    budget: BudgetSpec
    unit: Unit


@dataclass(frozen=True, slots=True)
class Throttle:
    """The rate limit that refused the call, and when a retry can pass."""

    rate_limit: RateLimitSpec
    retry_after_ms: int


@dataclass(frozen=True, slots=True)
class AdmissionResult:
    """``usage``: one :data:`Usage` per budget (after this decision, ADMITTED or
    REPLAYED); ``overrun`` / ``throttle`` say what refused it; ``control_code``: the
    reason code of a CONTROLLED refusal (``RUN_STOPPED``, ``TENANT_FROZEN``,
    ``TENANT_READ_ONLY``); ``approval_state``: why a presented approval is not usable
    (APPROVAL_INVALID: ``missing``, ``pending``, ``expired``, ``consumed``,
    ``rejected``, ``mismatch``), or the current state of a replayed decision's
    approval; ``approval_id`` / ``approval_expires_at``: the approval created or
    reused for a REQUIRE_APPROVAL (or recorded with a replayed one);
    ``recorded_decision`` is the decision an idempotency key replays; ``released``
    counts expired reservations this call released; ``expired_approvals``: ids of
    approvals this call found expired."""

    verdict: Verdict
    usage: tuple[Usage, ...] = ()
    overrun: Overrun | None = None
    throttle: Throttle | None = None
    recorded_decision: str = ""
    released: int = 0
    control_code: str = ""
    approval_state: str = ""
    approval_id: str = ""
    approval_expires_at: datetime | None = None
    expired_approvals: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SettleResult:
    """``previous_state``: ``reserved``, or ``expired`` (its TTL had released it);
    ``settled_at``: when it was first settled (Redis TIME); ``repeated``: this outcome
    was recorded before and nothing changed now; ``released``: expired reservations of
    the tenant this call released."""

    metadata: str
    previous_state: str
    committed: Cost
    estimated: Cost
    usage: tuple[Usage, ...]
    settled_at: datetime
    repeated: bool
    released: int = 0


class BudgetStore(Protocol):
    async def admit(self, admission: Admission) -> AdmissionResult:
        """Check, and when ``admission.consume`` consume, everything in one step.

        Raises:
            BudgetStoreUnavailable: the store did not answer within its deadline.
            IdempotencyConflict: the idempotency key was recorded for another request.
        """
        ...

    async def recorded(
        self, tenant_id: str, key: str, fingerprint: str, *, run_id: str
    ) -> AdmissionResult | None:
        """The decision recorded under idempotency ``key`` for the request with this
        ``fingerprint`` (REPLAYED), CONTROLLED when the run is stopped or the tenant
        not in normal mode, or None. Raises BudgetStoreUnavailable."""
        ...

    async def settle(
        self, *, tenant_id: str, decision_id: str, outcome: Outcome, actual: Cost | None
    ) -> SettleResult:
        """Settle the reservation of ``decision_id``; ``actual`` None commits the estimate.

        Raises:
            BudgetStoreUnavailable: the store did not answer within its deadline.
            ReservationNotFound: no reservation of this decision in this tenant.
            SettlementConflict: it was settled before with another outcome.
        """
        ...

    async def connect(self) -> None:
        """Warm up before serving; never raises (decisions fail closed meanwhile)."""
        ...

    async def aclose(self) -> None: ...


def budget_statuses(
    budgets: Sequence[BudgetSpec], usage: Sequence[Usage]
) -> tuple[BudgetStatus, ...]:
    """Each budget with its usage, as Authorize and Settle report them."""
    return tuple(
        BudgetStatus(
            scope=spec.scope,
            window=spec.window,
            limit_usd_micros=spec.limit_usd_micros,
            limit_calls=spec.limit_calls,
            limit_tokens=spec.limit_tokens,
            used_calls=calls,
            spent_usd_micros=spent_usd,
            reserved_usd_micros=reserved_usd,
            used_tokens=spent_tokens + reserved_tokens,
        )
        for spec, (calls, spent_usd, reserved_usd, spent_tokens, reserved_tokens) in zip(
            budgets, usage, strict=True
        )
    )
