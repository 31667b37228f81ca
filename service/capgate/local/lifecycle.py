"""``with Server() as server:`` for the real servers tests, the demo and benchmarks
start (Redis, rsyslogd, a HEC receiver, a Kafka broker): entering starts it, leaving
closes it, even when the block raised."""

from __future__ import annotations

import subprocess
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
