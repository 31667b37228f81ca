"""Approvals, verified identities and the stop button, end to end (issue 5).

Real parts only: capgate on port 0 with ``--identity jwt`` against a JWKS file, tokens
signed with real RSA keys, the real Redis, the default bundle (plus two capabilities
this module adds: a read-class lookup and a refund whose approval expires in 1 s).
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from capgate.local.redis_server import RedisServer
from capgate.local.serve_process import ServeProcess
from capgate.v1 import approval_service_pb2 as approvals_api
from capgate.v1 import approval_service_pb2_grpc as approvals_grpc
from capgate.v1 import control_service_pb2 as control_api
from capgate.v1 import control_service_pb2_grpc as control_grpc
from capgate.v1 import types_pb2 as types
from capgate_client import AsyncClient, AuthorizeResult
from tests.conftest import DEFAULT_BUNDLE, RunningCapgate, start_capgate
from tests.identity_keys import (
    SigningKey,
    hmac_token,
    rsa_signing_key,
    token_claims,
    unsigned_token,
    write_jwks,
)

ISSUER = "https://idp.test"
AUDIENCE = "capgate"
APPROVE = approvals_api.APPROVAL_VERDICT_APPROVE
REJECT = approvals_api.APPROVAL_VERDICT_REJECT


@dataclass(frozen=True)
class Identities:
    key: SigningKey
    jwks: Path

    def token(
        self, sub: str, tenant: str | None, *, roles: tuple[str, ...] = (), **extra: Any
    ) -> str:
        claims = token_claims(
            issuer=ISSUER,
            audience=AUDIENCE,
            now=datetime.now(UTC),
            sub=sub,
            tenant_id=tenant,
            roles=list(roles),
            scope="refunds:write deploy:write",
            **extra,
        )
        return self.key.mint(claims)


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> Identities:
    key = rsa_signing_key("idp-1")
    return Identities(key, write_jwks(tmp_path_factory.mktemp("idp") / "jwks.json", key))


def jwt_identity(identities: Identities) -> dict[str, Any]:
    return {
        "mode": "jwt",
        "jwt": {"jwks": str(identities.jwks), "issuer": ISSUER, "audience": AUDIENCE},
    }


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default bundle plus ``lookup_order`` (class read) and ``quick_refund`` (its
    approval expires after 1 s)."""
    root = tmp_path_factory.mktemp("bundle") / "default"
    shutil.copytree(DEFAULT_BUNDLE, root)
    data = yaml.safe_load((root / "data.yaml").read_text())
    capabilities = data["capgate"]["capabilities"]
    capabilities["lookup_order"] = {"class": "read", "tools": ["orders.get"]}
    capabilities["quick_refund"] = {
        "class": "write",
        "tools": ["payments.create_refund"],
        "requires_approval": True,
        "approval": {"approver_roles": ["refund-approver"], "min_approvals": 1, "ttl_seconds": 1},
    }
    (root / "data.yaml").write_text(yaml.safe_dump(data))
    return root


@pytest.fixture(scope="module")
async def running(
    redis_server: RedisServer,
    bundle: Path,
    identities: Identities,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RunningCapgate]:
    log = tmp_path_factory.mktemp("approvals") / "decisions.jsonl"
    async with start_capgate(
        bundle=bundle,
        redis_url=redis_server.url,
        decision_log=log,
        identity=jwt_identity(identities),
    ) as capgate:
        yield capgate


@dataclass
class Actors:
    """One tenant's agent, approvers and admin, each with its own token."""

    tenant: str
    target: str
    identities: Identities

    def agent(self, sub: str = "refund-agent", **extra: Any) -> AsyncClient:
        return AsyncClient(self.target, token=self.identities.token(sub, self.tenant, **extra))

    def _channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.target)

    def _md(self, sub: str, roles: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
        return (
            ("authorization", f"Bearer {self.identities.token(sub, self.tenant, roles=roles)}"),
        )

    async def decide(
        self, approval_id: str, sub: str, *roles: str, verdict: int = APPROVE
    ) -> approvals_api.Approval:
        async with self._channel() as channel:
            stub = approvals_grpc.ApprovalServiceStub(channel)
            response = await stub.DecideApproval(
                approvals_api.DecideApprovalRequest(
                    approval_id=approval_id, verdict=verdict, comment=f"by {sub}"
                ),
                metadata=self._md(sub, roles),
                timeout=5,
            )
        return response.approval

    async def get(self, approval_id: str) -> approvals_api.Approval:
        async with self._channel() as channel:
            stub = approvals_grpc.ApprovalServiceStub(channel)
            response = await stub.GetApproval(
                approvals_api.GetApprovalRequest(approval_id=approval_id),
                metadata=self._md("refund-agent", ()),
                timeout=5,
            )
        return response.approval

    async def control(self, method: str, request: Any, *roles: str) -> Any:
        async with self._channel() as channel:
            stub = control_grpc.ControlServiceStub(channel)
            return await getattr(stub, method)(
                request, metadata=self._md("ops", roles or ("capgate-admin",)), timeout=5
            )


@pytest.fixture
def actors(running: RunningCapgate, identities: Identities) -> Actors:
    return Actors(f"t-{uuid.uuid4()}", running.target, identities)


def refund(amount_usd: float, **overrides: Any) -> dict[str, Any]:
    """Authorize kwargs of a refund in its own run, with a fresh idempotency key."""
    kwargs: dict[str, Any] = {
        "principal_id": "refund-agent",
        "tenant_id": "",
        "capability": "issue_refund",
        "tool": "payments.create_refund",
        "parameters": {"amount_usd": amount_usd},
        "workflow": "refund_request",
        "run_id": f"run-{uuid.uuid4()}",
        "idempotency_key": f"call-{uuid.uuid4()}",
    }
    kwargs.update(overrides)
    return kwargs


async def authorize(actors: Actors, sub: str = "refund-agent", **kwargs: Any) -> AuthorizeResult:
    async with actors.agent(sub) as client:
        return await client.authorize(**kwargs)


async def test_refund_over_50_is_approved_once_then_the_approval_is_spent(
    actors: Actors, running: RunningCapgate
) -> None:
    call = refund(60)
    asked = await authorize(actors, **call)
    assert asked.effect == "REQUIRE_APPROVAL"
    assert asked.approver_roles == ("refund-approver",)
    assert asked.approval_id and asked.approval_state == "PENDING"
    assert asked.approval_expires_at is not None and asked.approval_expires_at > datetime.now(UTC)

    approved = await actors.decide(asked.approval_id, "carol", "refund-approver")
    assert approved.state == types.APPROVAL_STATE_APPROVED
    assert [(v.principal_id, list(v.roles)) for v in approved.votes] == [
        ("carol", ["refund-approver"])
    ]

    # the retry: the same tool call (same idempotency key) presenting the approval
    allowed = await authorize(actors, **call, approval_id=asked.approval_id)
    assert allowed.effect == "ALLOW", allowed.reasons
    assert allowed.decision_id != asked.decision_id
    consumed = await actors.get(asked.approval_id)
    assert consumed.state == types.APPROVAL_STATE_CONSUMED
    assert consumed.consumed_by_decision_id == allowed.decision_id

    # a retry of that same call is its idempotent replay: the same decision, nothing new
    replay = await authorize(actors, **call, approval_id=asked.approval_id)
    assert (replay.effect, replay.decision_id) == ("ALLOW", allowed.decision_id)

    # another call presenting the spent approval is refused
    again = await authorize(
        actors, **{**call, "idempotency_key": f"call-{uuid.uuid4()}"}, approval_id=asked.approval_id
    )
    assert again.effect == "DENY"
    assert again.reason_codes == ("APPROVAL_INVALID",)
    assert "already used" in again.reasons[0].message

    events = [
        e for e in (await running.events("approval")) if e["approval_id"] == asked.approval_id
    ]
    assert [(e["transition"]["from"], e["transition"]["to"]) for e in events] == [
        (None, "pending"),
        ("pending", "approved"),
        ("approved", "consumed"),
    ]
    assert events[1]["actor"] == {
        "principal_id": "carol",
        "roles": ["refund-approver"],
        "method": "jwt",
    }
    assert events[1]["approval"]["action_sha256"] == approved.action_sha256
    agent = {"principal_id": "refund-agent", "roles": [], "method": "jwt"}
    assert events[0]["actor"] == events[2]["actor"] == agent
    refused = await running.event_for(again.decision_id)
    assert refused["input"]["approval_id"] == asked.approval_id  # the refused attempt, logged
    assert "approval" not in refused["input"]  # never verified, never shown to the policy


async def test_the_stop_button_stops_replays_of_approved_calls_too(actors: Actors) -> None:
    call = refund(60)
    asked = await authorize(actors, **call)
    await actors.decide(asked.approval_id, "carol", "refund-approver")
    assert (await authorize(actors, **call, approval_id=asked.approval_id)).effect == "ALLOW"
    await actors.control(
        "StopRun", control_api.StopRunRequest(run_id=call["run_id"], reason="runaway")
    )
    replay = await authorize(actors, **call, approval_id=asked.approval_id)
    assert replay.reason_codes == ("RUN_STOPPED",)


async def test_repeating_a_pending_request_returns_the_same_approval(actors: Actors) -> None:
    first = await authorize(actors, **refund(75))
    call = refund(75)
    second = await authorize(actors, **call)
    assert second.approval_id == first.approval_id
    # its idempotent replay reports the approval's state now
    await actors.decide(first.approval_id, "carol", "refund-approver")
    replay = await authorize(actors, **call)
    assert (replay.decision_id, replay.approval_id) == (second.decision_id, first.approval_id)
    assert replay.approval_state == "APPROVED"


async def test_a_dry_run_creates_no_approval(actors: Actors) -> None:
    result = await authorize(actors, **refund(80), dry_run=True)
    assert result.effect == "REQUIRE_APPROVAL" and result.approval_id == ""
    async with grpc.aio.insecure_channel(actors.target) as channel:
        listed = await approvals_grpc.ApprovalServiceStub(channel).ListApprovals(
            approvals_api.ListApprovalsRequest(), metadata=actors._md("console", ())
        )
    assert list(listed.approvals) == []  # nothing stored in the tenant either


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"parameters": {"amount_usd": 190}}, "different action"),
        ({"tool": "payments.refund_v2"}, "different action"),
        ({"principal_id": "other-agent"}, "different action"),
    ],
)
async def test_an_approval_covers_exactly_the_action_it_was_granted_for(
    actors: Actors, change: dict[str, Any], why: str
) -> None:
    call = refund(60)
    asked = await authorize(actors, **call)
    await actors.decide(asked.approval_id, "carol", "refund-approver")
    sub = change.get("principal_id", "refund-agent")
    changed = {**call, **change, "idempotency_key": f"call-{uuid.uuid4()}"}
    result = await authorize(actors, sub, **changed, approval_id=asked.approval_id)
    assert result.effect == "DENY" and result.reason_codes == ("APPROVAL_INVALID",)
    assert why in result.reasons[0].message
    # the approval is still there for the action it covers
    allowed = await authorize(actors, **call, approval_id=asked.approval_id)
    assert allowed.effect == "ALLOW"


async def test_another_tenants_approval_does_not_exist_here(
    actors: Actors, running: RunningCapgate, identities: Identities
) -> None:
    asked = await authorize(actors, **refund(60))
    await actors.decide(asked.approval_id, "carol", "refund-approver")
    other = Actors(f"t-{uuid.uuid4()}", running.target, identities)
    result = await authorize(other, **refund(60), approval_id=asked.approval_id)
    assert result.reason_codes == ("APPROVAL_INVALID",)
    assert "does not exist" in result.reasons[0].message
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await other.decide(asked.approval_id, "dave", "refund-approver")
    assert denied.value.code() == grpc.StatusCode.NOT_FOUND


async def test_pending_rejected_and_expired_approvals_are_refused(
    actors: Actors, running: RunningCapgate
) -> None:
    pending = await authorize(actors, **(call := refund(60)))
    result = await authorize(actors, **call, approval_id=pending.approval_id)
    assert (
        result.reason_codes == ("APPROVAL_INVALID",)
        and "not been granted" in result.reasons[0].message
    )

    rejected_call = refund(61)
    rejected = await authorize(actors, **rejected_call)
    decided = await actors.decide(rejected.approval_id, "carol", "refund-approver", verdict=REJECT)
    assert decided.state == types.APPROVAL_STATE_REJECTED
    result = await authorize(actors, **rejected_call, approval_id=rejected.approval_id)
    assert "rejected" in result.reasons[0].message

    quick = refund(5, capability="quick_refund", workflow="")
    asked = await authorize(actors, **quick)
    assert asked.effect == "REQUIRE_APPROVAL"
    await actors.decide(asked.approval_id, "carol", "refund-approver")
    await asyncio.sleep(1.2)
    expired = await authorize(actors, **quick, approval_id=asked.approval_id)
    assert expired.reason_codes == ("APPROVAL_INVALID",) and "expired" in expired.reasons[0].message
    assert (await actors.get(asked.approval_id)).state == types.APPROVAL_STATE_EXPIRED
    # the same call asked again (same idempotency key) gets a new approval, not the expired one
    asked_again = await authorize(actors, **quick)
    assert asked_again.effect == "REQUIRE_APPROVAL" and asked_again.decision_id != asked.decision_id
    assert asked_again.approval_id not in ("", asked.approval_id)
    assert asked_again.approval_state == "PENDING"
    expiries = [
        e["transition"]
        for e in (await running.events("approval"))
        if e["approval_id"] == asked.approval_id and e["transition"]["to"] == "expired"
    ]
    assert expiries == [{"from": None, "to": "expired"}]  # found once, logged once
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await actors.decide(asked.approval_id, "erin", "refund-approver")
    assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize(
    ("approver", "roles", "on_behalf_of"),
    [
        ("refund-agent", ("refund-approver",), ""),  # the requesting principal itself
        ("alice", ("refund-approver",), "alice"),  # the user the agent acts for
    ],
)
async def test_the_requester_and_its_user_cannot_approve(
    actors: Actors, approver: str, roles: tuple[str, ...], on_behalf_of: str
) -> None:
    extra = {"on_behalf_of": on_behalf_of} if on_behalf_of else {}
    async with AsyncClient(
        actors.target, token=actors.identities.token("refund-agent", actors.tenant, **extra)
    ) as client:
        asked = await client.authorize(**refund(60, on_behalf_of=on_behalf_of))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await actors.decide(asked.approval_id, approver, *roles)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "may not approve its own action" in (refused.value.details() or "")
    assert (await actors.get(asked.approval_id)).state == types.APPROVAL_STATE_PENDING


async def test_an_approver_without_the_role_is_permission_denied(actors: Actors) -> None:
    asked = await authorize(actors, **refund(60))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await actors.decide(asked.approval_id, "mallory", "release-manager")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (await actors.get(asked.approval_id)).votes == []


async def test_a_deploy_needs_two_distinct_release_managers(actors: Actors) -> None:
    deploy = {
        "principal_id": "deploy-agent",
        "tenant_id": "",
        "capability": "deploy_service",
        "tool": "cicd.trigger_deploy",
        "parameters": {"environment": "staging", "service": "web"},
        "idempotency_key": f"call-{uuid.uuid4()}",
    }
    asked = await authorize(actors, "deploy-agent", **deploy)
    assert asked.effect == "REQUIRE_APPROVAL" and asked.min_approvals == 2
    one = await actors.decide(asked.approval_id, "rm-1", "release-manager")
    assert one.state == types.APPROVAL_STATE_PENDING
    twice = await actors.decide(asked.approval_id, "rm-1", "release-manager")
    assert twice.state == types.APPROVAL_STATE_PENDING and len(twice.votes) == 1
    early = await authorize(actors, "deploy-agent", **deploy, approval_id=asked.approval_id)
    assert early.reason_codes == ("APPROVAL_INVALID",)
    two = await actors.decide(asked.approval_id, "rm-2", "release-manager")
    assert two.state == types.APPROVAL_STATE_APPROVED
    assert sorted(v.principal_id for v in two.votes) == ["rm-1", "rm-2"]
    allowed = await authorize(actors, "deploy-agent", **deploy, approval_id=asked.approval_id)
    assert allowed.effect == "ALLOW", allowed.reasons


async def test_list_and_watch_approvals_resume_without_missing_a_transition(
    actors: Actors,
) -> None:
    asked = [await authorize(actors, **refund(51 + n)) for n in range(3)]
    async with grpc.aio.insecure_channel(actors.target) as channel:
        stub = approvals_grpc.ApprovalServiceStub(channel)
        md = actors._md("console", ())
        first = await stub.ListApprovals(
            approvals_api.ListApprovalsRequest(state=types.APPROVAL_STATE_PENDING, page_size=2),
            metadata=md,
        )
        rest = await stub.ListApprovals(
            approvals_api.ListApprovalsRequest(
                state=types.APPROVAL_STATE_PENDING, page_size=2, page_token=first.next_page_token
            ),
            metadata=md,
        )
        listed = [a.approval_id for a in [*first.approvals, *rest.approvals]]
        assert listed == [a.approval_id for a in reversed(asked)]  # newest first
        assert rest.next_page_token == ""

        await actors.decide(asked[0].approval_id, "carol", "refund-approver")
        stream = stub.WatchApprovals(
            approvals_api.WatchApprovalsRequest(resume_token=first.watch_resume_token),
            metadata=md,
        )
        seen = await asyncio.wait_for(stream.read(), timeout=5)
        stream.cancel()
        assert seen.approval.approval_id == asked[0].approval_id
        assert (seen.previous_state, seen.approval.state) == (
            types.APPROVAL_STATE_PENDING,
            types.APPROVAL_STATE_APPROVED,
        )
        assert seen.actor_principal_id == "carol"
        # resuming after that transition sees the next one only
        await actors.decide(asked[1].approval_id, "carol", "refund-approver", verdict=REJECT)
        resumed = stub.WatchApprovals(
            approvals_api.WatchApprovalsRequest(resume_token=seen.resume_token), metadata=md
        )
        following = await asyncio.wait_for(resumed.read(), timeout=5)
        resumed.cancel()
        assert following.approval.approval_id == asked[1].approval_id
        assert following.approval.state == types.APPROVAL_STATE_REJECTED


async def test_read_only_tenant_denies_writes_and_serves_reads(
    actors: Actors, running: RunningCapgate
) -> None:
    changed = await actors.control(
        "SetTenantMode",
        control_api.SetTenantModeRequest(
            mode=control_api.TENANT_MODE_READ_ONLY, reason="incident 42"
        ),
    )
    assert (changed.tenant_id, changed.previous_mode, changed.changed_by) == (
        actors.tenant,
        control_api.TENANT_MODE_NORMAL,
        "ops",
    )
    write = await authorize(actors, **refund(10))
    assert write.effect == "DENY" and write.reason_codes == ("TENANT_READ_ONLY",)
    read = await authorize(
        actors,
        capability="lookup_order",
        tool="orders.get",
        tenant_id="",
        principal_id="refund-agent",
    )
    assert read.effect == "ALLOW", read.reasons

    await actors.control(
        "SetTenantMode",
        control_api.SetTenantModeRequest(mode=control_api.TENANT_MODE_FROZEN, reason="freeze"),
    )
    frozen = await authorize(
        actors,
        capability="lookup_order",
        tool="orders.get",
        tenant_id="",
        principal_id="refund-agent",
    )
    assert frozen.reason_codes == ("TENANT_FROZEN",)
    status = await actors.control(
        "GetStatus", control_api.GetStatusRequest(tenant_id=actors.tenant)
    )
    assert status.tenant_mode == control_api.TENANT_MODE_FROZEN
    assert status.budget_store_reachable and status.policy_revision
    assert (status.policy_engine, status.bundle_last_error) == ("embedded", "")
    assert status.bundle_source.endswith("default") and status.HasField("bundle_activation_time")

    await actors.control(
        "SetTenantMode",
        control_api.SetTenantModeRequest(mode=control_api.TENANT_MODE_NORMAL, reason="resolved"),
    )
    assert (await authorize(actors, **refund(10))).effect == "ALLOW"
    modes = [
        (e["mode"], e["previous_mode"], e["actor"]["principal_id"])
        for e in (await running.events("control"))
        if e["tenant_id"] == actors.tenant
    ]
    assert modes == [
        ("read_only", "normal", "ops"),
        ("frozen", "read_only", "ops"),
        ("normal", "frozen", "ops"),
    ]


async def test_control_needs_the_admin_role_and_its_own_tenant(actors: Actors) -> None:
    stop = control_api.StopRunRequest(run_id="r", reason="x")
    with pytest.raises(grpc.aio.AioRpcError) as no_role:
        await actors.control("StopRun", stop, "refund-approver")
    assert no_role.value.code() == grpc.StatusCode.PERMISSION_DENIED
    other = control_api.StopRunRequest(tenant_id="someone-else", run_id="r", reason="x")
    with pytest.raises(grpc.aio.AioRpcError) as other_tenant:
        await actors.control("StopRun", other)
    assert other_tenant.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_stopped_run_is_denied_on_every_server_process(
    redis_server: RedisServer, bundle: Path, identities: Identities
) -> None:
    env = {
        "CAPGATE_IDENTITY__MODE": "jwt",
        "CAPGATE_IDENTITY__JWT__JWKS": str(identities.jwks),
        "CAPGATE_IDENTITY__JWT__ISSUER": ISSUER,
        "CAPGATE_IDENTITY__JWT__AUDIENCE": AUDIENCE,
    }
    servers = [
        ServeProcess.start(bundle=bundle, redis_url=redis_server.url, env=env) for _ in range(2)
    ]
    try:
        tenant = f"t-{uuid.uuid4()}"
        on = [Actors(tenant, s.target, identities) for s in servers]
        run_id = f"run-{uuid.uuid4()}"
        for actors in on:
            assert (await authorize(actors, **refund(10, run_id=run_id))).effect == "ALLOW"
        stopped = await on[0].control(
            "StopRun", control_api.StopRunRequest(run_id=run_id, reason="runaway agent")
        )
        assert (stopped.tenant_id, stopped.run_id, stopped.stopped_by) == (tenant, run_id, "ops")
        for actors in on:
            result = await authorize(actors, **refund(10, run_id=run_id))
            assert result.reason_codes == ("RUN_STOPPED",)
        # other runs of the tenant go on
        assert (await authorize(on[1], **refund(10))).effect == "ALLOW"
    finally:
        for server in servers:
            server.stop()


def _claims(**extra: Any) -> dict[str, Any]:
    return token_claims(
        issuer=ISSUER, audience=AUDIENCE, now=datetime.now(UTC), sub="refund-agent", **extra
    )


@pytest.mark.parametrize(
    ("forge", "code"),
    [
        ("alg_none", grpc.StatusCode.UNAUTHENTICATED),
        ("hs256_with_public_key", grpc.StatusCode.UNAUTHENTICATED),
        ("wrong_audience", grpc.StatusCode.UNAUTHENTICATED),
        ("wrong_issuer", grpc.StatusCode.UNAUTHENTICATED),
        ("expired", grpc.StatusCode.UNAUTHENTICATED),
        ("other_key", grpc.StatusCode.UNAUTHENTICATED),
        ("no_token", grpc.StatusCode.UNAUTHENTICATED),
        ("body_names_another_tenant", grpc.StatusCode.PERMISSION_DENIED),
        ("body_names_another_principal", grpc.StatusCode.PERMISSION_DENIED),
    ],
)
async def test_forged_or_mismatched_credentials_are_refused(
    actors: Actors,
    identities: Identities,
    running: RunningCapgate,
    forge: str,
    code: grpc.StatusCode,
) -> None:
    tenant = actors.tenant
    call = refund(10)
    tokens = {
        "alg_none": lambda: unsigned_token(_claims(tenant_id=tenant)),
        "hs256_with_public_key": lambda: hmac_token(
            identities.key.public_pem(), _claims(tenant_id=tenant), headers={"kid": "idp-1"}
        ),
        "wrong_audience": lambda: identities.key.mint(_claims(tenant_id=tenant, aud="other")),
        "wrong_issuer": lambda: identities.key.mint(_claims(tenant_id=tenant, iss="https://evil")),
        "expired": lambda: identities.key.mint(
            _claims(tenant_id=tenant, exp=int(datetime.now(UTC).timestamp()) - 3600)
        ),
        "other_key": lambda: rsa_signing_key("idp-1").mint(_claims(tenant_id=tenant)),
        "no_token": lambda: None,
        "body_names_another_tenant": lambda: identities.token("refund-agent", tenant),
        "body_names_another_principal": lambda: identities.token("refund-agent", tenant),
    }
    if forge == "body_names_another_tenant":
        call["tenant_id"] = "someone-else"
    if forge == "body_names_another_principal":
        call["principal_id"] = "admin-agent"
    before = len(await running.events())
    async with AsyncClient(actors.target, token=tokens[forge]()) as client:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.authorize(**call)
    assert refused.value.code() == code
    assert len(await running.events()) == before  # nothing decided, nothing logged


async def test_the_token_fills_in_tenant_principal_scopes_and_roles(
    actors: Actors, running: RunningCapgate
) -> None:
    """The body names no tenant and no scopes: they come from the verified token."""
    result = await authorize(actors, **refund(10))
    assert result.effect == "ALLOW", result.reasons
    event = await running.event_for(result.decision_id)
    assert event["tenant_id"] == actors.tenant
    assert event["principal"]["scopes"] == ["refunds:write", "deploy:write"]
    assert event["input"]["identity"]["method"] == "jwt"
    assert event["input"]["identity"]["claims"]["sub"] == "refund-agent"
