"""OpaEngine against real ``opa run --server`` processes (TCP and Unix socket).

It decides as the embedded engine does on the same bundle, reports the bundle's
``.manifest`` revision, fails with PolicyError within its timeout when OPA is gone or
hung (SIGSTOP), and ``ready()`` follows OPA's ``/health?bundles=true``. End to end,
a capgate on ``--engine opa`` answers DENY POLICY_ERROR when OPA stops, and its
health leaves SERVING.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2

from capgate.api.convert import authorize_request as to_domain
from capgate.errors import ConfigError, PolicyError
from capgate.local.nginx import NginxBundleServer
from capgate.local.opa_server import OpaServer
from capgate.local.redis_server import RedisServer, free_port
from capgate.policy.bundle import load_bundle
from capgate.policy.embedded import EmbeddedEngine
from capgate.policy.input import build_input
from capgate.policy.opa import OpaEngine, parse_opa_url, provenance_revision
from capgate.replay.agentdojo import SUITES, authorize_request, bundle_path
from capgate.replay.workload import load_workload
from capgate.server import AUTHORIZATION_SERVICE as AUTHORIZATION
from tests.bundle_serving import eventually, health_status, opa_build
from tests.conftest import ALLOWED_REFUND, DEFAULT_BUNDLE, ROOT, start_capgate, write_bundle

pytestmark = pytest.mark.opa

REVISION = json.loads((DEFAULT_BUNDLE / ".manifest").read_text())["revision"]
TIMEOUT = 0.2  # seconds; generous for loopback, short enough to measure
REFUND: dict[str, Any] = {
    "tenant_id": "acme",
    "principal": {"id": "refund-agent", "scopes": ["refunds:write"]},
    "capability": "issue_refund",
    "tool": "payments.create_refund",
    "run": {"run_id": "r1", "workflow": "refund_request"},
    "idempotency_key": "k1",
    "identity": {"method": "insecure", "principal_id": "refund-agent"},
    "request_time": "2026-11-21T12:00:00.000000Z",
}
INPUTS = {
    "allow": REFUND | {"parameters": {"amount_usd": 30, "customer_tier": "pro"}},
    "require-approval": REFUND | {"parameters": {"amount_usd": 60, "customer_tier": "pro"}},
    "deny-over-limit": REFUND | {"parameters": {"amount_usd": 200.01}},
    "deny-unknown-capability": REFUND | {"capability": "drop_database"},
    "deny-empty": {},
}


@pytest.fixture(scope="module")
def embedded() -> EmbeddedEngine:
    return EmbeddedEngine(load_bundle(DEFAULT_BUNDLE))


@pytest.fixture(scope="module", params=["tcp", "unix"])
def opa(request: pytest.FixtureRequest, opa_binary: Path) -> Iterator[OpaServer]:
    """A private OPA on the default bundle for this module, over TCP or a Unix socket."""
    socket_path = None
    if request.param == "unix":
        socket_path = Path(tempfile.mkdtemp(prefix="opa-")) / "opa.sock"
    with OpaServer(opa_binary, DEFAULT_BUNDLE, socket_path=socket_path) as server:
        yield server


async def _engine(url: str, **kwargs: Any) -> OpaEngine:
    engine = OpaEngine(url, timeout_seconds=kwargs.pop("timeout_seconds", TIMEOUT), **kwargs)
    await engine.start()
    return engine


@pytest.fixture
async def engine(opa: OpaServer) -> AsyncIterator[OpaEngine]:
    engine = await _engine(opa.url)
    yield engine
    await engine.aclose()


@pytest.mark.parametrize("name", INPUTS)
async def test_decides_as_the_embedded_engine(
    engine: OpaEngine, embedded: EmbeddedEngine, name: str
) -> None:
    document = INPUTS[name]
    assert await engine.query(document) == embedded.query(document)
    evaluation = await engine.decide(document)
    assert evaluation.result == embedded.evaluate(document)
    assert evaluation.revision == REVISION
    expected = name.split("-")[0].replace("require", "require_approval")
    assert evaluation.result.effect.value == expected


async def test_revision_is_the_manifest_revision_once_opa_answered(opa: OpaServer) -> None:
    engine = await _engine(opa.url)
    try:
        assert engine.revision == ""  # start() makes no request
        assert await engine.ready()
        await engine.decide(INPUTS["allow"])
        assert engine.revision == REVISION
    finally:
        await engine.aclose()


async def test_undefined_entrypoint_is_a_policy_error(opa: OpaServer) -> None:
    engine = await _engine(opa.url, entrypoint="data.capgate.authz.no_such_rule")
    try:
        with pytest.raises(PolicyError, match="undefined"):
            await engine.decide(INPUTS["allow"])
        assert engine.revision == REVISION  # the provenance still came back
    finally:
        await engine.aclose()


@pytest.mark.parametrize(
    ("policy", "error", "revision"),
    [
        (
            'decision := {"effect": "allow"} if input.a\n'
            'decision := {"effect": "deny"} if input.b\n',
            r"HTTP 500",
            "",  # an error answer carries no provenance
        ),
        ('decision := "allow"\n', r"malformed policy result", "bad-1"),
        ('decision := {"effect": "allow"} if input.tool == "never"\n', r"undefined", "bad-1"),
    ],
    ids=["eval-conflict", "malformed", "undefined"],
)
async def test_failing_policies_are_policy_errors(
    opa_binary: Path, tmp_path: Path, policy: str, error: str, revision: str
) -> None:
    bundle = write_bundle(tmp_path / "bundle", policy, revision="bad-1")
    with OpaServer(opa_binary, bundle) as server:
        engine = await _engine(server.url)
        try:
            with pytest.raises(PolicyError, match=error):
                await engine.decide({"a": True, "b": True})
            assert engine.revision == revision
        finally:
            await engine.aclose()


async def test_decide_before_start_is_a_policy_error() -> None:
    engine = OpaEngine("http://127.0.0.1:1", timeout_seconds=TIMEOUT)
    with pytest.raises(PolicyError, match="not started"):
        await engine.decide({})
    assert not await engine.ready()


@pytest.mark.parametrize("transport", ["tcp", "unix"])
async def test_opa_gone_fails_fast_and_is_not_ready(opa_binary: Path, transport: str) -> None:
    socket_path = (
        Path(tempfile.mkdtemp(prefix="opa-")) / "opa.sock" if transport == "unix" else None
    )
    with OpaServer(opa_binary, DEFAULT_BUNDLE, socket_path=socket_path) as server:
        engine = await _engine(server.url)
        await engine.decide(INPUTS["allow"])  # a pooled connection to a live OPA
        assert await engine.ready()
    try:
        for _ in range(3):  # the stale pooled connection, then fresh refused connects
            started = time.monotonic()
            with pytest.raises(PolicyError, match=r"unreachable|did not answer"):
                await engine.decide(INPUTS["allow"])
            assert time.monotonic() - started < TIMEOUT + 0.1
        assert not await engine.ready()
    finally:
        await engine.aclose()


async def test_nothing_listening_fails_fast() -> None:
    engine = await _engine(f"http://127.0.0.1:{free_port()}")
    try:
        started = time.monotonic()
        with pytest.raises(PolicyError, match="unreachable"):
            await engine.decide(INPUTS["allow"])
        assert time.monotonic() - started < TIMEOUT
        assert not await engine.ready()
    finally:
        await engine.aclose()


async def test_hung_opa_times_out_within_the_deadline(opa_binary: Path) -> None:
    with OpaServer(opa_binary, DEFAULT_BUNDLE) as server:
        engine = await _engine(server.url)
        os.kill(server.pid, signal.SIGSTOP)  # the kernel still accepts; OPA never answers
        try:
            started = time.monotonic()
            with pytest.raises(PolicyError, match=r"did not answer within 200 ms"):
                await engine.decide(INPUTS["allow"])
            elapsed = time.monotonic() - started
            assert TIMEOUT * 0.9 < elapsed < TIMEOUT + 0.1
            assert not await engine.ready()
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert (await engine.decide(INPUTS["allow"])).revision == REVISION
        await engine.aclose()


@pytest.fixture
def bundle_tarball(opa_binary: Path, tmp_path: Path) -> Path:
    """``opa build`` of the default bundle."""
    return opa_build(opa_binary, DEFAULT_BUNDLE, tmp_path / "built.tar.gz")


async def test_ready_waits_for_bundle_activation(
    opa_binary: Path, bundle_tarball: Path, tmp_path: Path
) -> None:
    """OPA pulling its bundle from a real nginx bundle server: not ready (and undefined)
    while the bundle is missing, ready and deciding once it is served."""
    root = tmp_path / "served"
    root.mkdir()
    with NginxBundleServer(root) as nginx:
        service = f"http://127.0.0.1:{nginx.port}"
        flags = [
            f"--set=services.bundles.url={service}",
            "--set=bundles.capgate.service=bundles",
            "--set=bundles.capgate.resource=bundle.tar.gz",
            "--set=bundles.capgate.polling.min_delay_seconds=1",
            "--set=bundles.capgate.polling.max_delay_seconds=1",
        ]
        with OpaServer(opa_binary, extra_args=flags, wait_for_bundles=False) as server:
            engine = await _engine(server.url)
            try:
                assert not await engine.ready()
                with pytest.raises(PolicyError, match="undefined"):
                    await engine.decide(INPUTS["allow"])
                assert engine.revision == ""
                os.replace(bundle_tarball, root / "bundle.tar.gz")
                await eventually(engine.ready)
                assert (await engine.decide(INPUTS["allow"])).revision == REVISION
            finally:
                await engine.aclose()


async def test_capgate_on_opa_denies_with_policy_error_when_opa_stops(
    opa_binary: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    with OpaServer(opa_binary, DEFAULT_BUNDLE) as opa:
        async with start_capgate(
            bundle=DEFAULT_BUNDLE,
            redis_url=redis_server.url,
            decision_log=tmp_path / "d.jsonl",
            policy={"engine": "opa", "opa": {"url": opa.url, "timeout_ms": 200}},
        ) as capgate:
            call = ALLOWED_REFUND | {"run_id": f"run-{uuid.uuid4()}"}
            result = await capgate.client.authorize(**call, idempotency_key=str(uuid.uuid4()))
            assert (result.effect, result.policy_revision) == ("ALLOW", REVISION)
            status = await health_status(capgate.target, AUTHORIZATION)
            assert status == health_pb2.HealthCheckResponse.SERVING
            opa.stop()
            for _ in range(2):
                started = time.monotonic()
                key = str(uuid.uuid4())
                result = await capgate.client.authorize(**call, idempotency_key=key)
                assert time.monotonic() - started < 0.2 + 0.2
                assert (result.effect, result.reason_codes) == ("DENY", ("POLICY_ERROR",))

            async def not_serving() -> bool:
                status = await health_status(capgate.target, AUTHORIZATION)
                return status != health_pb2.HealthCheckResponse.SERVING

            await eventually(not_serving, seconds=5)


@pytest.mark.parametrize("suite", SUITES)
async def test_agentdojo_workload_decides_the_same_on_both_engines(
    opa_binary: Path, suite: str
) -> None:
    """Every call of the suite's AgentDojo workload, as the sidecar's input document,
    through an OPA server on the suite's bundle and through rego-cpp."""
    bundle = bundle_path(ROOT / "bundles", suite)
    calls = [
        c for c in load_workload(ROOT / "workloads" / "agentdojo-v1.2.jsonl") if c.suite == suite
    ]
    at = datetime(2026, 11, 21, tzinfo=UTC)
    documents = [
        build_input(
            to_domain(authorize_request(call, idempotency_key=f"key-{i}")),
            identity={"method": "insecure"},
            request_time=at,
        )
        for i, call in enumerate(calls)
    ]
    embedded = EmbeddedEngine(load_bundle(bundle))
    revision = json.loads((bundle / ".manifest").read_text())["revision"]
    with OpaServer(opa_binary, bundle) as server:
        engine = await _engine(server.url, timeout_seconds=2.0)
        try:
            differ = []
            for call, document in zip(calls, documents, strict=True):
                theirs = await engine.query(document)
                if theirs != embedded.query(document):
                    differ.append((call.task_id, call.step, call.function))
        finally:
            await engine.aclose()
    assert documents and not differ, differ[:3]
    assert engine.revision == revision
    assert len({embedded.query(d)["effect"] for d in documents}) >= 2  # not vacuous


@pytest.mark.parametrize(
    "url",
    [
        "opa:8181",
        "ftp://h:1",
        "http://",
        "http://h:99999",
        "http://h:1/v1",
        "http://u:p@h:1",
        "unix://relative.sock",
        "http://h:1?x=1",
    ],
)
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match=r"policy\.opa\.url"):
        OpaEngine(url, timeout_seconds=TIMEOUT)


def test_url_forms_and_provenance_revisions() -> None:
    assert parse_opa_url("http://127.0.0.1:8181").port == 8181
    assert parse_opa_url("https://opa.internal").port == 443
    assert parse_opa_url("http://[::1]:8181").host == "[::1]"
    assert parse_opa_url("unix:///run/opa/opa.sock").socket_path == "/run/opa/opa.sock"
    assert provenance_revision({"bundles": {"b": {"revision": "r7"}}}) == "r7"
    both = {"bundles": {"z": {"revision": "2"}, "a": {"revision": "1"}}}
    assert provenance_revision(both) == "a=1,z=2"
    assert provenance_revision({"version": "1.22.2"}) == ""
    assert provenance_revision(None) == ""
