"""``with Server() as server:`` for the real servers tests, the demo and benchmarks
start (Redis, rsyslogd, a HEC receiver, a Kafka broker, nginx, OPA): entering starts
it, leaving closes it, even when the block raised. :func:`wait_ready` and
:func:`end_process` are their start and stop."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self


def end_process(process: subprocess.Popen[Any] | None, grace_seconds: float = 5.0) -> None:
    """SIGTERM ``process``, SIGKILL it after ``grace_seconds``; returns once it is gone.
    ``None`` (never started, or already ended) does nothing."""
    if process is None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_ready(
    process: subprocess.Popen[Any],
    ready: Callable[[], bool],
    *,
    timeout_seconds: float,
    interval_seconds: float = 0.05,
) -> bool:
    """Poll ``ready()`` until it is true (True), or ``process`` exits or
    ``timeout_seconds`` pass (False)."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(interval_seconds)
    return False


def accepts_connections(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a TCP connection to ``host:port`` succeeds (within 0.2 s)."""
    try:
        socket.create_connection((host, port), timeout=0.2).close()
    except OSError:
        return False
    return True


class Managed:
    """Subclasses define ``start() -> Self`` and ``stop()``; ``close()`` is ``stop()``
    unless a subclass also has files to remove."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
