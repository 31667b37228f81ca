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
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import structlog
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import RedisError

from capgate.budget import keys
from capgate.budget.connection import follow_sentinel_primary
from capgate.budget.scripting import Script, bounded, decode_ids, from_ms, run_script, text
from capgate.budget.store import (
    Admission,
    AdmissionResult,
    NewApproval,
    Overrun,
    PresentedApproval,
    SettleResult,
    Throttle,
    Unit,
    Usage,
    Verdict,
)
from capgate.decision.model import BudgetScope, Cost, Outcome, RateLimitSpec
from capgate.errors import (
    IdempotencyConflict,
    ReservationNotFound,
    SettlementConflict,
)

AUTHORIZE_SCRIPT = Script(
    ("capgate.budget", "common.lua"),
    ("capgate.approvals", "approvals.lua"),
    ("capgate.budget", "authorize.lua"),
)
SETTLE_SCRIPT = Script(("capgate.budget", "common.lua"), ("capgate.budget", "settle.lua"))
NO_LIMIT = -1
USAGE_FIELDS = 5
IDEMPOTENCY_TTL_SECONDS = 86_400

log = structlog.get_logger("capgate")


class RedisBudgetStore:
    """Budgets, rate limits, reservations and idempotency keys in Redis.

    ``run_ttl_seconds`` bounds a run's usage key; ``deadline_seconds`` bounds each call.
    """

    def __init__(
        self, client: Redis | RedisCluster, *, deadline_seconds: float, run_ttl_seconds: int
    ) -> None:
        self._client = client
        self._authorize = AUTHORIZE_SCRIPT
        self._settle = SETTLE_SCRIPT
        self._deadline = deadline_seconds
        self._run_ttl = run_ttl_seconds
        self._watch: asyncio.Task[None] | None = None

    async def admit(self, admission: Admission) -> AdmissionResult:
        tenant = admission.tenant_id
        idem = admission.idempotency
        presented, new = admission.presented_approval, admission.new_approval
        key_list = [
            keys.reservations_key(tenant),
            keys.reservation_key(tenant, admission.decision_id),
            keys.idempotency_key(tenant, idem.key if idem else ""),
            keys.control_key(tenant),
            keys.run_stop_key(tenant, admission.subjects.run_id),
            keys.approval_key(tenant, presented.approval_id if presented else ""),
            keys.approval_key(tenant, new.approval_id if new else ""),
            keys.approval_pending_key(tenant, new.action_sha256 if new else ""),
            keys.approval_index_key(tenant),
            keys.approval_log_key(tenant),
            keys.approval_expiry_key(tenant),
        ]
        key_list += [_budget_prefix(admission, spec.scope) for spec in admission.budgets]
        key_list += [_bucket(admission, limit) for limit in admission.rate_limits]
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
            admission.decision_id,
            admission.subjects.principal_id,
            admission.action_class,
            idem.base_fingerprint if idem else "",
            _presented_mode(presented),
            presented.action_sha256 if presented else "",
            _new_approval_json(new) if new else "",
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
        kind = text(reply[0])
        if kind == "ok":
            return AdmissionResult(
                Verdict.ADMITTED,
                _usage(reply[5:]),
                released=int(reply[1]),
                approval_id=text(reply[2]),
                approval_expires_at=from_ms(reply[3]) if text(reply[2]) else None,
                expired_approvals=decode_ids(reply[4]),
            )
        if kind == "replay":
            usage_csv = text(reply[2])
            values = [int(v) for v in usage_csv.split(",")] if usage_csv else []
            return AdmissionResult(
                Verdict.REPLAYED,
                _usage(values),
                recorded_decision=text(reply[1]),
                approval_id=text(reply[3]),
                approval_expires_at=from_ms(reply[4]) if text(reply[3]) else None,
                approval_state=text(reply[5]),
            )
        if kind == "conflict":
            raise IdempotencyConflict("the idempotency key was used for a different request")
        if kind == "control":
            return AdmissionResult(Verdict.CONTROLLED, control_code=text(reply[1]))
        if kind == "approval":
            return AdmissionResult(
                Verdict.APPROVAL_INVALID,
                approval_state=text(reply[1]),
                expired_approvals=decode_ids(reply[2]),
            )
        if kind == "budget":
            unit: Unit = text(reply[2])  # type: ignore[assignment]
            overrun = Overrun(admission.budgets[int(reply[1]) - 1], unit)
            return AdmissionResult(Verdict.BUDGET_EXCEEDED, overrun=overrun, released=int(reply[3]))
        throttle = Throttle(
            admission.rate_limits[int(reply[1]) - 1], retry_after_ms=-(-int(reply[2]) // 1000)
        )
        return AdmissionResult(Verdict.RATE_LIMITED, throttle=throttle, released=int(reply[3]))

    async def recorded(
        self, tenant_id: str, key: str, fingerprint: str, *, run_id: str
    ) -> AdmissionResult | None:
        """The decision recorded under idempotency ``key`` for this exact request
        (``fingerprint``), as a REPLAYED result; None when there is none. The stop
        button still applies: a stopped run (``run_id``) or a frozen or read-only
        tenant gives CONTROLLED (a replayed call's class is not known: read-only
        refuses it, as it refuses an unknown class).

        Raises:
            BudgetStoreUnavailable: Redis did not answer within the deadline.
        """
        async with bounded(self._deadline), self._client.pipeline(transaction=True) as pipe:
            pipe.hmget(keys.idempotency_key(tenant_id, key), ["f", "d", "r"])
            pipe.exists(keys.run_stop_key(tenant_id, run_id))
            pipe.hget(keys.control_key(tenant_id), "mode")
            (seen, decision, usage_csv), stopped, mode = await pipe.execute()
        if seen is None or text(seen) != fingerprint:
            return None
        if stopped:
            return AdmissionResult(Verdict.CONTROLLED, control_code="RUN_STOPPED")
        if mode is not None:
            code = "TENANT_FROZEN" if text(mode) == "frozen" else "TENANT_READ_ONLY"
            return AdmissionResult(Verdict.CONTROLLED, control_code=code)
        values = [int(v) for v in text(usage_csv).split(",")] if usage_csv else []
        return AdmissionResult(Verdict.REPLAYED, _usage(values), recorded_decision=text(decision))

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
        kind, released = text(reply[0]), int(reply[1])
        if kind == "missing":
            raise ReservationNotFound(f"decision {decision_id} holds no reservation in this tenant")
        if kind == "settled":
            if text(reply[2]) != outcome.value:
                raise SettlementConflict(decision_id, text(reply[2]))
            return _settle_result(text(reply[3]), text(reply[4]), released, repeated=True)
        return _settle_result(text(reply[2]), text(reply[3]), released, repeated=False)

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

    async def _call(self, script: Script, key_list: list[str], args: list[Any]) -> Any:
        return await run_script(
            self._client, script, key_list, args, deadline_seconds=self._deadline
        )


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


def _presented_mode(presented: PresentedApproval | None) -> str:
    if presented is None:
        return "0"
    return "1" if presented.consume else "2"


def _new_approval_json(new: NewApproval) -> str:
    return json.dumps(
        {
            "i": new.approval_id,
            "j": new.record,
            "r": new.requester_principal_id,
            "o": new.on_behalf_of,
            "a": new.action_sha256,
            "R": json.dumps(list(new.approver_roles)),
            "q": new.min_approvals,
            "ttl_ms": new.ttl_seconds * 1000,
        }
    )


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
