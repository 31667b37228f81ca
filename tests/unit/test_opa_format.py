"""opa_decision_log: capgate events in OPA's decision-log upload format."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from capgate import __version__
from capgate.decision.model import AuthorizeRequest, Decision, Effect, Principal, Reason, Run
from capgate.events.event import approval_event, decision_event
from capgate.events.formats.opa import input_pointer, opa_decision_log
from capgate.identity.model import Identity

AT = datetime(2026, 11, 21, 20, 36, 50, 190134, tzinfo=UTC)
INPUT = {
    "tenant_id": "acme",
    "principal": {"id": "refund-agent"},
    "capability": "issue_refund",
    "parameters": {"amount_usd": 10, "card_number": "4111111111111111"},
    "request_time": "2026-11-21T20:36:50.190134Z",
}


def decision(**extra: Any) -> dict[str, Any]:
    event = decision_event(
        event_id="e-1",
        request=AuthorizeRequest(
            tenant_id="acme",
            principal=Principal(id="refund-agent"),
            capability="issue_refund",
            tool="payments.create_refund",
            run=Run(run_id="run-1", trace_id="ab" * 16),
        ),
        decision=Decision(
            decision_id="d-1",
            effect=Effect.DENY,
            reasons=(Reason("BUDGET_EXCEEDED", "daily budget spent"),),
            obligations=(),
            approval=None,
            budgets=(),
            policy_revision="rev-7",
            decided_at=AT,
        ),
        input_document=INPUT,
        shadowed=None,
        error=None,
        latency_ms={"total": 1.25, "policy": 0.5, "budget": 0.125},
        mask=("parameters.card_number",),
    )
    return {**event, "seq": 7, "hash": "h" * 64, **extra}


def test_a_decision_in_opa_format() -> None:
    event = decision()
    entry = opa_decision_log(event, instance_id="capgate-0")
    assert entry["labels"] == {"id": "capgate-0", "version": __version__, "app": "capgate"}
    assert entry["decision_id"] == "d-1"
    assert entry["path"] == "capgate/authz/decision"
    assert entry["input"] == {k: v for k, v in INPUT.items() if k != "parameters"} | {
        "parameters": {"amount_usd": 10}
    }
    assert entry["erased"] == ["/input/parameters/card_number"]
    assert entry["result"]["effect"] == "deny"
    assert entry["result"]["reasons"] == [
        {"code": "BUDGET_EXCEEDED", "message": "daily budget spent"}
    ]
    assert entry["result"]["event_id"] == "e-1" and entry["result"]["seq"] == 7
    assert "input" not in entry["result"] and "masked" not in entry["result"]
    assert entry["requested_by"] == "refund-agent"
    assert entry["timestamp"] == "2026-11-21T20:36:50.190134Z"
    assert entry["trace_id"] == "ab" * 16
    assert entry["metrics"] == {
        "timer_server_handler_ns": 1_250_000,
        "timer_rego_query_eval_ns": 500_000,
        "timer_capgate_budget_ns": 125_000,
    }
    assert entry["bundles"] == {"capgate": {"revision": "rev-7"}}
    # Lossless: result + input + masked is the event.
    assert entry["result"] | {"input": entry["input"], "masked": event["masked"]} == event


def test_the_event_names_its_own_instance() -> None:
    entry = opa_decision_log(decision(instance_id="pod-3"), instance_id="fallback")
    assert entry["labels"]["id"] == "pod-3"


def test_other_event_types_go_whole_as_the_result() -> None:
    event = approval_event(
        event_id="e-4",
        time=AT,
        tenant_id="acme",
        approval_id="a-1",
        previous="pending",
        state="approved",
        actor=Identity(method="jwt", principal_id="bob", roles=("finance",)),
        decision_id="d-1",
    )
    entry = opa_decision_log(event, instance_id="capgate-0")
    assert entry["path"] == "capgate/events/approval"
    assert entry["decision_id"] == "e-4"  # unique per entry; the decision is in result
    assert entry["result"] == event
    assert entry["requested_by"] == "bob"
    assert entry["timestamp"] == event["time"]
    assert "input" not in entry and "erased" not in entry


@pytest.mark.parametrize("event_type", ["gap", "checkpoint"])
def test_events_capgate_raises_itself(event_type: str) -> None:
    event = {"event_id": "e-9", "event_type": event_type, "time": "2026-11-21T20:36:50Z"}
    entry = opa_decision_log(event, instance_id="capgate-0")
    assert entry["path"] == f"capgate/events/{event_type}"
    assert entry["requested_by"] == "capgate"
    assert entry["result"] == event


@pytest.mark.parametrize(
    ("dotted", "pointer"),
    [
        ("parameters.card", "/input/parameters/card"),
        ("tool", "/input/tool"),
        ("parameters.a/b~c", "/input/parameters/a~1b~0c"),  # RFC 6901 escapes
    ],
)
def test_input_pointer(dotted: str, pointer: str) -> None:
    assert input_pointer(dotted) == pointer
