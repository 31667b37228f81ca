"""The approval scripts on a real Redis, standalone and Cluster (issue 5): created in
the Authorize script, decided, read, listed, watched and consumed atomically; every
key in the tenant's hash slot with a TTL."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from capgate.approvals.flow import approval_request
from capgate.approvals.model import ApprovalState, Verdict
from capgate.approvals.store import RedisApprovalStore
from capgate.budget import keys
from capgate.budget.redis_store import RedisBudgetStore
from capgate.budget.store import Admission, NewApproval, PresentedApproval, Subjects
from capgate.budget.store import Verdict as V
from capgate.control.store import RedisControlStore, RunStop, TenantMode
from capgate.decision.model import (
    ApprovalRequirement,
    AuthorizeRequest,
    Cost,
    Principal,
    Reason,
    Run,
)
from capgate.errors import FailedPrecondition, NotFound, PermissionDenied
from capgate.identity.model import Identity
from tests.conftest import HOSTILE_TENANTS, tenant_keys

NOW = datetime(2026, 11, 21, tzinfo=UTC)


def request(tenant: str, amount: int = 60) -> AuthorizeRequest:
    return AuthorizeRequest(
        tenant_id=tenant,
        principal=Principal("refund-agent", on_behalf_of="alice"),
        capability="issue_refund",
        tool="payments.create_refund",
        parameters={"amount_usd": amount, "order": {"id": "o-1", "lines": [1, 2.5]}},
        run=Run(run_id="run-1", workflow="refund_request"),
    )


def ask(
    tenant: str, *, quorum: int = 1, ttl: int = 900, amount: int = 60
) -> tuple[Admission, NewApproval]:
    req = request(tenant, amount)
    _, new = approval_request(
        req,
        ApprovalRequirement(("refund-approver",), quorum, ttl),
        approval_id=str(uuid.uuid4()),
        decision_id=str(uuid.uuid4()),
        policy_revision="r1",
        reasons=(Reason("REFUND_OVER_APPROVAL_THRESHOLD", "refunds over $50 need approval"),),
        now=NOW,
    )
    return _admission(tenant, new_approval=new, action_class="write"), new


def _admission(tenant: str, **fields: object) -> Admission:
    base = Admission(
        tenant_id=tenant,
        decision_id=str(uuid.uuid4()),
        subjects=Subjects("refund-agent", "issue_refund", "payments.create_refund", "run-1"),
        budgets=(),
        rate_limits=(),
        cost=Cost(),
        consume=False,
        reservation_ttl_seconds=900,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def approver(name: str, *roles: str) -> Identity:
    return Identity(method="jwt", principal_id=name, roles=roles)


@pytest.fixture
def stores(redis: Redis | RedisCluster) -> tuple[RedisBudgetStore, RedisApprovalStore]:
    return (
        RedisBudgetStore(redis, deadline_seconds=2.0, run_ttl_seconds=3_600),
        RedisApprovalStore(redis, deadline_seconds=2.0),
    )


async def test_an_approval_is_created_once_decided_and_consumed_once(
    stores: tuple[RedisBudgetStore, RedisApprovalStore],
) -> None:
    budgets, approvals = stores
    t = f"t-{uuid.uuid4()}"
    admission, new = ask(t)
    created = await budgets.admit(admission)
    assert created.verdict is V.ADMITTED and created.approval_id == new.approval_id
    again = await budgets.admit(ask(t)[0])  # the same action while pending
    assert again.approval_id == new.approval_id

    approval, _ = await approvals.get(t, new.approval_id)
    assert approval.state is ApprovalState.PENDING
    assert approval.parameters == {"amount_usd": 60, "order": {"id": "o-1", "lines": [1, 2.5]}}
    assert approval.expires_at == created.approval_expires_at

    decided = await approvals.decide(
        t, new.approval_id, approver("carol", "refund-approver"), Verdict.APPROVE, "ok"
    )
    assert decided.changed and decided.approval.state is ApprovalState.APPROVED

    presented = PresentedApproval(new.approval_id, new.action_sha256, consume=True)
    use = _admission(t, consume=True, action_class="write", presented_approval=presented)
    twice = [use, replace(use, decision_id=str(uuid.uuid4()))]
    results = await asyncio.gather(*(budgets.admit(a) for a in twice))
    assert sorted(r.verdict.value for r in results) == ["admitted", "approval_invalid"]
    assert [r.approval_state for r in results if r.verdict is V.APPROVAL_INVALID] == ["consumed"]
    consumed, _ = await approvals.get(t, new.approval_id)
    assert consumed.state is ApprovalState.CONSUMED
    winner = next(a for a, r in zip(twice, results, strict=True) if r.verdict is V.ADMITTED)
    assert consumed.consumed_by_decision_id == winner.decision_id


async def test_a_wrong_action_hash_is_a_mismatch(
    stores: tuple[RedisBudgetStore, RedisApprovalStore],
) -> None:
    budgets, approvals = stores
    t = f"t-{uuid.uuid4()}"
    admission, new = ask(t)
    await budgets.admit(admission)
    await approvals.decide(
        t, new.approval_id, approver("c", "refund-approver"), Verdict.APPROVE, ""
    )
    wrong = PresentedApproval(new.approval_id, "0" * 64, consume=True)
    result = await budgets.admit(
        _admission(t, consume=True, action_class="write", presented_approval=wrong)
    )
    assert (result.verdict, result.approval_state) == (V.APPROVAL_INVALID, "mismatch")


async def test_decide_rules(stores: tuple[RedisBudgetStore, RedisApprovalStore]) -> None:
    budgets, approvals = stores
    t = f"t-{uuid.uuid4()}"
    admission, new = ask(t, quorum=2)
    await budgets.admit(admission)
    for who in (approver("refund-agent", "refund-approver"), approver("alice", "refund-approver")):
        with pytest.raises(PermissionDenied, match="own action"):
            await approvals.decide(t, new.approval_id, who, Verdict.APPROVE, "")
    with pytest.raises(PermissionDenied, match="approver roles"):
        await approvals.decide(t, new.approval_id, approver("bob", "viewer"), Verdict.APPROVE, "")
    with pytest.raises(NotFound):
        await approvals.decide(t, "nope", approver("bob", "refund-approver"), Verdict.APPROVE, "")
    first = await approvals.decide(
        t, new.approval_id, approver("b", "refund-approver"), Verdict.APPROVE, ""
    )
    repeat = await approvals.decide(
        t, new.approval_id, approver("b", "refund-approver"), Verdict.APPROVE, ""
    )
    assert (first.changed, repeat.repeated) == (False, True)
    assert repeat.approval.state is ApprovalState.PENDING and len(repeat.approval.votes) == 1
    rejected = await approvals.decide(
        t, new.approval_id, approver("d", "refund-approver"), Verdict.REJECT, "no"
    )
    assert rejected.approval.state is ApprovalState.REJECTED
    with pytest.raises(FailedPrecondition, match="rejected"):
        await approvals.decide(
            t, new.approval_id, approver("e", "refund-approver"), Verdict.APPROVE, ""
        )


async def test_expiry_is_found_by_readers_and_logged_once(
    stores: tuple[RedisBudgetStore, RedisApprovalStore],
) -> None:
    budgets, approvals = stores
    t = f"t-{uuid.uuid4()}"
    admission, new = ask(t, ttl=1)
    await budgets.admit(admission)
    head = await approvals.head(t)
    await asyncio.sleep(1.1)
    page, expired = await approvals.list(t, state=ApprovalState.PENDING, page_size=10, cursor="")
    assert page.approvals == () and expired == (new.approval_id,)
    approval, expired_again = await approvals.get(t, new.approval_id)
    assert approval.state is ApprovalState.EXPIRED and expired_again == ()
    transitions = approvals.watch(t, head)
    seen = await asyncio.wait_for(anext(transitions), timeout=5)
    await transitions.aclose()
    assert (seen.previous_state, seen.approval.state) == (
        ApprovalState.PENDING,
        ApprovalState.EXPIRED,
    )


@pytest.mark.parametrize("hostile", HOSTILE_TENANTS)
async def test_hostile_tenants_and_every_approval_key_has_a_ttl(
    redis: Redis | RedisCluster,
    stores: tuple[RedisBudgetStore, RedisApprovalStore],
    hostile: str,
) -> None:
    budgets, approvals = stores
    t = f"{hostile}-{uuid.uuid4()}"
    admission, new = ask(t)
    await budgets.admit(admission)
    await approvals.decide(
        t, new.approval_id, approver("c", "refund-approver"), Verdict.APPROVE, ""
    )
    control = RedisControlStore(redis, deadline_seconds=2.0, run_ttl_seconds=3_600)
    await control.stop_run(RunStop(t, "run-1", "ops", "why", NOW))
    stopped = await budgets.admit(_admission(t, action_class="read"))
    assert (stopped.verdict, stopped.control_code) == (V.CONTROLLED, "RUN_STOPPED")
    found = await tenant_keys(redis, t)
    assert keys.approval_key(t, new.approval_id) in found
    for key in found:
        assert await redis.pttl(key) > 0, key
    # the tenant's mode is a setting, kept until changed back (no TTL)
    assert await control.set_mode(t, TenantMode.FROZEN) is TenantMode.NORMAL
    assert await control.set_mode(t, TenantMode.NORMAL) is TenantMode.FROZEN
    assert keys.control_key(t) not in await tenant_keys(redis, t)
