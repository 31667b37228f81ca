"""Human approvals in the default bundle: the policy's ``approved`` rule, decided the
same by the embedded engine (rego-cpp through regopy) as by the pinned OPA.

The sidecar puts ``input.approval`` in the policy input only once it has verified
the approval (tenant, state, expiry, single use, binding to principal, capability,
tool and canonical parameters). The policy then counts the distinct approvers that
hold one of the bundle's current ``approval.approver_roles`` against its own
``approval.min_approvals``. The documents below are built by hand, as the sidecar
builds them: proto3 JSON with fields at their default value left out.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from capgate.decision.model import Effect
from capgate.policy.bundle import load_bundle
from capgate.policy.embedded import EmbeddedEngine
from tests.conftest import DEFAULT_BUNDLE

FACTS: dict[str, Any] = {
    "identity": {"method": "insecure"},
    "tenant_mode": "normal",
    "request_time": "2026-01-01T00:00:00.000000Z",
}
REFUND_REASONS = ["REFUND_OVER_APPROVAL_THRESHOLD", "REFUND_AMOUNT_NEEDS_APPROVAL"]
REFUND_APPROVER = {"principal_id": "bob", "roles": ["refund-approver"]}
RELEASE_MANAGER_1 = {"principal_id": "carol", "roles": ["release-manager"]}
RELEASE_MANAGER_2 = {"principal_id": "dave", "roles": ["sre", "release-manager"]}


def refund(amount_usd: float, **extra: Any) -> dict[str, Any]:
    """An issue_refund call inside the refund_request workflow, as the sidecar sends it."""
    return {
        "tenant_id": "acme",
        "principal": {"id": "refund-agent", "on_behalf_of": "user-42", "scopes": ["refunds:write"]},
        "capability": "issue_refund",
        "tool": "payments.create_refund",
        "parameters": {"amount_usd": amount_usd, "reason": "damaged item"},
        "run": {"run_id": "run-1", "workflow": "refund_request"},
        "idempotency_key": "rf-1",
        **extra,
        **FACTS,
    }


def deploy(environment: str, **extra: Any) -> dict[str, Any]:
    return {
        "tenant_id": "acme",
        "principal": {"id": "deploy-agent", "scopes": ["deploy:write"]},
        "capability": "deploy_service",
        "tool": "cicd.trigger_deploy",
        "parameters": {"environment": environment},
        "idempotency_key": "dp-1",
        **extra,
        **FACTS,
    }


def approval(
    approvers: list[dict[str, Any]], *, state: str = "approved", **record: Any
) -> dict[str, Any]:
    """``input.approval`` as the sidecar sets it (record fields may be overridden)."""
    fact: dict[str, Any] = {
        "approval_id": "0193a0b0-0000-7000-8000-000000000001",
        "state": state,
        "approvers": approvers,
        "approver_roles": ["refund-approver"],
        "min_approvals": 1,
    }
    fact.update(record)
    return fact


@dataclass(frozen=True)
class Case:
    name: str
    document: dict[str, Any]
    effect: str
    reasons: list[str]


CASES = [
    Case("refund $60 without an approval", refund(60), "require_approval", REFUND_REASONS),
    Case(
        "refund $60 approved by a refund-approver",
        refund(60, approval_id="a-1", approval=approval([REFUND_APPROVER])),
        "allow",
        [],
    ),
    Case(
        "refund $60: the approvers lack the role",
        refund(
            60,
            approval=approval(
                [{"principal_id": "eve", "roles": ["support-lead"]}, {"principal_id": "mal"}]
            ),
        ),
        "require_approval",
        REFUND_REASONS,
    ),
    Case(
        "refund $60: the record's roles do not override the bundle's",
        refund(
            60,
            approval=approval(
                [{"principal_id": "vic", "roles": ["viewer"]}], approver_roles=["viewer"]
            ),
        ),
        "require_approval",
        REFUND_REASONS,
    ),
    Case(
        "refund $60: an approval with no approvers",
        refund(60, approval=approval([])),
        "require_approval",
        REFUND_REASONS,
    ),
    *(
        Case(
            f"refund $60: approval in state {state!r}",
            refund(60, approval=approval([REFUND_APPROVER], state=state)),
            "require_approval",
            REFUND_REASONS,
        )
        for state in ("pending", "rejected", "expired", "consumed", "APPROVED")
    ),
    Case(
        "refund $30 (needs no approval) with an approval",
        refund(30, approval=approval([REFUND_APPROVER])),
        "allow",
        [],
    ),
    Case(
        "refund $250 approved: deny wins",
        refund(250, approval=approval([REFUND_APPROVER])),
        "deny",
        ["AMOUNT_OVER_LIMIT"],
    ),
    Case(
        "refund $60 for a forbidden reason, approved: deny wins",
        {
            **refund(60, approval=approval([REFUND_APPROVER])),
            "parameters": {"amount_usd": 60, "reason": "Suspected FRAUD"},
        },
        "deny",
        ["REASON_NOT_ALLOWED"],
    ),
    Case(
        "deploy to staging without an approval",
        deploy("staging"),
        "require_approval",
        ["APPROVAL_REQUIRED"],
    ),
    Case(
        "deploy to staging: one release-manager",
        deploy("staging", approval=approval([RELEASE_MANAGER_1])),
        "require_approval",
        ["APPROVAL_REQUIRED"],
    ),
    Case(
        "deploy to staging: one release-manager, the record says one suffices",
        deploy(
            "staging",
            approval=approval(
                [RELEASE_MANAGER_1], approver_roles=["release-manager"], min_approvals=1
            ),
        ),
        "require_approval",
        ["APPROVAL_REQUIRED"],
    ),
    Case(
        "deploy to staging: two distinct release-managers",
        deploy("staging", approval=approval([RELEASE_MANAGER_1, RELEASE_MANAGER_2])),
        "allow",
        [],
    ),
    Case(
        "deploy to staging: the same release-manager listed twice counts once",
        deploy(
            "staging",
            approval=approval(
                [RELEASE_MANAGER_1, {"principal_id": "carol", "roles": ["release-manager"]}]
            ),
        ),
        "require_approval",
        ["APPROVAL_REQUIRED"],
    ),
    Case(
        "deploy to staging: a release-manager and a refund-approver",
        deploy("staging", approval=approval([RELEASE_MANAGER_1, REFUND_APPROVER])),
        "require_approval",
        ["APPROVAL_REQUIRED"],
    ),
    Case(
        "deploy to production with two release-managers: deny wins",
        deploy("production", approval=approval([RELEASE_MANAGER_1, RELEASE_MANAGER_2])),
        "deny",
        ["ENVIRONMENT_NOT_ALLOWED"],
    ),
]
IDS = [c.name for c in CASES]
RESULT_KEYS = {
    "effect",
    "reasons",
    "obligations",
    "approval",
    "budgets",
    "rate_limits",
    "class",
    "enforcement",
    "log",
}


@pytest.fixture(scope="module")
def engine() -> EmbeddedEngine:
    return EmbeddedEngine(load_bundle(DEFAULT_BUNDLE))


@pytest.fixture(scope="module")
def embedded(engine: EmbeddedEngine) -> list[Any]:
    return [engine.query(c.document) for c in CASES]


@pytest.fixture(scope="module")
def opa_decisions(opa_binary: Path) -> list[Any]:
    """data.capgate.authz.decision for every case, from one ``opa eval -b``."""
    query = "[d | some doc in input.documents; d := data.capgate.authz.decision with input as doc]"
    proc = subprocess.run(
        [
            str(opa_binary),
            "eval",
            "--bundle",
            str(DEFAULT_BUNDLE),
            "--stdin-input",
            "--format",
            "json",
            query,
        ],
        input=json.dumps({"documents": [c.document for c in CASES]}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["result"][0]["expressions"][0]["value"]


def test_default_bundle_approval_settings() -> None:
    data = yaml.safe_load((DEFAULT_BUNDLE / "data.yaml").read_text())
    capabilities = data["capgate"]["capabilities"]
    assert capabilities["issue_refund"]["approval"]["approver_roles"] == ["refund-approver"]
    assert capabilities["issue_refund"]["approval"]["min_approvals"] == 1
    # The two-person rule.
    assert capabilities["deploy_service"]["approval"]["approver_roles"] == ["release-manager"]
    assert capabilities["deploy_service"]["approval"]["min_approvals"] == 2


@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_embedded_engine_decides_the_approval_case(index: int, embedded: list[Any]) -> None:
    case, decision = CASES[index], embedded[index]
    assert decision["effect"] == case.effect
    assert [r["code"] for r in decision["reasons"]] == case.reasons
    assert set(decision) == RESULT_KEYS, "the result shape (DESIGN §5) is unchanged"


@pytest.mark.opa
@pytest.mark.parametrize("index", range(len(CASES)), ids=IDS)
def test_opa_decides_the_approval_case(index: int, opa_decisions: list[Any]) -> None:
    case, decision = CASES[index], opa_decisions[index]
    assert decision["effect"] == case.effect
    assert [r["code"] for r in decision["reasons"]] == case.reasons


@pytest.mark.opa
def test_embedded_engine_and_opa_return_identical_decisions(
    embedded: list[Any], opa_decisions: list[Any]
) -> None:
    differ = [
        (c.name, e, o) for c, e, o in zip(CASES, embedded, opa_decisions, strict=True) if e != o
    ]
    assert not differ, differ[:3]


def test_an_approved_call_is_a_valid_policy_result(engine: EmbeddedEngine) -> None:
    """The sidecar parses an approved ALLOW like any other; the approval requirement
    it reports is the bundle's, not the record's."""
    result = engine.evaluate(
        deploy(
            "staging",
            approval=approval(
                [RELEASE_MANAGER_1, RELEASE_MANAGER_2],
                approver_roles=["release-manager"],
                min_approvals=1,
            ),
        )
    )
    assert result.effect is Effect.ALLOW
    assert result.reasons == ()
    assert result.approval is not None
    assert result.approval.approver_roles == ("release-manager",)
    assert result.approval.min_approvals == 2
