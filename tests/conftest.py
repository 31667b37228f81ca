"""Shared fixtures: a real redis-server, a real OPA server, capgate on port 0."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from capgate.app import App, build_app
from capgate.local.redis_server import RedisServer, free_port
from capgate.server import CapgateServer
from capgate.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = ROOT / "bundles" / "default"
OPA = ROOT / ".tools" / "bin" / "opa"


@dataclass
class RunningCapgate:
    target: str
    app: App
    server: CapgateServer
    decision_log: Path

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.decision_log.read_text().splitlines()]

    def event_for(self, decision_id: str) -> dict[str, Any]:
        matches = [e for e in self.events() if e["decision_id"] == decision_id]
        assert len(matches) == 1, f"expected one decision-log line for {decision_id}"
        return matches[0]


@asynccontextmanager
async def start_capgate(
    *, bundle: Path, redis_url: str, decision_log: Path, deadline_ms: int = 250
) -> AsyncIterator[RunningCapgate]:
    """capgate in this event loop, on port 0, with its bundle active."""
    settings = load_settings(
        server={"listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0"},
        policy={"bundle": bundle},
        budget={"redis_url": redis_url, "deadline_ms": deadline_ms},
        decision_log={"path": decision_log},
    )
    app = build_app(settings)
    server = CapgateServer(app)
    port = await server.start()
    try:
        await server.activate()
        yield RunningCapgate(f"127.0.0.1:{port}", app, server, decision_log)
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
async def redis_client(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@dataclass
class OpaServer:
    url: str

    def decide(self, input_document: dict[str, Any]) -> Any:
        """POST /v1/data/capgate/authz/decision (OPA REST API, Data API)."""
        body = json.dumps({"input": input_document}).encode()
        request = urllib.request.Request(
            f"{self.url}/v1/data/capgate/authz/decision",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())["result"]


@pytest.fixture(scope="session")
def opa_binary() -> Path:
    if not OPA.exists():
        pytest.fail(f"{OPA} missing: run scripts/bootstrap.sh (CI installs it)")
    return OPA


@pytest.fixture(scope="session")
def opa_server(opa_binary: Path) -> Iterator[OpaServer]:
    """A real OPA server on the default bundle."""
    port = free_port()
    process = subprocess.Popen(
        [
            str(opa_binary),
            "run",
            "--server",
            "--addr",
            f"127.0.0.1:{port}",
            "--log-level",
            "error",
            "--bundle",
            str(DEFAULT_BUNDLE),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health?bundles", timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(
                f"opa did not start: {process.stderr.read().decode() if process.stderr else ''}"
            )
        time.sleep(0.05)
    yield OpaServer(url)
    process.terminate()
    process.wait(timeout=10)
