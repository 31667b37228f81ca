"""The audit trail of approvals that expire: found by whichever read or decision
touched them first, counted and logged once (the store reports each id once)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from capgate.approvals.model import ApprovalState
from capgate.events.event import approval_event
from capgate.events.sink import EventSink, emit_counted
from capgate.observability.metrics import Metrics


def record_expired(
    events: EventSink,
    metrics: Metrics,
    new_id: Callable[[], str],
    *,
    tenant_id: str,
    approval_ids: Sequence[str],
    now: datetime,
) -> None:
    """One ``approval`` event (to EXPIRED, no actor) and one count per id."""
    for approval_id in approval_ids:
        metrics.approvals_expired.inc()
        event = approval_event(
            event_id=new_id(),
            time=now,
            tenant_id=tenant_id,
            approval_id=approval_id,
            previous=None,
            state=ApprovalState.EXPIRED.value,
            actor=None,
        )
        emit_counted(events, event, metrics.decision_log_errors)
