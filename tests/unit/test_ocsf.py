"""ocsf_api_activity: every capgate event type as an OCSF 1.1.0 API Activity event.

Events are built with capgate's own builders (capgate.events.event), so the mapping is
tested on the shapes capgate writes; gap and checkpoint events are written by hand.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from capgate.decision.codec import ReservationInfo
from capgate.decision.model import (
    AuthorizeRequest,
    Cost,
    Decision,
    Effect,
    Outcome,
    Principal,
    Reason,
    Resource,
    Run,
    Settlement,
    SettleRequest,
)
from capgate.events.event import approval_event, control_event, decision_event, settlement_event
from capgate.events.formats.ocsf import ocsf_api_activity
from capgate.identity.model import Identity

AT = datetime(2026, 11, 21, 20, 36, 50, 190134, tzinfo=UTC)
AT_MS = 1795293410190


def decision(
    effect: Effect = Effect.ALLOW, reasons: tuple[Reason, ...] = (), mask: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A decision event as capgate's builder writes it, sealed (seq and hashes)."""
    request = AuthorizeRequest(
        tenant_id="acme",
        principal=Principal(
            id="refund-agent", on_behalf_of="alice", roles=("agent",), scopes=("refunds:write",)
        ),
        capability="issue_refund",
        tool="payments.create_refund",
        parameters={"amount_usd": 10},
        resource=Resource(type="order", id="o-1"),
        run=Run(run_id="run-1", workflow="refund_request", step=2, trace_id="ab" * 16),
    )
    made = Decision(
        decision_id="d-1",
        effect=effect,
        reasons=reasons,
        obligations=(),
        approval=None,
        budgets=(),
        policy_revision="rev-7",
        decided_at=AT,
    )
    event = decision_event(
        event_id="e-1",
        request=request,
        decision=made,
        input_document={
            "parameters": {"amount_usd": 10, "card": "4111"},
            "resource": {"type": "order", "id": "o-1"},
        },
        shadowed=None,
        error=None,
        latency_ms={"total": 1.25, "policy": 0.5, "budget": 0.25},
        mask=mask,
    )
    return {**event, "instance_id": "capgate-0", "seq": 41, "prev_hash": "p" * 64, "hash": "h" * 64}


def settlement(outcome: Outcome, overrun: int = 0) -> dict[str, Any]:
    return settlement_event(
        event_id="e-2",
        request=SettleRequest(tenant_id="acme", decision_id="d-1", outcome=outcome),
        settlement=Settlement(
            decision_id="d-1",
            outcome=outcome,
            estimated=Cost(10_000_000),
            committed=Cost(10_000_000 + overrun),
            overrun_usd_micros=overrun,
            budgets=(),
            settled_at=AT,
            expired_first=False,
            repeated=False,
        ),
        reservation=ReservationInfo(
            tenant_id="acme",
            principal_id="refund-agent",
            capability="issue_refund",
            tool="payments.create_refund",
            run_id="run-1",
            workflow="refund_request",
            budgets=(),
        ),
    )


APPROVER = Identity(method="jwt", principal_id="bob", tenant_id="acme", roles=("finance",))
SEALED = {
    "schema_version": "capgate.decision_event.v1",
    "time": "2026-11-21T20:36:50.190134Z",
    "instance_id": "capgate-0",
    "prev_hash": "p" * 64,
    "hash": "h" * 64,
}
DROPPED = {"from_seq": 50, "to_seq": 99, "count": 50, "last_hash": "l" * 64}
GAP = {**SEALED, "event_id": "e-9", "event_type": "gap", "seq": 100, "dropped": DROPPED}
HEAD = {"instance_id": "capgate-0", "seq": 100, "hash": "h" * 64}
CHECKPOINT = {
    **SEALED,
    "event_id": "e-10",
    "event_type": "checkpoint",
    "seq": 101,
    "head": HEAD,
    "key_id": "k" * 16,
    "signature": "sig",
}


def test_an_allowed_decision() -> None:
    ocsf = ocsf_api_activity(decision())
    assert ocsf["class_uid"] == 6003 and ocsf["category_uid"] == 6
    assert (ocsf["activity_id"], ocsf["activity_name"], ocsf["type_uid"]) == (
        99,
        "Authorize",
        600399,
    )
    assert ocsf["time"] == AT_MS
    assert (ocsf["status_id"], ocsf["status"]) == (1, "Success")
    assert ocsf["severity_id"] == 1
    assert ocsf["actor"]["user"] == {
        "uid": "refund-agent",
        "name": "refund-agent",
        "groups": [{"name": "agent"}],
        "org": {"uid": "acme"},
    }
    assert ocsf["actor"]["authorizations"][0]["decision"] == "allow"
    assert ocsf["actor"]["authorizations"][0]["policy"]["version"] == "rev-7"
    assert ocsf["api"]["operation"] == "issue_refund"
    assert ocsf["api"]["service"]["name"] == "capgate"
    assert ocsf["api"]["request"] == {"uid": "d-1"}
    assert {"type": "tool", "name": "payments.create_refund"} in ocsf["resources"]
    assert {"type": "order", "uid": "o-1"} in ocsf["resources"]
    metadata = ocsf["metadata"]
    assert metadata["version"] == "1.1.0"
    assert metadata["product"]["name"] == "capgate" and metadata["product"]["vendor_name"]
    assert (metadata["uid"], metadata["correlation_uid"], metadata["sequence"]) == (
        "e-1",
        "d-1",
        41,
    )
    unmapped = ocsf["unmapped"]
    assert unmapped["principal"]["on_behalf_of"] == "alice"
    assert unmapped["hash"] == "h" * 64 and unmapped["prev_hash"] == "p" * 64
    assert unmapped["run"]["trace_id"] == "ab" * 16
    assert ocsf["dst_endpoint"] == {"name": "capgate-0", "svc_name": "capgate"}
    assert unmapped["input"]["resource"] == {"type": "order", "id": "o-1"}
    json.dumps(ocsf)  # serialisable


def test_a_denied_decision_is_a_failure_with_its_reason() -> None:
    reasons = (Reason("BUDGET_EXCEEDED", "daily budget spent"), Reason("X", "more"))
    ocsf = ocsf_api_activity(decision(Effect.DENY, reasons))
    assert (ocsf["status_id"], ocsf["status"], ocsf["severity_id"]) == (2, "Failure", 3)
    assert ocsf["status_code"] == "BUDGET_EXCEEDED"
    assert ocsf["status_detail"] == "daily budget spent; more"
    assert ocsf["api"]["response"]["error"] == "BUDGET_EXCEEDED"


def test_a_decision_waiting_for_approval_is_other() -> None:
    ocsf = ocsf_api_activity(decision(Effect.REQUIRE_APPROVAL))
    assert (ocsf["status_id"], ocsf["status"], ocsf["severity_id"]) == (99, "Require approval", 2)


@pytest.mark.parametrize(
    ("outcome", "overrun", "status_id", "status", "severity_id"),
    [
        (Outcome.SUCCEEDED, 0, 1, "Success", 1),
        (Outcome.FAILED, 0, 2, "Failure", 2),
        (Outcome.REVERTED, 0, 99, "Reverted", 2),
        (Outcome.SUCCEEDED, 5, 1, "Success", 3),
    ],
)
def test_settlements(
    outcome: Outcome, overrun: int, status_id: int, status: str, severity_id: int
) -> None:
    ocsf = ocsf_api_activity(settlement(outcome, overrun))
    assert (ocsf["activity_id"], ocsf["activity_name"]) == (99, "Settle")
    assert (ocsf["status_id"], ocsf["status"], ocsf["severity_id"]) == (
        status_id,
        status,
        severity_id,
    )
    assert ocsf["api"]["operation"] == "issue_refund"
    assert ocsf["actor"]["user"]["uid"] == "refund-agent"
    assert ocsf["metadata"]["correlation_uid"] == "d-1"
    assert ocsf["unmapped"]["overrun_usd_micros"] == overrun


def test_an_opened_approval_is_a_create_and_a_vote_an_update() -> None:
    opened = approval_event(
        event_id="e-3",
        time=AT,
        tenant_id="acme",
        approval_id="a-1",
        previous=None,
        state="pending",
        actor=None,
        decision_id="d-1",
    )
    voted = approval_event(
        event_id="e-4",
        time=AT,
        tenant_id="acme",
        approval_id="a-1",
        previous="pending",
        state="rejected",
        actor=APPROVER,
        comment="too much",
    )
    created, updated = ocsf_api_activity(opened), ocsf_api_activity(voted)
    assert (created["activity_id"], created["type_uid"], created["type_name"]) == (
        1,
        600301,
        "API Activity: Create",
    )
    assert created["actor"] == {"app_name": "capgate"}
    assert created["metadata"]["correlation_uid"] == "d-1"
    assert created["resources"] == [{"type": "approval", "uid": "a-1"}]
    assert (updated["activity_id"], updated["activity_name"], updated["severity_id"]) == (
        3,
        "Update",
        2,
    )
    assert updated["actor"]["user"]["uid"] == "bob"
    assert updated["actor"]["user"]["groups"] == [{"name": "finance"}]
    assert updated["api"]["operation"] == "approval.rejected"
    assert updated["status_detail"] == "pending -> rejected"
    assert updated["unmapped"]["actor"] == {"method": "jwt"}
    assert updated["unmapped"]["comment"] == "too much"
    assert "correlation_uid" not in updated["metadata"]


def test_a_control_action_is_an_update_of_the_run() -> None:
    event = control_event(
        event_id="e-5",
        time=AT,
        tenant_id="acme",
        action="stop_run",
        actor=APPROVER,
        reason="runaway loop",
        run_id="run-1",
    )
    ocsf = ocsf_api_activity(event)
    assert (ocsf["activity_id"], ocsf["severity_id"], ocsf["status_id"]) == (3, 3, 1)
    assert ocsf["api"]["operation"] == "stop_run"
    assert ocsf["resources"] == [{"type": "run", "uid": "run-1"}]
    assert ocsf["actor"]["user"]["org"] == {"uid": "acme"}
    assert ocsf["unmapped"]["reason"] == "runaway loop"


def test_a_gap_is_a_high_severity_failure_that_keeps_its_range() -> None:
    ocsf = ocsf_api_activity(GAP)
    assert (ocsf["activity_id"], ocsf["activity_name"]) == (99, "Gap")
    assert (ocsf["severity_id"], ocsf["severity"], ocsf["status_id"]) == (4, "High", 2)
    assert ocsf["actor"] == {"app_name": "capgate"}
    assert ocsf["metadata"]["sequence"] == 100
    assert ocsf["message"] == "50 events dropped at the outbox cap: seq 50-99"
    assert ocsf["unmapped"] == {"dropped": DROPPED, "prev_hash": "p" * 64, "hash": "h" * 64}


def test_a_checkpoint() -> None:
    ocsf = ocsf_api_activity(CHECKPOINT)
    assert (ocsf["activity_id"], ocsf["activity_name"], ocsf["status_id"]) == (99, "Checkpoint", 1)
    assert ocsf["severity_id"] == 1
    assert ocsf["message"] == "signed checkpoint of the chain at seq 100"
    assert ocsf["unmapped"]["head"] == HEAD and ocsf["unmapped"]["signature"] == "sig"
    assert ocsf["dst_endpoint"] == {"name": "capgate-0", "svc_name": "capgate"}
    assert ocsf["api"]["request"] == {"uid": "e-10"}


@pytest.mark.parametrize(
    "event",
    [decision(), settlement(Outcome.SUCCEEDED), GAP, CHECKPOINT],
    ids=["decision", "settlement", "gap", "checkpoint"],
)
def test_required_api_activity_attributes_are_always_present(event: dict[str, Any]) -> None:
    ocsf = ocsf_api_activity(event)
    required = ("activity_id", "category_uid", "class_uid", "type_uid", "time", "severity_id",
                "metadata", "actor", "api", "src_endpoint")  # fmt: skip
    assert all(key in ocsf for key in required)
    assert ocsf["api"]["operation"] and ocsf["metadata"]["product"] and ocsf["src_endpoint"]
    assert any(ocsf["actor"].get(k) for k in ("user", "app_name"))
