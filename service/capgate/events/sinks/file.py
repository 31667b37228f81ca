"""The JSON Lines file sink (https://jsonlines.org/): one sealed event per line, the
canonical body exactly as the outbox holds it, so ``capgate audit verify`` can check
the file.

Rotation: when the file would exceed ``max_bytes``, it is renamed ``<path>.1`` (older
ones shift to ``.2`` ... ``.<backups>``, the oldest is removed) and a new file is
started, as logrotate's ``rotate N`` would. A batch is written with one ``write`` per
line on an ``O_APPEND`` file, in a worker thread (the event loop never waits on the
disk); it reaches the OS before ``send`` returns. ``backups: 0`` truncates instead.

Raises ``SinkError`` when a write fails (disk full, permissions); the exporter retries.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

from capgate.events.config import FileSinkSettings
from capgate.events.sinks.base import SinkError, StoredEvent


class FileSink:
    def __init__(self, settings: FileSinkSettings) -> None:
        self.name = settings.name
        self._path = settings.path
        self._max_bytes = settings.max_bytes
        self._backups = settings.backups
        self._lock = asyncio.Lock()

    async def send(self, batch: Sequence[StoredEvent]) -> int:
        async with self._lock:  # one writer: lines of two batches never interleave
            try:
                await asyncio.to_thread(self._write, batch)
            except OSError as exc:
                raise SinkError(f"{self._path}: {exc}") from exc
        return len(batch)

    async def aclose(self) -> None:
        return None

    def _write(self, batch: Sequence[StoredEvent]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            size = os.fstat(fd).st_size
            for event in batch:
                line = event.body + b"\n"
                if size and size + len(line) > self._max_bytes:
                    os.close(fd)
                    fd = -1
                    self._rotate()
                    fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                    size = 0
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
                size += len(line)
        finally:
            if fd >= 0:
                os.close(fd)

    def _rotate(self) -> None:
        if self._backups == 0:
            self._path.unlink(missing_ok=True)
            return
        for n in range(self._backups, 0, -1):
            older = _numbered(self._path, n)
            if n == self._backups:
                older.unlink(missing_ok=True)
            newer = self._path if n == 1 else _numbered(self._path, n - 1)
            if newer.exists():
                newer.rename(older)


def _numbered(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")
