"""Malformed requests get INVALID_ARGUMENT with a BadRequest naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from capgate_client import AsyncClient, InvalidRequestError
from tests.conftest import RunningCapgate

VALID: dict[str, Any] = {
    "tenant_id": "acme",
    "principal_id": "refund-agent",
    "capability": "issue_refund",
    "tool": "payments.create_refund",
    "parameters": {"amount_usd": 10},
}


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"tenant_id": ""}, "tenant_id"),
        ({"principal_id": ""}, "principal.id"),
        ({"capability": ""}, "capability"),
        ({"capability": "Issue Refund"}, "capability"),
        ({"capability": "x" * 129}, "capability"),
        ({"capability": "issue/refund"}, "capability"),
        ({"parameters": {"blob": "x" * (1 << 20)}}, "request"),
        ({"parameters": _nested(33)}, "parameters" + ".n" * 32),
        ({"estimated_cost_usd_micros": -1}, "estimated_cost.usd_micros"),
    ],
    ids=[
        "no-tenant",
        "no-principal",
        "no-capability",
        "capability-case",
        "capability-long",
        "capability-slash",
        "over-1MiB",
        "depth-33",
        "negative-cost",
    ],
)
async def test_invalid_argument_names_the_field(
    capgate: RunningCapgate, override: dict[str, Any], field: str
) -> None:
    lines_before = len(await capgate.events())
    async with AsyncClient(capgate.target) as client:
        with pytest.raises(InvalidRequestError) as raised:
            await client.authorize(**(VALID | override))
    assert field in raised.value.fields, raised.value.field_violations
    assert len(await capgate.events()) == lines_before  # nothing decided, nothing logged


async def test_depth_32_is_accepted(capgate: RunningCapgate) -> None:
    async with AsyncClient(capgate.target) as client:
        result = await client.authorize(**(VALID | {"parameters": _nested(32)}))
    assert result.effect == "DENY"  # decided (no scope, no key), not refused as malformed


async def test_every_violation_is_reported_at_once(capgate: RunningCapgate) -> None:
    async with AsyncClient(capgate.target) as client:
        with pytest.raises(InvalidRequestError) as raised:
            await client.authorize(tenant_id="", principal_id="", capability="")
    assert set(raised.value.fields) == {"tenant_id", "principal.id", "capability"}
