"""schemas/decision_event.v1.json accepts the events capgate builds (event.py's builders,
the outbox's gap event, the checkpointer), sealed with the chain's rules, and rejects
broken ones."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uuid6
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jsonschema import Draft202012Validator

from capgate.approvals.model import Approval, ApprovalState, Verdict, Vote
from capgate.decision.codec import ReservationInfo
from capgate.decision.model import (
    ApprovalRequirement,
    ApprovalTicket,
    AuthorizeRequest,
    BudgetScope,
    BudgetSpec,
    BudgetStatus,
    BudgetWindow,
    Change,
    Cost,
    Decision,
    Effect,
    Obligation,
    Outcome,
    PolicyResult,
    Principal,
    Reason,
    Run,
    Settlement,
    SettleRequest,
)
from capgate.events.chain import GENESIS_HASH, seal
from capgate.events.checkpoint import Checkpointer
from capgate.events.event import approval_event, control_event, decision_event, settlement_event
from capgate.identity.model import Identity
from capgate.policy.input import build_input

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "decision_event.v1.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
T0 = datetime(2026, 11, 21, 19, 14, 47, 859988, tzinfo=UTC)
SHA = "5" * 64


def new_id() -> str:
    return str(uuid6.uuid7())


def seal_all(events: list[dict[str, Any]], instance_id: str = "capgate-0") -> list[dict[str, Any]]:
    """Seal ``events`` into one chain and read them back as a sink ships them."""
    sealed, head = [], GENESIS_HASH
    for seq, event in enumerate(events, start=1):
        body, head = seal(event, instance_id=instance_id, seq=seq, prev_hash=head)
        sealed.append(json.loads(body))
    return sealed


def _request(**overrides: Any) -> AuthorizeRequest:
    fields: dict[str, Any] = {
        "tenant_id": "acme",
        "principal": Principal(
            id="refund-agent",
            on_behalf_of="user-7",
            delegation_chain=("user-7", "refund-agent"),
            scopes=("refunds:write",),
            roles=("agent",),
        ),
        "capability": "issue_refund",
        "tool": "payments.create_refund",
        "parameters": {"amount_usd": 10, "card_number": "4111", "note": "ünï\n"},
        "run": Run(run_id="run-1", workflow="refund_request", step=2, trace_id="0af7651916cd43dd"),
    }
    return AuthorizeRequest(**{**fields, **overrides})


BUDGET = BudgetStatus(
    scope=BudgetScope.TENANT,
    window=BudgetWindow.DAY,
    limit_usd_micros=100_000_000,
    limit_calls=None,
    limit_tokens=None,
    spent_usd_micros=10_000_000,
    reserved_usd_micros=1_000_000,
    used_calls=3,
    used_tokens=0,
)


def _decisions() -> list[dict[str, Any]]:
    request = _request()
    identity = Identity(method="jwt", principal_id="refund-agent", tenant_id="acme")
    input_document = build_input(request, identity=identity.fact(), request_time=T0)
    waiting = Decision(
        decision_id=new_id(),
        effect=Effect.REQUIRE_APPROVAL,
        reasons=(Reason("REFUND_OVER_LIMIT", "refunds over $5 need a human"),),
        obligations=(Obligation("notify", {"channel": "#refunds"}),),
        approval=ApprovalRequirement(approver_roles=("finance",), min_approvals=2, ttl_seconds=900),
        budgets=(BUDGET,),
        policy_revision="rev-42",
        decided_at=T0,
        ticket=ApprovalTicket(new_id(), "pending", T0 + timedelta(minutes=15)),
    )
    shadowed = decision_event(
        event_id=new_id(),
        request=request,
        decision=waiting,
        input_document=input_document,
        shadowed=PolicyResult(effect=Effect.DENY, reasons=(Reason("SHADOW", "would deny"),)),
        error=None,
        latency_ms={"total": 1.25, "policy": 0.5, "budget": 0.4},
        mask=("parameters.card_number",),
    )
    denied = decision_event(
        event_id=new_id(),
        request=_request(dry_run=True, run=Run()),
        decision=Decision(
            decision_id=new_id(),
            effect=Effect.DENY,
            reasons=(Reason("POLICY_ERROR", "the policy failed"),),
            obligations=(),
            approval=None,
            budgets=(),
            policy_revision="",
            decided_at=T0,
        ),
        input_document=input_document,
        shadowed=None,
        error="rego: undefined function",
        latency_ms={"total": 0.1},
        replayed=True,
    )
    return [shadowed, denied]


def _settlements() -> list[dict[str, Any]]:
    reservation = ReservationInfo(
        tenant_id="acme",
        principal_id="refund-agent",
        capability="issue_refund",
        tool="payments.create_refund",
        run_id="run-1",
        workflow="refund_request",
        budgets=(BudgetSpec(BudgetScope.TENANT, BudgetWindow.DAY, limit_usd_micros=10**8),),
    )
    settled = Settlement(
        decision_id=new_id(),
        outcome=Outcome.SUCCEEDED,
        estimated=Cost(10_000_000, 0),
        committed=Cost(12_000_000, 5),
        overrun_usd_micros=2_000_000,
        budgets=(BUDGET,),
        settled_at=T0,
        expired_first=False,
        repeated=False,
    )
    with_changes = settlement_event(
        event_id=new_id(),
        request=SettleRequest(
            tenant_id="acme",
            decision_id=settled.decision_id,
            outcome=Outcome.SUCCEEDED,
            actual_cost=Cost(12_000_000, 5),
            changes=(Change("account:1", "balance", {"usd": 10}, None),),
            result={"refund_id": "re_1", "ok": True},
        ),
        settlement=settled,
        reservation=reservation,
    )
    estimate = settlement_event(
        event_id=new_id(),
        request=SettleRequest(tenant_id="acme", decision_id=settled.decision_id, outcome=None),
        settlement=settled,
        reservation=reservation,
    )
    return [with_changes, estimate]


def _approvals() -> list[dict[str, Any]]:
    approver = Identity(method="mtls", principal_id="alice", roles=("finance",))
    approval = Approval(
        approval_id=new_id(),
        tenant_id="acme",
        state=ApprovalState.APPROVED,
        requester_principal_id="refund-agent",
        on_behalf_of="user-7",
        capability="issue_refund",
        tool="payments.create_refund",
        parameters={"amount_usd": 10},
        parameters_sha256=SHA,
        action_sha256="6" * 64,
        policy_revision="rev-42",
        approver_roles=("finance",),
        min_approvals=1,
        votes=(Vote("alice", ("finance",), Verdict.APPROVE, "ok", T0),),
        request_decision_id=new_id(),
        consumed_by_decision_id="",
        run_id="run-1",
        workflow="refund_request",
        reasons=(),
        created_at=T0,
        expires_at=T0 + timedelta(minutes=15),
        updated_at=T0,
    )
    voted = approval_event(
        event_id=new_id(),
        time=T0,
        tenant_id="acme",
        approval_id=approval.approval_id,
        previous="pending",
        state="approved",
        actor=approver,
        approval=approval,
        decision_id=approval.request_decision_id,
        comment="ok",
    )
    expired = approval_event(
        event_id=new_id(),
        time=T0,
        tenant_id="acme",
        approval_id=new_id(),
        previous="pending",
        state="expired",
        actor=None,
    )
    created = approval_event(
        event_id=new_id(),
        time=T0,
        tenant_id="acme",
        approval_id=approval.approval_id,
        previous=None,
        state="pending",
        actor=Identity(method="jwt", principal_id="refund-agent"),
        approval=approval,
    )
    return [voted, expired, created]


def _controls() -> list[dict[str, Any]]:
    operator = Identity(method="jwt", principal_id="ops", roles=("capgate-operator",))
    return [
        control_event(
            event_id=new_id(),
            time=T0,
            tenant_id="acme",
            action="stop_run",
            actor=operator,
            reason="runaway loop",
            run_id="run-1",
        ),
        control_event(
            event_id=new_id(),
            time=T0,
            tenant_id="acme",
            action="set_tenant_mode",
            actor=operator,
            reason="incident",
            mode="read_only",
            previous_mode="normal",
        ),
    ]


def _gap() -> dict[str, Any]:
    return {
        "event_type": "gap",
        "schema_version": "capgate.decision_event.v1",
        "event_id": new_id(),
        "time": "2026-11-21T19:14:48.000000Z",
        "dropped": {"from_seq": 2, "to_seq": 4, "count": 3, "last_hash": SHA},
    }


def _checkpoint() -> dict[str, Any]:
    checkpointer = Checkpointer(
        Ed25519PrivateKey.generate(), every_events=1, every_seconds=1, instance_id="capgate-0"
    )
    return checkpointer.event(3, SHA, T0, new_id)


def all_events() -> list[dict[str, Any]]:
    return seal_all(
        [*_decisions(), *_settlements(), *_approvals(), *_controls(), _gap(), _checkpoint()]
    )


def test_the_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_event_type_capgate_builds_is_valid() -> None:
    events = all_events()
    assert {e["event_type"] for e in events} == {
        "decision",
        "settlement",
        "approval",
        "control",
        "gap",
        "checkpoint",
    }
    for event in events:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(event)]
        assert errors == [], (event["event_type"], errors)
        assert uuid.UUID(event["event_id"]).version == 7


def _by_type(event_type: str) -> dict[str, Any]:
    return copy.deepcopy(next(e for e in all_events() if e["event_type"] == event_type))


def _set(path: str, value: Any) -> Any:
    def change(event: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = event
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return change


_DELETE = object()


@pytest.mark.parametrize(
    ("event_type", "path", "value"),
    [
        ("decision", "hash", _DELETE),
        ("decision", "hash", "A" * 64),
        ("decision", "prev_hash", "0" * 63),
        ("decision", "seq", 0),
        ("decision", "seq", "1"),
        ("decision", "instance_id", ""),
        ("decision", "schema_version", "capgate.decision_event.v2"),
        ("decision", "event_type", "decisionn"),
        ("decision", "event_id", "not-a-uuid"),
        ("decision", "time", "yesterday"),
        ("decision", "surprise", 1),  # no unknown top-level fields
        ("decision", "dropped", {}),  # nor another type's fields
        ("decision", "masked", _DELETE),
        ("decision", "effect", "maybe"),
        ("decision", "principal.password", "x"),
        ("decision", "run.step", -1),
        ("decision", "reasons.0.code", ""),
        ("decision", "approval.min_approvals", 0),
        ("decision", "budgets.0.window", "1w"),
        ("decision", "latency_ms.total", "fast"),
        ("settlement", "outcome", "exploded"),
        ("settlement", "estimated_cost.usd", 1),
        ("settlement", "changes.0.before", _DELETE),
        ("approval", "transition.to", "bogus"),
        ("approval", "approval.votes.0.verdict", "abstain"),
        ("approval", "approval.parameters_sha256", "xyz"),
        ("control", "action", "delete_tenant"),
        ("control", "actor", None),
        ("gap", "dropped.count", _DELETE),
        ("gap", "dropped.from_seq", 0),
        ("gap", "dropped.extra", 1),
        ("checkpoint", "signature", "A" * 86 + "=="),
        ("checkpoint", "key_id", "abc"),
        ("checkpoint", "head.hash", "x" * 64),
        ("checkpoint", "head.tenant_id", "acme"),
    ],
)
def test_broken_events_are_rejected(event_type: str, path: str, value: Any) -> None:
    event = _by_type(event_type)
    assert VALIDATOR.is_valid(event)
    _set(path, value)(event)
    assert not VALIDATOR.is_valid(event)
