"""The Redis budget store against real Redis: a standalone server and a three-primary
Cluster (every test runs on both, so no script touches keys across slots).

Covers DESIGN §6 and issue 4: all-or-nothing admission naming the exceeded budget,
calendar windows from Redis TIME, GCRA rate limits, settlement outcomes, expiry of
unsettled reservations, idempotency keys, TTLs on every key, hostile tenant ids, and
EVALSHA falling back to EVAL after SCRIPT FLUSH.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from capgate.budget import keys
from capgate.budget.redis_store import AUTHORIZE_SCRIPT, RedisBudgetStore
from capgate.budget.store import Admission, Idempotency, Subjects, Verdict
from capgate.decision.model import (
    BudgetScope,
    BudgetSpec,
    BudgetWindow,
    Cost,
    Outcome,
    RateLimitSpec,
)
from capgate.errors import IdempotencyConflict, ReservationNotFound, SettlementConflict
from tests.conftest import HOSTILE_TENANTS, tenant_keys
from tests.redis_topology import RedisClusterNodes

TENANT_MONTH = BudgetSpec(BudgetScope.TENANT, BudgetWindow.MONTH, limit_usd_micros=1_000)
RUN_CALLS = BudgetSpec(BudgetScope.RUN, BudgetWindow.RUN, limit_calls=3)


@pytest.fixture
def store(redis: Redis | RedisCluster) -> RedisBudgetStore:
    return RedisBudgetStore(redis, deadline_seconds=2.0, run_ttl_seconds=3_600)


def admission(
    tenant: str,
    *,
    budgets: Sequence[BudgetSpec] = (TENANT_MONTH,),
    rate_limits: Sequence[RateLimitSpec] = (),
    usd: int = 100,
    tokens: int = 0,
    consume: bool = True,
    ttl: int = 900,
    idempotency: Idempotency | None = None,
    run_id: str = "run-1",
    principal: str = "agent",
) -> Admission:
    return Admission(
        tenant_id=tenant,
        decision_id=str(uuid.uuid4()),
        subjects=Subjects(principal, "issue_refund", "payments.create_refund", run_id),
        budgets=budgets,
        rate_limits=rate_limits,
        cost=Cost(usd, tokens),
        consume=consume,
        reservation_ttl_seconds=ttl,
        metadata='{"m": 1}',
        idempotency=idempotency,
    )


def tenant() -> str:
    return f"t-{uuid.uuid4()}"


async def usage(redis: Redis | RedisCluster, key: str) -> dict[str, int]:
    raw = await redis.hgetall(key)
    return {k.decode(): int(v) for k, v in raw.items()}


async def test_admits_until_a_budget_would_be_exceeded_then_names_it(
    store: RedisBudgetStore,
) -> None:
    t = tenant()
    results = [await store.admit(admission(t, usd=300)) for _ in range(4)]
    assert [r.verdict for r in results] == [Verdict.ADMITTED] * 3 + [Verdict.BUDGET_EXCEEDED]
    assert results[2].usage == ((3, 0, 900, 0, 0),)
    overrun = results[3].overrun
    assert overrun is not None and (overrun.budget, overrun.unit) == (TENANT_MONTH, "usd_micros")


async def test_all_or_nothing_when_a_later_budget_refuses(
    store: RedisBudgetStore, redis: Redis | RedisCluster
) -> None:
    t = tenant()
    budgets = (TENANT_MONTH, BudgetSpec(BudgetScope.RUN, BudgetWindow.RUN, limit_calls=1))
    first = await store.admit(admission(t, budgets=budgets))
    second = await store.admit(admission(t, budgets=budgets))
    assert first.verdict is Verdict.ADMITTED
    assert second.verdict is Verdict.BUDGET_EXCEEDED
    assert second.overrun is not None and second.overrun.budget.scope is BudgetScope.RUN
    # the tenant budget (checked first, and not exceeded) holds only the first call
    month = datetime.now(UTC).strftime("%Y-%m")
    tenant_usage = await usage(redis, keys.budget_prefix(t, "tenant") + f":30d:{month}")
    assert tenant_usage == {"calls": 1, "reserved_usd_micros": 100}
    assert len(await redis.zrange(keys.reservations_key(t), 0, -1)) == 1


async def test_check_only_reserves_nothing(
    store: RedisBudgetStore, redis: Redis | RedisCluster
) -> None:
    t = tenant()
    result = await store.admit(admission(t, consume=False))
    assert result.verdict is Verdict.ADMITTED
    assert result.usage == ((0, 0, 0, 0, 0),)
    assert await tenant_keys(redis, t) == []


@pytest.mark.parametrize(
    ("window", "length"),
    [(BudgetWindow.MINUTE, 60), (BudgetWindow.HOUR, 3_600), (BudgetWindow.DAY, 86_400)],
)
async def test_fixed_windows_are_utc_aligned_and_expire_after_their_end(
    store: RedisBudgetStore, redis: Redis | RedisCluster, window: BudgetWindow, length: int
) -> None:
    t = tenant()
    spec = BudgetSpec(BudgetScope.PRINCIPAL, window, limit_calls=10)
    await store.admit(admission(t, budgets=(spec,), ttl=30))
    now_s, _ = await _redis_time(redis, t)
    start = now_s - now_s % length
    key = keys.budget_prefix(t, "principal", "agent") + f":{window.value}:{start}"
    assert (await usage(redis, key))["calls"] == 1
    ttl = await redis.ttl(key)
    assert start + length - now_s + 30 <= ttl <= start + length - now_s + 30 + 61


async def test_month_window_is_the_utc_calendar_month(
    store: RedisBudgetStore, redis: Redis | RedisCluster
) -> None:
    t = tenant()
    await store.admit(admission(t))
    now_s, _ = await _redis_time(redis, t)
    now = datetime.fromtimestamp(now_s, UTC)
    key = keys.budget_prefix(t, "tenant") + f":30d:{now:%Y-%m}"
    next_month = (now.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0)
    next_month = next_month.replace(second=0, microsecond=0)
    seconds_left = int(next_month.timestamp()) - now_s
    assert seconds_left + 900 <= await redis.ttl(key) <= seconds_left + 900 + 61


@pytest.mark.parametrize(
    "day",
    ["1970-01-01", "2000-02-29", "2024-02-29", "2026-11-21", "2026-12-31", "2100-03-01"],
)
async def test_month_arithmetic_matches_the_gregorian_calendar(
    redis: Redis | RedisCluster, day: str
) -> None:
    """The script's civil-date functions, run in Redis, against Python's calendar."""
    moment = datetime.fromisoformat(day).replace(tzinfo=UTC, hour=13)
    probe = AUTHORIZE_SCRIPT.source.split("local consume =")[0] + (
        "local suffix, ends = window_of('30d', tonumber(ARGV[1]))\n"
        "return {suffix, string.format('%d', ends)}"
    )
    suffix, ends = await redis.eval(probe, 1, "capgate:{probe}:x", int(moment.timestamp()))
    following = (moment.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0)
    assert suffix.decode() == f"30d:{moment:%Y-%m}"
    assert int(ends) == int(following.timestamp())


async def test_rate_limit_admits_a_burst_then_refuses_with_retry_after(
    store: RedisBudgetStore,
) -> None:
    t = tenant()
    limit = RateLimitSpec("principal+capability", limit=2, period_seconds=2, burst=3)
    results = [await store.admit(admission(t, rate_limits=(limit,))) for _ in range(4)]
    assert [r.verdict for r in results] == [Verdict.ADMITTED] * 3 + [Verdict.RATE_LIMITED]
    throttle = results[3].throttle
    assert throttle is not None and throttle.rate_limit == limit
    # one emission interval (1 s) must pass before the next call fits
    assert 900 <= throttle.retry_after_ms <= 1_000
    other = await store.admit(admission(t, rate_limits=(limit,), principal="another-agent"))
    assert other.verdict is Verdict.ADMITTED


async def test_rate_limit_refill_follows_redis_time(store: RedisBudgetStore) -> None:
    t = tenant()
    limit = RateLimitSpec("tenant", limit=10, period_seconds=1, burst=1)
    assert (await store.admit(admission(t, rate_limits=(limit,)))).verdict is Verdict.ADMITTED
    refused = await store.admit(admission(t, rate_limits=(limit,)))
    assert refused.verdict is Verdict.RATE_LIMITED and refused.throttle is not None
    await asyncio.sleep(refused.throttle.retry_after_ms / 1000 + 0.02)
    assert (await store.admit(admission(t, rate_limits=(limit,)))).verdict is Verdict.ADMITTED


async def test_a_refused_budget_takes_no_rate_limit_token(store: RedisBudgetStore) -> None:
    t = tenant()
    limit = RateLimitSpec("tenant", limit=1, period_seconds=60, burst=1)
    over = await store.admit(admission(t, usd=5_000, rate_limits=(limit,)))
    assert over.verdict is Verdict.BUDGET_EXCEEDED
    assert (await store.admit(admission(t, rate_limits=(limit,)))).verdict is Verdict.ADMITTED


@pytest.mark.parametrize(
    ("outcome", "actual", "spent", "calls"),
    [
        (Outcome.SUCCEEDED, Cost(250, 7), 250, 1),  # an overrun of 150 is committed
        (Outcome.SUCCEEDED, None, 100, 1),  # no actual cost: the estimate is committed
        (Outcome.REVERTED, Cost(80, 0), 80, 1),
        (Outcome.FAILED, Cost(80, 0), 0, 1),
        (Outcome.ABANDONED, None, 0, 0),
    ],
)
async def test_settlement_outcomes(
    store: RedisBudgetStore,
    redis: Redis | RedisCluster,
    outcome: Outcome,
    actual: Cost | None,
    spent: int,
    calls: int,
) -> None:
    t = tenant()
    reserved = admission(t, budgets=(TENANT_MONTH, RUN_CALLS), tokens=9)
    await store.admit(reserved)
    result = await store.settle(
        tenant_id=t, decision_id=reserved.decision_id, outcome=outcome, actual=actual
    )
    assert result.previous_state == "reserved"
    assert result.estimated == Cost(100, 9)
    assert result.committed.usd_micros == spent
    assert result.metadata == '{"m": 1}'
    for calls_now, spent_usd, reserved_usd, spent_tokens, reserved_tokens in result.usage:
        assert (calls_now, spent_usd, reserved_usd, reserved_tokens) == (calls, spent, 0, 0)
        assert spent_tokens == result.committed.tokens
    assert await redis.zcard(keys.reservations_key(t)) == 0


async def test_settle_is_idempotent_and_refuses_a_different_outcome(
    store: RedisBudgetStore,
) -> None:
    t = tenant()
    reserved = admission(t)
    await store.admit(reserved)
    settle = {"tenant_id": t, "decision_id": reserved.decision_id}
    first = await store.settle(**settle, outcome=Outcome.SUCCEEDED, actual=Cost(40, 0))
    again = await store.settle(**settle, outcome=Outcome.SUCCEEDED, actual=Cost(999, 0))
    assert not first.repeated and again.repeated
    assert again.committed == first.committed == Cost(40, 0)
    assert again.usage == first.usage
    with pytest.raises(SettlementConflict, match="SUCCEEDED"):
        await store.settle(**settle, outcome=Outcome.FAILED, actual=None)


async def test_settle_of_an_unknown_or_foreign_decision_is_not_found(
    store: RedisBudgetStore,
) -> None:
    t = tenant()
    reserved = admission(t)
    await store.admit(reserved)
    with pytest.raises(ReservationNotFound):
        await store.settle(tenant_id=t, decision_id="nope", outcome=Outcome.FAILED, actual=None)
    with pytest.raises(ReservationNotFound):
        await store.settle(
            tenant_id=tenant(),
            decision_id=reserved.decision_id,
            outcome=Outcome.FAILED,
            actual=None,
        )


async def test_unsettled_reservations_are_released_after_their_ttl(
    store: RedisBudgetStore, redis: Redis | RedisCluster
) -> None:
    t = tenant()
    abandoned = admission(t, usd=600, ttl=1)
    await store.admit(abandoned)
    assert (await store.admit(admission(t, usd=600))).verdict is Verdict.BUDGET_EXCEEDED
    await asyncio.sleep(1.1)
    after = await store.admit(admission(t, usd=600))
    assert after.verdict is Verdict.ADMITTED
    assert after.released == 1
    assert after.usage == ((2, 0, 600, 0, 0),)  # the expired call stays counted
    # a late SUCCEEDED still commits the cost; nothing is released twice
    late = await store.settle(
        tenant_id=t, decision_id=abandoned.decision_id, outcome=Outcome.SUCCEEDED, actual=None
    )
    assert late.previous_state == "expired"
    assert late.usage == ((2, 600, 600, 0, 0),)


async def test_idempotency_key_replays_and_reserves_once(
    store: RedisBudgetStore, redis: Redis | RedisCluster
) -> None:
    t = tenant()
    idem = Idempotency("call-1", "f" * 64, "f" * 64, '{"decision": 1}')
    results = [await store.admit(admission(t, idempotency=idem)) for _ in range(10)]
    assert results[0].verdict is Verdict.ADMITTED
    assert {r.verdict for r in results[1:]} == {Verdict.REPLAYED}
    assert {r.recorded_decision for r in results[1:]} == {'{"decision": 1}'}
    assert {r.usage for r in results} == {((1, 0, 100, 0, 0),)}
    assert await redis.zcard(keys.reservations_key(t)) == 1
    other_request = Idempotency("call-1", "0" * 64, "0" * 64, "{}")
    with pytest.raises(IdempotencyConflict):
        await store.admit(admission(t, idempotency=other_request))
    # the same key in another tenant is another key
    assert (await store.admit(admission(tenant(), idempotency=other_request))).verdict is (
        Verdict.ADMITTED
    )


async def test_refusals_are_not_recorded_under_the_idempotency_key(
    store: RedisBudgetStore,
) -> None:
    t = tenant()
    idem = Idempotency("big", "a" * 64, "a" * 64, "{}")
    assert (await store.admit(admission(t, usd=5_000, idempotency=idem))).verdict is (
        Verdict.BUDGET_EXCEEDED
    )
    # a retry is decided afresh (and may pass once budget is freed)
    assert (await store.admit(admission(t, usd=5_000, idempotency=idem))).verdict is (
        Verdict.BUDGET_EXCEEDED
    )


@pytest.mark.parametrize("hostile", HOSTILE_TENANTS, ids=range(len(HOSTILE_TENANTS)))
async def test_hostile_tenant_ids_work_and_every_key_has_a_ttl(
    store: RedisBudgetStore, redis: Redis | RedisCluster, hostile: str
) -> None:
    t = hostile + str(uuid.uuid4())
    limit = RateLimitSpec("principal", 100, 60, 100)  # its bucket outlives the scan
    idem = Idempotency(hostile, "b" * 64, "b" * 64, "{}")
    budgets = (TENANT_MONTH, RUN_CALLS, BudgetSpec(BudgetScope.CAPABILITY, BudgetWindow.DAY))
    reserved = admission(t, budgets=budgets, rate_limits=(limit,), idempotency=idem, run_id=t)
    assert (await store.admit(reserved)).verdict is Verdict.ADMITTED
    # A reservation TTL long enough to outlive the scan on a slow machine.
    await store.admit(admission(t, budgets=budgets, ttl=60, run_id=t))
    found = await tenant_keys(redis, t)
    assert len(found) == 8  # zset, 2 records, idem, 3 usage keys, 1 bucket
    for key in found:
        assert await redis.pttl(key) != -1, key  # -1: no TTL (-2: already expired)
    await store.settle(
        tenant_id=t, decision_id=reserved.decision_id, outcome=Outcome.FAILED, actual=None
    )


async def test_tenants_do_not_share_budgets(store: RedisBudgetStore) -> None:
    a, b = tenant(), tenant()
    while (await store.admit(admission(a, usd=400))).verdict is Verdict.ADMITTED:
        pass
    result = await store.admit(admission(b, usd=400))
    assert result.verdict is Verdict.ADMITTED and result.usage == ((1, 0, 400, 0, 0),)


async def test_script_flush_falls_back_to_eval(
    store: RedisBudgetStore,
    redis: Redis | RedisCluster,
    redis_cluster: RedisClusterNodes,
) -> None:
    t = tenant()
    await store.admit(admission(t))
    if isinstance(redis, RedisCluster):
        redis_cluster.flush_scripts()
    else:
        await redis.script_flush()
    result = await store.admit(admission(t))
    assert result.verdict is Verdict.ADMITTED and result.usage == ((2, 0, 200, 0, 0),)


async def _redis_time(redis: Redis | RedisCluster, tenant_id: str) -> tuple[int, int]:
    """Redis TIME on the node that owns ``tenant_id``'s slot."""
    reply: Any = await redis.eval("return redis.call('TIME')", 1, keys.reservations_key(tenant_id))
    return int(reply[0]), int(reply[1])


async def test_budgets_sharing_a_key_count_each_call_once(store: RedisBudgetStore) -> None:
    """A spend limit and a call limit on the same scope and window are one counter."""
    t = tenant()
    calls = BudgetSpec(BudgetScope.TENANT, BudgetWindow.MONTH, limit_calls=2)
    both = (TENANT_MONTH, calls)
    reserved = admission(t, budgets=both)
    results = [await store.admit(reserved), await store.admit(admission(t, budgets=both))]
    assert results[1].usage == ((2, 0, 200, 0, 0), (2, 0, 200, 0, 0))
    third = await store.admit(admission(t, budgets=both))
    assert third.overrun is not None and third.overrun.budget == calls
    settled = await store.settle(
        tenant_id=t, decision_id=reserved.decision_id, outcome=Outcome.ABANDONED, actual=None
    )
    assert settled.usage == ((1, 0, 100, 0, 0), (1, 0, 100, 0, 0))


async def test_settle_releases_expired_reservations_first_and_says_how_many(
    store: RedisBudgetStore,
) -> None:
    t = tenant()
    await store.admit(admission(t, ttl=1))
    kept = admission(t)
    await store.admit(kept)
    await asyncio.sleep(1.1)
    settled = await store.settle(
        tenant_id=t, decision_id=kept.decision_id, outcome=Outcome.SUCCEEDED, actual=None
    )
    assert settled.released == 1
    assert settled.usage == ((2, 100, 0, 0, 0),)
    again = await store.settle(
        tenant_id=t, decision_id=kept.decision_id, outcome=Outcome.SUCCEEDED, actual=None
    )
    assert again.settled_at == settled.settled_at  # the first settlement's time
