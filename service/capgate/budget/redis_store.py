"""``BudgetStore`` on Redis: one Lua script per decision (scripts/authorize.lua) and
one per settlement (scripts/settle.lua), each a single round trip.

Scripts run with ``EVALSHA``; after ``NOSCRIPT`` (a ``SCRIPT FLUSH``, a restart or a
failover to a node that never saw the script) the call is repeated once with ``EVAL``,
which also caches the script again. Every call is bounded by ``deadline_seconds``; a
timeout, a connection error or a Redis error becomes :class:`BudgetStoreUnavailable`,
so the pipeline denies fast instead of hanging. Works on a standalone server, through
Sentinel and on Redis Cluster: all keys of a call share the tenant's hash tag.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any, cast

import structlog
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import NoScriptError, RedisError

from capgate.budget import keys
from capgate.budget.connection import follow_sentinel_primary
from capgate.budget.store import (
    Admission,
    AdmissionResult,
    Overrun,
    SettleResult,
    Throttle,
    Unit,
    Usage,
    Verdict,
)
from capgate.decision.model import BudgetScope, Cost, Outcome, RateLimitSpec
from capgate.errors import (
    BudgetStoreUnavailable,
    IdempotencyConflict,
    ReservationNotFound,
    SettlementConflict,
)

_SCRIPTS = files("capgate.budget").joinpath("scripts")
_COMMON = _SCRIPTS.joinpath("common.lua").read_text("utf-8")
AUTHORIZE_SCRIPT = _COMMON + _SCRIPTS.joinpath("authorize.lua").read_text("utf-8")
SETTLE_SCRIPT = _COMMON + _SCRIPTS.joinpath("settle.lua").read_text("utf-8")
NO_LIMIT = -1
USAGE_FIELDS = 5
IDEMPOTENCY_TTL_SECONDS = 86_400

log = structlog.get_logger("capgate")


class _Script:
    """A Lua script run by ``EVALSHA``, falling back to ``EVAL`` on ``NOSCRIPT``."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()

    async def __call__(
        self, client: Redis | RedisCluster, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)


class RedisBudgetStore:
    """Budgets, rate limits, reservations and idempotency keys in Redis.

    ``run_ttl_seconds`` bounds a run's usage key; ``deadline_seconds`` bounds each call.
    """

    def __init__(
        self, client: Redis | RedisCluster, *, deadline_seconds: float, run_ttl_seconds: int
    ) -> None:
        self._client = client
        self._authorize = _Script(AUTHORIZE_SCRIPT)
        self._settle = _Script(SETTLE_SCRIPT)
        self._deadline = deadline_seconds
        self._run_ttl = run_ttl_seconds
        self._watch: asyncio.Task[None] | None = None

    async def admit(self, admission: Admission) -> AdmissionResult:
        tenant = admission.tenant_id
        key_list = [
            keys.reservations_key(tenant),
            keys.reservation_key(tenant, admission.decision_id),
            keys.idempotency_key(
                tenant, admission.idempotency.key if admission.idempotency else ""
            ),
        ]
        key_list += [_budget_prefix(admission, spec.scope) for spec in admission.budgets]
        key_list += [_bucket(admission, limit) for limit in admission.rate_limits]
        idem = admission.idempotency
        cost = admission.cost
        args: list[Any] = [
            1 if admission.consume else 0,
            1 if idem else 0,
            idem.fingerprint if idem else "",
            idem.decision if idem else "",
            1,
            cost.usd_micros,
            cost.tokens,
            admission.reservation_ttl_seconds,
            IDEMPOTENCY_TTL_SECONDS,
            self._run_ttl,
            admission.metadata,
            len(admission.budgets),
            len(admission.rate_limits),
        ]
        for spec in admission.budgets:
            args += [spec.window.value, _limit(spec.limit_calls)]
            args += [_limit(spec.limit_usd_micros), _limit(spec.limit_tokens)]
        for limit in admission.rate_limits:
            interval_micros = limit.period_seconds * 1_000_000 / limit.limit
            args += [repr(interval_micros), repr(interval_micros * limit.burst)]
        reply = await self._call(self._authorize, key_list, args)
        kind = _text(reply[0])
        if kind == "ok":
            return AdmissionResult(Verdict.ADMITTED, _usage(reply[2:]), released=int(reply[1]))
        if kind == "replay":
            usage_csv = _text(reply[2])
            values = [int(v) for v in usage_csv.split(",")] if usage_csv else []
            return AdmissionResult(
                Verdict.REPLAYED, _usage(values), recorded_decision=_text(reply[1])
            )
        if kind == "conflict":
            raise IdempotencyConflict("the idempotency key was used for a different request")
        if kind == "budget":
            unit: Unit = _text(reply[2])  # type: ignore[assignment]
            overrun = Overrun(admission.budgets[int(reply[1]) - 1], unit)
            return AdmissionResult(Verdict.BUDGET_EXCEEDED, overrun=overrun, released=int(reply[3]))
        throttle = Throttle(
            admission.rate_limits[int(reply[1]) - 1], retry_after_ms=-(-int(reply[2]) // 1000)
        )
        return AdmissionResult(Verdict.RATE_LIMITED, throttle=throttle, released=int(reply[3]))

    async def settle(
        self, *, tenant_id: str, decision_id: str, outcome: Outcome, actual: Cost | None
    ) -> SettleResult:
        key_list = [keys.reservations_key(tenant_id), keys.reservation_key(tenant_id, decision_id)]
        given = actual is not None
        args = [
            outcome.value,
            1 if given else 0,
            actual.usd_micros if actual else 0,
            actual.tokens if actual else 0,
        ]
        reply = await self._call(self._settle, key_list, args)
        kind, released = _text(reply[0]), int(reply[1])
        if kind == "missing":
            raise ReservationNotFound(f"decision {decision_id} holds no reservation in this tenant")
        if kind == "settled":
            if _text(reply[2]) != outcome.value:
                raise SettlementConflict(decision_id, _text(reply[2]))
            return _settle_result(_text(reply[3]), _text(reply[4]), released, repeated=True)
        return _settle_result(_text(reply[2]), _text(reply[3]), released, repeated=False)

    async def connect(self, timeout_seconds: float = 2.0) -> None:
        """Open a first connection and load the scripts, outside any decision's deadline.

        A failure is logged, not raised: decisions fail closed until Redis answers.
        Through Sentinel, also starts following the primary (see
        :func:`capgate.budget.connection.follow_sentinel_primary`).
        """
        client = self._client
        if isinstance(client, Redis) and isinstance(client.connection_pool, SentinelConnectionPool):
            self._watch = self._watch or asyncio.create_task(follow_sentinel_primary(client))
        try:
            async with asyncio.timeout(timeout_seconds):
                await self._client.ping()
                for script in (self._authorize, self._settle):
                    await self._client.script_load(script.source)
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("budget_store_unreachable", error=str(exc))

    async def aclose(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        await self._client.aclose()

    async def _call(self, script: _Script, key_list: list[str], args: list[Any]) -> Any:
        try:
            async with asyncio.timeout(self._deadline):
                return await script(self._client, key_list, args)
        except (TimeoutError, RedisError, OSError) as exc:
            raise BudgetStoreUnavailable(f"budget store: {type(exc).__name__}: {exc}") from exc


def _budget_prefix(admission: Admission, scope: BudgetScope) -> str:
    subjects = admission.subjects
    subject = {
        BudgetScope.TENANT: "",
        BudgetScope.PRINCIPAL: subjects.principal_id,
        BudgetScope.CAPABILITY: subjects.capability,
        BudgetScope.RUN: subjects.run_id,
    }[scope]
    return keys.budget_prefix(admission.tenant_id, scope.value, subject)


def _bucket(admission: Admission, limit: RateLimitSpec) -> str:
    subjects = admission.subjects
    values = {
        "tenant": admission.tenant_id,
        "principal": subjects.principal_id,
        "capability": subjects.capability,
        "tool": subjects.tool,
        "run": subjects.run_id,
    }
    return keys.rate_limit_key(
        admission.tenant_id, limit.key, values, limit.limit, limit.period_seconds
    )


def _limit(value: int | None) -> int:
    return NO_LIMIT if value is None else value


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _usage(values: Sequence[Any]) -> tuple[Usage, ...]:
    """Flat script values, 5 per budget (USAGE_FIELDS order), as one :data:`Usage` each."""
    numbers = [int(v) for v in values]
    return tuple(
        cast(Usage, tuple(numbers[i : i + USAGE_FIELDS]))
        for i in range(0, len(numbers), USAGE_FIELDS)
    )


def _settle_result(metadata: str, summary: str, released: int, *, repeated: bool) -> SettleResult:
    state, usd, tokens, estimated_usd, estimated_tokens, micros, *usage = summary.split(",")
    return SettleResult(
        metadata=metadata,
        previous_state=state,
        committed=Cost(int(usd), int(tokens)),
        estimated=Cost(int(estimated_usd), int(estimated_tokens)),
        usage=_usage(usage),
        settled_at=datetime.fromtimestamp(int(micros) / 1e6, UTC),
        repeated=repeated,
        released=released,
    )
