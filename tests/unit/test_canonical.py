"""canonical_json: byte-equal to rfc8785.dumps (the reference) on any JSON value, and
RFC 8785's own examples."""

from __future__ import annotations

import json
import math
import struct
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from capgate.decision.model import (
    AuthorizeRequest,
    BudgetScope,
    BudgetStatus,
    BudgetWindow,
    Cost,
    Decision,
    Effect,
    Obligation,
    Principal,
    Reason,
    Run,
)
from capgate.events.canonical import canonical_json
from capgate.events.event import decision_event
from capgate.policy.input import build_input


def typical_decision_event() -> dict[str, Any]:
    """An ALLOW with budgets, an obligation, a masked parameter: ~2 KB canonical."""
    at = datetime(2026, 11, 21, 19, 14, 47, 859988, tzinfo=UTC)
    request = AuthorizeRequest(
        tenant_id="acme",
        principal=Principal(
            id="refund-agent",
            on_behalf_of="user-4711",
            delegation_chain=("orchestrator",),
            scopes=("refunds:write", "orders:read"),
            roles=("agent",),
        ),
        capability="issue_refund",
        tool="payments.create_refund",
        parameters={
            "amount_usd": 10.5,
            "order_id": "ord_8f2c1a",
            "reason": "damaged item — customer sent a photo",
            "card_token": "tok_visa_4242",
        },
        run=Run(run_id="run-01J9Z8", workflow="refund_request", step=3, trace_id="4bf92f35"),
        estimated_cost=Cost(usd_micros=10_500_000, tokens=1200),
        idempotency_key="idem-7f3e",
    )
    budget = BudgetStatus(
        scope=BudgetScope.TENANT,
        window=BudgetWindow.DAY,
        limit_usd_micros=1_000_000_000,
        limit_calls=None,
        limit_tokens=None,
        spent_usd_micros=12_000_000,
        reserved_usd_micros=10_500_000,
        used_calls=3,
        used_tokens=0,
    )
    decision = Decision(
        decision_id="0193a8f2-7c1e-7b4a-9d2f-3e8c1a2b4c5d",
        effect=Effect.ALLOW,
        reasons=(Reason(code="POLICY_ALLOW", message="refund within limit"),),
        obligations=(Obligation(type="notify", parameters={"channel": "#refunds"}),),
        approval=None,
        budgets=(budget, budget),
        policy_revision="bundle-2026-11-20.3",
        decided_at=at,
    )
    identity = {"method": "jwt", "principal_id": "refund-agent", "claims": {"exp": 1795000000}}
    return decision_event(
        event_id="0193a8f2-7c1e-7b4a-9d2f-3e8c1a2b4c5e",
        request=request,
        decision=decision,
        input_document=build_input(request, identity=identity, request_time=at),
        shadowed=None,
        error=None,
        latency_ms={"total": 1.234567, "policy": 0.4123, "budget": 0.61},
        mask=("parameters.card_token",),
    )


def as_doubles(value: Any) -> Any:
    """JCS numbers are doubles: an integer beyond ±(2**53 - 1) stands for its double
    when that double's JCS text is the integer's own digits (rfc8785 refuses them)."""
    if isinstance(value, dict):
        return {k: as_doubles(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_doubles(v) for v in value]
    if type(value) is int and abs(value) > 2**53 - 1 and abs(value) < 1e308:
        double = float(value)
        return double if rfc8785.dumps(double) == str(value).encode() else value
    return value


def reference(value: Any) -> bytes | type[Exception]:
    try:
        return rfc8785.dumps(as_doubles(value))
    except ValueError:
        return ValueError


def ours(value: Any) -> bytes | type[Exception]:
    try:
        return canonical_json(value)
    except ValueError:
        return ValueError


TRICKY_FLOATS = [
    0.0, -0.0, 1e-4, 9.999999999999999e-5, 1e-5, 1e-6, 1e-7, 5e-324, 2.2250738585072014e-308,
    0.1, 0.5, 1.5, 123.456, 1e15 + 0.5, 2.0**52 + 0.5, 4503599627370495.5, 2.0**53, -(2.0**53),
    2.0**53 + 2, 1e16, 1e20, 1e21, 1e22, 1.7976931348623157e308, 333333333.3333333,
    math.nan, math.inf, -math.inf,
]  # fmt: skip
CHARS = st.characters(codec="utf-8") | st.sampled_from(
    ["\x00", "\x1f", "\x7f", '"', "\\", "/", "\b", "\f", "\n", "\r", "\t", "\u2028", "\u2029",
     "\ue000", "\uffff", "\U00010000", "\U0001f600", "\ufb33", "é", "€", "\ud800"]
)  # fmt: skip
TEXT = st.text(CHARS, max_size=8)
FLOATS = (
    st.floats()
    | st.sampled_from(TRICKY_FLOATS)
    | st.builds(lambda m, e: m * 10.0**e, st.integers(-(10**17), 10**17), st.integers(-30, 30))
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) - 2, max_value=2**53 + 2)
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.sampled_from([2**53, -(2**53), 2**53 + 1, 2**60, 10**20, -(10**20), 10**21, 10**400])
    | FLOATS
    | TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TEXT, inner, max_size=6),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_equals_rfc8785_on_any_json_value(value: Any) -> None:
    assert ours(value) == reference(value)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_a_parsed_body_canonicalizes_to_itself(value: Any) -> None:
    body = ours(value)
    if body is not ValueError:
        assert canonical_json(json.loads(body)) == body


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (2**53, b"9007199254740992"),
        (-(2**53), b"-9007199254740992"),
        (10**20, b"100000000000000000000"),
        (2**53 + 1, ValueError),  # its double is 2**53: the value would change
        (2**60, ValueError),  # its double prints as 1152921504606847000
        (10**21, ValueError),  # its double prints as 1e+21
    ],
)
def test_integers_beyond_the_safe_range(number: int, expected: Any) -> None:
    assert ours(number) == expected


@settings(max_examples=1500, deadline=None)
@given(FLOATS)
def test_equals_rfc8785_on_any_float(number: float) -> None:
    assert ours([number, -number]) == reference([number, -number])


@settings(max_examples=500, deadline=None)
@given(TEXT)
def test_equals_rfc8785_on_any_string(text: str) -> None:
    assert ours({text: text}) == reference({text: text})


@given(st.dictionaries(TEXT, st.integers(0, 9), min_size=2, max_size=8))
def test_key_order_is_by_utf16_code_units(value: dict[str, int]) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


def test_never_mutates_and_normalizes_integral_floats() -> None:
    value = {"a": [1.0, {"b": 2.0}], "c": 0.5}
    assert canonical_json(value) == b'{"a":[1,{"b":2}],"c":0.5}'
    assert value == {"a": [1.0, {"b": 2.0}], "c": 0.5}
    assert type(value["a"][0]) is float


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\x00\x01\x1f", b'"\\u0000\\u0001\\u001f"'),
        ('"\\/', b'"\\"\\\\/"'),
        ("\b\f\n\r\t", b'"\\b\\f\\n\\r\\t"'),
        ("\x7f\u2028\u2029", '"\x7f\u2028\u2029"'.encode()),
        ("é€\U0001f600", '"é€\U0001f600"'.encode()),
    ],
)
def test_string_escaping(text: str, expected: bytes) -> None:
    assert canonical_json(text) == expected == rfc8785.dumps(text)


@pytest.mark.parametrize(
    "bad",
    [
        math.nan,
        math.inf,
        [-math.inf],
        2**53 + 1,
        {"k": -(2**60)},
        "\ud800",
        {"\udfff": 1},
        {1: 2},
        b"x",
    ],
)
def test_refuses_what_jcs_cannot_represent(bad: Any) -> None:
    with pytest.raises(ValueError):
        canonical_json(bad)


class Color(StrEnum):
    RED = "red"


class Level(IntEnum):
    HIGH = 3


def test_enums_are_their_values() -> None:
    value = {Color.RED: [Color.RED, Level.HIGH]}
    assert canonical_json(value) == rfc8785.dumps(value) == b'{"red":["red",3]}'


# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical form.
@pytest.mark.parametrize(
    ("bits", "expected"),
    [
        ("0000000000000000", "0"),
        ("8000000000000000", "0"),
        ("0000000000000001", "5e-324"),
        ("8000000000000001", "-5e-324"),
        ("7fefffffffffffff", "1.7976931348623157e+308"),
        ("ffefffffffffffff", "-1.7976931348623157e+308"),
        ("4340000000000000", "9007199254740992"),
        ("c340000000000000", "-9007199254740992"),
        ("4430000000000000", "295147905179352830000"),
        ("44b52d02c7e14af5", "9.999999999999997e+22"),
        ("44b52d02c7e14af6", "1e+23"),
        ("44b52d02c7e14af7", "1.0000000000000001e+23"),
        ("444b1ae4d6e2ef4e", "999999999999999700000"),
        ("444b1ae4d6e2ef4f", "999999999999999900000"),
        ("444b1ae4d6e2ef50", "1e+21"),
        ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
        ("3eb0c6f7a0b5ed8d", "0.000001"),
        ("41b3de4355555553", "333333333.3333332"),
        ("41b3de4355555554", "333333333.33333325"),
        ("41b3de4355555555", "333333333.3333333"),
        ("41b3de4355555556", "333333333.3333334"),
        ("41b3de4355555557", "333333333.33333343"),
        ("becbf647612f3696", "-0.0000033333333333333333"),
        ("43143ff3c1cb0959", "1424953923781206.2"),
    ],
)
def test_rfc8785_appendix_b_numbers(bits: str, expected: str) -> None:
    (number,) = struct.unpack(">d", bytes.fromhex(bits))
    assert canonical_json(number) == expected.encode()


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000"])
def test_rfc8785_appendix_b_nan_and_infinity_are_refused(bits: str) -> None:
    (number,) = struct.unpack(">d", bytes.fromhex(bits))
    with pytest.raises(ValueError):
        canonical_json(number)


def test_rfc8785_section_3_2_2_example() -> None:
    source = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(json.loads(source)) == expected.encode()


def test_rfc8785_section_3_2_3_sorting_example() -> None:
    source = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(canonical_json(source)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_a_typical_decision_event_matches() -> None:
    event = typical_decision_event()
    assert canonical_json(event) == rfc8785.dumps(event)
