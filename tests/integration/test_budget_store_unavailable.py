"""Redis down, hung or slow: DENY BUDGET_STORE_UNAVAILABLE fast, never a hang.

Latency bounds here are the issue's contract (within 100 ms), measured client-side
over real gRPC; they are generous against the 20 ms default deadline.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio

from capgate.local.redis_server import RedisServer
from capgate_client import AsyncClient
from tests.conftest import ALLOWED_REFUND, DEFAULT_BUNDLE, RunningCapgate, start_capgate


async def _timed_decisions(target: str, count: int) -> list[tuple[str, tuple[str, ...], float]]:
    out = []
    async with AsyncClient(target) as client:
        # Connected first: the clock is for the server's answers, not the client's
        # channel set-up (TCP and HTTP/2 handshakes on the first call).
        await client.channel_ready()
        for _ in range(count):
            started = time.perf_counter()
            result = await client.authorize(
                **ALLOWED_REFUND, run_id=f"run-{uuid.uuid4()}", idempotency_key=str(uuid.uuid4())
            )
            out.append((result.effect, result.reason_codes, time.perf_counter() - started))
    return out


@pytest.fixture
def hung_listener() -> Iterator[int]:
    """A TCP listener that accepts connections and never answers (a hung Redis)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield server.getsockname()[1]
    server.close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _capgate_on(
    redis_url: str, tmp_path: Path, deadline_ms: int = 20
) -> AsyncIterator[RunningCapgate]:
    async with start_capgate(
        bundle=DEFAULT_BUNDLE,
        redis_url=redis_url,
        decision_log=tmp_path / "d.jsonl",
        deadline_ms=deadline_ms,
    ) as running:
        yield running


@pytest.mark.parametrize("kind", ["refused", "hung"])
async def test_unreachable_redis_denies_within_100ms(
    kind: str, closed_port: int, hung_listener: int, tmp_path: Path
) -> None:
    port = closed_port if kind == "refused" else hung_listener
    async for running in _capgate_on(f"redis://127.0.0.1:{port}/0", tmp_path):
        decisions = await _timed_decisions(running.target, 20)
        event = (await running.events())[-1]
    assert {(effect, codes) for effect, codes, _ in decisions} == {
        ("DENY", ("BUDGET_STORE_UNAVAILABLE",))
    }
    assert max(seconds for *_, seconds in decisions) < 0.1
    assert event["reasons"][0]["code"] == "BUDGET_STORE_UNAVAILABLE"
    assert event["error"]  # the detail stays in the event, not in the agent's message


async def test_paused_redis_denies_then_recovers(tmp_path: Path) -> None:
    with RedisServer() as server:
        async for running in _capgate_on(server.url, tmp_path):
            assert (await _timed_decisions(running.target, 1))[0][0] == "ALLOW"
            admin = redis.asyncio.Redis.from_url(server.url)
            await admin.execute_command("CLIENT", "PAUSE", "500", "ALL")  # Redis stops answering
            paused_at = time.perf_counter()
            during = await _timed_decisions(running.target, 3)
            await asyncio.sleep(max(0.0, 0.5 - (time.perf_counter() - paused_at)))
            await admin.aclose()
            recovered_at = time.perf_counter()
            while (await _timed_decisions(running.target, 1))[0][0] != "ALLOW":
                assert time.perf_counter() - recovered_at < 1.0, "not recovered within 1 s"
                await asyncio.sleep(0.01)
            after = await _timed_decisions(running.target, 3)
    assert [d[1] for d in during] == [("BUDGET_STORE_UNAVAILABLE",)] * 3
    assert all(d[2] < 0.1 for d in during)
    assert [d[0] for d in after] == ["ALLOW"] * 3


async def test_a_policy_deny_keeps_its_reasons_when_redis_is_down(
    closed_port: int, tmp_path: Path
) -> None:
    """With an idempotency key the DENY would be recorded in Redis; it still stands as
    the policy's DENY, not as BUDGET_STORE_UNAVAILABLE."""
    async for running in _capgate_on(f"redis://127.0.0.1:{closed_port}/0", tmp_path):
        result = await running.client.authorize(
            **ALLOWED_REFUND | {"parameters": {"amount_usd": 500}},
            run_id="r",
            idempotency_key=str(uuid.uuid4()),
        )
        event = (await running.events())[-1]
    assert (result.effect, result.reason_codes) == ("DENY", ("AMOUNT_OVER_LIMIT",))
    assert "budget store" in event["error"]
