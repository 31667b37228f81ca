"""Decision cases as data (tests/cases/*.yaml), run through the real gRPC API.

Every case runs twice: on a capgate with the embedded engine (rego-cpp), and on one
with ``--engine opa`` deciding through a real ``opa run --server`` on the same bundle.
Each step asserts the response, the decision-log line, the run's counters in Redis,
and that the other engine decides the same on the logged input: `opa eval` against
the embedded engine, the embedded engine against the OPA server.
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import redis.asyncio
import yaml

from capgate.budget.keys import run_usage_key
from capgate.policy.bundle import load_bundle
from capgate.policy.embedded import EmbeddedEngine
from capgate.policy.opa import OpaEngine
from capgate_client import AsyncClient, AuthorizeResult
from tests.conftest import DEFAULT_BUNDLE, OpaEval, RunningCapgate

CASES_DIR = Path(__file__).resolve().parent.parent / "cases"
SCHEMA = json.loads((CASES_DIR / "schema.json").read_text())


def _load(name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    document = yaml.safe_load((CASES_DIR / name).read_text())
    jsonschema.validate(document, SCHEMA)
    return document["defaults"], document["cases"]


DEFAULTS, CASES = _load("default_bundle.yaml")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _client_kwargs(request: dict[str, Any], run_id: str) -> dict[str, Any]:
    principal, run = request.get("principal", {}), request.get("run", {})
    cost = request.get("estimated_cost", {})
    key = request.get("idempotency_key", f"call-{uuid.uuid4()}")
    return {
        "tenant_id": request["tenant_id"],
        "principal_id": principal["id"],
        "scopes": principal.get("scopes", []),
        "capability": request["capability"],
        "tool": request.get("tool", ""),
        "parameters": {k: v for k, v in request.get("parameters", {}).items() if v is not None},
        "run_id": run.get("run_id", run_id),
        "workflow": run.get("workflow", ""),
        "estimated_cost_usd_micros": cost.get("usd_micros", 0),
        "idempotency_key": key or "",
        "dry_run": request.get("dry_run", False),
    }


@pytest.fixture(params=["embedded", "opa"])
def engine_capgate(request: pytest.FixtureRequest) -> RunningCapgate:
    """The session capgate of each engine: ``capgate`` or ``capgate_opa``."""
    name = "capgate" if request.param == "embedded" else "capgate_opa"
    running: RunningCapgate = request.getfixturevalue(name)
    return running


@pytest.fixture(scope="module")
def embedded_engine() -> EmbeddedEngine:
    """The default bundle compiled by rego-cpp, to check the OPA server's answers."""
    return EmbeddedEngine(load_bundle(DEFAULT_BUNDLE))


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
async def test_case(
    case: dict[str, Any],
    engine_capgate: RunningCapgate,
    opa_eval: OpaEval,
    embedded_engine: EmbeddedEngine,
    redis_client: redis.asyncio.Redis,
) -> None:
    capgate = engine_capgate
    run_id = f"case-{uuid.uuid4()}"
    async with AsyncClient(capgate.target) as client:
        for step in case["steps"]:
            request = _merge(DEFAULTS, step["request"])
            for _ in range(step.get("repeat", 1)):
                kwargs = _client_kwargs(request, run_id)
                result = await client.authorize(**kwargs)
                _assert_response(result, step["expect"])
                await _assert_logged(capgate, result, kwargs)
                await _assert_engines_agree(capgate, opa_eval, embedded_engine, result)
            if "run_usage" in step["expect"]:
                key = run_usage_key(kwargs["tenant_id"], kwargs["run_id"])
                usage = await redis_client.hgetall(key)
                for unit, expected in step["expect"]["run_usage"].items():
                    assert int(usage.get(unit.encode(), 0)) == expected, (unit, usage)


def _assert_response(result: AuthorizeResult, expect: dict[str, Any]) -> None:
    assert result.effect == expect["effect"], result.reasons
    assert sorted(result.reason_codes) == sorted(expect["reasons"])
    assert all(r.message for r in result.reasons)
    assert result.policy_revision == "default-2026.11.21-1"
    for expected, actual in zip(expect.get("budgets", []), result.budgets, strict=False):
        for field, value in expected.items():
            assert getattr(actual, field) == value, (field, actual)
    if "budgets" in expect:
        assert len(result.budgets) == len(expect["budgets"])
    if "obligations" in expect:
        assert [o["type"] for o in result.obligations] == expect["obligations"]
    if "approver_roles" in expect:
        assert list(result.approver_roles) == expect["approver_roles"]
        assert result.min_approvals >= 1


async def _assert_logged(
    capgate: RunningCapgate, result: AuthorizeResult, sent: dict[str, Any]
) -> None:
    event = await capgate.event_for(result.decision_id)
    assert uuid.UUID(event["event_id"]).version == 7
    assert event["event_type"] == "decision"
    assert event["effect"] == result.effect.lower()
    assert [r["code"] for r in event["reasons"]] == list(result.reason_codes)
    assert event["tenant_id"] == sent["tenant_id"]
    assert event["principal"]["id"] == sent["principal_id"]
    assert event["capability"] == sent["capability"]
    assert event["tool"] == sent["tool"]
    assert event["run"]["run_id"] == sent["run_id"]
    assert event["policy_revision"] == result.policy_revision
    assert event["dry_run"] == sent["dry_run"]
    assert event["input"].get("parameters", {}) == sent["parameters"]
    assert event["time"].endswith("Z")
    assert event["latency_ms"]["total"] > 0


async def _assert_engines_agree(
    capgate: RunningCapgate,
    opa_eval: OpaEval,
    embedded_engine: EmbeddedEngine,
    result: AuthorizeResult,
) -> None:
    """The raw decision of the engine that answered equals the other engine's."""
    input_document = (await capgate.event_for(result.decision_id))["input"]
    engine = capgate.app.policy.engine
    if isinstance(engine, OpaEngine):
        assert await engine.query(input_document) == embedded_engine.query(input_document)
    else:
        assert isinstance(engine, EmbeddedEngine)
        assert engine.query(input_document) == opa_eval.decide(input_document)


def test_case_file_rejects_unknown_expectations() -> None:
    broken = {
        "defaults": {},
        "cases": [
            {
                "name": "x",
                "steps": [{"request": {}, "expect": {"effect": "ALLOW", "reasons": [], "typo": 1}}],
            }
        ],
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)
