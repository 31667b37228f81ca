"""Run stops and tenant modes in Redis (DESIGN §7). The Authorize script reads both in
the same step as the budgets (budget/scripts/authorize.lua), so a change takes effect
on the next decision of every replica."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from capgate.budget import keys
from capgate.budget.scripting import bounded
from capgate.errors import BudgetStoreUnavailable


class TenantMode(StrEnum):
    """``read_only``: capabilities of class ``write`` (or with no class) are denied
    ``TENANT_READ_ONLY``; ``frozen``: every capability is denied ``TENANT_FROZEN``."""

    NORMAL = "normal"
    READ_ONLY = "read_only"
    FROZEN = "frozen"


@dataclass(frozen=True, slots=True)
class RunStop:
    """Who stopped a run, when and why (stored as JSON in the run's stop record)."""

    tenant_id: str
    run_id: str
    stopped_by: str
    reason: str
    stopped_at: datetime


class RedisControlStore:
    """``run_ttl_seconds``: how long a stop is kept (the lifetime of a run's budget)."""

    def __init__(
        self, client: Redis | RedisCluster, *, deadline_seconds: float, run_ttl_seconds: int
    ) -> None:
        self._client = client
        self._deadline = deadline_seconds
        self._run_ttl = run_ttl_seconds

    async def stop_run(self, stop: RunStop) -> None:
        """Stop the run: every later Authorize naming it is DENY ``RUN_STOPPED``.

        Raises:
            BudgetStoreUnavailable: Redis did not answer in time.
        """
        record = json.dumps(
            {
                "stopped_by": stop.stopped_by,
                "reason": stop.reason,
                "at": stop.stopped_at.isoformat(),
            }
        )
        key = keys.run_stop_key(stop.tenant_id, stop.run_id)
        async with bounded(self._deadline):
            await self._client.set(key, record, ex=self._run_ttl)

    async def set_mode(self, tenant_id: str, mode: TenantMode) -> TenantMode:
        """Set the tenant's mode; returns the mode it had.

        Raises:
            BudgetStoreUnavailable: Redis did not answer in time.
        """
        key = keys.control_key(tenant_id)
        async with bounded(self._deadline), self._client.pipeline(transaction=True) as pipe:
            pipe.hget(key, "mode")
            if mode is TenantMode.NORMAL:
                pipe.hdel(key, "mode")
            else:
                pipe.hset(key, "mode", mode.value)
            previous, _ = await pipe.execute()
        return _mode(previous)

    async def mode(self, tenant_id: str) -> TenantMode:
        """Raises BudgetStoreUnavailable."""
        async with bounded(self._deadline):
            return _mode(await self._client.hget(keys.control_key(tenant_id), "mode"))

    async def ping(self) -> bool:
        """True when Redis answers within the deadline."""
        try:
            async with bounded(self._deadline):
                await self._client.ping()
        except BudgetStoreUnavailable:
            return False
        return True


def _mode(value: bytes | str | None) -> TenantMode:
    if value is None:
        return TenantMode.NORMAL
    return TenantMode(value.decode() if isinstance(value, bytes) else value)
