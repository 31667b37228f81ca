"""``with Server() as server:`` for the real servers tests, the demo and benchmarks
start (Redis, rsyslogd, a HEC receiver, a Kafka broker): entering starts it, leaving
closes it, even when the block raised."""

from __future__ import annotations

from types import TracebackType
from typing import Self


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
