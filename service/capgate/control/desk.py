"""The ControlService operations (DESIGN §7), transport-free: the stop button.

Every operation needs the ``capgate-admin`` role; a caller bound to a tenant acts on
that tenant only (identity/access.py). Each change is a ``control`` decision event
naming the operator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from capgate.approvals.audit import record_expired
from capgate.approvals.model import ApprovalState
from capgate.approvals.store import RedisApprovalStore
from capgate.clock import Clock
from capgate.control.store import RedisControlStore, RunStop, TenantMode
from capgate.errors import BudgetStoreUnavailable, InvalidArgument
from capgate.events.event import control_event
from capgate.events.sink import EventSink, emit_counted
from capgate.identity.access import ADMIN_ROLE, require_role, tenant_for
from capgate.identity.model import Identity
from capgate.observability.metrics import Metrics
from capgate.policy.activation import BundleStatus
from capgate.policy.active import ActivePolicy

MAX_REASON_CHARS = 1024
# GetStatus counts pending approvals up to this many.
PENDING_COUNT_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Status:
    """``tenant_mode`` and ``pending_approvals`` are None when no tenant was asked for
    or Redis did not answer."""

    policy_revision: str
    budget_store_reachable: bool
    tenant_mode: TenantMode | None
    pending_approvals: int | None
    decision_log_errors: int
    policy_engine: str
    bundle: BundleStatus


@dataclass(frozen=True, slots=True)
class ModeChange:
    tenant_id: str
    mode: TenantMode
    previous: TenantMode
    changed_by: str
    changed_at: datetime


@dataclass(frozen=True, slots=True)
class ControlDesk:
    store: RedisControlStore
    approvals: RedisApprovalStore
    policy: ActivePolicy
    bundle: BundleStatus
    events: EventSink
    metrics: Metrics
    clock: Clock

    new_id: Callable[[], str]

    async def stop_run(self, caller: Identity, tenant_id: str, run_id: str, reason: str) -> RunStop:
        """Raises PermissionDenied, InvalidArgument, BudgetStoreUnavailable."""
        require_role(caller, ADMIN_ROLE)
        tenant = tenant_for(caller, tenant_id)
        violations = []
        if not run_id:
            violations.append(("run_id", "is required"))
        violations += _reason_violations(reason)
        if violations:
            raise InvalidArgument(violations)
        stop = RunStop(tenant, run_id, caller.principal_id, reason, self.clock.now())
        await self.store.stop_run(stop)
        self.metrics.control_actions.labels("stop_run").inc()
        self._emit(tenant, "stop_run", caller, reason, run_id=run_id)
        return stop

    async def set_mode(
        self, caller: Identity, tenant_id: str, mode: TenantMode | None, reason: str
    ) -> ModeChange:
        """Raises PermissionDenied, InvalidArgument, BudgetStoreUnavailable."""
        require_role(caller, ADMIN_ROLE)
        tenant = tenant_for(caller, tenant_id)
        violations = _reason_violations(reason)
        if mode is None:
            violations.append(("mode", "must be NORMAL, READ_ONLY or FROZEN"))
        if violations or mode is None:
            raise InvalidArgument(violations)
        changed_at = self.clock.now()
        previous = await self.store.set_mode(tenant, mode)
        self.metrics.control_actions.labels("set_tenant_mode").inc()
        self._emit(
            tenant, "set_tenant_mode", caller, reason, mode=mode.value, previous_mode=previous.value
        )
        return ModeChange(tenant, mode, previous, caller.principal_id, changed_at)

    async def status(self, caller: Identity, tenant_id: str) -> Status:
        """Raises PermissionDenied."""
        require_role(caller, ADMIN_ROLE)
        reachable = await self.store.ping()
        mode: TenantMode | None = None
        pending: int | None = None
        if tenant_id or (caller.tenant_id and not caller.trusts_body):
            tenant = tenant_for(caller, tenant_id)
            try:
                mode = await self.store.mode(tenant)
                page, expired = await self.approvals.list(
                    tenant,
                    state=ApprovalState.PENDING,
                    page_size=PENDING_COUNT_LIMIT,
                    cursor="",
                )
                pending = len(page.approvals)
                record_expired(
                    self.events,
                    self.metrics,
                    self.new_id,
                    tenant_id=tenant,
                    approval_ids=expired,
                    now=self.clock.now(),
                )
            except BudgetStoreUnavailable:
                reachable = False
        engine = self.policy.engine
        return Status(
            policy_engine=self.policy.kind,
            bundle=self.bundle,
            policy_revision=engine.revision if engine else "",
            budget_store_reachable=reachable,
            tenant_mode=mode,
            pending_approvals=pending,
            decision_log_errors=int(
                self.metrics.registry.get_sample_value("capgate_decision_log_errors_total") or 0
            ),
        )

    def _emit(self, tenant: str, action: str, caller: Identity, reason: str, **fields: str) -> None:
        event = control_event(
            event_id=self.new_id(),
            time=self.clock.now(),
            tenant_id=tenant,
            action=action,
            actor=caller,
            reason=reason,
            **fields,
        )
        emit_counted(self.events, event, self.metrics.decision_log_errors)


def _reason_violations(reason: str) -> list[tuple[str, str]]:
    if len(reason) > MAX_REASON_CHARS:
        return [("reason", f"is longer than {MAX_REASON_CHARS} characters")]
    return []
