"""Unit tests for capgate.decision.validate: each rule names its field path."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from capgate.decision.model import (
    AuthorizeRequest,
    Change,
    Cost,
    Outcome,
    Principal,
    SettleRequest,
)
from capgate.decision.validate import MAX_REQUEST_BYTES, validate_request, validate_settle
from capgate.errors import InvalidArgument


def make_request(**changes: Any) -> AuthorizeRequest:
    base = AuthorizeRequest(
        tenant_id="acme",
        principal=Principal(id="refund-agent"),
        capability="payments.refund:create",
        parameters={"amount": 10, "currency": "EUR"},
        size_bytes=200,
    )
    return dataclasses.replace(base, **changes)


def nested(depth: int, leaf: Any = 1) -> dict[str, Any]:
    """A dict nested ``depth`` containers deep: nested(1) == {"k": 1}."""
    value: Any = leaf
    for _ in range(depth):
        value = {"k": value}
    return value


def violation_fields(request: AuthorizeRequest) -> list[str]:
    with pytest.raises(InvalidArgument) as info:
        validate_request(request)
    return [field for field, _ in info.value.violations]


@pytest.mark.parametrize(
    "request_",
    [
        make_request(),
        make_request(parameters={}),
        make_request(capability="a"),
        make_request(capability="a.b:c-d_e"),
        make_request(capability="0123456789_.:-"),
        make_request(capability="x" * 128),
        make_request(parameters=nested(32)),
        make_request(parameters={"l": [[[1.5, -0.0, 1e308]]], "s": "nan", "b": True}),
        make_request(size_bytes=MAX_REQUEST_BYTES),
        make_request(estimated_cost=Cost(usd_micros=0, tokens=0)),
        make_request(estimated_cost=Cost(usd_micros=5_000_000, tokens=1000)),
    ],
)
def test_valid_requests_pass(request_: AuthorizeRequest) -> None:
    assert validate_request(request_) is None


@pytest.mark.parametrize(
    ("request_", "expected_field"),
    [
        (make_request(tenant_id=""), "tenant_id"),
        (make_request(principal=Principal(id="")), "principal.id"),
        (make_request(capability=""), "capability"),
        (make_request(capability="x" * 129), "capability"),
        (make_request(capability="Payments.refund"), "capability"),
        (make_request(capability="payments refund"), "capability"),
        (make_request(capability="payments/refund"), "capability"),
        (make_request(capability="payments.refund\n"), "capability"),
        (make_request(capability="pay*"), "capability"),
        (make_request(capability="é"), "capability"),
        (make_request(size_bytes=MAX_REQUEST_BYTES + 1), "request"),
        (make_request(estimated_cost=Cost(usd_micros=-1)), "estimated_cost.usd_micros"),
        (make_request(estimated_cost=Cost(tokens=-1)), "estimated_cost.tokens"),
        (make_request(parameters={"a": math.nan}), "parameters.a"),
        (make_request(parameters={"a": math.inf}), "parameters.a"),
        (make_request(parameters={"a": {"b": -math.inf}}), "parameters.a.b"),
        (make_request(parameters={"a": [1, {"c": math.nan}]}), "parameters.a.1.c"),
        (make_request(parameters={"a": [0.5, math.inf]}), "parameters.a.1"),
    ],
)
def test_each_rule_names_its_field(request_: AuthorizeRequest, expected_field: str) -> None:
    assert violation_fields(request_) == [expected_field]


@pytest.mark.parametrize(
    ("depth", "ok"),
    [(1, True), (31, True), (32, True), (33, False), (40, False)],
)
def test_parameter_depth_limit(depth: int, ok: bool) -> None:
    request = make_request(parameters=nested(depth))
    if ok:
        validate_request(request)
        return
    fields = violation_fields(request)
    assert len(fields) == 1
    # The violation names the first container past the limit (depth 33).
    assert fields[0] == "parameters" + ".k" * 32


@pytest.mark.parametrize(
    ("lists", "ok"),
    [(31, True), (32, False)],  # plus the enclosing dict: depth 32 and 33
)
def test_list_nesting_counts_toward_depth(lists: int, ok: bool) -> None:
    value: Any = 1
    for _ in range(lists):
        value = [value]
    request = make_request(parameters={"l": value})
    if ok:
        validate_request(request)
    else:
        assert violation_fields(request) == ["parameters.l" + ".0" * 31]


def test_depth_is_counted_as_in_the_docstring() -> None:
    # {"a": 1} is depth 1, so 32 levels means 32 nested dicts.
    validate_request(make_request(parameters=nested(32)))
    with pytest.raises(InvalidArgument):
        validate_request(make_request(parameters=nested(33)))


def test_several_violations_are_reported_together() -> None:
    request = make_request(
        tenant_id="",
        principal=Principal(id=""),
        capability="BAD CAP",
        parameters={"x": math.nan, "y": {"z": math.inf}},
        estimated_cost=Cost(usd_micros=-5, tokens=-7),
        size_bytes=MAX_REQUEST_BYTES + 10,
    )
    assert sorted(violation_fields(request)) == sorted(
        [
            "request",
            "tenant_id",
            "principal.id",
            "capability",
            "estimated_cost.usd_micros",
            "estimated_cost.tokens",
            "parameters.x",
            "parameters.y.z",
        ]
    )


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        (make_request(tenant_id=""), "tenant_id: is required"),
        (make_request(capability="A"), "capability: must match"),
        (make_request(size_bytes=MAX_REQUEST_BYTES + 1), str(MAX_REQUEST_BYTES + 1)),
        (make_request(parameters={"a": math.nan}), "parameters.a: must be a finite number"),
    ],
)
def test_message_carries_field_and_description(request_: AuthorizeRequest, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_request(request_)
    assert fragment in str(info.value)


def _settle(**changes: Any) -> SettleRequest:
    base = SettleRequest(tenant_id="acme", decision_id="d1", outcome=Outcome.SUCCEEDED)
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    ("request_", "expected_fields"),
    [
        (_settle(), set()),
        (_settle(actual_cost=Cost(0, 0)), set()),
        (_settle(tenant_id="", decision_id=""), {"tenant_id", "decision_id"}),
        (_settle(outcome=None), {"outcome"}),
        (_settle(actual_cost=Cost(-1, -2)), {"actual_cost.usd_micros", "actual_cost.tokens"}),
        (
            _settle(changes=(Change("order/1", "total", math.nan, {"x": math.inf}),)),
            {"changes.0.before", "changes.0.after.x"},
        ),
        (_settle(result={"r": -math.inf}), {"result.r"}),
        (_settle(size_bytes=MAX_REQUEST_BYTES + 1), {"request"}),
    ],
)
def test_settle_rules_name_their_fields(request_: SettleRequest, expected_fields: set[str]) -> None:
    if not expected_fields:
        validate_settle(request_)
        return
    with pytest.raises(InvalidArgument) as raised:
        validate_settle(request_)
    assert {field for field, _ in raised.value.violations} == expected_fields
