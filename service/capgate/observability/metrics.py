"""Every Prometheus metric capgate exports, named once, in one registry per app.

Names follow https://prometheus.io/docs/practices/naming/ (units in the name).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS_SECONDS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.decisions = Counter(
            "capgate_decisions_total",
            "Authorize decisions by effect.",
            ["effect"],
            registry=registry,
        )
        self.decision_reasons = Counter(
            "capgate_decision_reasons_total",
            "Reason codes returned, by code.",
            ["code"],
            registry=registry,
        )
        self.decision_duration = Histogram(
            "capgate_decision_duration_seconds",
            "Time spent per Authorize stage (total, policy, budget).",
            ["stage"],
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=registry,
        )
        self.authorize_shed = Counter(
            "capgate_authorize_shed_total",
            "Authorize calls refused as DEADLINE_EXCEEDED, not decided: they arrived with "
            "less than server.min_time_left_ms left before their deadline.",
            registry=registry,
        )
        self.invalid_requests = Counter(
            "capgate_invalid_requests_total",
            "Authorize and Settle calls refused as INVALID_ARGUMENT.",
            registry=registry,
        )
        self.policy_errors = Counter(
            "capgate_policy_errors_total",
            "Evaluations that failed or returned bad results.",
            registry=registry,
        )
        self.budget_store_errors = Counter(
            "capgate_budget_store_errors_total",
            "Budget store calls (Authorize and Settle) that failed or timed out.",
            registry=registry,
        )
        self.budget_denials = Counter(
            "capgate_budget_denials_total",
            "Decisions denied by a budget or rate limit, by scope (tenant, principal, "
            "capability, run, rate_limit) and reason code.",
            ["scope", "reason"],
            registry=registry,
        )
        self.reservations_open = Gauge(
            "capgate_reservations_open",
            "Reservations made and not yet settled or expired, as this instance saw them "
            "(sum over instances for the total; one instance's share may go negative).",
            registry=registry,
        )
        self.reservations_expired = Counter(
            "capgate_reservations_expired_total",
            "Reservations released because Settle did not come within their TTL.",
            registry=registry,
        )
        self.idempotent_replays = Counter(
            "capgate_idempotent_replays_total",
            "Authorize retries answered with the decision recorded for their idempotency key.",
            registry=registry,
        )
        self.settlements = Counter(
            "capgate_settlements_total",
            "Settled decisions by tenant, workflow and outcome.",
            ["tenant", "workflow", "outcome"],
            registry=registry,
        )
        self.settled_cost = Counter(
            "capgate_settled_cost_usd_micros_total",
            "Cost committed by settlements, micro-dollars, by tenant, workflow and outcome.",
            ["tenant", "workflow", "outcome"],
            registry=registry,
        )
        self.settlement_overruns = Counter(
            "capgate_settlement_overruns_total",
            "Settlements whose actual cost exceeded the reserved estimate.",
            ["tenant", "workflow"],
            registry=registry,
        )
        self.settlement_overrun_cost = Counter(
            "capgate_settlement_overrun_usd_micros_total",
            "Cost above the reserved estimate, micro-dollars.",
            ["tenant", "workflow"],
            registry=registry,
        )
        self.decision_log_errors = Counter(
            "capgate_decision_log_errors_total",
            "Decision events that could not be written (the decision was still returned).",
            registry=registry,
        )
        self.bundle_active = Gauge(
            "capgate_bundle_active",
            "1 for the revision of the active bundle.",
            ["revision"],
            registry=registry,
        )
        self.bundle_activation_failures = Counter(
            "capgate_bundle_activation_failures_total",
            "Bundles refused, by stage: fetch, store, signature, format, compile. The "
            "active revision keeps serving.",
            ["stage"],
            registry=registry,
        )
        self.bundle_activations = Counter(
            "capgate_bundle_activations_total",
            "Bundle revisions activated (from the source or the store).",
            registry=registry,
        )
        self.bundle_activation_duration = Histogram(
            "capgate_bundle_activation_duration_seconds",
            "Verify + parse + compile of one bundle, in a worker thread.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.bundle_last_activation = Gauge(
            "capgate_bundle_last_activation_timestamp_seconds",
            "Unix time of the last activation.",
            registry=registry,
        )
        self.bundle_downloads = Counter(
            "capgate_bundle_downloads_total",
            "Bundle server polls, by result: ok (200), not_modified (304), error.",
            ["result"],
            registry=registry,
        )

        self.approvals_created = Counter(
            "capgate_approvals_created_total",
            "Approvals created by REQUIRE_APPROVAL decisions.",
            registry=registry,
        )
        self.approvals_decided = Counter(
            "capgate_approvals_decided_total",
            "Approver verdicts recorded, by verdict (approve, reject).",
            ["verdict"],
            registry=registry,
        )
        self.approvals_expired = Counter(
            "capgate_approvals_expired_total",
            "Approvals that expired pending or unused.",
            registry=registry,
        )
        self.approvals_invalid = Counter(
            "capgate_approvals_invalid_total",
            "Authorize calls denied APPROVAL_INVALID, by why (missing, pending, rejected, "
            "expired, consumed, mismatch).",
            ["why"],
            registry=registry,
        )
        self.approval_latency = Histogram(
            "capgate_approval_latency_seconds",
            "From an approval's creation to the verdict that settled it.",
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600),
            registry=registry,
        )
        self.control_actions = Counter(
            "capgate_control_actions_total",
            "Operator actions, by action (stop_run, set_tenant_mode).",
            ["action"],
            registry=registry,
        )
        self.authentication_failures = Counter(
            "capgate_authentication_failures_total",
            "Calls refused UNAUTHENTICATED or PERMISSION_DENIED, by status.",
            ["status"],
            registry=registry,
        )

        # Event pipeline (DESIGN §8): the outbox and one exporter per sink.
        self.outbox_events = Gauge(
            "capgate_outbox_events",
            "Events in the outbox not yet delivered to every sink.",
            registry=registry,
        )
        self.outbox_bytes = Gauge(
            "capgate_outbox_bytes",
            "Bytes of the events in the outbox (the cap is events.outbox.max_bytes).",
            registry=registry,
        )
        self.outbox_dropped = Counter(
            "capgate_outbox_dropped_events_total",
            "Events dropped, oldest first, because the outbox reached its cap.",
            registry=registry,
        )
        self.outbox_fsyncs = Counter(
            "capgate_outbox_fsyncs_total",
            "Batched fsyncs of the outbox.",
            registry=registry,
        )
        self.sink_sent = Counter(
            "capgate_sink_events_sent_total",
            "Events sent to a sink (a retried event counts again).",
            ["sink"],
            registry=registry,
        )
        self.sink_acknowledged = Counter(
            "capgate_sink_events_acknowledged_total",
            "Events the sink's receiver acknowledged; the sink's cursor moves past them.",
            ["sink"],
            registry=registry,
        )
        self.sink_retries = Counter(
            "capgate_sink_retries_total",
            "Batches sent again after a failure.",
            ["sink"],
            registry=registry,
        )
        self.sink_failures = Counter(
            "capgate_sink_failures_total",
            "Sends that failed (each is retried with backoff).",
            ["sink"],
            registry=registry,
        )
        self.sink_lag = Gauge(
            "capgate_sink_lag_seconds",
            "Age of the oldest event the sink has not acknowledged (0 when caught up).",
            ["sink"],
            registry=registry,
        )

    def reservations_released(self, count: int) -> None:
        """``count`` reservations released by their TTL (seen by Authorize or Settle)."""
        if count:
            self.reservations_expired.inc(count)
            self.reservations_open.dec(count)
