"""The ApprovalService operations (DESIGN §7), transport-free: who may read and decide
approvals, and the events and metrics each transition leaves.

Any verified caller of a tenant may read its approvals (an agent polls the one it
waits for). Deciding needs one of the approval's approver roles; the rules of a
verdict are enforced atomically by the store (approvals/scripts/decide.lua).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from capgate.approvals.audit import record_expired
from capgate.approvals.model import Approval, ApprovalPage, ApprovalState, Transition, Verdict
from capgate.approvals.store import RedisApprovalStore
from capgate.clock import Clock
from capgate.errors import InvalidArgument
from capgate.events.event import approval_event
from capgate.events.sink import EventSink, emit_counted
from capgate.identity.access import tenant_for
from capgate.identity.model import Identity
from capgate.observability.metrics import Metrics

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class ApprovalDesk:
    store: RedisApprovalStore
    events: EventSink
    metrics: Metrics
    clock: Clock
    new_id: Callable[[], str]

    async def get(self, caller: Identity, tenant_id: str, approval_id: str) -> Approval:
        """Raises PermissionDenied, InvalidArgument, NotFound, BudgetStoreUnavailable."""
        tenant = tenant_for(caller, tenant_id)
        _require_id(approval_id)
        approval, expired = await self.store.get(tenant, approval_id)
        self._emit_expired(tenant, expired)
        return approval

    async def list(
        self,
        caller: Identity,
        tenant_id: str,
        *,
        state: ApprovalState | None,
        page_size: int,
        cursor: str,
    ) -> ApprovalPage:
        """``page_size`` 0 means the default (50); at most 500.

        Raises PermissionDenied, InvalidArgument, BudgetStoreUnavailable."""
        tenant = tenant_for(caller, tenant_id)
        if page_size < 0:
            raise InvalidArgument([("page_size", "must not be negative")])
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        page, expired = await self.store.list(tenant, state=state, page_size=size, cursor=cursor)
        self._emit_expired(tenant, expired)
        return page

    async def decide(
        self,
        caller: Identity,
        tenant_id: str,
        approval_id: str,
        verdict: Verdict | None,
        comment: str,
    ) -> Approval:
        """Record ``caller``'s verdict.

        Raises:
            InvalidArgument: no approval_id or verdict.
            PermissionDenied: another tenant; no approver role; the requester or the
                user it acts for.
            NotFound: no such approval in the tenant.
            FailedPrecondition: the approval is no longer pending.
            BudgetStoreUnavailable: Redis did not answer.
        """
        tenant = tenant_for(caller, tenant_id)
        violations = []
        if not approval_id:
            violations.append(("approval_id", "is required"))
        if verdict is None:
            violations.append(("verdict", "must be APPROVE or REJECT"))
        if len(comment) > 4096:
            violations.append(("comment", "is longer than 4096 characters"))
        if violations or verdict is None:
            raise InvalidArgument(violations)
        decided = await self.store.decide(tenant, approval_id, caller, verdict, comment)
        self._emit_expired(tenant, decided.expired)
        approval = decided.approval
        if decided.repeated:
            return approval
        self.metrics.approvals_decided.labels(verdict.value).inc()
        if decided.changed:
            latency = (approval.updated_at - approval.created_at).total_seconds()
            self.metrics.approval_latency.observe(max(latency, 0.0))
        event = approval_event(
            event_id=self.new_id(),
            time=self.clock.now(),
            tenant_id=tenant,
            approval_id=approval.approval_id,
            previous=ApprovalState.PENDING.value,
            state=approval.state.value,
            actor=caller,
            approval=approval,
            decision_id=approval.request_decision_id,
            comment=comment,
        )
        emit_counted(self.events, event, self.metrics.decision_log_errors)
        return approval

    async def watch(
        self, caller: Identity, tenant_id: str, cursor: str
    ) -> AsyncIterator[Transition]:
        """Every transition of the tenant's approvals after ``cursor``.

        Raises PermissionDenied, InvalidArgument (a bad cursor), BudgetStoreUnavailable.
        """
        tenant = tenant_for(caller, tenant_id)
        try:
            transitions = self.store.watch(
                tenant, cursor, lambda ids: self._emit_expired(tenant, ids)
            )
            async for transition in transitions:
                yield transition
        except ValueError as exc:
            raise InvalidArgument([("resume_token", str(exc))]) from exc

    def _emit_expired(self, tenant_id: str, approval_ids: Sequence[str]) -> None:
        record_expired(
            self.events,
            self.metrics,
            self.new_id,
            tenant_id=tenant_id,
            approval_ids=approval_ids,
            now=self.clock.now(),
        )


def _require_id(approval_id: str) -> None:
    if not approval_id:
        raise InvalidArgument([("approval_id", "is required")])
