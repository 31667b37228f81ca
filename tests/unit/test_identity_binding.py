"""Unit tests for capgate.identity.binding: the body may repeat, never contradict."""

from __future__ import annotations

from dataclasses import replace

import pytest

from capgate.decision.model import AuthorizeRequest, Principal
from capgate.errors import PermissionDenied
from capgate.identity.binding import bind_request
from capgate.identity.model import Identity

IDENTITY = Identity(
    method="jwt",
    principal_id="refund-agent",
    tenant_id="acme",
    on_behalf_of="alice",
    delegation_chain=("alice", "orchestrator", "refund-agent"),
    scopes=("refunds:write",),
    roles=("ops",),
    claims={"sub": "refund-agent"},
)
BODY = AuthorizeRequest(
    tenant_id="acme",
    principal=Principal(
        id="refund-agent",
        on_behalf_of="alice",
        delegation_chain=("mallory",),
        scopes=("admin:*",),
        roles=("capgate-admin",),
        attributes={"team": "payments"},
    ),
    capability="issue_refund",
    tool="payments.create_refund",
    parameters={"amount_usd": 10},
)
BOUND = replace(
    BODY,
    principal=Principal(
        id="refund-agent",
        on_behalf_of="alice",
        delegation_chain=("alice", "orchestrator", "refund-agent"),
        scopes=("refunds:write",),
        roles=("ops",),
        attributes={"team": "payments"},
    ),
)


def test_principal_comes_from_the_identity() -> None:
    assert bind_request(IDENTITY, BODY) == BOUND


def test_empty_body_fields_are_filled() -> None:
    body = replace(BODY, tenant_id="", principal=Principal(id="", attributes={"team": "payments"}))
    assert bind_request(IDENTITY, body) == BOUND


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (replace(BODY, tenant_id="globex"), "tenant_id"),
        (replace(BODY, principal=replace(BODY.principal, id="admin-agent")), "principal.id"),
        (
            replace(BODY, principal=replace(BODY.principal, on_behalf_of="bob")),
            "principal.on_behalf_of",
        ),
    ],
)
def test_contradicting_body_is_denied(body: AuthorizeRequest, field: str) -> None:
    with pytest.raises(PermissionDenied, match=f"^{field} differs") as caught:
        bind_request(IDENTITY, body)
    for value in ("globex", "admin-agent", "bob", "acme", "refund-agent", "alice"):
        assert value not in str(caught.value)


def test_on_behalf_of_without_delegation_is_denied() -> None:
    identity = replace(IDENTITY, on_behalf_of="", delegation_chain=("refund-agent",))
    with pytest.raises(PermissionDenied, match=r"principal\.on_behalf_of"):
        bind_request(identity, BODY)


def test_identity_without_tenant_is_denied() -> None:
    with pytest.raises(PermissionDenied, match="the credentials name no tenant"):
        bind_request(replace(IDENTITY, tenant_id=""), BODY)


def test_insecure_identity_trusts_the_body() -> None:
    identity = Identity(method="insecure", principal_id="", trusts_body=True)
    body = replace(BODY, tenant_id="globex")
    assert bind_request(identity, body) is body
