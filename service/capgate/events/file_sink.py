"""Decision log as JSON Lines (https://jsonlines.org/): one event per line, appended.

Each line is written and flushed to the OS before ``emit`` returns, so a reader (or a
log shipper tailing the file) sees the decision before the caller gets its answer.
Not fsynced: crash durability comes with the outbox (DESIGN §8).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class JsonlFileSink:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def emit(self, event: dict[str, Any]) -> None:
        self._file.write(json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n")
        self._file.flush()

    async def aclose(self) -> None:
        self._file.close()
