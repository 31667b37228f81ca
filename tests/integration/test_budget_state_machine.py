"""Property test: under any interleaving of authorize, retry, settle and expiry, the
budget in real Redis equals a simple model, no counter goes negative, and spent +
reserved never exceeds the limit except by recorded overruns.

Actual costs here never exceed their estimates, so the only overrun is a late
settlement: a reservation released by its TTL, its budget given to other calls, and
then its call reported SUCCEEDED after all. That cost was really spent; capgate records
it (as an overrun) rather than hiding it, and admits nothing more until it fits.

Expiry is driven, not waited for: the ``expire`` rule moves a reservation's expiry
into the past (its score in the tenant's zset), exactly what the passing of its TTL
does; the next script call of the tenant releases it.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis

from capgate.budget import keys
from capgate.budget.redis_store import RedisBudgetStore
from capgate.budget.store import Admission, Idempotency, Subjects, Verdict
from capgate.decision.model import BudgetScope, BudgetSpec, BudgetWindow, Cost, Outcome
from capgate.local.redis_server import RedisServer

LIMIT_USD = 1_000
LIMIT_CALLS = 8
BUDGET = BudgetSpec(
    BudgetScope.TENANT, BudgetWindow.MONTH, limit_usd_micros=LIMIT_USD, limit_calls=LIMIT_CALLS
)


@dataclass
class Held:
    decision_id: str
    idempotency_key: str
    estimate: int
    expired: bool = False  # its expiry is in the past; released by the next script call


@dataclass
class Model:
    spent: int = 0
    reserved: int = 0
    calls: int = 0
    overrun: int = 0  # cost committed by settlements of already-released reservations
    due: list[Held] = field(default_factory=list)

    def release_due(self) -> None:
        for held in self.due:
            self.reserved -= held.estimate
        self.due.clear()


class BudgetMachine(RuleBasedStateMachine):
    reservations = Bundle("reservations")

    def __init__(self, redis_url: str) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.redis = Redis.from_url(redis_url)
        self.store = RedisBudgetStore(self.redis, deadline_seconds=2, run_ttl_seconds=3_600)
        self.tenant = f"sm-{uuid.uuid4()}"
        self.model = Model()

    def run(self, coroutine):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coroutine)

    def admission(self, decision_id: str, key: str, estimate: int) -> Admission:
        return Admission(
            tenant_id=self.tenant,
            decision_id=decision_id,
            subjects=Subjects("agent", "cap", "tool", "run"),
            budgets=(BUDGET,),
            rate_limits=(),
            cost=Cost(estimate, 0),
            consume=True,
            reservation_ttl_seconds=900,
            metadata="{}",
            idempotency=Idempotency(key, key.ljust(64, "0"), key.ljust(64, "0"), "{}"),
        )

    @rule(target=reservations, estimate=st.integers(0, 400))
    def authorize(self, estimate: int) -> Held | MultipleResults[Held]:
        held = Held(str(uuid.uuid4()), uuid.uuid4().hex, estimate)
        result = self.run(
            self.store.admit(self.admission(held.decision_id, held.idempotency_key, estimate))
        )
        self.model.release_due()
        m = self.model
        fits = m.calls + 1 <= LIMIT_CALLS and m.spent + m.reserved + estimate <= LIMIT_USD
        assert (result.verdict is Verdict.ADMITTED) == fits, (result, m)
        if not fits:
            return multiple()  # a refused call adds no reservation
        m.calls += 1
        m.reserved += estimate
        return held

    @rule(held=reservations)
    def retry(self, held: Held) -> None:
        """The same idempotency key again: the recorded decision, nothing reserved."""
        result = self.run(
            self.store.admit(self.admission(str(uuid.uuid4()), held.idempotency_key, held.estimate))
        )
        assert result.verdict is Verdict.REPLAYED

    @rule(
        held=consumes(reservations),
        outcome=st.sampled_from(list(Outcome)),
        fraction=st.floats(0, 1),
        given=st.booleans(),
    )
    def settle(self, held: Held, outcome: Outcome, fraction: float, given: bool) -> None:
        actual = Cost(int(held.estimate * fraction), 0) if given else None
        result = self.run(
            self.store.settle(
                tenant_id=self.tenant, decision_id=held.decision_id, outcome=outcome, actual=actual
            )
        )
        m = self.model
        was_due = held in m.due
        m.release_due()
        assert result.previous_state == ("expired" if was_due or held.expired else "reserved")
        if not (was_due or held.expired):
            m.reserved -= held.estimate
        if outcome in (Outcome.SUCCEEDED, Outcome.REVERTED):
            cost = actual.usd_micros if actual else held.estimate
            m.spent += cost
            if was_due or held.expired:
                m.overrun += cost
        if outcome is Outcome.ABANDONED:
            m.calls -= 1

    @rule(held=reservations)
    def expire(self, held: Held) -> None:
        if held.expired or held in self.model.due:
            return
        record = keys.reservation_key(self.tenant, held.decision_id)
        self.run(self.redis.zadd(keys.reservations_key(self.tenant), {record: 0}))
        held.expired = True
        self.model.due.append(held)

    @invariant()
    def redis_matches_the_model_and_stays_within_the_limit(self) -> None:
        month = datetime.now(UTC).strftime("%Y-%m")
        key = keys.budget_prefix(self.tenant, "tenant") + f":30d:{month}"
        raw = self.run(self.redis.hgetall(key))
        usage = {k.decode(): int(v) for k, v in raw.items()}
        spent, reserved = usage.get("spent_usd_micros", 0), usage.get("reserved_usd_micros", 0)
        calls = usage.get("calls", 0)
        assert min(spent, reserved, calls) >= 0, usage
        assert spent + reserved <= LIMIT_USD + self.model.overrun, usage
        assert calls <= LIMIT_CALLS, usage
        # expired-but-not-yet-released reservations are still held in Redis
        m = self.model
        assert (spent, reserved, calls) == (m.spent, m.reserved, m.calls), (usage, m)

    def teardown(self) -> None:
        self.run(self.redis.aclose())
        self.loop.close()


def test_budget_state_machine(redis_server: RedisServer) -> None:
    run_state_machine_as_test(
        lambda: BudgetMachine(redis_server.url),
        settings=settings(
            max_examples=200,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
