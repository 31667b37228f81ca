"""The Authorize path, end to end (DESIGN §3):

    validate → identity → policy → budgets/run state → decision event → response

:meth:`Pipeline.authorize` is that path. Each step calls the module that owns it;
every failure past validation becomes a DENY with a reason code (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from capgate.budget.store import BudgetCheck, BudgetStore
from capgate.clock import Clock
from capgate.decision import reasons
from capgate.decision.model import (
    AuthorizeRequest,
    BudgetStatus,
    Decision,
    Effect,
    Obligation,
    PolicyResult,
    Reason,
)
from capgate.decision.validate import validate_request
from capgate.errors import BudgetStoreUnavailable, PolicyError
from capgate.events.event import decision_event
from capgate.events.sink import EventSink
from capgate.identity.insecure import InsecureIdentity
from capgate.observability.metrics import Metrics
from capgate.policy.active import ActivePolicy
from capgate.policy.input import build_input

log = structlog.get_logger("capgate")

_UNIT_REASONS = {
    "calls": reasons.CALL_LIMIT_EXCEEDED,
    "usd_micros": reasons.BUDGET_EXCEEDED,
    "tokens": reasons.TOKEN_LIMIT_EXCEEDED,
}


@dataclass(slots=True)
class _Outcome:
    """The decision as it forms, step by step."""

    effect: Effect
    reasons: tuple[Reason, ...] = ()
    policy: PolicyResult | None = None
    shadowed: PolicyResult | None = None
    budgets: tuple[BudgetStatus, ...] = ()
    error: str | None = None
    revision: str = ""
    latency_ms: dict[str, float] = field(default_factory=dict)

    def deny(self, code: str, error: str | None = None, **fields: str) -> None:
        self.effect = Effect.DENY
        self.reasons = (reasons.sidecar_reason(code, **fields),)
        self.error = error


@dataclass(frozen=True, slots=True)
class Pipeline:
    policy: ActivePolicy
    budgets: BudgetStore
    events: EventSink
    identity: InsecureIdentity
    metrics: Metrics
    clock: Clock
    new_id: Callable[[], str]

    async def authorize(self, request: AuthorizeRequest) -> Decision:
        """Decide ``request``.

        Raises:
            InvalidArgument: the request is malformed (the only error a caller sees).
        """
        started = self.clock.monotonic()
        validate_request(request)
        identity = self.identity.resolve(request)
        decided_at = self.clock.now()
        input_document = build_input(
            request, identity=identity, tenant_mode="normal", request_time=decided_at
        )
        policy_started = self.clock.monotonic()
        outcome = self._evaluate_policy(input_document)
        outcome.latency_ms["policy"] = (self.clock.monotonic() - policy_started) * 1000
        await self._apply_budgets(request, outcome)
        outcome.latency_ms["total"] = (self.clock.monotonic() - started) * 1000
        decision = self._decision(outcome, decided_at)
        event = decision_event(
            event_id=self.new_id(),
            request=request,
            decision=decision,
            input_document=input_document,
            shadowed=outcome.shadowed,
            error=outcome.error,
            latency_ms=outcome.latency_ms,
            mask=outcome.policy.mask if outcome.policy else (),
        )
        try:
            self.events.emit(event)
        except OSError as exc:  # the decision stands; the loss is counted and logged
            self.metrics.decision_log_errors.inc()
            log.error("decision_log_write_failed", decision_id=decision.decision_id, error=str(exc))
        self._observe(decision, outcome)
        return decision

    def _evaluate_policy(self, input_document: dict[str, Any]) -> _Outcome:
        engine = self.policy.engine
        outcome = _Outcome(effect=Effect.DENY)
        if engine is None:
            outcome.deny(reasons.POLICY_UNAVAILABLE, "no bundle is active")
            return outcome
        outcome.revision = engine.revision
        try:
            result = engine.evaluate(input_document)
        except PolicyError as exc:
            self.metrics.policy_errors.inc()
            outcome.deny(reasons.POLICY_ERROR, str(exc))
            return outcome
        outcome.policy = result
        outcome.effect, outcome.reasons = result.effect, result.reasons
        if result.enforcement == "shadow" and result.effect is not Effect.ALLOW:
            outcome.shadowed = result
            outcome.effect, outcome.reasons = Effect.ALLOW, ()
        return outcome

    async def _apply_budgets(self, request: AuthorizeRequest, outcome: _Outcome) -> None:
        """Check the policy's budgets; reserve them only for a non-dry-run ALLOW."""
        if outcome.effect is Effect.DENY or outcome.policy is None:
            return
        started = self.clock.monotonic()
        try:
            check: BudgetCheck = await self.budgets.check_and_reserve(
                tenant_id=request.tenant_id,
                run_id=request.run.run_id,
                budgets=outcome.policy.budgets,
                cost=request.estimated_cost,
                reserve=outcome.effect is Effect.ALLOW and not request.dry_run,
            )
        except BudgetStoreUnavailable as exc:
            self.metrics.budget_store_errors.inc()
            outcome.deny(reasons.BUDGET_STORE_UNAVAILABLE, str(exc))
            return
        except PolicyError as exc:
            self.metrics.policy_errors.inc()
            outcome.deny(reasons.POLICY_ERROR, str(exc))
            return
        finally:
            outcome.latency_ms["budget"] = (self.clock.monotonic() - started) * 1000
        if check.overrun is not None:
            scope, unit = check.overrun.budget.scope.value, check.overrun.unit
            self.metrics.budget_denials.labels(scope, unit).inc()
            outcome.deny(_UNIT_REASONS[unit], scope=scope)
            return
        outcome.budgets = check.statuses

    def _decision(self, outcome: _Outcome, decided_at: datetime) -> Decision:
        policy = outcome.policy
        obligations: tuple[Obligation, ...] = ()
        if policy is not None and outcome.effect is not Effect.DENY:
            obligations = policy.obligations
        approval = None
        if policy is not None and outcome.effect is Effect.REQUIRE_APPROVAL:
            approval = policy.approval
        return Decision(
            decision_id=self.new_id(),
            effect=outcome.effect,
            reasons=outcome.reasons,
            obligations=obligations,
            approval=approval,
            budgets=outcome.budgets,
            policy_revision=outcome.revision,
            decided_at=decided_at,
        )

    def _observe(self, decision: Decision, outcome: _Outcome) -> None:
        self.metrics.decisions.labels(decision.effect.value).inc()
        for reason in decision.reasons:
            self.metrics.decision_reasons.labels(reason.code).inc()
        for stage, ms in outcome.latency_ms.items():
            self.metrics.decision_duration.labels(stage).observe(ms / 1000)
