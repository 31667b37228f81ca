"""What one policy decision costs, by engine, as bundle data grows (issue: engine cost).

Engines, on the same bundle and the same inputs:
  - ``embedded``: ``EmbeddedEngine(load_bundle(path)).decide(input)``, in process
    (rego-cpp through regopy);
  - ``opa_http``: ``OpaEngine.decide`` (opa-python-client) against a real
    ``opa run --server --bundle PATH`` on 127.0.0.1;
  - ``opa_unix``: the same against an OPA listening on a Unix socket.
Bundles: ``bundles/default`` plus, for each size N, N synthetic tenants (budgets and
rate limits), N synthetic capabilities and an allowlist of N payees (``facts.payees``,
read by a ``send_payment`` capability as in ``bundles/agentdojo-banking``). The
synthetic entries come first in the data, so an engine that looks keys up one by one
walks past all of them. Inputs hit real rules: refunds under and over the approval
threshold and over the limit (tenant ``acme``, listed last), a deploy to staging, an
unknown capability, payments to a new and to a known payee (tenant ``globex``, not
listed). Every engine's decision is checked against the expected effect and the
embedded engine's result before anything is timed.

Latency is sequential (one call in flight), from the caller: rounds go over every
engine, size and input in turn, so machine noise falls on all cells alike.

    .venv/bin/python bench/engines.py [--sizes 10,100,1000,10000] [--rounds 40]
                                      [--out bench/results/engines.json]

Prints one JSON document: per engine and size, p50/p99/mean microseconds per decision
and per-input p50, and the growth of p50 and mean from the smallest size to each other.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import regopy
import uvloop
import yaml
from google.protobuf import json_format

from capgate.api.convert import authorize_request
from capgate.local.opa_server import OpaServer
from capgate.policy.bundle import load_bundle
from capgate.policy.embedded import EmbeddedEngine
from capgate.policy.input import build_input
from capgate.policy.opa import OpaEngine
from capgate.v1 import authorization_service_pb2

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "bundles" / "default"
OPA = ROOT / ".tools" / "bin" / "opa"
ENGINES = ("embedded", "opa_http", "opa_unix")
KNOWN_PAYEE = "CH9300762011623852957"


def request(tenant: str, capability: str, tool: str, **fields: Any) -> dict[str, Any]:
    """The input document the sidecar builds for this AuthorizeRequest (proto3 JSON
    fields): capgate.api.convert, then capgate.policy.input.build_input."""
    principal = fields.pop("principal", {"id": "agent-1", "scopes": ["refunds:write"]})
    message = json_format.ParseDict(
        {
            "tenant_id": tenant,
            "principal": principal,
            "capability": capability,
            "tool": tool,
            "idempotency_key": "k-1",
            **fields,
        },
        authorization_service_pb2.AuthorizeRequest(),
    )
    return build_input(
        authorize_request(message),
        identity={"method": "insecure", "principal_id": principal["id"]},
        request_time=datetime(2026, 1, 1, tzinfo=UTC),
    )


def refund(amount: float) -> dict[str, Any]:
    run = {"run_id": "run-1", "workflow": "refund_request"}
    parameters = {"amount_usd": amount, "customer_tier": "pro", "reason": "damaged item"}
    return request("acme", "issue_refund", "payments.create_refund", run=run, parameters=parameters)


DEPLOYER = {"id": "deploy-agent", "scopes": ["deploy:write"]}
PAYER = {"id": "pay-agent", "scopes": ["payments:write"]}
# name -> (input, expected effect)
INPUTS: dict[str, tuple[dict[str, Any], str]] = {
    "refund_30_allow": (refund(30), "allow"),
    "refund_60_approval": (refund(60), "require_approval"),
    "refund_250_deny": (refund(250), "deny"),
    "deploy_staging_approval": (
        request(
            "globex",
            "deploy_service",
            "cicd.trigger_deploy",
            principal=DEPLOYER,
            parameters={"environment": "staging"},
        ),
        "require_approval",
    ),
    "unknown_capability_deny": (
        request("globex", "drop_database", "db.drop", parameters={"name": "prod"}),
        "deny",
    ),
    "payment_new_payee_approval": (
        request(
            "globex",
            "send_payment",
            "bank.send_money",
            principal=PAYER,
            parameters={"recipient": "US122000000121212121212", "amount": 10},
        ),
        "require_approval",
    ),
    "payment_known_payee_allow": (
        request(
            "globex",
            "send_payment",
            "bank.send_money",
            principal=PAYER,
            parameters={"recipient": KNOWN_PAYEE, "amount": 10},
        ),
        "allow",
    ),
}


def grown_data(base: dict[str, Any], n: int) -> dict[str, Any]:
    """``bundles/default`` data plus n synthetic tenants, capabilities and payees, each
    map with the synthetic entries first and the real ones (``acme``, the seed's
    capabilities, the known payee) after them."""
    capgate = dict(base["capgate"])
    budget = {"scope": "tenant", "window": "30d", "limit_usd_micros": 10**12}
    limit = {"key": "principal", "limit": 10**6, "period_seconds": 1}
    tenants = {
        f"tenant-{i:05d}": {"budgets": [budget], "rate_limits": [limit]} for i in range(n - 1)
    }
    capgate["tenants"] = {**tenants, "acme": {"budgets": [budget], "rate_limits": [limit]}}
    synthetic = {
        f"crm.update_{i:05d}": {
            "class": "write",
            "tools": [f"crm.update_record_{i:05d}"],
            "required_scopes": ["crm:write"],
            "require": [{"param": "record_id", "op": "present", "code": "RECORD_REQUIRED"}],
        }
        for i in range(n)
    }
    payment = {
        "tools": ["bank.send_money"],
        "required_scopes": ["payments:write"],
        "requires_approval_if": [
            {"param": "recipient", "op": "not_in", "value_from": "payees", "code": "NEW_PAYEE"}
        ],
    }
    capgate["capabilities"] = {**synthetic, **capgate["capabilities"], "send_payment": payment}
    payees = [f"GB{i:02d}NWBK6016133192{i:05d}" for i in range(n - 1)]
    capgate["facts"] = {"payees": [*payees, KNOWN_PAYEE]}
    return {**base, "capgate": capgate}


def write_bundle(tmp: Path, n: int) -> Path:
    """A copy of ``bundles/default`` whose data (``data.json``) is :func:`grown_data`."""
    bundle = Path(shutil.copytree(BUNDLE, tmp / f"bundle-{n}"))
    data = yaml.safe_load((bundle / "data.yaml").read_text())
    (bundle / "data.yaml").unlink()
    (bundle / "data.json").write_text(json.dumps(grown_data(data, n)))
    return bundle


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_us": round(statistics.median(ordered), 1),
        "p99_us": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
        "mean_us": round(statistics.fmean(ordered), 1),
    }


async def measure(sizes: list[int], rounds: int, tmp: Path) -> dict[str, Any]:
    """Start every engine for every size, check their decisions, then time them."""
    calls: dict[tuple[str, int], Callable[[dict[str, Any]], Awaitable[Any]]] = {}
    with contextlib.ExitStack() as servers:
        opas: list[OpaEngine] = []
        for n in sizes:
            bundle = write_bundle(tmp, n)
            calls["embedded", n] = EmbeddedEngine(load_bundle(bundle)).decide
            for name, socket in (("opa_http", None), ("opa_unix", tmp / f"opa-{n}.sock")):
                server = servers.enter_context(OpaServer(OPA, bundle, socket_path=socket))
                opa = OpaEngine(server.url, timeout_seconds=10.0)
                await opa.start()
                opas.append(opa)
                calls[name, n] = opa.decide
        try:
            for (engine, n), call in calls.items():
                await check(engine, n, call, calls["embedded", n])
            samples = await timed(calls, rounds)
        finally:
            for opa in opas:
                await opa.aclose()
    return report(samples, sizes)


async def check(
    engine: str,
    n: int,
    call: Callable[..., Awaitable[Any]],
    reference: Callable[..., Awaitable[Any]],
) -> None:
    """Each input's decision has the expected effect and equals the embedded one."""
    for name, (doc, effect) in INPUTS.items():
        result = (await call(doc)).result
        want = (await reference(doc)).result
        if result.effect != effect or result != want:
            raise SystemExit(f"{engine} at {n} entries, {name}: {result} (want {effect})")


async def timed(
    calls: dict[tuple[str, int], Callable[..., Awaitable[Any]]], rounds: int
) -> dict[tuple[str, int, str], list[float]]:
    """Microseconds per call, rounds over every engine, size and input in turn."""
    for call in calls.values():  # warm up: connections, allocator, CPU caches
        for doc, _ in INPUTS.values():
            for _ in range(5):
                await call(doc)
    samples: dict[tuple[str, int, str], list[float]] = {}
    clock = time.perf_counter
    for _ in range(rounds):
        for (engine, n), call in calls.items():
            for name, (doc, _) in INPUTS.items():
                for _ in range(3):
                    started = clock()
                    await call(doc)
                    samples.setdefault((engine, n, name), []).append((clock() - started) * 1e6)
    return samples


def report(samples: dict[tuple[str, int, str], list[float]], sizes: list[int]) -> dict[str, Any]:
    engines: dict[str, Any] = {}
    for engine in ENGINES:
        by_size: dict[str, Any] = {}
        for n in sizes:
            cell = [
                s for (e, m, _), values in samples.items() if (e, m) == (engine, n) for s in values
            ]
            by_input = {
                name: round(statistics.median(samples[engine, n, name]), 1) for name in INPUTS
            }
            by_size[str(n)] = {**summary(cell), "p50_us_by_input": by_input}
        low = by_size[str(sizes[0])]
        engines[engine] = {
            "by_data_size": by_size,
            # p50 and mean at each size over those at the smallest one
            f"growth_from_{sizes[0]}": {
                str(n): {
                    "p50": round(by_size[str(n)]["p50_us"] / low["p50_us"], 2),
                    "mean": round(by_size[str(n)]["mean_us"] / low["mean_us"], 2),
                }
                for n in sizes[1:]
            },
        }
    return engines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", default="10,100,1000,10000", help="entries per map, comma-separated"
    )
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "engines.json")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    with (
        tempfile.TemporaryDirectory(prefix="capgate-engines-") as tmp,
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        engines = runner.run(measure(sizes, args.rounds, Path(tmp)))
    opa_version = subprocess.run(
        [str(OPA), "version"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]
    result = {
        "benchmark": "engine_cost_per_decision",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "regopy": regopy.__version__,
            "opa": opa_version,
        },
        "setup": "bundles/default plus N synthetic tenants, N capabilities and N payees "
        "(synthetic entries first); sequential calls (one in flight) from one uvloop "
        "process; OPA engines through capgate.policy.opa.OpaEngine (opa-python-client), "
        "one `opa run --server` per engine and size, on the caller's machine",
        "inputs": {name: effect for name, (_, effect) in INPUTS.items()},
        "samples_per_cell": args.rounds * 3 * len(INPUTS),
        "engines": engines,
    }
    text = json.dumps(result, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
