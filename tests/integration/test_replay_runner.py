"""capgate.replay.runner against a real capgate (in-process, port 0) and a real Redis."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from capgate.local.redis_server import RedisServer
from capgate.replay.runner import CallRecord, Outcome, RunOutcome, replay_suite
from capgate.replay.workload import Call, Run, TaskKind
from tests.conftest import start_capgate, write_bundle

POLICY = """\
decision := {"effect": "deny", "reasons": [{"code": "NO", "message": "no"}]} if {
	input.tool == "bad"
} else := {"effect": "require_approval", "reasons": [{"code": "ASK", "message": "ask"}]} if {
	input.tool == "ask"
} else := {"effect": "allow"}
"""


def run(task_id: str, kind: TaskKind, *functions: str) -> Run:
    calls = tuple(
        Call("banking", task_id, kind, step, function, {"n": step})
        for step, function in enumerate(functions)
    )
    return Run("banking", task_id, kind, calls)


class Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def call_decided(self, record: CallRecord) -> None:
        self.seen.append(f"call {record.call.task_id}/{record.call.step} {record.effect}")

    def run_finished(self, outcome: RunOutcome) -> None:
        self.seen.append(f"run {outcome.run.task_id} {outcome.outcome.value}")


async def test_runs_stop_at_the_first_deny_or_approval(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    bundle = write_bundle(tmp_path / "bundle", POLICY)
    runs = [
        run("user_task_0", TaskKind.USER, "read", "read"),
        run("user_task_1", TaskKind.USER, "read", "bad", "read"),
        run("injection_task_0", TaskKind.INJECTION, "ask", "read"),
    ]
    recorder = Recorder()
    async with start_capgate(
        bundle=bundle, redis_url=redis_server.url, decision_log=tmp_path / "d.jsonl"
    ) as capgate:
        replay = await replay_suite(
            "banking", runs, capgate.client.authorize_message, observer=recorder
        )
        events = await capgate.events("decision")

    assert [o.outcome for o in replay.outcomes] == [
        Outcome.ALLOWED,
        Outcome.DENIED,
        Outcome.APPROVAL,
    ]
    assert [len(o.records) for o in replay.outcomes] == [2, 2, 1]
    denied = replay.outcomes[1].stopped_by
    assert denied is not None
    assert (denied.call.step, denied.effect, denied.reason_codes) == (1, "DENY", ("NO",))
    assert replay.outcomes[0].stopped_by is None
    assert all(r.latency_ms > 0 for o in replay.outcomes for r in o.records)
    assert replay.wall_seconds > 0
    assert recorder.seen == [
        "call user_task_0/0 ALLOW",
        "call user_task_0/1 ALLOW",
        "run user_task_0 allowed",
        "call user_task_1/0 ALLOW",
        "call user_task_1/1 DENY",
        "run user_task_1 denied",
        "call injection_task_0/0 REQUIRE_APPROVAL",
        "run injection_task_0 approval",
    ]
    # Only the calls sent reach the sidecar, in order, each with its own UUIDv7 key.
    assert [(e["run"]["run_id"], e["tool"]) for e in events] == [
        ("banking/user_task_0", "read"),
        ("banking/user_task_0", "read"),
        ("banking/user_task_1", "read"),
        ("banking/user_task_1", "bad"),
        ("banking/injection_task_0", "ask"),
    ]
    keys = [e["input"]["idempotency_key"] for e in events]
    assert len(set(keys)) == 5
    assert {uuid.UUID(k).version for k in keys} == {7}
    assert events[3]["input"]["parameters"] == {"n": 1}
    assert events[3]["tenant_id"] == "agentdojo-banking"


async def test_runs_of_another_suite_are_refused() -> None:
    async def never(request: object) -> object:
        raise AssertionError("nothing may be sent")

    with pytest.raises(ValueError, match="slack/user_task_0"):
        await replay_suite(
            "banking",
            [Run("slack", "user_task_0", TaskKind.USER, ())],
            never,  # type: ignore[arg-type]
        )
