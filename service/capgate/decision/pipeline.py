"""The Authorize path, end to end (DESIGN §3):

    validate → identity → policy → budgets/run state → decision event → response

:meth:`Pipeline.authorize` is that path. Each step calls the module that owns it;
every failure past validation becomes a DENY with a reason code (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from capgate.budget.store import (
    Admission,
    AdmissionResult,
    BudgetStore,
    Idempotency,
    Subjects,
    Verdict,
    budget_statuses,
)
from capgate.clock import Clock
from capgate.decision import reasons
from capgate.decision.codec import decode_decision, encode_decision, encode_reservation
from capgate.decision.fingerprint import request_fingerprint
from capgate.decision.model import (
    AuthorizeRequest,
    BudgetScope,
    BudgetSpec,
    BudgetStatus,
    Decision,
    Effect,
    Obligation,
    PolicyResult,
    RateLimitSpec,
    Reason,
)
from capgate.decision.validate import validate_request
from capgate.errors import BudgetStoreUnavailable, IdempotencyConflict, InvalidArgument, PolicyError
from capgate.events.event import decision_event
from capgate.events.sink import EventSink, emit_counted
from capgate.identity.insecure import InsecureIdentity
from capgate.observability.metrics import Metrics
from capgate.policy.active import ActivePolicy
from capgate.policy.input import build_input

_UNIT_REASONS = {
    "calls": reasons.CALL_LIMIT_EXCEEDED,
    "usd_micros": reasons.BUDGET_EXCEEDED,
    "tokens": reasons.TOKEN_LIMIT_EXCEEDED,
}


def _counts_runs(budgets: Sequence[BudgetSpec], rate_limits: Sequence[RateLimitSpec]) -> bool:
    return any(b.scope is BudgetScope.RUN for b in budgets) or any(
        "run" in r.key.split("+") for r in rate_limits
    )


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
    replayed: Decision | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)

    def deny(self, code: str, error: str | None = None, **fields: str) -> None:
        self.effect = Effect.DENY
        self.reasons = (reasons.sidecar_reason(code, **fields),)
        self.error = error


@dataclass(frozen=True, slots=True)
class Pipeline:
    """``reservation_ttl_seconds``: how long an ALLOW's reservation waits for Settle
    when the policy names no TTL."""

    policy: ActivePolicy
    budgets: BudgetStore
    events: EventSink
    identity: InsecureIdentity
    metrics: Metrics
    clock: Clock
    new_id: Callable[[], str]
    reservation_ttl_seconds: int

    async def authorize(self, request: AuthorizeRequest) -> Decision:
        """Decide ``request``.

        Raises:
            InvalidArgument: the request is malformed, or its idempotency key was used
                for another request (the only errors a caller sees).
        """
        started = self.clock.monotonic()
        validate_request(request)
        identity = self.identity.resolve(request)
        decided_at = self.clock.now()
        decision_id = self.new_id()
        input_document = build_input(
            request, identity=identity, tenant_mode="normal", request_time=decided_at
        )
        policy_started = self.clock.monotonic()
        outcome = self._evaluate_policy(input_document)
        outcome.latency_ms["policy"] = (self.clock.monotonic() - policy_started) * 1000
        await self._admit(request, outcome, decision_id, decided_at)
        outcome.latency_ms["total"] = (self.clock.monotonic() - started) * 1000
        decision = outcome.replayed or self._decision(outcome, decision_id, decided_at)
        event = decision_event(
            event_id=self.new_id(),
            request=request,
            decision=decision,
            input_document=input_document,
            shadowed=outcome.shadowed,
            error=outcome.error,
            latency_ms=outcome.latency_ms,
            mask=outcome.policy.mask if outcome.policy else (),
            replayed=outcome.replayed is not None,
        )
        emit_counted(self.events, event, self.metrics.decision_log_errors)
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

    async def _admit(
        self,
        request: AuthorizeRequest,
        outcome: _Outcome,
        decision_id: str,
        decided_at: datetime,
    ) -> None:
        """Admit the decision in the budget store, in one round trip: rate limits and
        budgets checked (and consumed by a non-dry-run ALLOW, which also records a
        reservation for Settle), and the idempotency key replayed or recorded."""
        policy = outcome.policy
        allow = outcome.effect is Effect.ALLOW and not request.dry_run
        # Only decisions the policy made are recorded: a sidecar failure (no bundle, a
        # policy error) must not be replayed once it has cleared.
        idempotent = bool(request.idempotency_key) and not request.dry_run and policy is not None
        budgets: Sequence[BudgetSpec] = ()
        rate_limits: Sequence[RateLimitSpec] = ()
        if policy is not None and outcome.effect is not Effect.DENY:
            budgets, rate_limits = policy.budgets, policy.rate_limits
        if not (allow or idempotent or budgets or rate_limits):
            return
        if not request.run.run_id and _counts_runs(budgets, rate_limits):
            self.metrics.policy_errors.inc()
            outcome.deny(
                reasons.POLICY_ERROR,
                "the policy declared a run budget or rate limit but the request has no run.run_id",
            )
            return
        ttl = (policy.reservation_ttl_seconds if policy else None) or self.reservation_ttl_seconds
        admission = Admission(
            tenant_id=request.tenant_id,
            decision_id=decision_id,
            subjects=Subjects(
                request.principal.id, request.capability, request.tool, request.run.run_id
            ),
            budgets=budgets,
            rate_limits=rate_limits,
            cost=request.estimated_cost,
            consume=allow,
            reservation_ttl_seconds=ttl,
            metadata=encode_reservation(request, budgets) if allow else "",
            idempotency=(
                Idempotency(
                    request.idempotency_key,
                    request_fingerprint(request),
                    # recorded as the policy made it; a refusal below is not recorded
                    encode_decision(self._decision(outcome, decision_id, decided_at), budgets),
                )
                if idempotent
                else None
            ),
        )
        started = self.clock.monotonic()
        try:
            result = await self.budgets.admit(admission)
        except BudgetStoreUnavailable as exc:
            self.metrics.budget_store_errors.inc()
            if outcome.effect is Effect.DENY:  # only the key went unrecorded; the DENY stands
                outcome.error = str(exc)
            else:
                outcome.deny(reasons.BUDGET_STORE_UNAVAILABLE, str(exc))
            return
        except IdempotencyConflict as exc:
            raise InvalidArgument(
                [("idempotency_key", "was used in the last 24 h for a different request")]
            ) from exc
        finally:
            outcome.latency_ms["budget"] = (self.clock.monotonic() - started) * 1000
        self._count_admission(result)
        if result.verdict is Verdict.REPLAYED:
            recorded, specs = decode_decision(result.recorded_decision)
            outcome.replayed = replace(recorded, budgets=budget_statuses(specs, result.usage))
        elif result.overrun is not None:
            scope, unit = result.overrun.budget.scope.value, result.overrun.unit
            outcome.deny(_UNIT_REASONS[unit], scope=scope)
        elif result.throttle is not None:
            throttle = result.throttle
            outcome.deny(
                reasons.RATE_LIMITED,
                key=throttle.rate_limit.key,
                retry_after_ms=str(throttle.retry_after_ms),
            )
        else:
            outcome.budgets = budget_statuses(budgets, result.usage)
            if allow:
                self.metrics.reservations_open.inc()

    def _count_admission(self, result: AdmissionResult) -> None:
        metrics = self.metrics
        metrics.reservations_released(result.released)
        if result.overrun is not None:
            code = _UNIT_REASONS[result.overrun.unit]
            metrics.budget_denials.labels(result.overrun.budget.scope.value, code).inc()
        elif result.throttle is not None:
            metrics.budget_denials.labels("rate_limit", reasons.RATE_LIMITED).inc()
        elif result.verdict is Verdict.REPLAYED:
            metrics.idempotent_replays.inc()

    def _decision(self, outcome: _Outcome, decision_id: str, decided_at: datetime) -> Decision:
        policy = outcome.policy
        obligations: tuple[Obligation, ...] = ()
        if policy is not None and outcome.effect is not Effect.DENY:
            obligations = policy.obligations
        approval = None
        if policy is not None and outcome.effect is Effect.REQUIRE_APPROVAL:
            approval = policy.approval
        return Decision(
            decision_id=decision_id,
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
