"""`capgate demo` (the README's first command) runs clean and decides as the bundle requires."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from capgate.demo import SCRIPT
from tests.conftest import ROOT


def test_demo_replays_every_step_as_expected(tmp_path: Path) -> None:
    log = tmp_path / "demo.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "capgate", "demo", "--decision-log", str(log)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(SCRIPT)} decisions, {len(SCRIPT)} as the bundle requires" in proc.stdout
    assert "server drained on SIGTERM" in proc.stdout
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["effect"].upper() for e in events] == [step.expect for step in SCRIPT]
