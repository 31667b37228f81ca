"""`capgate serve` as a process: health, reflection, metrics, settings errors, SIGTERM."""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from capgate.app import build_app
from capgate.local.redis_server import RedisServer
from capgate.local.serve_process import ServeProcess
from capgate.server import CapgateServer
from capgate.settings import load_settings
from capgate_client import AsyncClient, Client
from tests.conftest import ALLOWED_REFUND, DEFAULT_BUNDLE, ROOT, run_capgate, write_bundle

STARTUP_SECONDS = 30


@pytest.fixture
def serve(redis_server: RedisServer, tmp_path: Path) -> Iterator[ServeProcess]:
    proc = ServeProcess.start(
        bundle=DEFAULT_BUNDLE,
        redis_url=redis_server.url,
        decision_log=tmp_path / "decisions.jsonl",
    )
    yield proc
    proc.kill()


def scrape(proc: ServeProcess) -> str:
    """The process's Prometheus text exposition."""
    url = f"http://127.0.0.1:{proc.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text: str = response.read().decode()
    return text


def test_serves_health_reflection_metrics_and_drains_on_sigterm(
    serve: ServeProcess, tmp_path: Path
) -> None:
    proc = serve
    # Once serving, the start-up heap is out of the collector's way (gc.freeze).
    assert proc.wait_for("heap_frozen")["objects"] > 10_000
    target = proc.target
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "capgate.v1.AuthorizationService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
        assert "capgate.v1.AuthorizationService" in services
        assert "grpc.health.v1.Health" in services
    with Client(target) as client:
        result = client.authorize(
            **ALLOWED_REFUND | {"parameters": {"amount_usd": 30}},
            run_id="serve-run",
            idempotency_key=str(uuid.uuid4()),
        )
    assert result.effect == "ALLOW"
    metrics = scrape(proc)
    assert 'capgate_decisions_total{effect="allow"} 1.0' in metrics
    assert 'capgate_bundle_active{revision="default-2026.11.21-1"} 1.0' in metrics
    assert "capgate_decision_duration_seconds_bucket" in metrics
    assert proc.stop() == 0
    proc.wait_for("stopped")
    log = (tmp_path / "decisions.jsonl").read_text().splitlines()
    assert json.loads(log[0])["decision_id"] == result.decision_id


def test_a_call_too_close_to_its_deadline_is_refused_not_decided(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """server.min_time_left_ms: a call with 1 s left, under the 1.5 s set, gets the
    server's DEADLINE_EXCEEDED at once; one with 5 s left is decided. Only that one is
    counted, logged and reserved."""
    proc = ServeProcess.start(
        bundle=DEFAULT_BUNDLE,
        redis_url=redis_server.url,
        decision_log=tmp_path / "decisions.jsonl",
        env={"CAPGATE_SERVER__MIN_TIME_LEFT_MS": "1500"},
    )
    try:
        call = ALLOWED_REFUND | {"run_id": f"run-{uuid.uuid4()}"}
        with (
            Client(proc.target, timeout_seconds=1.0) as hurried,
            pytest.raises(grpc.RpcError) as refused,
        ):
            hurried.authorize(**call, idempotency_key="k1")
        assert refused.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert refused.value.details().startswith("not decided: ")
        assert "ms left before the call's deadline" in refused.value.details()
        assert refused.value.details().endswith("under server.min_time_left_ms (1500)")
        with Client(proc.target, timeout_seconds=5.0) as patient:
            decided = patient.authorize(**call, idempotency_key="k2")
        assert decided.effect == "ALLOW"
        metrics = scrape(proc)
        assert "capgate_authorize_shed_total 1.0" in metrics
        assert 'capgate_decisions_total{effect="allow"} 1.0' in metrics
        run_budget = next(b for b in decided.budgets if b.scope == "run")
        assert run_budget.used_calls == 1  # the refused call reserved nothing
        assert proc.stop() == 0
    finally:
        proc.kill()
    logged = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert [e["decision_id"] for e in logged if e["event_type"] == "decision"] == [
        decided.decision_id
    ]


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--listen", "nohost"], {}, "server.listen"),
        ([], {"CAPGATE_BUDGET__DEADLINE_MS": "0"}, "CAPGATE_BUDGET__DEADLINE_MS"),
        (["--redis-url", "http://x"], {}, "budget.redis_url"),
        (["--config", "/nonexistent.yaml"], {}, "--config"),
        (["--listen", "0.0.0.0:0"], {}, "identity.mode insecure trusts the request body"),
        (["--identity", "jwt"], {}, "identity.mode jwt needs identity.jwt.jwks"),
        (
            ["--identity", "jwt", "--jwks", "/nonexistent.json"],
            {"CAPGATE_IDENTITY__JWT__ISSUER": "i", "CAPGATE_IDENTITY__JWT__AUDIENCE": "a"},
            "/nonexistent.json",
        ),
        (["--profile", "production"], {}, "profile production refuses unsigned bundles"),
        (
            ["--verification-key", "/nonexistent.pem"],
            {},
            "--verification-key /nonexistent.pem",
        ),
        (["--bundle-url", "http://127.0.0.1:9/b.tar.gz"], {}, "exactly one bundle source"),
        (["--engine", "opa"], {}, "policy.opa.url (--opa-url)"),
        (["--signing-alg", "HS256"], {}, "policy.signing.signing_alg"),
        (["--health-listen", "nohost"], {}, "server.health_listen"),
        ([], {"CAPGATE_SERVER__UNIX_SOCKET_MODE": "0999"}, "CAPGATE_SERVER__UNIX_SOCKET_MODE"),
    ],
    ids=[
        "bad-listen",
        "bad-env",
        "bad-redis-url",
        "missing-config",
        "insecure-on-all-interfaces",
        "jwt-without-jwks",
        "unreadable-jwks",
        "production-unsigned",
        "unreadable-verification-key",
        "two-bundle-sources",
        "opa-engine-without-url",
        "hmac-signing-alg",
        "bad-health-listen",
        "bad-socket-mode",
    ],
)
def test_bad_settings_exit_2_naming_the_key(
    args: list[str], env: dict[str, str], named: str
) -> None:
    proc = run_capgate("serve", "--bundle", DEFAULT_BUNDLE, *args, env=env, timeout=STARTUP_SECONDS)
    assert proc.returncode == 2
    assert named in proc.stderr


def test_settings_come_from_yaml_file_with_flags_on_top(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    config = tmp_path / "capgate.yaml"
    config.write_text(
        f"server: {{listen: '127.0.0.1:1', metrics_listen: '127.0.0.1:0'}}\n"
        f"policy: {{bundle: {DEFAULT_BUNDLE}}}\n"
        f"budget: {{redis_url: '{redis_server.url}'}}\n"
    )
    proc = ServeProcess(["--config", str(config), "--listen", "127.0.0.1:0"])
    try:
        listening = proc.wait_for("listening")
        assert listening["grpc"] == "127.0.0.1:0"  # the flag won over the file
        proc.wait_for("bundle_activated")
        assert proc.stop() == 0
    finally:
        if proc.process.poll() is None:
            proc.process.kill()


def test_bundle_that_fails_to_load_exits_2(tmp_path: Path, redis_server: RedisServer) -> None:
    bundle = tmp_path / "bad"
    bundle.mkdir()
    (bundle / "p.rego").write_text('package capgate.authz\ndecision := http.send({"url": "x"})\n')
    proc = ServeProcess.launch(bundle=bundle, redis_url=redis_server.url)
    record = proc.wait_for("bundle_activation_failed")
    assert "reaches the network" in record["error"]
    assert proc.process.wait(timeout=STARTUP_SECONDS) == 2


async def test_not_serving_and_policy_unavailable_until_a_bundle_is_active(
    redis_server: RedisServer,
) -> None:
    settings = load_settings(
        server={"listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0"},
        policy={"bundle": DEFAULT_BUNDLE},
        budget={"redis_url": redis_server.url},
    )
    server = CapgateServer(build_app(settings))
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service="")
            assert (
                await health.Check(request)
            ).status == health_pb2.HealthCheckResponse.NOT_SERVING
            async with AsyncClient(f"127.0.0.1:{port}") as client:
                result = await client.authorize(tenant_id="t", principal_id="p", capability="c")
            assert (result.effect, result.reason_codes) == ("DENY", ("POLICY_UNAVAILABLE",))
            await server.activate()
            assert (await health.Check(request)).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(0)


def _check_config(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return run_capgate("serve", "--check-config", *args, cwd=cwd, timeout=STARTUP_SECONDS)


def test_check_config_reports_the_setup_and_exits_0_without_serving(tmp_path: Path) -> None:
    config = tmp_path / "capgate.yaml"
    config.write_text(
        "server: {listen: '127.0.0.1:1', metrics_listen: '127.0.0.1:1'}\n"
        f"policy: {{bundle: {DEFAULT_BUNDLE}}}\n"
        "budget: {redis_url: 'redis://user:secret@redis.invalid:6379/0'}\n"
        f"events: {{sinks: [{{type: file, name: audit, path: {tmp_path / 'audit.jsonl'}}}]}}\n"
    )
    proc = _check_config("--config", str(config), cwd=tmp_path)  # the default outbox's dir
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("capgate: configuration OK\n")
    assert "revision 'default-2026.11.21-1' (unsigned, compiles)" in proc.stdout
    assert "event sinks: audit" in proc.stdout
    assert "secret" not in proc.stdout and "//***@redis.invalid" in proc.stdout
    assert not (tmp_path / "capgate-outbox.db").exists()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--bundle", "/nonexistent"], "/nonexistent"),
        (["--bundle", str(DEFAULT_BUNDLE), "--profile", "production"], "unsigned bundles"),
        (
            ["--bundle", str(DEFAULT_BUNDLE), "--verification-key", str(ROOT / "README.md")],
            "--verification-key",
        ),
    ],
    ids=["missing-bundle", "production-unsigned", "not-a-key"],
)
def test_check_config_names_what_is_wrong_and_exits_2(args: list[str], named: str) -> None:
    proc = _check_config(*args)
    assert proc.returncode == 2
    assert named in proc.stderr


def test_check_config_refuses_a_bundle_that_does_not_compile(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", "decision := {\n")
    proc = _check_config("--bundle", str(bundle))
    assert proc.returncode == 2
    assert "does not compile" in proc.stderr
