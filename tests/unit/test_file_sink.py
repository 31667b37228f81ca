"""The JSON Lines file sink: one canonical body per line, rotation, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capgate.events.config import FileSinkSettings
from capgate.events.sinks.base import SinkError, StoredEvent
from capgate.events.sinks.file import FileSink


def stored(seq: int, text: str = "x") -> StoredEvent:
    body = json.dumps({"seq": seq, "note": text}, separators=(",", ":")).encode()
    return StoredEvent(seq=seq, event_id=f"e{seq}", time=0.0, body=body)


async def test_lines_are_the_bodies_in_order(tmp_path: Path) -> None:
    sink = FileSink(FileSinkSettings(type="file", name="f", path=tmp_path / "d.jsonl"))
    batch = [stored(1, "a\nb"), stored(2, "é 中文 😀")]
    assert await sink.send(batch) == 2
    assert await sink.send([stored(3)]) == 1
    lines = (tmp_path / "d.jsonl").read_bytes().splitlines()
    assert lines == [e.body for e in [*batch, stored(3)]]


async def test_rotation_keeps_the_configured_number_of_backups(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    line = len(stored(10).body) + 1
    sink = FileSink(FileSinkSettings(type="file", name="f", path=path, max_bytes=1024, backups=2))
    per_file = 1024 // line
    await sink.send([stored(seq) for seq in range(10, 10 + per_file * 4)])
    files = _names(tmp_path)
    assert files == ["d.jsonl", "d.jsonl.1", "d.jsonl.2"]
    for name in files:
        assert (tmp_path / name).stat().st_size <= 1024
    newest = [json.loads(x)["seq"] for x in path.read_bytes().splitlines()]
    previous = [json.loads(x)["seq"] for x in (tmp_path / "d.jsonl.1").read_bytes().splitlines()]
    assert previous[-1] + 1 == newest[0]  # nothing lost between files


async def test_a_write_failure_is_a_sink_error(tmp_path: Path) -> None:
    blocked = tmp_path / "dir"
    blocked.write_text("a file where a directory should be")
    sink = FileSink(FileSinkSettings(type="file", name="f", path=blocked / "d.jsonl"))
    with pytest.raises(SinkError):
        await sink.send([stored(1)])


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())
