"""Budgets through the whole service: real gRPC, real capgate processes, real Redis.

Issue 4's demonstrations: no overshoot under concurrency across two processes (also on
Redis Cluster), idempotent retries, a killed server's reservation released by its TTL,
Settle, tenant isolation, and Redis stopped or frozen mid-run.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio
import yaml

from capgate.budget import keys
from capgate.local.redis_server import RedisServer
from capgate.local.serve_process import ServeProcess
from capgate_client import AsyncClient, InvalidRequestError
from tests.conftest import (
    ALLOWED_REFUND,
    DEFAULT_BUNDLE,
    RunningCapgate,
    run_capgate,
    start_capgate,
    write_bundle,
)
from tests.redis_topology import RedisClusterNodes, RedisSentinelSet

TEN_DOLLARS = 10_000_000
SEVEN_CENTS = 70_000

CALL: dict[str, Any] = {
    "principal_id": "support-agent",
    "capability": "lookup_order",
    "tool": "orders.get",
    "parameters": {"order_id": "o-1"},
}


def budget_policy(reservation_ttl_seconds: int = 900) -> str:
    """A tenant spend budget of $10 a month, declared the way bundles declare it.

    ``budgets`` is its own rule: rego-cpp 1.5.2 fails to evaluate this decision written
    as one object literal ("bundle verify: raw index 10 >= local_count 10").
    """
    return (
        'decision := {"effect": "allow", "budgets": budgets, '
        f'"reservation_ttl_seconds": {reservation_ttl_seconds}}}\n\n'
        'budgets := [{"scope": "tenant", "window": "30d", '
        f'"limit_usd_micros": {TEN_DOLLARS}}}]\n'
    )


@pytest.fixture(scope="module")
def budget_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("budget") / "bundle", budget_policy())


async def _reserved_for(redis_url: str, tenant: str) -> dict[str, int]:
    from capgate.budget.connection import parse_redis_url, redis_client

    client = redis_client(parse_redis_url(redis_url))
    month = time.strftime("%Y-%m", time.gmtime())
    raw = await client.hgetall(keys.budget_prefix(tenant, "tenant") + f":30d:{month}")
    await client.aclose()
    return {k.decode(): int(v) for k, v in raw.items()}


@pytest.mark.parametrize("backend", ["standalone", "cluster"])
async def test_a_thousand_concurrent_calls_across_two_processes_never_overshoot(
    backend: str,
    budget_bundle: Path,
    redis_server: RedisServer,
    redis_cluster: RedisClusterNodes,
) -> None:
    redis_url = redis_server.url if backend == "standalone" else redis_cluster.url
    # Seven processes share this machine's cores here; a call starved past the 20 ms
    # default deadline would be a (correct) BUDGET_STORE_UNAVAILABLE and spoil the count.
    # The deadline has its own tests; this one is about the count.
    env = {"CAPGATE_BUDGET__DEADLINE_MS": "2000"}
    servers = [
        ServeProcess.start(bundle=budget_bundle, redis_url=redis_url, env=env) for _ in range(2)
    ]
    tenant = f"race-{uuid.uuid4()}"
    try:

        async def client_task(index: int) -> list[tuple[str, tuple[str, ...]]]:
            out = []
            async with AsyncClient(servers[index % 2].target, timeout_seconds=30) as client:
                for _ in range(125):
                    result = await client.authorize(
                        **CALL,
                        tenant_id=tenant,
                        estimated_cost_usd_micros=SEVEN_CENTS,
                        idempotency_key=str(uuid.uuid4()),
                    )
                    out.append((result.effect, result.reason_codes))
            return out

        results = [r for task in await asyncio.gather(*map(client_task, range(8))) for r in task]
    finally:
        for server in servers:
            server.kill()
    counts = Counter(results)
    assert len(results) == 1_000
    assert counts == {("ALLOW", ()): 142, ("DENY", ("BUDGET_EXCEEDED",)): 858}
    usage = await _reserved_for(redis_url, tenant)
    assert usage == {"calls": 142, "reserved_usd_micros": 142 * SEVEN_CENTS}
    assert usage["reserved_usd_micros"] <= TEN_DOLLARS  # overshoot 0


async def test_retrying_an_idempotency_key_returns_the_decision_and_reserves_once(
    budget_bundle: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    tenant, key = f"idem-{uuid.uuid4()}", str(uuid.uuid4())
    async with start_capgate(
        bundle=budget_bundle, redis_url=redis_server.url, decision_log=tmp_path / "d.jsonl"
    ) as running:
        call = {**CALL, "tenant_id": tenant, "estimated_cost_usd_micros": SEVEN_CENTS}
        results = [await running.client.authorize(**call, idempotency_key=key) for _ in range(10)]
        with pytest.raises(InvalidRequestError) as refused:
            await running.client.authorize(**call | {"parameters": {}}, idempotency_key=key)
        events = await running.events()
        replays = running.app.metrics.idempotent_replays._value.get()
    assert {r.decision_id for r in results} == {results[0].decision_id}
    assert {r.decided_at for r in results} == {results[0].decided_at}
    assert {r.budgets[0].reserved_usd_micros for r in results} == {SEVEN_CENTS}
    assert await _reserved_for(redis_server.url, tenant) == {
        "calls": 1,
        "reserved_usd_micros": SEVEN_CENTS,
    }
    assert refused.value.fields == ("idempotency_key",)
    assert [e["idempotent_replay"] for e in events] == [False] + [True] * 9
    assert replays == 9


async def test_a_killed_server_leaks_nothing_its_reservation_expires(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.asyncio.Redis
) -> None:
    bundle = write_bundle(tmp_path / "bundle", budget_policy(reservation_ttl_seconds=1))
    tenant = f"killed-{uuid.uuid4()}"
    call = {**CALL, "tenant_id": tenant, "estimated_cost_usd_micros": 6 * 1_000_000}
    doomed = ServeProcess.start(
        bundle=bundle, redis_url=redis_server.url, env={"CAPGATE_BUDGET__DEADLINE_MS": "2000"}
    )
    try:
        async with AsyncClient(doomed.target) as client:
            assert (await client.authorize(**call)).allowed
            # $6 of $10 reserved: a second $6 call does not fit
            assert (await client.authorize(**call)).reason_codes == ("BUDGET_EXCEEDED",)
    finally:
        os.kill(doomed.process.pid, signal.SIGKILL)  # between reserve and settle
        doomed.process.wait()
    await asyncio.sleep(1.2)
    async with start_capgate(
        bundle=bundle, redis_url=redis_server.url, decision_log=tmp_path / "d.jsonl"
    ) as running:
        after = await running.client.authorize(**call)
        expired = running.app.metrics.reservations_expired._value.get()
    assert after.allowed, after.reasons
    assert after.budgets[0].reserved_usd_micros == 6 * 1_000_000  # only the new call's
    assert expired == 1
    zset = await redis_client.zrange(keys.reservations_key(tenant), 0, -1)
    assert zset == [keys.reservation_key(tenant, after.decision_id).encode()]
    for key in await redis_client.keys(keys.tenant_tag(tenant) + ":*"):
        assert await redis_client.ttl(key) > 0, key


async def test_settle_commits_cost_reports_it_and_is_idempotent(
    budget_bundle: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    tenant = f"settle-{uuid.uuid4()}"
    async with start_capgate(
        bundle=budget_bundle, redis_url=redis_server.url, decision_log=tmp_path / "d.jsonl"
    ) as running:
        client = running.client
        call = {**CALL, "tenant_id": tenant, "run_id": "run-1", "workflow": "refund_request"}
        allowed = await client.authorize(**call, estimated_cost_usd_micros=SEVEN_CENTS)
        settle = {"tenant_id": tenant, "decision_id": allowed.decision_id}
        settled = await client.settle(
            **settle,
            outcome="SUCCEEDED",
            actual_cost_usd_micros=90_000,
            changes=[{"resource": "order/o-1", "field": "status", "before": "open", "after": 1}],
            result={"refund_id": "re_1"},
        )
        again = await client.settle(**settle, outcome="SUCCEEDED")
        with pytest.raises(grpc.aio.AioRpcError) as conflict:
            await client.settle(**settle, outcome="FAILED")
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await client.settle(tenant_id=tenant, decision_id="no-such", outcome="FAILED")
        with pytest.raises(InvalidRequestError) as invalid:
            await client.settle(
                tenant_id="", decision_id="", outcome="SUCCEEDED", actual_cost_usd_micros=-1
            )
        reverted = await client.authorize(**call, estimated_cost_usd_micros=SEVEN_CENTS)
        await client.settle(tenant_id=tenant, decision_id=reverted.decision_id, outcome="REVERTED")
        metrics = running.app.metrics
        labels = (tenant, "refund_request")
        succeeded_cost = metrics.settled_cost.labels(*labels, "succeeded")._value.get()
        overruns = metrics.settlement_overruns.labels(*labels)._value.get()
        events = [e for e in (await running.events()) if e["event_type"] == "settlement"]
    (budget,) = settled.budgets
    assert (budget.spent_usd_micros, budget.reserved_usd_micros) == (90_000, 0)
    assert settled.outcome == again.outcome == "SUCCEEDED"
    assert again.budgets == settled.budgets
    assert conflict.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert set(invalid.value.fields) == {"tenant_id", "decision_id", "actual_cost.usd_micros"}
    assert (succeeded_cost, overruns) == (90_000, 1)
    assert [e["outcome"] for e in events] == ["succeeded", "reverted"]
    first = events[0]
    assert first["decision_id"] == allowed.decision_id
    assert first["run"] == {"run_id": "run-1", "workflow": "refund_request"}
    assert first["committed_cost"] == {"usd_micros": 90_000, "tokens": 0}
    assert first["overrun_usd_micros"] == 20_000
    assert first["changes"] == [
        {"resource": "order/o-1", "field": "status", "before": "open", "after": 1}
    ]
    assert events[1]["committed_cost"]["usd_micros"] == SEVEN_CENTS  # the estimate
    report = await asyncio.to_thread(run_capgate, "costs", "--json", str(running.decision_log))
    assert report.returncode == 0, report.stderr
    (row,) = json.loads(report.stdout)
    assert row["tenant_id"] == tenant and row["workflow"] == "refund_request"
    assert row["cost_per_succeeded_usd_micros"] == 90_000 + SEVEN_CENTS  # both, / 1 succeeded
    assert row["rollback_rate"] == 0.5


async def test_one_tenant_exhausting_its_budget_leaves_another_unchanged(
    budget_bundle: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    a, b = f"a-{uuid.uuid4()}", f"b-{uuid.uuid4()}"
    async with start_capgate(
        bundle=budget_bundle, redis_url=redis_server.url, decision_log=tmp_path / "d.jsonl"
    ) as running:
        client = running.client
        cost = {"estimated_cost_usd_micros": 3 * 1_000_000}
        before = await client.authorize(**CALL, tenant_id=b, **cost)
        for _ in range(4):
            await client.authorize(**CALL, tenant_id=a, **cost)
        exhausted = await client.authorize(**CALL, tenant_id=a, **cost)
        after = await client.authorize(**CALL, tenant_id=b, **cost)
    assert exhausted.reason_codes == ("BUDGET_EXCEEDED",)
    assert before.allowed and after.allowed
    assert after.budgets[0].reserved_usd_micros == 2 * before.budgets[0].reserved_usd_micros


@pytest.mark.parametrize("failure", ["stopped", "frozen"])
async def test_redis_failing_mid_run_denies_fast_and_recovers_within_a_second(
    failure: str, budget_bundle: Path, tmp_path: Path
) -> None:
    with RedisServer() as own_redis:
        async with start_capgate(
            bundle=budget_bundle,
            redis_url=own_redis.url,
            decision_log=tmp_path / "d.jsonl",
            deadline_ms=20,
        ) as running:
            call = {**CALL, "tenant_id": f"outage-{uuid.uuid4()}"}
            assert (await running.client.authorize(**call)).allowed
            if failure == "stopped":
                own_redis.stop()
            else:
                os.kill(own_redis.pid, signal.SIGSTOP)
            gc.collect()
            gc.freeze()  # the earlier tests' heap: no full collection stalls this window
            try:
                during = await _timed(running, call, 200)
            finally:
                gc.unfreeze()
            if failure == "stopped":
                own_redis.restart()
            else:
                os.kill(own_redis.pid, signal.SIGCONT)
            back = time.perf_counter()
            while not (await running.client.authorize(**call)).allowed:
                assert time.perf_counter() - back < 1.0, "decisions did not recover within 1 s"
                await asyncio.sleep(0.01)
            events = {e["decision_id"]: e for e in await running.events("decision")}
    assert {codes for codes, _, _ in during} == {("BUDGET_STORE_UNAVAILABLE",)}
    # The bound, p99 < 50 ms, on the sidecar's own decision time (the decision
    # event's latency_ms.total): the client here shares the server's event loop and
    # this shared machine, whose hiccups would count twice in the client's clock.
    # The client's view only has to show that nothing hangs.
    assert (
        _p99([events[decision_id]["latency_ms"]["total"] / 1000 for _, _, decision_id in during])
        < 0.05
    )
    assert _p99([seconds for _, seconds, _ in during]) < 0.25


def _p99(latencies: list[float]) -> float:
    return sorted(latencies)[int(len(latencies) * 0.99) - 1]


async def _timed(
    running: RunningCapgate, call: dict[str, Any], count: int
) -> list[tuple[tuple[str, ...], float, str]]:
    """(reason codes, seconds as the client saw them, decision id) of ``count`` calls."""
    out = []
    for _ in range(count):
        started = time.perf_counter()
        result = await running.client.authorize(**call)
        out.append((result.reason_codes, time.perf_counter() - started, result.decision_id))
    return out


async def test_sentinel_url_follows_a_failover(budget_bundle: Path, tmp_path: Path) -> None:
    """Through Sentinel: after a planned failover, decisions reach the new primary within
    about a second (capgate polls the sentinels each second). Without that, redis-py kept
    writing to the demoted primary for ~10 s: usage the new primary never saw."""
    tenant = f"sentinel-{uuid.uuid4()}"
    call = {**CALL, "tenant_id": tenant, "estimated_cost_usd_micros": 1_000}
    with RedisSentinelSet() as sentinel:
        async with start_capgate(
            bundle=budget_bundle, redis_url=sentinel.url, decision_log=tmp_path / "d.jsonl"
        ) as running:
            first = await running.client.authorize(**call)
            new_primary = await asyncio.to_thread(sentinel.failover)
            switched = time.perf_counter()
            allowed = [first]
            attempts = 0
            while time.perf_counter() - switched < 5.0:
                result = await running.client.authorize(**call)
                attempts += 1
                assert result.allowed or result.reason_codes == ("BUDGET_STORE_UNAVAILABLE",)
                if result.allowed:
                    allowed.append(result)
                await asyncio.sleep(0.05)
        primary = redis.asyncio.Redis(port=new_primary)
        month = time.strftime("%Y-%m", time.gmtime())
        stored = await primary.hget(keys.budget_prefix(tenant, "tenant") + f":30d:{month}", "calls")
        await primary.aclose()
    assert first.allowed
    assert int(stored or 0) == allowed[-1].budgets[0].used_calls
    # the decisions' usage is the new primary's: they were counted where they survive;
    # and most of the 5 s after the failover was served (unavailable for about a second,
    # not the ~10 s redis-py took on its own). A share, not a count: a loaded machine
    # makes fewer calls in 5 s (31 of 40 once in CI).
    assert attempts >= 10 and len(allowed) - 1 >= attempts / 2, (len(allowed) - 1, attempts)


async def test_bundle_data_declares_tenant_and_capability_limits(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """The rule library end to end: limits written in bundle data are enforced."""
    bundle = Path(shutil.copytree(DEFAULT_BUNDLE, tmp_path / "bundle"))
    data = yaml.safe_load((bundle / "data.yaml").read_text())
    tenant = f"data-{uuid.uuid4()}"
    data["capgate"]["tenants"] = {
        tenant: {"budgets": [{"scope": "tenant", "window": "1d", "limit_calls": 3}]}
    }
    data["capgate"]["capabilities"]["issue_refund"]["rate_limits"] = [
        {"key": "principal+capability", "limit": 1, "period_seconds": 3600, "burst": 2}
    ]
    (bundle / "data.yaml").write_text(yaml.safe_dump(data))
    async with start_capgate(
        bundle=bundle, redis_url=redis_server.url, decision_log=tmp_path / "d.jsonl"
    ) as running:
        results = [
            await running.client.authorize(
                **ALLOWED_REFUND | {"tenant_id": tenant, "principal_id": principal},
                run_id=str(uuid.uuid4()),
                idempotency_key=str(uuid.uuid4()),
            )
            for principal in ("a", "a", "a", "b", "c")
        ]
    assert [r.reason_codes for r in results] == [
        (),
        (),
        ("RATE_LIMITED",),  # principal a's burst of 2 is spent
        (),
        ("CALL_LIMIT_EXCEEDED",),  # the tenant's 3 calls a day
    ]
    assert [(b.scope, b.window, b.used_calls) for b in results[3].budgets] == [
        ("run", "run", 1),
        ("tenant", "1d", 3),
    ]
    assert "tenant" in results[4].reasons[0].message
