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
        self.invalid_requests = Counter(
            "capgate_invalid_requests_total",
            "Authorize calls refused as INVALID_ARGUMENT.",
            registry=registry,
        )
        self.policy_errors = Counter(
            "capgate_policy_errors_total",
            "Evaluations that failed or returned bad results.",
            registry=registry,
        )
        self.budget_store_errors = Counter(
            "capgate_budget_store_errors_total",
            "Budget store calls that failed or timed out.",
            registry=registry,
        )
        self.budget_denials = Counter(
            "capgate_budget_denials_total",
            "Decisions denied by a budget, by scope and unit.",
            ["scope", "unit"],
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
            "Bundles that failed to load or compile.",
            registry=registry,
        )
