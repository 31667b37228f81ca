"""Unit tests for capgate.api.convert: proto <-> domain conversion."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from google.protobuf import struct_pb2

from capgate.api.convert import (
    authorize_request,
    authorize_response,
    dict_to_struct,
    struct_to_dict,
)
from capgate.decision.model import (
    ApprovalRequirement,
    AuthorizeRequest,
    BudgetScope,
    BudgetStatus,
    BudgetWindow,
    Cost,
    Decision,
    Effect,
    Evidence,
    Obligation,
    Principal,
    Reason,
    Resource,
    Run,
)
from capgate.v1 import authorization_service_pb2 as api
from capgate.v1 import types_pb2 as types


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(data)
    return message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, {}),
        ({"s": "text", "e": ""}, {"s": "text", "e": ""}),
        ({"t": True, "f": False}, {"t": True, "f": False}),
        ({"n": None}, {"n": None}),
        ({"i": 3, "z": 0, "neg": -7}, {"i": 3, "z": 0, "neg": -7}),
        ({"whole": 5.0, "half": 1.5, "tiny": 1e-9}, {"whole": 5, "half": 1.5, "tiny": 1e-9}),
        ({"big": 2.0**53 - 1}, {"big": 2**53 - 1}),
        ({"huge": 1e300}, {"huge": 1e300}),
        (
            {"o": {"p": {"q": [1, "two", None, True, {"r": 2.5}]}}},
            {"o": {"p": {"q": [1, "two", None, True, {"r": 2.5}]}}},
        ),
        ({"l": [[], [[]], {}]}, {"l": [[], [[]], {}]}),
    ],
)
def test_struct_to_dict(data: dict[str, Any], expected: dict[str, Any]) -> None:
    assert struct_to_dict(struct(data)) == expected


@pytest.mark.parametrize(
    ("number", "expected_type"),
    [
        (0.0, int),
        (-0.0, int),
        (5.0, int),
        (-12.0, int),
        (2.0**53 - 1, int),
        (1.5, float),
        (-0.25, float),
        (2.0**53, float),  # beyond exact-integer range: stays a double
        (1e300, float),
    ],
)
def test_number_types(number: float, expected_type: type) -> None:
    value = struct_to_dict(struct({"x": number}))["x"]
    assert type(value) is expected_type
    assert value == number


@pytest.mark.parametrize("number", [math.inf, -math.inf, math.nan])
def test_non_finite_numbers_stay_floats(number: float) -> None:
    message = struct_pb2.Struct()
    message.fields["x"].number_value = number
    value = struct_to_dict(message)["x"]
    assert type(value) is float
    assert (math.isnan(value) and math.isnan(number)) or value == number


def test_bool_is_not_turned_into_a_number() -> None:
    value = struct_to_dict(struct({"b": True, "l": [False]}))
    assert value["b"] is True
    assert value["l"][0] is False


def test_unset_value_is_none() -> None:
    message = struct_pb2.Struct()
    message.fields["unset"].CopyFrom(struct_pb2.Value())
    assert struct_to_dict(message) == {"unset": None}


def test_dict_to_struct_round_trip() -> None:
    data = {"a": 1, "b": [1.5, "x", None, False], "c": {"d": {}}}
    assert struct_to_dict(dict_to_struct(data)) == data


FULL_MESSAGE = api.AuthorizeRequest(
    tenant_id="acme",
    principal=types.Principal(
        id="refund-agent",
        on_behalf_of="user-1",
        delegation_chain=["user-1", "refund-agent"],
        scopes=["refunds:write", "orders:read"],
        roles=["support"],
        attributes=struct({"team": "eu", "level": 2}),
    ),
    capability="payments.refund",
    tool="payments.create_refund",
    parameters=struct({"amount": 1250.0, "ratio": 0.5, "items": [{"sku": "A"}], "ok": True}),
    resource=types.Resource(type="order", id="o-9", attributes=struct({"region": "eu"})),
    run=types.Run(run_id="run-1", workflow="refund_request", step=4, trace_id="ab" * 16),
    estimated_cost=types.Cost(usd_micros=1_500_000, tokens=321),
    idempotency_key="idem-7",
    approval_id="ap-3",
    dry_run=True,
    evidence=[
        types.Evidence(kind="ticket", uri="https://t/1", digest="sha256:aa"),
        types.Evidence(kind="email", uri="mailto:x", digest="sha256:bb"),
    ],
)


def test_authorize_request_copies_every_field() -> None:
    assert authorize_request(FULL_MESSAGE) == AuthorizeRequest(
        tenant_id="acme",
        principal=Principal(
            id="refund-agent",
            on_behalf_of="user-1",
            delegation_chain=("user-1", "refund-agent"),
            scopes=("refunds:write", "orders:read"),
            roles=("support",),
            attributes={"team": "eu", "level": 2},
        ),
        capability="payments.refund",
        tool="payments.create_refund",
        parameters={"amount": 1250, "ratio": 0.5, "items": [{"sku": "A"}], "ok": True},
        resource=Resource(type="order", id="o-9", attributes={"region": "eu"}),
        run=Run(run_id="run-1", workflow="refund_request", step=4, trace_id="ab" * 16),
        estimated_cost=Cost(usd_micros=1_500_000, tokens=321),
        idempotency_key="idem-7",
        approval_id="ap-3",
        dry_run=True,
        evidence=(
            Evidence("ticket", "https://t/1", "sha256:aa"),
            Evidence("email", "mailto:x", "sha256:bb"),
        ),
        size_bytes=FULL_MESSAGE.ByteSize(),
    )


@pytest.mark.parametrize(
    "message",
    [
        api.AuthorizeRequest(),
        api.AuthorizeRequest(tenant_id="t"),
        FULL_MESSAGE,
        api.AuthorizeRequest(tenant_id="t", parameters=struct({"blob": "x" * 100_000})),
    ],
)
def test_size_bytes_is_the_serialized_size(message: api.AuthorizeRequest) -> None:
    converted = authorize_request(message)
    assert converted.size_bytes == message.ByteSize()
    assert converted.size_bytes == len(message.SerializeToString())


def test_empty_message_gives_empty_defaults() -> None:
    assert authorize_request(api.AuthorizeRequest()) == AuthorizeRequest(
        tenant_id="", principal=Principal(id=""), capability=""
    )


def test_tuples_not_protobuf_containers() -> None:
    converted = authorize_request(FULL_MESSAGE)
    assert type(converted.principal.roles) is tuple
    assert type(converted.principal.delegation_chain) is tuple
    assert type(converted.evidence) is tuple
    assert type(converted.parameters) is dict


DECIDED_AT = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def decision(**changes: Any) -> Decision:
    fields: dict[str, Any] = {
        "decision_id": "d-1",
        "effect": Effect.ALLOW,
        "reasons": (),
        "obligations": (),
        "approval": None,
        "budgets": (),
        "policy_revision": "rev-1",
        "decided_at": DECIDED_AT,
    }
    fields.update(changes)
    return Decision(**fields)


@pytest.mark.parametrize(
    ("effect", "expected"),
    [
        (Effect.ALLOW, types.EFFECT_ALLOW),
        (Effect.DENY, types.EFFECT_DENY),
        (Effect.REQUIRE_APPROVAL, types.EFFECT_REQUIRE_APPROVAL),
    ],
)
def test_effect_mapping(effect: Effect, expected: int) -> None:
    response = authorize_response(decision(effect=effect))
    assert response.effect == expected
    assert response.effect != types.EFFECT_UNSPECIFIED


def test_plain_fields_and_reasons() -> None:
    response = authorize_response(
        decision(reasons=(Reason("A_CODE", "first"), Reason("B_CODE", "")))
    )
    assert response.decision_id == "d-1"
    assert response.policy_revision == "rev-1"
    assert [(r.code, r.message) for r in response.reasons] == [("A_CODE", "first"), ("B_CODE", "")]
    assert not response.HasField("approval")
    assert list(response.budgets) == []


def test_obligations() -> None:
    response = authorize_response(
        decision(obligations=(Obligation("notify", {"channel": "#ops", "n": 2}), Obligation("log")))
    )
    assert [o.type for o in response.obligations] == ["notify", "log"]
    assert struct_to_dict(response.obligations[0].parameters) == {"channel": "#ops", "n": 2}
    assert struct_to_dict(response.obligations[1].parameters) == {}


@pytest.mark.parametrize(
    ("scope", "window", "expected_scope", "expected_window"),
    [
        (
            BudgetScope.TENANT,
            BudgetWindow.MINUTE,
            types.BUDGET_SCOPE_TENANT,
            types.BUDGET_WINDOW_MINUTE,
        ),
        (
            BudgetScope.PRINCIPAL,
            BudgetWindow.HOUR,
            types.BUDGET_SCOPE_PRINCIPAL,
            types.BUDGET_WINDOW_HOUR,
        ),
        (
            BudgetScope.CAPABILITY,
            BudgetWindow.DAY,
            types.BUDGET_SCOPE_CAPABILITY,
            types.BUDGET_WINDOW_DAY,
        ),
        (
            BudgetScope.TENANT,
            BudgetWindow.MONTH,
            types.BUDGET_SCOPE_TENANT,
            types.BUDGET_WINDOW_MONTH,
        ),
        (BudgetScope.RUN, BudgetWindow.RUN, types.BUDGET_SCOPE_RUN, types.BUDGET_WINDOW_RUN),
    ],
)
def test_budget_status_mapping(
    scope: BudgetScope, window: BudgetWindow, expected_scope: int, expected_window: int
) -> None:
    status = BudgetStatus(
        scope=scope,
        window=window,
        limit_usd_micros=5_000_000,
        limit_calls=10,
        limit_tokens=1000,
        spent_usd_micros=1_000,
        reserved_usd_micros=250,
        used_calls=3,
        used_tokens=40,
    )
    (budget,) = authorize_response(decision(budgets=(status,))).budgets
    assert budget.scope == expected_scope
    assert budget.window == expected_window
    assert budget.limit_usd_micros == 5_000_000
    assert budget.spent_usd_micros == 1_000
    assert budget.reserved_usd_micros == 250
    assert budget.limit_calls == 10
    assert budget.used_calls == 3
    assert budget.limit_tokens == 1000
    assert budget.used_tokens == 40


def test_unset_limits_are_absent_and_zero_limits_present() -> None:
    status = BudgetStatus(
        scope=BudgetScope.RUN,
        window=BudgetWindow.RUN,
        limit_usd_micros=None,
        limit_calls=None,
        limit_tokens=None,
        spent_usd_micros=7,
        reserved_usd_micros=0,
        used_calls=1,
        used_tokens=0,
    )
    (budget,) = authorize_response(decision(budgets=(status,))).budgets
    for field in ("limit_usd_micros", "limit_calls", "limit_tokens"):
        assert not budget.HasField(field), field  # unset: not enforced, not "limit 0"
    assert (budget.spent_usd_micros, budget.used_calls) == (7, 1)
    zero = dataclasses.replace(status, limit_usd_micros=0, limit_calls=0, limit_tokens=0)
    (budget,) = authorize_response(decision(budgets=(zero,))).budgets
    for field in ("limit_usd_micros", "limit_calls", "limit_tokens"):
        assert budget.HasField(field), field  # a real limit of 0 stays visible


def test_budgets_keep_their_order() -> None:
    statuses = tuple(
        BudgetStatus(s, w, None, None, None, i, 0, 0, 0)
        for i, (s, w) in enumerate(
            [
                (BudgetScope.TENANT, BudgetWindow.DAY),
                (BudgetScope.RUN, BudgetWindow.RUN),
                (BudgetScope.PRINCIPAL, BudgetWindow.MINUTE),
            ]
        )
    )
    budgets = authorize_response(decision(budgets=statuses)).budgets
    assert [b.spent_usd_micros for b in budgets] == [0, 1, 2]
    assert [b.scope for b in budgets] == [
        types.BUDGET_SCOPE_TENANT,
        types.BUDGET_SCOPE_RUN,
        types.BUDGET_SCOPE_PRINCIPAL,
    ]


def test_approval() -> None:
    response = authorize_response(
        decision(
            effect=Effect.REQUIRE_APPROVAL,
            approval=ApprovalRequirement(("finance", "lead"), 2, 600),
        )
    )
    assert response.HasField("approval")
    assert list(response.approval.approver_roles) == ["finance", "lead"]
    assert response.approval.min_approvals == 2


@pytest.mark.parametrize(
    "decided_at",
    [
        DECIDED_AT,
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2026, 3, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_decided_at(decided_at: datetime) -> None:
    response = authorize_response(decision(decided_at=decided_at))
    assert response.HasField("decided_at")
    assert response.decided_at.ToDatetime(tzinfo=UTC) == decided_at
