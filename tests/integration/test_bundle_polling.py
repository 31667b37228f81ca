"""The bundle server poll schedule, against a real nginx: a random point between
min_delay and max_delay while polls succeed; exponential backoff with full jitter,
capped, while they fail; back to the normal interval after a success."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from capgate.clock import SystemClock
from capgate.local.nginx import NginxBundleServer
from capgate.observability.metrics import Metrics
from capgate.policy.activation import BundleManager, bundle_compiler
from capgate.policy.active import ActivePolicy
from capgate.policy.sources import HttpSource
from capgate.settings import BundleServerSettings
from tests.bundle_serving import opa_build, revision_policy
from tests.conftest import OPA, write_bundle

pytestmark = pytest.mark.opa


async def test_failures_back_off_exponentially_and_a_success_resets_the_interval(
    tmp_path: Path,
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    tarball = opa_build(
        OPA, write_bundle(tmp_path / "src", revision_policy("p1"), "p1"), tmp_path / "b.tar.gz"
    )
    delays: list[float] = []
    parked = asyncio.Event()

    with NginxBundleServer(served) as nginx:
        polling = BundleServerSettings(
            url=nginx.url("bundle.tar.gz"),
            min_delay_seconds=1,
            max_delay_seconds=2,
            max_backoff_seconds=8,
        )

        async def sleep(seconds: float) -> None:
            delays.append(seconds)
            if len(delays) == 4:  # the bundle appears on the server
                shutil.copy(tarball, served / "bundle.tar.gz")
            if len(delays) == 5:
                parked.set()
                await asyncio.Event().wait()

        metrics = Metrics(CollectorRegistry())
        policy = ActivePolicy(metrics)
        manager = BundleManager(
            source=HttpSource(polling, max_bytes=1 << 20, max_files=100, metrics=metrics),
            policy=policy,
            compiler=bundle_compiler("data.capgate.authz.decision", None),
            store=None,
            metrics=metrics,
            clock=SystemClock(),
            polling=polling,
            sleep=sleep,
            random=lambda: 1.0,  # the top of every jitter range
        )
        await manager.start()  # 404: nothing active, the server keeps polling
        assert policy.engine is None
        await asyncio.wait_for(parked.wait(), 10)
        await manager.aclose()
        statuses = nginx.statuses()

    # 404 → normal interval first, then 2, 4, 8 (capped); 200 → back to normal.
    assert delays == [2.0, 2.0, 4.0, 8.0, 2.0]
    assert policy.engine is not None and policy.engine.revision == "p1"
    assert statuses == [404, 404, 404, 404, 200]
    failures = metrics.registry.get_sample_value(
        "capgate_bundle_activation_failures_total", {"stage": "fetch"}
    )
    assert failures == 4
