"""The Settle path: validate → settle the reservation → settlement event → response.

Settlement closes the books on one allowed tool call (DESIGN §6): SUCCEEDED commits
the actual cost (an overrun is recorded, never refused); FAILED and ABANDONED release
the reservation (ABANDONED also gives the call back); REVERTED keeps the spend and
records the rollback. Repeating a Settle returns the first result and changes nothing.

Metrics and events are labelled by tenant and workflow, so an operator reads cost per
SUCCEEDED outcome and rollback rate per workflow (docs/platform-teams/budgets.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from capgate.budget.store import BudgetStore, budget_statuses
from capgate.decision.codec import decode_reservation
from capgate.decision.model import Settlement, SettleRequest
from capgate.decision.validate import validate_settle
from capgate.errors import BudgetStoreUnavailable
from capgate.events.event import settlement_event
from capgate.events.sink import EventSink, emit_counted
from capgate.observability.metrics import Metrics


@dataclass(frozen=True, slots=True)
class Settler:
    budgets: BudgetStore
    events: EventSink
    metrics: Metrics
    new_id: Callable[[], str]

    async def settle(self, request: SettleRequest) -> Settlement:
        """Settle ``request.decision_id``.

        Raises:
            InvalidArgument: a field is missing or malformed.
            ReservationNotFound: the decision holds no reservation in this tenant.
            SettlementConflict: it was settled before with another outcome.
            BudgetStoreUnavailable: Redis did not answer in time (retry: Settle is
                idempotent).
        """
        validate_settle(request)
        assert request.outcome is not None  # validated
        try:
            result = await self.budgets.settle(
                tenant_id=request.tenant_id,
                decision_id=request.decision_id,
                outcome=request.outcome,
                actual=request.actual_cost,
            )
        except BudgetStoreUnavailable:
            self.metrics.budget_store_errors.inc()
            raise
        self.metrics.reservations_released(result.released)
        info = decode_reservation(result.metadata)
        expired_first = result.previous_state == "expired"
        # A released reservation held nothing: all its committed cost is over the budget.
        held = 0 if expired_first else result.estimated.usd_micros
        overrun = max(0, result.committed.usd_micros - held)
        settlement = Settlement(
            decision_id=request.decision_id,
            outcome=request.outcome,
            estimated=result.estimated,
            committed=result.committed,
            overrun_usd_micros=overrun,
            budgets=budget_statuses(info.budgets, result.usage),
            settled_at=result.settled_at,
            expired_first=expired_first,
            repeated=result.repeated,
        )
        if result.repeated:
            return settlement
        labels = (info.tenant_id, info.workflow, request.outcome.value)
        metrics = self.metrics
        metrics.settlements.labels(*labels).inc()
        metrics.settled_cost.labels(*labels).inc(result.committed.usd_micros)
        if settlement.overrun_usd_micros:
            metrics.settlement_overruns.labels(info.tenant_id, info.workflow).inc()
            metrics.settlement_overrun_cost.labels(info.tenant_id, info.workflow).inc(
                settlement.overrun_usd_micros
            )
        if not settlement.expired_first:
            metrics.reservations_open.dec()
        event = settlement_event(
            event_id=self.new_id(), request=request, settlement=settlement, reservation=info
        )
        emit_counted(self.events, event, metrics.decision_log_errors)
        return settlement
