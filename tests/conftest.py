"""Shared fixtures: a real redis-server, the pinned OPA binary, capgate on port 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from capgate.app import App, build_app
from capgate.budget import connection, keys
from capgate.local.redis_server import RedisServer
from capgate.server import CapgateServer
from capgate.settings import load_settings
from capgate_client import AsyncClient
from tests.redis_topology import RedisClusterNodes

ROOT = Path(__file__).resolve().parent.parent
# Client kwargs of a refund the default bundle allows (add run_id and idempotency_key).
ALLOWED_REFUND: dict[str, Any] = {
    "tenant_id": "acme",
    "principal_id": "refund-agent",
    "scopes": ["refunds:write"],
    "capability": "issue_refund",
    "tool": "payments.create_refund",
    "parameters": {"amount_usd": 10},
    "workflow": "refund_request",
}
DEFAULT_BUNDLE = ROOT / "bundles" / "default"
# Tenant ids that try to break out of a Redis key or its hash tag.
HOSTILE_TENANTS = ["{a}", "a}{b", "a:b", "line\nbreak", "x" * 10_240, "ünï"]

OPA = ROOT / ".tools" / "bin" / "opa"


def run_capgate(
    *args: str | Path,
    cwd: Path = ROOT,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``python -m capgate ARGS`` with this interpreter, its output captured as text;
    ``env`` adds to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "capgate", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, **env} if env else None,
    )


def write_bundle(root: Path, policy: str, revision: str = "r1") -> Path:
    """A one-module bundle at ``root``: ``policy`` is the body of package capgate.authz."""
    root.mkdir()
    (root / ".manifest").write_text(json.dumps({"revision": revision, "roots": ["capgate"]}))
    (root / "policy.rego").write_text("package capgate.authz\n\n" + policy)
    return root


@dataclass
class RunningCapgate:
    target: str
    app: App
    server: CapgateServer
    decision_log: Path | None
    client: AsyncClient

    async def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """The decision log's events, all or those of ``event_type``, once every event
        in the outbox has been delivered to it."""
        assert await self.app.events.drain(10.0), "the decision log did not catch up in 10 s"
        log = self.decision_log
        text = log.read_text() if log is not None and log.exists() else ""
        events = [json.loads(line) for line in text.splitlines()]
        return [e for e in events if event_type is None or e["event_type"] == event_type]

    async def event_for(self, decision_id: str) -> dict[str, Any]:
        matches = [
            e
            for e in await self.events("decision")
            if e["decision_id"] == decision_id and not e["idempotent_replay"]
        ]
        assert len(matches) == 1, f"expected one decision-log line for {decision_id}"
        return matches[0]


@asynccontextmanager
async def start_capgate(
    *,
    bundle: Path,
    redis_url: str,
    decision_log: Path | None,
    deadline_ms: int = 250,
    identity: dict[str, Any] | None = None,
    tls: dict[str, Any] | None = None,
    events: dict[str, Any] | None = None,
    policy: dict[str, Any] | None = None,
) -> AsyncIterator[RunningCapgate]:
    """capgate in this event loop, on port 0, with its bundle active and a client.
    ``policy``: more of the ``policy`` settings section (engine, signing, sources).
    ``identity``: the ``identity`` settings section (default: insecure); ``tls``: the
    ``server.tls`` section (the bundled client then speaks plaintext and fails);
    ``events``: the ``events`` section (default: an outbox in a temporary directory)."""
    server_settings: dict[str, Any] = {"listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0"}
    if tls is not None:
        server_settings["tls"] = tls
    outbox = Path(tempfile.mkdtemp(prefix="capgate-outbox-")) / "outbox.db"
    settings = load_settings(
        events=events or {"outbox": {"path": outbox}},
        server=server_settings,
        policy={"bundle": bundle, **(policy or {})},
        budget={"redis_url": redis_url, "deadline_ms": deadline_ms},
        decision_log={"path": decision_log},
        identity=identity or {},
    )
    app = build_app(settings)
    server = CapgateServer(app)
    port = await server.start()
    try:
        await server.activate()
        target = f"127.0.0.1:{port}"
        async with AsyncClient(target) as client:
            yield RunningCapgate(target, app, server, decision_log, client)
    finally:
        await server.stop(0)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
async def capgate(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningCapgate]:
    """One capgate on the default bundle for the session; tests use their own run ids."""
    log = tmp_path_factory.mktemp("capgate") / "decisions.jsonl"
    async with start_capgate(
        bundle=DEFAULT_BUNDLE, redis_url=redis_server.url, decision_log=log
    ) as running:
        yield running


@pytest.fixture(scope="session")
async def redis_client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@dataclass
class OpaEval:
    """``opa eval`` (the pinned binary) on the default bundle, one process per query."""

    binary: Path

    def decide(self, input_document: dict[str, Any]) -> Any:
        proc = subprocess.run(
            [
                str(self.binary),
                "eval",
                "--bundle",
                str(DEFAULT_BUNDLE),
                "--stdin-input",
                "--format",
                "json",
                "data.capgate.authz.decision",
            ],
            input=json.dumps(input_document),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)["result"][0]["expressions"][0]["value"]


@pytest.fixture(scope="session")
def opa_binary() -> Path:
    if not OPA.exists():
        pytest.fail(f"{OPA} missing: run scripts/bootstrap.sh (CI installs it)")
    return OPA


@pytest.fixture(scope="session")
def opa_eval(opa_binary: Path) -> OpaEval:
    return OpaEval(opa_binary)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    """A real three-primary Redis Cluster on loopback ports, for the session."""
    with RedisClusterNodes(primaries=3) as cluster:
        yield cluster


@pytest.fixture(params=["standalone", "cluster"])
async def redis(
    request: pytest.FixtureRequest, redis_server: RedisServer, redis_cluster: RedisClusterNodes
) -> AsyncIterator[Redis | RedisCluster]:
    url = redis_server.url if request.param == "standalone" else redis_cluster.url
    client = connection.redis_client(connection.parse_redis_url(url))
    yield client
    await client.aclose()


async def tenant_keys(redis: Redis | RedisCluster, tenant_id: str) -> list[str]:
    pattern = keys.tenant_tag(tenant_id) + ":*"  # escaped ids hold no glob characters
    if isinstance(redis, RedisCluster):
        found = await redis.keys(pattern, target_nodes=RedisCluster.ALL_NODES)
    else:
        found = await redis.keys(pattern)
    return sorted(k.decode() for k in found)


@pytest.fixture(scope="session")
def opa_server(opa_binary: Path) -> Iterator[Any]:
    """A real ``opa run --server`` on the default bundle, on a free loopback port."""
    from capgate.local.opa_server import OpaServer

    with OpaServer(opa_binary, DEFAULT_BUNDLE) as server:
        yield server


@pytest.fixture(scope="session")
async def capgate_opa(
    redis_server: RedisServer, opa_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningCapgate]:
    """One capgate for the session deciding through ``opa_server`` (``--engine opa``)."""
    log = tmp_path_factory.mktemp("capgate-opa") / "decisions.jsonl"
    async with start_capgate(
        bundle=DEFAULT_BUNDLE,
        redis_url=redis_server.url,
        decision_log=log,
        policy={"engine": "opa", "opa": {"url": opa_server.url}},
    ) as running:
        yield running
