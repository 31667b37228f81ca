"""Unit tests for capgate.policy.input: the policy input document (DESIGN §5)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from capgate.decision.model import (
    AuthorizeRequest,
    Cost,
    Evidence,
    Principal,
    Resource,
    Run,
)
from capgate.policy.input import build_input

T0 = datetime(2026, 3, 1, 12, 30, 45, tzinfo=UTC)
IDENTITY = {"method": "insecure"}


def build(request: AuthorizeRequest, **kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"identity": IDENTITY, "request_time": T0}
    args.update(kwargs)
    return build_input(request, **args)


MINIMAL = AuthorizeRequest(tenant_id="acme", principal=Principal(id="agent"), capability="c")


def test_minimal_request_omits_every_default() -> None:
    assert build(MINIMAL) == {
        "tenant_id": "acme",
        "principal": {"id": "agent"},
        "capability": "c",
        "identity": {"method": "insecure"},
        "request_time": "2026-03-01T12:30:45.000000Z",
    }


def test_defaults_in_nested_messages_are_omitted() -> None:
    request = AuthorizeRequest(
        tenant_id="acme",
        principal=Principal(id="agent", on_behalf_of="", delegation_chain=(), attributes={}),
        capability="c",
        resource=Resource(),
        run=Run(run_id="r1", step=0),
        estimated_cost=Cost(usd_micros=0, tokens=7),
        evidence=(Evidence(kind="doc"),),
        dry_run=False,
    )
    document = build(request)
    assert "resource" not in document
    assert "dry_run" not in document
    assert "parameters" not in document
    assert document["principal"] == {"id": "agent"}
    assert document["run"] == {"run_id": "r1"}
    assert document["estimated_cost"] == {"tokens": 7}
    assert document["evidence"] == [{"kind": "doc"}]


def test_full_request() -> None:
    request = AuthorizeRequest(
        tenant_id="acme",
        principal=Principal(
            id="agent",
            on_behalf_of="user-1",
            delegation_chain=("user-1", "agent"),
            scopes=("refunds:write",),
            roles=("support",),
            attributes={"team": "eu", "level": 0},
        ),
        capability="payments.refund",
        tool="payments.create_refund",
        parameters={"amount": 10, "meta": {"note": "x"}},
        resource=Resource(type="order", id="o-1", attributes={"region": "eu"}),
        run=Run(run_id="r1", workflow="refund_request", step=3, trace_id="t" * 32),
        estimated_cost=Cost(usd_micros=1500, tokens=20),
        idempotency_key="idem-1",
        approval_id="ap-1",
        dry_run=True,
        evidence=(Evidence("ticket", "https://t/1", "sha256:ab"),),
        size_bytes=999,
    )
    approval = {"approval_id": "ap-1", "state": "approved", "approvers": []}
    assert build(request, approval=approval) == {
        "tenant_id": "acme",
        "principal": {
            "id": "agent",
            "on_behalf_of": "user-1",
            "delegation_chain": ["user-1", "agent"],
            "scopes": ["refunds:write"],
            "roles": ["support"],
            "attributes": {"team": "eu", "level": 0},
        },
        "capability": "payments.refund",
        "tool": "payments.create_refund",
        "parameters": {"amount": 10, "meta": {"note": "x"}},
        "resource": {"type": "order", "id": "o-1", "attributes": {"region": "eu"}},
        "run": {"run_id": "r1", "workflow": "refund_request", "step": 3, "trace_id": "t" * 32},
        "estimated_cost": {"usd_micros": 1500, "tokens": 20},
        "idempotency_key": "idem-1",
        "approval_id": "ap-1",
        "dry_run": True,
        "evidence": [{"kind": "ticket", "uri": "https://t/1", "digest": "sha256:ab"}],
        "identity": {"method": "insecure"},
        "approval": approval,
        "request_time": "2026-03-01T12:30:45.000000Z",
    }


@pytest.mark.parametrize(
    "parameters",
    [
        {"zero": 0},
        {"empty": ""},
        {"no": False},
        {"none": None},
        {"list": []},
        {"obj": {}},
        {"float_zero": 0.0},
        {"nested": {"a": 0, "b": "", "c": [0, "", False, None, {}, []]}},
        {"mixed": [{"x": 0}, {"y": ""}], "n": -1, "big": 2**62},
    ],
)
def test_parameters_are_kept_verbatim(parameters: dict[str, Any]) -> None:
    request = AuthorizeRequest(
        tenant_id="acme", principal=Principal(id="a"), capability="c", parameters=parameters
    )
    document = build(request)
    assert document["parameters"] == parameters
    # Same structure as JSON too: no value was dropped or changed type.
    assert json.dumps(document["parameters"], sort_keys=True) == json.dumps(
        parameters, sort_keys=True
    )


@pytest.mark.parametrize(
    "attributes",
    [{"level": 0}, {"flag": False}, {"name": ""}, {"deep": {"x": None}}],
)
def test_attributes_are_kept_verbatim(attributes: dict[str, Any]) -> None:
    request = AuthorizeRequest(
        tenant_id="acme",
        principal=Principal(id="a", attributes=attributes),
        capability="c",
        resource=Resource(type="t", attributes=attributes),
    )
    document = build(request)
    assert document["principal"]["attributes"] == attributes
    assert document["resource"]["attributes"] == attributes


@pytest.mark.parametrize("size", [0, 1, 1 << 20, 1 << 30])
def test_size_bytes_never_appears(size: int) -> None:
    request = AuthorizeRequest(
        tenant_id="acme", principal=Principal(id="a"), capability="c", size_bytes=size
    )
    assert "size_bytes" not in json.dumps(build(request))


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (T0, "2026-03-01T12:30:45.000000Z"),
        (T0.replace(microsecond=123456), "2026-03-01T12:30:45.123456Z"),
        (datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), "1999-12-31T23:59:59.000000Z"),
        (
            datetime(2026, 3, 1, 12, 30, 45, tzinfo=timezone(timedelta(0))),
            "2026-03-01T12:30:45.000000Z",
        ),
        # another offset is converted to UTC
        (
            datetime(2026, 3, 1, 14, 30, 45, tzinfo=timezone(timedelta(hours=2))),
            "2026-03-01T12:30:45.000000Z",
        ),
    ],
)
def test_request_time_is_rfc3339_utc_with_z(when: datetime, expected: str) -> None:
    assert build(MINIMAL, request_time=when)["request_time"] == expected


@pytest.mark.parametrize(
    ("identity", "approval"),
    [
        ({"method": "insecure"}, None),
        ({"method": "mtls", "claims": {"spiffe_id": "spiffe://x/y"}}, {"state": "approved"}),
        ({}, None),
    ],
)
def test_sidecar_facts_are_added(identity: dict[str, Any], approval: dict[str, Any] | None) -> None:
    document = build(MINIMAL, identity=identity, approval=approval)
    assert document["identity"] == identity
    assert document.get("approval") == approval
    assert "tenant_mode" not in document  # enforced in the store, after the policy


def test_document_is_json_serializable_and_does_not_alias_tuples() -> None:
    request = AuthorizeRequest(
        tenant_id="acme",
        principal=Principal(id="a", roles=("r1", "r2")),
        capability="c",
        evidence=(Evidence("k"), Evidence(uri="u")),
    )
    document = build(request)
    assert json.loads(json.dumps(document)) == document
    assert document["principal"]["roles"] == ["r1", "r2"]
    assert document["evidence"] == [{"kind": "k"}, {"uri": "u"}]
