"""A bundle swapped every second under load: each decision is made wholly by one
revision (the one it names), and none fails.

The load is paced open-loop, in-process, against a real capgate whose bundle manager
watches a tarball that is replaced every second:
  - through the policy step as the pipeline runs it (read the active engine once,
    evaluate) at 1,000 decisions/s;
  - through the whole decision pipeline (identity, policy, Redis admission, event) at
    200/s, what this 2-core machine sustains for it beside the test's own load loop
    (~2 ms of CPU per decision with its Redis round trip; bench/authorize_load.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from capgate.decision.model import AuthorizeRequest, Effect, Principal, Run
from capgate.identity.model import Credentials
from capgate.local.redis_server import RedisServer
from tests.bundle_serving import eventually, opa_build, revision_policy
from tests.conftest import OPA, RunningCapgate, start_capgate, write_bundle

pytestmark = pytest.mark.opa

SECONDS = 6
TICK_SECONDS = 0.01

# (revision named by the decision, revision whose policy made it, effect, reason code)
Made = tuple[str, str, Effect, str]


def build_revisions(tmp_path: Path, count: int) -> list[Path]:
    """``count`` tarballs from ``opa build``, revisions ``v0`` .. ``v{count-1}``."""
    tarballs = []
    for n in range(count):
        source = write_bundle(tmp_path / f"src{n}", revision_policy(f"v{n}"), f"v{n}")
        tarballs.append(opa_build(OPA, source, tmp_path / f"v{n}.tar.gz"))
    return tarballs


async def through_policy_step(capgate: RunningCapgate, n: int) -> Made:
    engine = capgate.app.policy.engine  # as Pipeline._evaluate_policy: read once
    assert engine is not None
    evaluation = await engine.decide({"tenant_id": "acme", "capability": "lookup", "n": n})
    result = evaluation.result
    return evaluation.revision, result.reasons[0].message, result.effect, result.reasons[0].code


async def through_pipeline(capgate: RunningCapgate, n: int) -> Made:
    request = AuthorizeRequest(
        tenant_id="acme",
        principal=Principal(id="agent"),
        capability="lookup",
        run=Run(run_id=f"swap-{uuid.uuid4()}"),
        idempotency_key=f"k-{n}",
    )
    decision = await capgate.app.pipeline.authorize(request, Credentials(peer="ipv4:127.0.0.1:1"))
    reason = decision.reasons[0]
    return decision.policy_revision, reason.message, decision.effect, reason.code


@pytest.mark.parametrize(
    ("decide", "rate_per_second"),
    [(through_policy_step, 1000), (through_pipeline, 200)],
    ids=["policy-step-1000-per-s", "pipeline-200-per-s"],
)
async def test_every_decision_names_the_one_revision_that_made_it(
    tmp_path: Path,
    redis_server: RedisServer,
    decide: Callable[[RunningCapgate, int], Awaitable[Made]],
    rate_per_second: int,
) -> None:
    tarballs = build_revisions(tmp_path, SECONDS + 1)
    live = tmp_path / "live" / "bundle.tar.gz"
    live.parent.mkdir()
    os.link(tarballs[0], live)
    made: list[Made] = []
    errors: list[BaseException] = []
    async with start_capgate(
        bundle=live, redis_url=redis_server.url, decision_log=None, deadline_ms=2000
    ) as capgate:

        async def one(n: int) -> None:
            try:
                made.append(await decide(capgate, n))
            except Exception as exc:  # collected: any one fails the test
                errors.append(exc)

        async def swap() -> None:
            for tarball in tarballs[1:]:
                await asyncio.sleep(1.0)
                staged = live.with_name("staged.tar.gz")
                os.link(tarball, staged)
                os.replace(staged, live)

        loop = asyncio.get_running_loop()
        started = loop.time()
        swapper = asyncio.create_task(swap())
        tasks: list[asyncio.Task[None]] = []
        per_tick = int(rate_per_second * TICK_SECONDS)
        for tick in range(int(SECONDS / TICK_SECONDS)):
            tasks += [asyncio.create_task(one(tick * per_tick + i)) for i in range(per_tick)]
            await asyncio.sleep(max(0.0, started + (tick + 1) * TICK_SECONDS - loop.time()))
        await asyncio.gather(*tasks)
        elapsed = loop.time() - started
        await swapper
        status = capgate.app.bundles.status  # type: ignore[union-attr]

        async def last_swap_landed() -> bool:  # it may land after the load
            return status.revision == f"v{SECONDS}"

        await eventually(last_swap_landed)
        activations = status.activations

    by_revision = Counter(named for named, _, _, _ in made)
    print(
        json.dumps(
            {
                "decisions": len(made),
                "offered_per_second": rate_per_second,
                "achieved_per_second": round(len(made) / elapsed),
                "by_revision": dict(sorted(by_revision.items())),
            }
        )
    )
    assert errors == []
    assert len(made) == rate_per_second * SECONDS
    refused = Counter(code for _, _, effect, code in made if effect is not Effect.ALLOW)
    assert refused == Counter()
    assert [m for m in made if m[0] != m[1]] == []
    # The swaps happened under the load: every revision was activated, most decided.
    assert activations == SECONDS + 1
    assert len(by_revision) >= SECONDS - 1, by_revision
