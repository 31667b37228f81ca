"""The test Redis topologies are real: a sharded cluster where scripts survive SCRIPT
FLUSH, and a sentinel set whose failover a ``master_for`` client follows.

What the sentinel test pins down about redis-py (8.1) against Redis 7.0: after a
``SENTINEL FAILOVER`` the pooled connections stay on the old primary, which keeps
accepting writes (later discarded) until the sentinel demotes it about 10 s later and
kills its clients; only then does the pool ask the sentinel again. The new primary
has no cached scripts, so ``Script`` reloads after NOSCRIPT.
"""

from __future__ import annotations

import asyncio
import string
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

from tests.redis_topology import RedisClusterNodes, RedisSentinelSet

# INCR two keys of one slot; returns both new values.
TWO_KEYS = """
local a = redis.call('INCR', KEYS[1])
local b = redis.call('INCRBY', KEYS[2], 10)
return {a, b}
"""
COUNTER = "return redis.call('INCR', KEYS[1])"
# The sentinel demotes the old primary ~10-12 s after the failover completes.
FAILOVER_SETTLE_SECONDS = 20.0


def _direct(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2.0, decode_responses=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterNodes]:
    with RedisClusterNodes(primaries=3) as nodes:
        yield nodes


@pytest.fixture(scope="module")
async def cluster_client(cluster: RedisClusterNodes) -> AsyncIterator[RedisCluster]:
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster.startup_nodes],
        decode_responses=True,
    )
    await client.initialize()
    yield client
    await client.aclose()


@pytest.fixture
def sentinel_set() -> Iterator[RedisSentinelSet]:
    with RedisSentinelSet() as topology:
        yield topology


def test_cluster_url_names_every_node(cluster: RedisClusterNodes) -> None:
    assert len(cluster.ports) == 3
    assert cluster.url == "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in cluster.ports)
    for port in cluster.ports:
        with _direct(port) as node:
            assert node.cluster("INFO")["cluster_state"] == "ok"


async def test_cluster_script_reloads_after_script_flush(
    cluster: RedisClusterNodes, cluster_client: RedisCluster
) -> None:
    script = cluster_client.register_script(TWO_KEYS)
    keys = ["{t1}:a", "{t1}:b"]

    assert await script(keys=keys) == [1, 10]
    cluster.flush_scripts()
    for port in cluster.ports:
        with _direct(port) as node:
            assert node.script_exists(script.sha) == [False]
    assert await script(keys=keys) == [2, 20]


async def test_cluster_spreads_hash_tags_over_nodes(
    cluster: RedisClusterNodes, cluster_client: RedisCluster
) -> None:
    keys = [f"{{{tag}}}:shard" for tag in string.ascii_lowercase[:20]]
    for key in keys:
        await cluster_client.set(key, "1")

    owner: dict[str, int] = {}
    for port in cluster.ports:
        with _direct(port) as node:
            for key in node.keys("*:shard"):
                assert key not in owner, f"{key} on two nodes"
                owner[key] = port
    assert sorted(owner) == sorted(keys)
    assert len(set(owner.values())) >= 2, owner


async def test_sentinel_set_serves_the_primary(sentinel_set: RedisSentinelSet) -> None:
    assert sentinel_set.url == f"redis+sentinel://127.0.0.1:{sentinel_set.sentinel_port}/mymaster/0"
    sentinel = Sentinel([("127.0.0.1", sentinel_set.sentinel_port)], socket_timeout=1.0)
    try:
        assert await sentinel.discover_master("mymaster") == (
            "127.0.0.1",
            sentinel_set.primary_port,
        )
        with _direct(sentinel_set.replica_port) as replica:
            assert replica.info("replication")["role"] == "slave"
    finally:
        await sentinel.aclose()


async def test_sentinel_master_for_follows_failover(sentinel_set: RedisSentinelSet) -> None:
    sentinel = Sentinel([("127.0.0.1", sentinel_set.sentinel_port)], socket_timeout=1.0)
    master = sentinel.master_for("mymaster", socket_timeout=1.0, decode_responses=True)
    try:
        script = master.register_script(COUNTER)
        assert await script(keys=["counter"]) == 1
        assert await master.wait(1, 2000) == 1  # the replica has counter = 1

        old = sentinel_set.primary_port
        new = await asyncio.to_thread(sentinel_set.failover)
        assert new != old
        with _direct(new) as promoted:
            assert promoted.script_exists(script.sha) == [False]  # NOSCRIPT ahead

        # Until the old primary is demoted, calls may still succeed there (lost
        # writes); a call has reached the new primary when its result is the value
        # the new primary now holds.
        started = time.monotonic()
        timeline: list[tuple[float, str]] = []
        while True:
            elapsed = time.monotonic() - started
            assert elapsed < FAILOVER_SETTLE_SECONDS, f"never reached {new}: {timeline}"
            try:
                value = await script(keys=["counter"])
            except (redis.ConnectionError, redis.TimeoutError) as error:
                timeline.append((elapsed, type(error).__name__))
            else:
                with _direct(new) as promoted:
                    if int(promoted.get("counter") or 0) == value:
                        break
                timeline.append((elapsed, "old primary"))
            await asyncio.sleep(0.2)

        assert value == 2, timeline
        with _direct(old) as demoted:
            assert demoted.info("replication")["role"] == "slave"
    finally:
        await master.aclose()
        await sentinel.aclose()
