"""What the kubelet and a sidecar's agent see: the plaintext health listener
(``server.health_listen``) with its ``readiness`` and ``liveness`` names, and the Unix
socket's mode (``server.unix_socket_mode``)."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from capgate.app import build_app
from capgate.local.redis_server import RedisServer
from capgate.server import CapgateServer
from capgate.settings import load_settings
from capgate_client import AsyncClient
from tests.bundle_serving import health_status
from tests.conftest import ALLOWED_REFUND, DEFAULT_BUNDLE

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Run as another user: the agent's container in a pod, with or without the pod's fsGroup.
AGENT_UID = 10002
FS_GROUP = 10001
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # Under /tmp, reachable by another user (pytest's tmp_path is 0700, owned by us).
    path = Path(tempfile.mkdtemp(prefix="capgate-sock-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


async def _started(redis_server: RedisServer, socket: Path, mode: str) -> CapgateServer:
    settings = load_settings(
        server={
            "listen": f"unix://{socket}",
            "unix_socket_mode": mode,
            "health_listen": "127.0.0.1:0",
            "metrics_listen": "127.0.0.1:0",
        },
        policy={"bundle": DEFAULT_BUNDLE},
        budget={"redis_url": redis_server.url},
    )
    server = CapgateServer(build_app(settings))
    await server.start()
    return server


async def test_health_listener_tells_readiness_from_liveness(
    redis_server: RedisServer, socket_dir: Path
) -> None:
    server = await _started(redis_server, socket_dir / "capgate.sock", "0660")
    health = f"127.0.0.1:{server.health_port}"
    try:
        assert server.health_port > 0
        # Bound, no policy yet: not ready, but alive (a restart would not bring a bundle).
        assert await health_status(health, "readiness") == NOT_SERVING
        assert await health_status(health, "") == NOT_SERVING
        assert await health_status(health, "liveness") == SERVING
        await server.activate()
        for name in ("readiness", "", "capgate.v1.AuthorizationService", "liveness"):
            assert await health_status(health, name) == SERVING, name
        # The same names on the API listener (the Unix socket).
        assert await health_status(f"unix://{socket_dir / 'capgate.sock'}", "readiness") == SERVING
        # The health listener serves health only: no decisions over plaintext on the pod IP.
        async with AsyncClient(health) as client:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await client.authorize(**ALLOWED_REFUND, run_id="probe")
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(0)
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await health_status(health, "liveness")
    assert gone.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_unknown_health_name_is_not_found(
    redis_server: RedisServer, socket_dir: Path
) -> None:
    server = await _started(redis_server, socket_dir / "capgate.sock", "0660")
    try:
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await health_status(f"127.0.0.1:{server.health_port}", "livenes")
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await server.stop(0)


@pytest.mark.parametrize("mode", ["0660", "0600", "0666"])
async def test_unix_socket_gets_the_configured_mode(
    redis_server: RedisServer, socket_dir: Path, mode: str
) -> None:
    socket = socket_dir / "capgate.sock"
    server = await _started(redis_server, socket, mode)
    try:
        assert stat.S_ISSOCK(socket.stat().st_mode)
        assert stat.S_IMODE(socket.stat().st_mode) == int(mode, 8)
    finally:
        await server.stop(0)


def _connect_as_agent(socket: Path, groups: list[int]) -> subprocess.CompletedProcess[str]:
    """connect(2) to the socket from a process of another user, as the agent's container
    would. Debian's python3: ours lives under /root, which that user cannot enter."""
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n"
        "    s.connect(sys.argv[1])\n"
        "except PermissionError:\n"
        "    sys.exit(13)\n"
    )
    return subprocess.run(
        [SYSTEM_PYTHON, "-c", code, str(socket)],
        capture_output=True,
        text=True,
        timeout=30,
        user=AGENT_UID,
        group=AGENT_UID,
        extra_groups=groups,
    )


def fs_group_owned(directory: Path) -> Path:
    """What the kubelet does to an emptyDir of a pod with an fsGroup: the group owns it,
    and its setgid bit makes files created in it (the socket) belong to that group too."""
    os.chown(directory, -1, FS_GROUP)
    directory.chmod(0o2775)
    return directory


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to the agent's uid needs root")
async def test_agent_in_the_sockets_group_connects_and_others_do_not(
    redis_server: RedisServer, socket_dir: Path
) -> None:
    socket = fs_group_owned(socket_dir) / "capgate.sock"
    server = await _started(redis_server, socket, "0660")
    try:
        assert socket.stat().st_gid == FS_GROUP != os.getgid()
        member = await asyncio.to_thread(_connect_as_agent, socket, [FS_GROUP])
        assert member.returncode == 0, member.stderr
        stranger = await asyncio.to_thread(_connect_as_agent, socket, [])
        assert stranger.returncode == 13, stranger.stderr
    finally:
        await server.stop(0)
