"""The AgentDojo bundles: least privilege without naming the attacks, and the same
decisions in the embedded engine as in OPA for every call of the workload."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from capgate.api.convert import authorize_request as to_domain
from capgate.policy.bundle import load_bundle
from capgate.policy.embedded import EmbeddedEngine
from capgate.policy.input import build_input
from capgate.replay.agentdojo import SUITES, authorize_request, bundle_path
from capgate.replay.workload import Call, TaskKind, load_workload
from tests.conftest import ROOT

WORKLOAD = ROOT / "workloads" / "agentdojo-v1.2.jsonl"
BUNDLES = ROOT / "bundles"
# Values an injection task names that are facts of the user's own environment, not
# the attacker's: what the attack searches for, or the user data it leaks.
ENVIRONMENT_FACTS = {
    "lily.white@gmail.com",  # workspace inbox: sender of the "Birthday Party" e-mail
    "security@facebook.com",  # workspace inbox: sender of the security-code e-mail
    "se3550000000054910000003",  # banking: the Spotify standing order's payee, leaked
}
# Tokens worth looking for inside longer strings: e-mail addresses, web hosts, IBANs.
TOKEN = re.compile(
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|(?:https?://)?(?:www\.)?[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|io)\b"
    r"|\b[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}\b",
    re.IGNORECASE,
)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _values(calls: list[Call]) -> tuple[set[str], set[str]]:
    """(whole string values, tokens found in them), lower-cased."""
    whole = {s.lower() for call in calls for s in _strings(dict(call.args))}
    tokens = {t.lower() for s in whole for t in TOKEN.findall(s)}
    return whole, tokens


@pytest.fixture(scope="module")
def calls() -> tuple[Call, ...]:
    return load_workload(WORKLOAD)


@pytest.mark.parametrize("suite", SUITES)
def test_no_bundle_names_a_value_taken_from_an_injection_task(
    suite: str, calls: tuple[Call, ...]
) -> None:
    suite_calls = [c for c in calls if c.suite == suite]
    user_whole, user_tokens = _values([c for c in suite_calls if c.kind is TaskKind.USER])
    inj_whole, inj_tokens = _values([c for c in suite_calls if c.kind is TaskKind.INJECTION])
    attacker_whole = {v for v in inj_whole - user_whole - ENVIRONMENT_FACTS if len(v) >= 4}
    attacker_tokens = inj_tokens - user_tokens - ENVIRONMENT_FACTS
    assert attacker_tokens, "the injection tasks name addresses, IBANs or URLs of their own"

    bundle = bundle_path(BUNDLES, suite)
    data = yaml.safe_load((bundle / "data.yaml").read_text())
    data_strings = {s.lower() for s in _strings(data)}
    assert not attacker_whole & data_strings
    texts = [(bundle / "data.yaml").read_text().lower()] + [
        p.read_text().lower() for p in bundle.rglob("*.rego")
    ]
    named = {t for t in attacker_tokens for text in texts if t in text}
    assert not named, f"{bundle.name} names values taken from injection tasks: {sorted(named)}"


@pytest.mark.parametrize("suite", SUITES)
def test_every_workload_function_is_a_defined_capability(
    suite: str, calls: tuple[Call, ...]
) -> None:
    data = yaml.safe_load((bundle_path(BUNDLES, suite) / "data.yaml").read_text())
    capabilities = data["capgate"]["capabilities"]
    for call in (c for c in calls if c.suite == suite):
        definition = capabilities.get(f"{suite}.{call.function}")
        assert definition is not None, f"{suite}.{call.function} is not defined"
        assert definition["tools"] == [call.function]
        assert definition["workflows"] == [suite]


@dataclass(frozen=True)
class SuiteDecisions:
    """Every workload call of one suite, its policy input, and the embedded decision."""

    bundle: Path
    calls: list[Call]
    documents: list[dict[str, Any]]
    embedded: list[Any]


@pytest.fixture(scope="module")
def decided(calls: tuple[Call, ...]) -> dict[str, SuiteDecisions]:
    """Per suite: each call's input as the sidecar builds it (fixed time and key), and
    the embedded engine's decision on it, computed once for the tests below."""
    at = datetime(2026, 11, 21, tzinfo=UTC)
    result = {}
    for suite in SUITES:
        suite_calls = [c for c in calls if c.suite == suite]
        documents = [
            build_input(
                to_domain(authorize_request(call, idempotency_key=f"key-{i}")),
                identity={"method": "insecure"},
                request_time=at,
            )
            for i, call in enumerate(suite_calls)
        ]
        bundle = bundle_path(BUNDLES, suite)
        engine = EmbeddedEngine(load_bundle(bundle))
        embedded = [engine.query(doc) for doc in documents]
        result[suite] = SuiteDecisions(bundle, suite_calls, documents, embedded)
    return result


def _opa_decisions(opa: Path, bundle: Path, documents: list[dict[str, Any]]) -> list[Any]:
    """data.capgate.authz.decision for each document, from one `opa eval`."""
    query = "[d | some doc in input.documents; d := data.capgate.authz.decision with input as doc]"
    proc = subprocess.run(
        [str(opa), "eval", "--bundle", str(bundle), "--stdin-input", "--format", "json", query],
        input=json.dumps({"documents": documents}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["result"][0]["expressions"][0]["value"]


@pytest.mark.opa
@pytest.mark.parametrize("suite", SUITES)
def test_embedded_engine_decides_every_call_as_opa(
    suite: str, decided: dict[str, SuiteDecisions], opa_binary: Path
) -> None:
    d = decided[suite]
    expected = _opa_decisions(opa_binary, d.bundle, d.documents)
    assert len(expected) == len(d.calls)
    differ = [
        (c.task_id, c.step, c.function, e, o)
        for c, e, o in zip(d.calls, d.embedded, expected, strict=True)
        if e != o
    ]
    assert not differ, differ[:3]
    # Not a vacuous comparison: the suite's calls get more than one effect.
    assert len({x["effect"] for x in expected}) >= 2


@pytest.mark.parametrize("suite", SUITES)
def test_user_tasks_run_to_the_end_without_a_deny_once_approved(
    suite: str, decided: dict[str, SuiteDecisions]
) -> None:
    """The demo stops a run at its first REQUIRE_APPROVAL. Granting it, the rest of the
    run's calls are allowed or asked about again, never denied: the policy, evaluated
    on every call of every user task (run limits aside, they are far above)."""
    d = decided[suite]
    denied = [
        (c.task_id, c.step, c.function, [r["code"] for r in x["reasons"]])
        for c, x in zip(d.calls, d.embedded, strict=True)
        if c.kind is TaskKind.USER and x["effect"] == "deny"
    ]
    assert not denied
