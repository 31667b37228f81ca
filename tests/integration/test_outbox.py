"""The outbox on real SQLite files: survives SIGKILL, keeps the chain, caps with gap
events, one cursor per sink, batched fsync."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from capgate.clock import SystemClock
from capgate.events.chain import GENESIS_HASH, event_hash
from capgate.events.checkpoint import Checkpointer, verify_head
from capgate.events.outbox import Outbox, OutboxError
from capgate.events.verify import verify_log
from capgate.observability.metrics import Metrics


def make_event(n: int, pad: int = 0) -> dict[str, Any]:
    return {
        "schema_version": "capgate.decision_event.v1",
        "event_type": "decision",
        "event_id": f"event-{n}",
        "time": "2026-11-21T19:14:47.859988Z",
        "n": n,
        "pad": "x" * pad,
    }


def open_outbox(path: Path, *sinks: str, **kwargs: Any) -> tuple[Outbox, Metrics]:
    metrics = Metrics(CollectorRegistry())
    options: dict[str, Any] = {"instance_id": "capgate-0", "max_bytes": 1 << 30}
    options.update(kwargs)
    outbox = Outbox.open(
        path, sink_names=sinks or ("siem",), clock=SystemClock(), metrics=metrics, **options
    )
    return outbox, metrics


def rows(path: Path) -> list[dict[str, Any]]:
    """Every stored event, parsed, read with a separate connection."""
    with sqlite3.connect(path) as db:
        return [json.loads(b) for (b,) in db.execute("SELECT body FROM events ORDER BY seq")]


def assert_chain(events: list[dict[str, Any]]) -> None:
    """Each hash recomputes, seq goes up by one, prev_hash names the previous hash."""
    for event in events:
        assert event_hash(event) == event["hash"]
    for before, after in itertools.pairwise(events):
        assert after["seq"] == before["seq"] + 1
        assert after["prev_hash"] == before["hash"]


CHILD = textwrap.dedent(
    """
    import sys, time
    from prometheus_client import CollectorRegistry
    from capgate.clock import SystemClock
    from capgate.events.outbox import Outbox
    from capgate.observability.metrics import Metrics

    path, n = sys.argv[1], int(sys.argv[2])
    outbox = Outbox.open(path, instance_id="capgate-0", max_bytes=1 << 30,
                         sink_names=["siem"], clock=SystemClock(),
                         metrics=Metrics(CollectorRegistry()))
    for i in range(1, n + 1):
        outbox.append({"event_type": "decision", "event_id": f"event-{i}", "n": i})
    print(f"appended {n}", flush=True)
    time.sleep(60)
    """
)


def test_appends_survive_a_sigkill(tmp_path: Path) -> None:
    path, n = tmp_path / "outbox.db", 300
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(n)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == f"appended {n}"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert Path(f"{path}-wal").stat().st_size > 0  # never checkpointed: only in the WAL

    stored = rows(path)
    assert [e["n"] for e in stored] == list(range(1, n + 1))
    assert stored[0]["prev_hash"] == GENESIS_HASH
    assert_chain(stored)

    outbox, _ = open_outbox(path)
    try:
        assert (outbox.head_seq, outbox.head_hash) == (n, stored[-1]["hash"])
        after = json.loads(outbox.append(make_event(n + 1)).body)
        assert (after["seq"], after["prev_hash"]) == (n + 1, stored[-1]["hash"])
    finally:
        outbox.close()


def test_the_chain_holds_and_belongs_to_one_instance(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox, metrics = open_outbox(path)
    stored = [outbox.append(make_event(n, pad=n)) for n in range(1, 51)]
    assert [s.seq for s in stored] == list(range(1, 51))
    assert stored[0].event_id == "event-1"
    assert stored[0].time == datetime(2026, 11, 21, 19, 14, 47, 859988, UTC).timestamp()
    assert metrics.outbox_events._value.get() == 50
    assert metrics.outbox_bytes._value.get() == sum(len(s.body) for s in stored)
    with pytest.raises(OutboxError, match="in use"):
        open_outbox(path)  # one process per file, and here a second opener
    outbox.close()

    events = rows(path)
    assert events[0]["prev_hash"] == GENESIS_HASH
    assert {e["instance_id"] for e in events} == {"capgate-0"}
    assert_chain(events)

    with pytest.raises(ValueError, match="capgate-1"):
        open_outbox(path, instance_id="capgate-1")
    outbox, _ = open_outbox(path)  # the refused open released the file
    assert outbox.append(make_event(51)).seq == 51
    outbox.close()
    assert_chain(rows(path))


def row(path: Path, seq: int) -> dict[str, Any]:
    with sqlite3.connect(path) as db:
        (body,) = db.execute("SELECT body FROM events WHERE seq = ?", (seq,)).fetchone()
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def test_at_the_cap_the_oldest_go_and_a_gap_event_names_them(tmp_path: Path) -> None:
    path, cap = tmp_path / "outbox.db", 20_000
    outbox, metrics = open_outbox(path, "a", "b", max_bytes=cap, new_id=lambda: "gap-id")
    hashes: dict[int, str] = {}
    gaps: list[dict[str, Any]] = []
    at_cap_before_first_drop = False
    for n in range(1, 301):
        if n == 10:
            outbox.ack("a", 5)  # sink a has 1..5, b nothing: all still stored
        dropped_before = metrics.outbox_dropped._value.get()
        stored = outbox.append(make_event(n, pad=150))
        hashes[stored.seq] = json.loads(stored.body)["hash"]
        if metrics.outbox_dropped._value.get() > dropped_before:
            gap = row(path, stored.seq - 1)  # sealed just before the event that needed room
            hashes[gap["seq"]] = gap["hash"]
            gaps.append(gap)
            to_seq = gap["dropped"]["to_seq"]
            assert outbox.cursor("a") >= to_seq and outbox.cursor("b") >= to_seq
        elif not gaps:
            at_cap_before_first_drop |= outbox.at_cap
        assert metrics.outbox_bytes._value.get() <= cap
        assert n > 1 or not outbox.at_cap
    assert at_cap_before_first_drop and outbox.at_cap

    assert len(gaps) > 3
    assert gaps[0]["dropped"]["from_seq"] == 1
    for gap in gaps:
        assert gap["event_type"] == "gap" and gap["event_id"] == "gap-id"
        assert gap["schema_version"] == "capgate.decision_event.v1"
        dropped = gap["dropped"]
        assert dropped["count"] == dropped["to_seq"] - dropped["from_seq"] + 1
        assert dropped["last_hash"] == hashes[dropped["to_seq"]]
    for before, after in itertools.pairwise(gaps):
        # each drop starts where the last ended; an announcement that was itself dropped
        # is carried by the next gap, whose range then reaches back to cover it
        assert after["dropped"]["from_seq"] <= before["dropped"]["to_seq"] + 1
    announced = set().union(
        *(range(g["dropped"]["from_seq"], g["dropped"]["to_seq"] + 1) for g in gaps)
    )
    assert announced == set(range(1, gaps[-1]["dropped"]["to_seq"] + 1))
    assert len(announced) == metrics.outbox_dropped._value.get()  # b never acked: all dropped

    events = rows(path)
    assert_chain(events)
    last = gaps[-1]["dropped"]
    assert events[0]["seq"] == last["to_seq"] + 1
    assert events[0]["prev_hash"] == last["last_hash"]  # the gap bridges the hole
    assert outbox.read("b", 1)[0].seq == events[0]["seq"]
    # what the lagging sink b gets verifies: every hole it sees is announced
    report = verify_log(e.body for e in outbox.read("b", 10_000))
    assert report.ok, report.summary()
    outbox.close()


def test_cursors_are_per_sink_and_rows_go_when_every_sink_passed(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox, metrics = open_outbox(path, "a", "b")
    for n in range(1, 21):
        outbox.append(make_event(n))
    assert [e.seq for e in outbox.read("a", 10)] == list(range(1, 11))
    outbox.ack("a", 10)
    assert len(rows(path)) == 20  # b has nothing yet
    assert outbox.oldest_unacknowledged_time("a") is not None
    outbox.ack("b", 5)
    assert [e["seq"] for e in rows(path)] == list(range(6, 21))
    assert metrics.outbox_events._value.get() == 15
    outbox.ack("a", 3)  # older than the cursor: ignored
    assert outbox.cursor("a") == 10
    with pytest.raises(ValueError):
        outbox.ack("a", 21)
    outbox.close()

    # Restart: each sink resumes at its cursor; a new sink gets what is stored; a sink
    # no longer configured loses its cursor (and holds nothing back).
    outbox, _ = open_outbox(path, "a", "c")
    assert [e.seq for e in outbox.read("a", 100)] == list(range(11, 21))
    assert [e.seq for e in outbox.read("c", 100)] == list(range(6, 21))
    outbox.ack("c", 20)
    assert [e["seq"] for e in rows(path)] == list(range(11, 21))
    outbox.ack("a", 20)
    assert rows(path) == [] and outbox.oldest_unacknowledged_time("a") is None
    outbox.close()

    outbox, _ = open_outbox(path, "a", "c")  # no rows left: the head is in meta
    assert outbox.head_seq == 20 and outbox.append(make_event(21)).seq == 21
    assert json.loads(outbox.read("a", 1)[0].body)["prev_hash"] != GENESIS_HASH
    outbox.close()


def test_checkpoints_are_sealed_into_the_chain_when_due(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    checkpointer = Checkpointer(key, every_events=4, every_seconds=3600, instance_id="capgate-0")
    outbox, _ = open_outbox(
        tmp_path / "outbox.db", checkpointer=checkpointer, new_id=lambda: "checkpoint-id"
    )
    stored = [outbox.append(make_event(n)) for n in range(1, 9)]
    events = [json.loads(e.body) for e in outbox.read("siem", 100)]
    outbox.close()
    assert_chain(events)
    assert [e["event_type"] for e in events].count("checkpoint") == 2
    assert [s.seq for s in stored] == [1, 2, 3, 4, 6, 7, 8, 9]  # 5 is a checkpoint
    checkpoint = events[4]
    assert checkpoint["head"] == {"instance_id": "capgate-0", "seq": 4, "hash": events[3]["hash"]}
    assert verify_head(key.public_key(), checkpoint["head"], checkpoint["signature"])


async def test_a_long_backlog_is_deleted_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox, metrics = open_outbox(path)
    for n in range(1, 1301):
        outbox.append(make_event(n))
    outbox.ack("siem", 1300)  # the event loop deletes one chunk now...
    assert len(rows(path)) == 1300 - 512
    task = asyncio.create_task(outbox.run_fsync(0.01))  # ...the fsync task the rest
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rows(path) == []
    assert metrics.outbox_events._value.get() == 0 == metrics.outbox_bytes._value.get()
    assert metrics.outbox_dropped._value.get() == 0
    outbox.close()


def test_delivered_rows_left_to_delete_are_not_drops_at_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox, metrics = open_outbox(path, max_bytes=400_000)  # ~820 events
    for n in range(1, 801):
        outbox.append(make_event(n, pad=150))
    outbox.ack("siem", 800)  # 512 deleted now, 288 delivered rows left
    for n in range(801, 1501):
        outbox.append(make_event(n, pad=150))
    assert metrics.outbox_dropped._value.get() == 0
    events = rows(path)
    assert [e["seq"] for e in events] == list(range(801, 1501))
    assert not any(e["event_type"] == "gap" for e in events)
    outbox.close()


async def test_the_fsync_task_counts_fsyncs_and_keeps_its_interval(tmp_path: Path) -> None:
    outbox, metrics = open_outbox(tmp_path / "outbox.db")
    interval = 0.05
    task = asyncio.create_task(outbox.run_fsync(interval))
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < 0.5:
        outbox.append(make_event(1))
        await asyncio.sleep(0.005)
    elapsed = loop.time() - started
    fsyncs = metrics.outbox_fsyncs._value.get()
    assert 1 <= fsyncs <= elapsed / interval + 1
    await asyncio.sleep(3 * interval)  # nothing written: nothing to fsync
    assert metrics.outbox_fsyncs._value.get() <= fsyncs + 1
    quiet = metrics.outbox_fsyncs._value.get()
    await asyncio.sleep(3 * interval)
    assert metrics.outbox_fsyncs._value.get() == quiet
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    outbox.close()
