"""What binds an approval to one action: RFC 8785 canonical JSON and the action hash."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from capgate.approvals.binding import action_sha256, canonical_json, parameters_sha256
from capgate.approvals.flow import approval_fact, approval_problem, approval_request
from capgate.approvals.model import ApprovalState, Verdict, Vote
from capgate.decision.model import ApprovalRequirement, AuthorizeRequest, Principal

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)
REQUEST = AuthorizeRequest(
    tenant_id="acme",
    principal=Principal("refund-agent", on_behalf_of="alice"),
    capability="issue_refund",
    tool="payments.create_refund",
    parameters={"amount_usd": 60, "order": {"id": "o-1", "lines": [1, 2.5]}},
)


def test_canonical_json_follows_rfc_8785() -> None:
    # RFC 8785 §3.2.2.3 number serialization, §3.2.3 key order (UTF-16 code units)
    assert canonical_json({"b": 1.0, "a": [1e21, 1e-7, -0.0], "é": "\u2028"}) == (
        '{"a":[1e+21,1e-7,0],"b":1,"é":"\u2028"}'.encode()
    )
    assert canonical_json({"\U0001f600": 1, "\ufb33": 2}) == '{"\U0001f600":1,"\ufb33":2}'.encode()


def test_key_order_and_number_spelling_do_not_change_the_hashes() -> None:
    same = replace(
        REQUEST, parameters={"order": {"lines": [1.0, 2.5], "id": "o-1"}, "amount_usd": 60.0}
    )
    assert action_sha256(same) == action_sha256(REQUEST)
    assert parameters_sha256(same.parameters) == parameters_sha256(REQUEST.parameters)
    assert parameters_sha256({}) == hashlib.sha256(b"{}").hexdigest()


@pytest.mark.parametrize(
    "changed",
    [
        replace(REQUEST, tenant_id="other"),
        replace(REQUEST, principal=Principal("other-agent", on_behalf_of="alice")),
        replace(REQUEST, principal=Principal("refund-agent", on_behalf_of="bob")),
        replace(REQUEST, capability="issue_refund_v2"),
        replace(REQUEST, tool="payments.refund_v2"),
        replace(REQUEST, parameters={**REQUEST.parameters, "amount_usd": 190}),
        replace(REQUEST, parameters={**REQUEST.parameters, "note": ""}),
    ],
)
def test_every_bound_field_changes_the_action_hash(changed: AuthorizeRequest) -> None:
    assert action_sha256(changed) != action_sha256(REQUEST)


def test_non_json_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="canonicalizable"):
        canonical_json({"amount": float("nan")})


def _approved(state: ApprovalState = ApprovalState.APPROVED, **changes: object):  # type: ignore[no-untyped-def]
    approval, _ = approval_request(
        REQUEST,
        ApprovalRequirement(("refund-approver",), 1, 900),
        approval_id="ap-1",
        decision_id="d-1",
        policy_revision="r1",
        reasons=(),
        now=NOW,
    )
    vote = Vote("carol", ("refund-approver",), Verdict.APPROVE, "ok", NOW)
    return replace(approval, state=state, votes=(vote,), **changes)


def test_a_valid_approval_has_no_problem_and_becomes_the_policy_fact() -> None:
    approval = _approved()
    assert approval_problem(approval, REQUEST, NOW) is None
    assert approval_fact(approval) == {
        "approval_id": "ap-1",
        "state": "approved",
        "approvers": [{"principal_id": "carol", "roles": ["refund-approver"]}],
        "approver_roles": ["refund-approver"],
        "min_approvals": 1,
    }


@pytest.mark.parametrize(
    ("approval", "request_", "problem"),
    [
        (_approved(ApprovalState.PENDING), REQUEST, "pending"),
        (_approved(ApprovalState.REJECTED), REQUEST, "rejected"),
        (_approved(ApprovalState.CONSUMED), REQUEST, "consumed"),
        (_approved(ApprovalState.EXPIRED), REQUEST, "expired"),
        (_approved(expires_at=NOW - timedelta(seconds=1)), REQUEST, "expired"),
        (_approved(), replace(REQUEST, parameters={"amount_usd": 190}), "mismatch"),
        (_approved(tenant_id="other"), REQUEST, "mismatch"),
    ],
)
def test_approval_problems(approval, request_: AuthorizeRequest, problem: str) -> None:  # type: ignore[no-untyped-def]
    assert approval_problem(approval, request_, NOW) == problem
