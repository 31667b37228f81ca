"""Unit tests for capgate.decision.fingerprint: what makes two requests the same call."""

from __future__ import annotations

import dataclasses

import pytest

from capgate.decision.fingerprint import request_fingerprint
from capgate.decision.model import AuthorizeRequest, Cost, Evidence, Principal, Resource, Run

BASE = AuthorizeRequest(
    tenant_id="acme",
    principal=Principal(id="agent", scopes=("refunds:write",)),
    capability="issue_refund",
    tool="payments.create_refund",
    parameters={"amount_usd": 10, "order": {"id": "o-1", "lines": [1, 2]}},
    run=Run(run_id="r1", workflow="refund_request", step=2),
    estimated_cost=Cost(20_000, 0),
    idempotency_key="k1",
)


def test_retries_match_whatever_the_key_order_size_or_key() -> None:
    reordered = dataclasses.replace(
        BASE,
        parameters={"order": {"lines": [1, 2], "id": "o-1"}, "amount_usd": 10},
        idempotency_key="another",
        size_bytes=999,
    )
    assert request_fingerprint(reordered) == request_fingerprint(BASE)


@pytest.mark.parametrize(
    "change",
    [
        {"tenant_id": "beta"},
        {"principal": Principal(id="agent", scopes=("refunds:read",))},
        {"principal": Principal(id="agent", scopes=("refunds:write",), on_behalf_of="u")},
        {"capability": "other"},
        {"tool": "payments.other"},
        {"parameters": {"amount_usd": 10.5, "order": {"id": "o-1", "lines": [1, 2]}}},
        {"parameters": {"amount_usd": 10, "order": {"id": "o-1", "lines": [2, 1]}}},
        {"resource": Resource(type="order", id="o-1")},
        {"run": Run(run_id="r1", workflow="refund_request", step=3)},
        {"estimated_cost": Cost(20_001, 0)},
        {"approval_id": "ap-1"},
        {"dry_run": True},
        {"evidence": (Evidence("ticket", "https://t/1", "sha256:00"),)},
    ],
)
def test_any_other_field_changes_the_fingerprint(change: dict[str, object]) -> None:
    changed = dataclasses.replace(BASE, **change)  # type: ignore[arg-type]
    assert request_fingerprint(changed) != request_fingerprint(BASE)
