"""Decision log as JSON Lines (https://jsonlines.org/): one event per line, appended.

Each line goes to the OS in one unbuffered ``write`` on an ``O_APPEND`` file before
``emit`` returns, so a reader (or a log shipper tailing the file) sees the decision
before the caller gets its answer, and a failed write leaves nothing buffered behind.
Not fsynced: crash durability comes with the outbox (DESIGN §8).

Raises ``OSError`` from ``emit`` when the line cannot be written (disk full, ...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class JsonlFileSink:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab", buffering=0)

    def emit(self, event: dict[str, Any]) -> None:
        line = (json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        view = memoryview(line)
        while view:
            view = view[self._file.write(view) :]

    async def aclose(self) -> None:
        self._file.close()
