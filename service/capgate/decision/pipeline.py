"""The Authorize path, end to end (DESIGN §3, §7):

    identity → validate → approval → policy → budgets/run state → decision event → response

:meth:`Pipeline.authorize` is that path. Each step calls the module that owns it;
every failure past validation becomes a DENY with a reason code (fail closed).
Identity failures are errors (UNAUTHENTICATED, PERMISSION_DENIED), never decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from capgate.approvals.audit import record_expired
from capgate.approvals.flow import approval_fact, approval_problem, approval_request
from capgate.approvals.model import Approval
from capgate.approvals.store import RedisApprovalStore
from capgate.budget.store import (
    Admission,
    AdmissionResult,
    BudgetStore,
    Idempotency,
    NewApproval,
    PresentedApproval,
    Subjects,
    Verdict,
    budget_statuses,
)
from capgate.clock import Clock
from capgate.decision import reasons
from capgate.decision.codec import decode_decision, encode_decision, encode_reservation
from capgate.decision.fingerprint import request_fingerprint
from capgate.decision.model import (
    ApprovalTicket,
    AuthorizeRequest,
    BudgetSpec,
    Decision,
    Effect,
    Obligation,
    RateLimitSpec,
)
from capgate.decision.outcome import (
    APPROVAL_PROBLEMS,
    DEFAULT_APPROVAL,
    UNIT_REASONS,
    Outcome,
    counts_runs,
    event_actor,
)
from capgate.decision.validate import validate_request
from capgate.errors import (
    BudgetStoreUnavailable,
    IdempotencyConflict,
    InvalidArgument,
    NotFound,
    PolicyError,
)
from capgate.events.config import DEFAULT_MASKED_PARAMETER_NAMES
from capgate.events.event import approval_event, decision_event
from capgate.events.sink import EventSink, emit_counted
from capgate.identity.binding import bind_request
from capgate.identity.model import Authenticator, Credentials, Identity
from capgate.observability.metrics import Metrics
from capgate.policy.active import ActivePolicy
from capgate.policy.input import build_input


@dataclass(frozen=True, slots=True)
class Pipeline:
    """``reservation_ttl_seconds``: how long an ALLOW's reservation waits for Settle
    when the policy names no TTL; ``masked_names``: parameter names erased from every
    decision event (``events.masked_parameter_names``)."""

    policy: ActivePolicy
    budgets: BudgetStore
    approvals: RedisApprovalStore
    events: EventSink
    authenticator: Authenticator
    metrics: Metrics
    clock: Clock
    new_id: Callable[[], str]
    reservation_ttl_seconds: int
    masked_names: tuple[str, ...] = DEFAULT_MASKED_PARAMETER_NAMES

    async def authorize(self, request: AuthorizeRequest, credentials: Credentials) -> Decision:
        """Decide ``request`` for the caller ``credentials`` identify.

        Raises:
            Unauthenticated: the credentials are missing or fail verification.
            PermissionDenied: the request names another tenant or principal than them.
            InvalidArgument: the request is malformed, or its idempotency key was used
                for another request (the only errors a caller sees).
        """
        started = self.clock.monotonic()
        identity = self.authenticator.authenticate(credentials)
        request = bind_request(identity, request)
        validate_request(request)
        decided_at = self.clock.now()
        decision_id = self.new_id()
        outcome = Outcome(effect=Effect.DENY, caller=event_actor(identity, request))
        input_document = build_input(request, identity=identity.fact(), request_time=decided_at)
        if request.approval_id:
            await self._check_approval(request, outcome, decided_at)
            if outcome.approval is not None:
                input_document["approval"] = approval_fact(outcome.approval)
        if not outcome.reasons and outcome.replayed is None:
            policy_started = self.clock.monotonic()
            await self._evaluate_policy(input_document, outcome)
            outcome.latency_ms["policy"] = (self.clock.monotonic() - policy_started) * 1000
            self._check_audit(outcome)
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
            masked_names=self.masked_names,
            replayed=outcome.replayed is not None,
        )
        emit_counted(self.events, event, self.metrics.decision_log_errors)
        self._observe(decision, outcome)
        return decision

    async def _check_approval(
        self, request: AuthorizeRequest, outcome: Outcome, now: datetime
    ) -> None:
        """Load the approval the request presents and check it may be used; on any
        problem, deny ``APPROVAL_INVALID`` (the policy is not evaluated)."""
        try:
            approval, expired = await self.approvals.get(request.tenant_id, request.approval_id)
        except NotFound:
            self.metrics.approvals_invalid.labels("missing").inc()
            outcome.deny(
                reasons.APPROVAL_INVALID, "approval not found", why=APPROVAL_PROBLEMS["missing"]
            )
            return
        except BudgetStoreUnavailable as exc:
            self.metrics.budget_store_errors.inc()
            outcome.deny(reasons.BUDGET_STORE_UNAVAILABLE, str(exc))
            return
        self._emit_expired(request.tenant_id, expired, now)
        problem = approval_problem(approval, request, now)
        if problem == "consumed" and request.idempotency_key:
            # the retry of the call that consumed it gets that call's decision again
            await self._replay(request, outcome)
            if outcome.replayed is not None or outcome.reasons:  # replayed, or stopped
                return
        if problem is not None:
            self.metrics.approvals_invalid.labels(problem).inc()
            outcome.deny(
                reasons.APPROVAL_INVALID, f"approval {problem}", why=APPROVAL_PROBLEMS[problem]
            )
            return
        outcome.approval = approval

    def _refuse_approval(self, outcome: Outcome, problem: str) -> None:
        """DENY ``APPROVAL_INVALID``, saying why (a key of APPROVAL_PROBLEMS)."""
        self.metrics.approvals_invalid.labels(problem).inc()
        outcome.deny(
            reasons.APPROVAL_INVALID, f"approval {problem}", why=APPROVAL_PROBLEMS[problem]
        )

    async def _replay(self, request: AuthorizeRequest, outcome: Outcome) -> None:
        """Set ``outcome.replayed`` to the decision recorded for this exact request."""
        try:
            result = await self.budgets.recorded(
                request.tenant_id,
                request.idempotency_key,
                request_fingerprint(request),
                run_id=request.run.run_id,
            )
        except BudgetStoreUnavailable:
            return  # the refusal that follows stands; a retry may replay
        if result is None:
            return
        if result.verdict is Verdict.CONTROLLED:
            outcome.deny(result.control_code)
            return
        self._count_admission(result)
        outcome.replayed = self._replayed(result)

    def _replayed(self, result: AdmissionResult) -> Decision:
        """The recorded decision of a REPLAYED result, with its budgets and approval."""
        recorded, specs = decode_decision(result.recorded_decision)
        ticket = None
        if result.approval_id and result.approval_expires_at is not None:
            ticket = ApprovalTicket(
                result.approval_id, result.approval_state, result.approval_expires_at
            )
        return replace(recorded, budgets=budget_statuses(specs, result.usage), ticket=ticket)

    def _check_audit(self, outcome: Outcome) -> None:
        """A capability marked ``audit_required`` is denied while the decision log
        cannot take its event without dropping older ones."""
        policy = outcome.policy
        if (
            policy is not None
            and policy.audit_required
            and outcome.effect is not Effect.DENY
            and self.events.saturated()
        ):
            outcome.deny(reasons.AUDIT_UNAVAILABLE, "the outbox is at its cap")

    async def _evaluate_policy(self, input_document: dict[str, Any], outcome: Outcome) -> None:
        engine = self.policy.engine  # read once: a swap takes effect between requests
        if engine is None:
            outcome.deny(reasons.POLICY_UNAVAILABLE, "no bundle is active")
            return
        outcome.revision = engine.revision
        try:
            evaluation = await engine.decide(input_document)
        except PolicyError as exc:
            self.metrics.policy_errors.inc()
            outcome.deny(reasons.POLICY_ERROR, str(exc))
            return
        outcome.revision = evaluation.revision
        result = evaluation.result
        outcome.policy = result
        outcome.effect, outcome.reasons = result.effect, result.reasons
        if result.enforcement == "shadow" and result.effect is not Effect.ALLOW:
            outcome.shadowed = result
            outcome.effect, outcome.reasons = Effect.ALLOW, ()

    async def _admit(
        self,
        request: AuthorizeRequest,
        outcome: Outcome,
        decision_id: str,
        decided_at: datetime,
    ) -> None:
        """Admit the decision in the store, in one round trip: the run's stop and the
        tenant's mode checked; rate limits and budgets checked (and consumed by a
        non-dry-run ALLOW, which also consumes a presented approval and records a
        reservation for Settle); the approval a REQUIRE_APPROVAL asks for created; the
        idempotency key replayed or recorded."""
        policy = outcome.policy
        allow = outcome.effect is Effect.ALLOW and not request.dry_run
        # Only decisions the policy made are recorded: a sidecar failure (no bundle, a
        # policy error) must not be replayed once it has cleared.
        idempotent = bool(request.idempotency_key) and not request.dry_run and policy is not None
        if policy is None or outcome.refused or (outcome.effect is Effect.DENY and not idempotent):
            return
        budgets: Sequence[BudgetSpec] = ()
        rate_limits: Sequence[RateLimitSpec] = ()
        if outcome.effect is not Effect.DENY:
            budgets, rate_limits = policy.budgets, policy.rate_limits
        if not request.run.run_id and counts_runs(budgets, rate_limits):
            self.metrics.policy_errors.inc()
            outcome.deny(
                reasons.POLICY_ERROR,
                "the policy declared a run budget or rate limit but the request has no run.run_id",
            )
            return
        ttl = policy.reservation_ttl_seconds or self.reservation_ttl_seconds
        new_approval: NewApproval | None = None
        created: Approval | None = None
        if outcome.effect is Effect.REQUIRE_APPROVAL and not request.dry_run:
            created, new_approval = approval_request(
                request,
                policy.approval or DEFAULT_APPROVAL,
                approval_id=self.new_id(),
                decision_id=decision_id,
                policy_revision=outcome.revision,
                reasons=outcome.reasons,
                now=decided_at,
            )
        presented = outcome.approval
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
            idempotency=self._idempotency(request, outcome, decision_id, decided_at, budgets)
            if idempotent
            else None,
            action_class="" if outcome.effect is Effect.DENY else policy.action_class,
            presented_approval=(
                PresentedApproval(presented.approval_id, presented.action_sha256, consume=allow)
                if presented
                else None
            ),
            new_approval=new_approval,
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
        self._emit_expired(request.tenant_id, result.expired_approvals, decided_at)
        verdict = result.verdict
        if verdict is Verdict.REPLAYED:
            outcome.replayed = self._replayed(result)
        elif verdict is Verdict.CONTROLLED:
            outcome.deny(result.control_code)
        elif verdict is Verdict.APPROVAL_INVALID:
            problem = result.approval_state
            self.metrics.approvals_invalid.labels(problem).inc()
            outcome.deny(
                reasons.APPROVAL_INVALID, f"approval {problem}", why=APPROVAL_PROBLEMS[problem]
            )
        elif result.overrun is not None:
            scope, unit = result.overrun.budget.scope.value, result.overrun.unit
            outcome.deny(UNIT_REASONS[unit], scope=scope)
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
            if allow and presented is not None:
                self._emit_approval(
                    presented, "approved", "consumed", outcome.caller, decision_id, decided_at
                )
            if result.approval_id and result.approval_expires_at is not None:
                outcome.ticket = ApprovalTicket(
                    result.approval_id, "pending", result.approval_expires_at
                )
                if created is not None and result.approval_id == created.approval_id:
                    self.metrics.approvals_created.inc()
                    self._emit_approval(
                        replace(created, expires_at=result.approval_expires_at),
                        None,
                        "pending",
                        outcome.caller,
                        decision_id,
                        decided_at,
                    )

    def _idempotency(
        self,
        request: AuthorizeRequest,
        outcome: Outcome,
        decision_id: str,
        decided_at: datetime,
        budgets: Sequence[BudgetSpec],
    ) -> Idempotency:
        """The key to record, with the decision as the policy made it (a refusal by
        the store is not recorded). A request presenting a verified approval has a
        base fingerprint without it: it continues a recorded REQUIRE_APPROVAL."""
        fingerprint = request_fingerprint(request)
        base = fingerprint
        if outcome.approval is not None:
            base = request_fingerprint(replace(request, approval_id=""))
        return Idempotency(
            request.idempotency_key,
            fingerprint,
            base,
            encode_decision(self._decision(outcome, decision_id, decided_at), budgets),
        )

    def _emit_approval(
        self,
        approval: Approval,
        previous: str | None,
        state: str,
        actor: Identity | None,
        decision_id: str,
        now: datetime,
    ) -> None:
        """The event of a transition this decision caused (creation, consumption); the
        actor is the requesting principal."""
        event = approval_event(
            event_id=self.new_id(),
            time=now,
            tenant_id=approval.tenant_id,
            approval_id=approval.approval_id,
            previous=previous,
            state=state,
            actor=actor,
            approval=approval,
            decision_id=decision_id,
        )
        emit_counted(self.events, event, self.metrics.decision_log_errors)

    def _emit_expired(self, tenant_id: str, approval_ids: Sequence[str], now: datetime) -> None:
        record_expired(
            self.events,
            self.metrics,
            self.new_id,
            tenant_id=tenant_id,
            approval_ids=approval_ids,
            now=now,
        )

    def _count_admission(self, result: AdmissionResult) -> None:
        metrics = self.metrics
        metrics.reservations_released(result.released)
        if result.overrun is not None:
            code = UNIT_REASONS[result.overrun.unit]
            metrics.budget_denials.labels(result.overrun.budget.scope.value, code).inc()
        elif result.throttle is not None:
            metrics.budget_denials.labels("rate_limit", reasons.RATE_LIMITED).inc()
        elif result.verdict is Verdict.REPLAYED:
            metrics.idempotent_replays.inc()

    def _decision(self, outcome: Outcome, decision_id: str, decided_at: datetime) -> Decision:
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
            ticket=outcome.ticket if outcome.effect is Effect.REQUIRE_APPROVAL else None,
        )

    def _observe(self, decision: Decision, outcome: Outcome) -> None:
        self.metrics.decisions.labels(decision.effect.value).inc()
        for reason in decision.reasons:
            self.metrics.decision_reasons.labels(reason.code).inc()
        for stage, ms in outcome.latency_ms.items():
            self.metrics.decision_duration.labels(stage).observe(ms / 1000)
