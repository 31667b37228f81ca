"""Real Redis topologies for tests: a sharded cluster, and a primary/replica/sentinel set.

Both start the system ``redis-server`` (and, for the cluster, ``redis-cli``) on free
loopback ports, with no persistence, in a private temp dir removed on exit. Every
process is stopped when the ``with`` block ends, also when startup fails half-way.
Anything that does not come up within its timeout raises ``RuntimeError``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import redis

from capgate.local.lifecycle import Managed
from capgate.local.redis_server import free_port, server_args

STARTUP_TIMEOUT_SECONDS = 15.0
POLL_SECONDS = 0.05
# The cluster bus listens on the client port + 10000.
CLUSTER_BUS_OFFSET = 10000
SERVICE_NAME = "mymaster"


def _executable(name: str) -> str:
    path = shutil.which(name, path="/usr/bin") or shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found or not executable (apt-get install redis-server)")
    return path


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _attempt in range(50):
        port = free_port()
        if port + CLUSTER_BUS_OFFSET > 65535:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", port + CLUSTER_BUS_OFFSET))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair (port, port + 10000) for a cluster node")


def _wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Poll ``check`` (connection errors count as "not yet") until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.RedisError, OSError) as error:
            last_error = error
        time.sleep(POLL_SECONDS)
    detail = f" (last error: {last_error!r})" if last_error is not None else ""
    raise RuntimeError(f"{what} within {timeout:.0f} s{detail}")


def _admin(port: int) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=2.0,
        socket_connect_timeout=1.0,
        decode_responses=True,
    )


def _info(port: int, section: str) -> dict[str, object]:
    with _admin(port) as client:
        return dict(client.info(section))


class _Processes:
    """The ``redis-server`` processes of one topology and their temp dir."""

    def __init__(self, prefix: str) -> None:
        self.server = _executable("redis-server")
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self._running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        """Start ``redis-server *args``; its output goes to ``<dir>/<name>.log``."""
        with (self.dir / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [self.server, *args], stdout=log, stderr=subprocess.STDOUT, cwd=self.dir
            )
        self._running.append((name, process))
        return process

    def wait_ping(self, name: str, process: subprocess.Popen[bytes], port: int) -> None:
        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} (port {port}) exited with {process.returncode}: {self.log(name)}"
                )
            with _admin(port) as client:
                return bool(client.ping())

        _wait_for(f"{name} did not answer PING on port {port}", ready, STARTUP_TIMEOUT_SECONDS)

    def log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        """Terminate everything (kill after 5 s) and remove the temp dir."""
        for _name, process in self._running:
            if process.poll() is None:
                process.terminate()
        for _name, process in self._running:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._running.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


class _Topology(Managed):
    """Start/stop and ``with`` for a topology: :meth:`_bring_up` starts its processes;
    a failure part-way stops whatever already runs."""

    _prefix = "capgate-redis-"

    def __init__(self) -> None:
        self._processes: _Processes | None = None

    def start(self) -> Self:
        self._processes = processes = _Processes(self._prefix)
        try:
            self._bring_up(processes)
        except BaseException:
            self.stop()
            raise
        return self

    def _bring_up(self, processes: _Processes) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self._processes is not None:
            self._processes.stop()
            self._processes = None


class RedisClusterNodes(_Topology):
    """``with RedisClusterNodes(primaries=3) as cluster: cluster.url`` — a sharded cluster.

    ``primaries`` masters, no replicas, all 16384 slots assigned, ``cluster_state:ok``
    on every node before the block starts.
    """

    def __init__(self, primaries: int = 3) -> None:
        """``primaries``: at least 3 (``redis-cli --cluster create`` needs 3 masters)."""
        if primaries < 3:
            raise ValueError("a Redis cluster needs at least 3 primaries")
        super().__init__()
        self._primaries = primaries
        self._cli = _executable("redis-cli")
        self.ports: list[int] = []

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", port) for port in self.ports]

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...``"""
        return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in self.startup_nodes)

    _prefix = "capgate-redis-cluster-"

    def _bring_up(self, processes: _Processes) -> None:
        self._start_nodes(processes)
        self._create_cluster()
        for port in self.ports:
            _wait_for(
                f"cluster node {port} did not report cluster_state:ok",
                lambda port=port: self._cluster_info(port).get("cluster_state") == "ok",
                STARTUP_TIMEOUT_SECONDS,
            )

    def flush_scripts(self) -> None:
        """``SCRIPT FLUSH`` on every node: the next EVALSHA anywhere gets NOSCRIPT."""
        for port in self.ports:
            with _admin(port) as client:
                client.script_flush()

    def _start_nodes(self, processes: _Processes) -> None:
        self.ports = []
        for _ in range(self._primaries):
            port = _free_cluster_port()
            name = f"node-{port}"
            process = processes.spawn(
                name,
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(processes.dir / f"nodes-{port}.conf"),
                    "--cluster-node-timeout",
                    "2000",
                    *server_args(port, str(processes.dir)),
                ],
            )
            self.ports.append(port)
            processes.wait_ping(name, process, port)

    def _create_cluster(self) -> None:
        result = subprocess.run(
            [
                self._cli,
                "--cluster",
                "create",
                *(f"{h}:{p}" for h, p in self.startup_nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT_SECONDS,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed ({result.returncode}): "
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )

    @staticmethod
    def _cluster_info(port: int) -> dict[str, str]:
        with _admin(port) as client:
            return {str(k): str(v) for k, v in client.cluster("INFO").items()}


class RedisSentinelSet(_Topology):
    """``with RedisSentinelSet() as redis: redis.url`` — primary, replica, one sentinel.

    Before the block starts the replica is in sync (``master_link_status:up``) and the
    sentinel knows both the master and the replica, so :meth:`failover` can promote it.
    """

    def __init__(self, service_name: str = SERVICE_NAME) -> None:
        super().__init__()
        self.service_name = service_name
        self.primary_port = 0
        self.replica_port = 0
        self.sentinel_port = 0

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:<sentinel port>/<service name>/0``"""
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{self.service_name}/0"

    _prefix = "capgate-redis-sentinel-"

    def _bring_up(self, processes: _Processes) -> None:
        self.primary_port = self._start_server(processes, "primary", [])
        self.replica_port = self._start_server(
            processes, "replica", ["--replicaof", "127.0.0.1", str(self.primary_port)]
        )
        _wait_for(
            f"replica {self.replica_port} did not sync from {self.primary_port}",
            lambda: _info(self.replica_port, "replication").get("master_link_status") == "up",
            STARTUP_TIMEOUT_SECONDS,
        )
        self._start_sentinel(processes)
        _wait_for(
            f"sentinel {self.sentinel_port} did not see master and replica",
            self._sentinel_ready,
            STARTUP_TIMEOUT_SECONDS,
        )

    def master_address(self) -> tuple[str, int]:
        """What the sentinel says now: ``SENTINEL get-master-addr-by-name``."""
        with _admin(self.sentinel_port) as sentinel:
            host, port = sentinel.sentinel_get_master_addr_by_name(self.service_name)
        return str(host), int(port)

    def failover(self, timeout_seconds: float = 20.0) -> int:
        """``SENTINEL FAILOVER``; return the new primary's port once the sentinel names it
        and it reports ``role:master``. Swaps ``primary_port`` and ``replica_port``.

        The old primary is not demoted yet: the sentinel reconfigures it as a replica
        only about 10 s later, and until then it still accepts writes.
        """
        old, new = self.primary_port, self.replica_port
        with _admin(self.sentinel_port) as sentinel:
            sentinel.sentinel_failover(self.service_name)

        def switched() -> bool:
            return (
                self.master_address()[1] == new
                and _info(new, "replication").get("role") == "master"
            )

        _wait_for(f"failover from {old} to {new} did not complete", switched, timeout_seconds)
        self.primary_port, self.replica_port = new, old
        return new

    @staticmethod
    def _start_server(processes: _Processes, name: str, extra: list[str]) -> int:
        port = free_port()
        process = processes.spawn(
            name,
            [
                *server_args(port, str(processes.dir)),
                # Full syncs start at once, not after the default 5 s diskless delay.
                "--repl-diskless-sync-delay",
                "0",
                *extra,
            ],
        )
        processes.wait_ping(name, process, port)
        return port

    def _start_sentinel(self, processes: _Processes) -> None:
        self.sentinel_port = free_port()
        # The sentinel rewrites this file (state, known replicas), so it must be writable.
        conf = processes.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\n"
            "bind 127.0.0.1\n"
            f"dir {processes.dir}\n"
            f"sentinel monitor {self.service_name} 127.0.0.1 {self.primary_port} 1\n"
            f"sentinel down-after-milliseconds {self.service_name} 1000\n"
            f"sentinel failover-timeout {self.service_name} 5000\n"
        )
        process = processes.spawn("sentinel", [str(conf), "--sentinel"])
        processes.wait_ping("sentinel", process, self.sentinel_port)

    def _sentinel_ready(self) -> bool:
        with _admin(self.sentinel_port) as sentinel:
            master = sentinel.sentinel_master(self.service_name)
            replicas = sentinel.sentinel_slaves(self.service_name)
        master_ok = (
            int(master["port"]) == self.primary_port
            and master["is_master"]
            and not master["is_sdown"]
            and not master["is_odown"]
        )
        replica_ok = any(
            int(r["port"]) == self.replica_port
            and not r["is_sdown"]
            and not r["is_odown"]
            and r.get("master-link-status") == "ok"
            for r in replicas
        )
        return bool(master_ok and replica_ok)
