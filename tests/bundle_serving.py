"""Helpers of the bundle tests: a policy that names the revision that made a decision,
a decision, waiting for a condition or a revision, failures counted by stage,
``opa build``, and a health check."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from capgate_client import AuthorizeResult
from tests.conftest import OPA, RunningCapgate, write_bundle


def revision_policy(revision: str) -> str:
    """A policy that names its revision in its reason, so a decision shows which
    revision's policy made it."""
    code = "MADE_BY_" + revision.upper().replace("-", "_")
    return (
        'decision := {"effect": "allow", "reasons": '
        f'[{{"code": "{code}", "message": "{revision}"}}]}}\n'
    )


def made_by(result: AuthorizeResult) -> str:
    return result.reasons[0].message if result.reasons else ""


async def decide(capgate: RunningCapgate) -> AuthorizeResult:
    return await capgate.client.authorize(
        tenant_id="acme",
        principal_id="agent",
        capability="lookup",
        run_id=f"run-{uuid.uuid4()}",
        dry_run=True,
    )


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def until_serving(capgate: RunningCapgate, revision: str) -> None:
    """Wait until decisions name ``revision`` and are made by its policy."""

    async def serving() -> bool:
        result = await decide(capgate)
        return (result.policy_revision, made_by(result)) == (revision, revision)

    await eventually(serving)


def failures(capgate: RunningCapgate, stage: str) -> float:
    registry = capgate.app.metrics.registry
    value = registry.get_sample_value("capgate_bundle_activation_failures_total", {"stage": stage})
    return value or 0.0


def opa_build(opa: Path, source: Path, out: Path) -> Path:
    """``opa build`` ``source`` into ``out`` (replaced atomically, as a deploy would)."""
    partial = out.with_name(out.name + ".partial")
    subprocess.run(
        [str(opa), "build", "--bundle", str(source), "-o", str(partial)],
        check=True,
        capture_output=True,
        cwd=source,
    )
    os.replace(partial, out)
    return out


def served_revision(tmp_path: Path, revision: str) -> tuple[Path, Path]:
    """A bundle directory for ``revision`` (``tmp_path/src``) and its ``opa build`` in a
    directory to serve (``tmp_path/served/bundle.tar.gz``): (source, served)."""
    served = tmp_path / "served"
    served.mkdir()
    source = write_bundle(tmp_path / "src", revision_policy(revision), revision)
    opa_build(OPA, source, served / "bundle.tar.gz")
    return source, served


async def health_status(target: str, service: str = "") -> int:
    """grpc.health.v1 Check of ``service`` at ``target``: the ServingStatus number."""
    async with grpc.aio.insecure_channel(target) as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        reply = await health_pb2_grpc.HealthStub(channel).Check(request, timeout=5)
    return int(reply.status)
