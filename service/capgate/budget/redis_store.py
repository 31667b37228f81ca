"""``BudgetStore`` on Redis: one Lua script (scripts/reserve.lua) per decision.

redis-py's ``Script`` runs ``EVALSHA`` and reloads the script on ``NOSCRIPT`` (after a
``SCRIPT FLUSH`` or a failover). Every call is bounded by ``deadline_seconds``; a
timeout, a connection error or a Redis error becomes :class:`BudgetStoreUnavailable`,
so the pipeline denies fast instead of hanging.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from importlib.resources import files

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from capgate.budget import keys
from capgate.budget.store import BudgetCheck, Overrun, Unit
from capgate.decision.model import BudgetScope, BudgetSpec, BudgetStatus, Cost
from capgate.errors import BudgetStoreUnavailable, PolicyError

RESERVE_SCRIPT = files("capgate.budget").joinpath("scripts/reserve.lua").read_text("utf-8")
NO_LIMIT = -1

log = structlog.get_logger("capgate")


class RedisBudgetStore:
    """Run budgets (scope ``run``) in Redis. ``run_ttl_seconds`` bounds a run's keys."""

    def __init__(self, client: Redis, *, deadline_seconds: float, run_ttl_seconds: int) -> None:
        self._client = client
        self._script = client.register_script(RESERVE_SCRIPT)
        self._deadline = deadline_seconds
        self._run_ttl = run_ttl_seconds

    async def check_and_reserve(
        self,
        *,
        tenant_id: str,
        run_id: str,
        budgets: Sequence[BudgetSpec],
        cost: Cost,
        reserve: bool,
    ) -> BudgetCheck:
        if not budgets:
            return BudgetCheck()
        key_list = [self._key(tenant_id, run_id, spec) for spec in budgets]
        args: list[int] = [1 if reserve else 0, 1, cost.usd_micros, cost.tokens]
        for spec in budgets:
            args += [_limit(spec.limit_calls), _limit(spec.limit_usd_micros)]
            args += [_limit(spec.limit_tokens), self._run_ttl]
        try:
            async with asyncio.timeout(self._deadline):
                reply = await self._script(keys=key_list, args=args)
        except (TimeoutError, RedisError, OSError) as exc:
            raise BudgetStoreUnavailable(f"budget store: {type(exc).__name__}: {exc}") from exc
        if reply[0] == 0:
            unit: Unit = reply[2].decode() if isinstance(reply[2], bytes) else reply[2]
            return BudgetCheck(overrun=Overrun(budgets[int(reply[1]) - 1], unit))
        return BudgetCheck(statuses=_statuses(budgets, reply[1:]))

    async def connect(self, timeout_seconds: float = 2.0) -> None:
        """Open a first connection and load the script, outside any decision's deadline.

        A failure is logged, not raised: decisions fail closed until Redis answers.
        """
        try:
            async with asyncio.timeout(timeout_seconds):
                await self._client.ping()
                await self._client.script_load(RESERVE_SCRIPT)
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("budget_store_unreachable", error=str(exc))

    async def aclose(self) -> None:
        await self._client.aclose()

    def _key(self, tenant_id: str, run_id: str, spec: BudgetSpec) -> str:
        if spec.scope is not BudgetScope.RUN:
            raise PolicyError(f"budget scope {spec.scope.value!r} is not enforced by this version")
        if not run_id:
            raise PolicyError("the policy declared a run budget but the request has no run.run_id")
        return keys.run_usage_key(tenant_id, run_id)


def _limit(value: int | None) -> int:
    return NO_LIMIT if value is None else value


def _statuses(budgets: Sequence[BudgetSpec], usage: list[int]) -> tuple[BudgetStatus, ...]:
    return tuple(
        BudgetStatus(
            scope=spec.scope,
            window=spec.window,
            limit_usd_micros=spec.limit_usd_micros,
            limit_calls=spec.limit_calls,
            limit_tokens=spec.limit_tokens,
            spent_usd_micros=0,
            reserved_usd_micros=int(usage[3 * i + 1]),
            used_calls=int(usage[3 * i]),
            used_tokens=int(usage[3 * i + 2]),
        )
        for i, spec in enumerate(budgets)
    )
