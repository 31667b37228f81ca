"""Unit tests for capgate.policy.result: the policy result contract (DESIGN §5)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from capgate.decision.model import (
    ApprovalRequirement,
    BudgetScope,
    BudgetSpec,
    BudgetWindow,
    Effect,
    Obligation,
    PolicyResult,
    RateLimitSpec,
    Reason,
)
from capgate.errors import PolicyError
from capgate.policy.result import parse_policy_result

FULL: dict[str, Any] = {
    "effect": "require_approval",
    "reasons": [
        {"code": "LARGE_REFUND", "message": "refunds over 100 EUR need approval"},
        {"code": "NO_MESSAGE"},
    ],
    "obligations": [{"type": "notify", "parameters": {"channel": "#ops", "n": 2}}],
    "approval": {"approver_roles": ["finance", "lead"], "min_approvals": 2, "ttl_seconds": 600},
    "budgets": [
        {"scope": "tenant", "window": "1d", "limit_usd_micros": 5_000_000},
        {"scope": "principal", "window": "1h", "limit_calls": 100},
        {"scope": "capability", "window": "30d", "limit_tokens": 0},
        {"scope": "run", "limit_usd_micros": 1, "limit_calls": 2, "limit_tokens": 3},
    ],
    "rate_limits": [
        {"key": "principal+capability", "limit": 10, "period_seconds": 60, "burst": 3},
        {"key": "tenant", "limit": 100.0, "period_seconds": 1},
    ],
    "reservation_ttl_seconds": 300,
    "class": "read",
    "enforcement": "shadow",
    "log": {"mask": ["parameters.card_number", "principal.attributes.email"]},
    "unknown_extra_key": True,
}


def with_(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(FULL)
    raw.update(changes)
    return raw


def without(key: str) -> dict[str, Any]:
    raw = copy.deepcopy(FULL)
    del raw[key]
    return raw


def budget(**fields: Any) -> dict[str, Any]:
    return {"effect": "allow", "budgets": [fields]}


def test_full_result_parses_to_every_field() -> None:
    assert parse_policy_result(copy.deepcopy(FULL)) == PolicyResult(
        effect=Effect.REQUIRE_APPROVAL,
        reasons=(
            Reason("LARGE_REFUND", "refunds over 100 EUR need approval"),
            Reason("NO_MESSAGE", ""),
        ),
        obligations=(Obligation("notify", {"channel": "#ops", "n": 2}),),
        approval=ApprovalRequirement(("finance", "lead"), 2, 600),
        budgets=(
            BudgetSpec(BudgetScope.TENANT, BudgetWindow.DAY, limit_usd_micros=5_000_000),
            BudgetSpec(BudgetScope.PRINCIPAL, BudgetWindow.HOUR, limit_calls=100),
            BudgetSpec(BudgetScope.CAPABILITY, BudgetWindow.MONTH, limit_tokens=0),
            BudgetSpec(
                BudgetScope.RUN,
                BudgetWindow.RUN,
                limit_usd_micros=1,
                limit_calls=2,
                limit_tokens=3,
            ),
        ),
        rate_limits=(
            RateLimitSpec("principal+capability", 10, 60, 3),
            RateLimitSpec("tenant", 100, 1, 100),  # burst defaults to the limit
        ),
        reservation_ttl_seconds=300,
        action_class="read",
        enforcement="shadow",
        mask=("parameters.card_number", "principal.attributes.email"),
    )


@pytest.mark.parametrize(
    ("rate_limit", "field", "message"),
    [
        ({"key": "user", "limit": 1, "period_seconds": 1}, "rate_limits.0", "dimensions"),
        ({"key": "run+run", "limit": 1, "period_seconds": 1}, "rate_limits.0", "distinct"),
        ({"key": "run", "limit": 0, "period_seconds": 1}, "rate_limits.0.limit", "greater"),
        (
            {"key": "run", "limit": 1, "period_seconds": 0.5},
            "rate_limits.0.period_seconds",
            "integer",
        ),
        (
            {"key": "run", "limit": 1, "period_seconds": 1, "burst": 0},
            "rate_limits.0.burst",
            "greater",
        ),
        ({"limit": 1, "period_seconds": 1}, "rate_limits.0.key", "required"),
    ],
)
def test_malformed_rate_limit_names_its_field(
    rate_limit: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(PolicyError, match=rf"{field}: .*{message}"):
        parse_policy_result({"effect": "allow", "rate_limits": [rate_limit]})


@pytest.mark.parametrize("ttl", [0, 86_401, "300", True])
def test_reservation_ttl_out_of_range_is_refused(ttl: Any) -> None:
    with pytest.raises(PolicyError, match="reservation_ttl_seconds"):
        parse_policy_result({"effect": "allow", "reservation_ttl_seconds": ttl})


@pytest.mark.parametrize(
    ("effect", "expected"),
    [
        ("allow", Effect.ALLOW),
        ("deny", Effect.DENY),
        ("require_approval", Effect.REQUIRE_APPROVAL),
    ],
)
def test_minimal_result_takes_defaults(effect: str, expected: Effect) -> None:
    assert parse_policy_result({"effect": effect}) == PolicyResult(
        effect=expected,
        reasons=(),
        obligations=(),
        approval=None,
        budgets=(),
        action_class="write",
        enforcement="enforce",
        mask=(),
    )


def test_approval_defaults() -> None:
    result = parse_policy_result({"effect": "require_approval", "approval": {}})
    assert result.approval == ApprovalRequirement((), 1, 900)


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ("1m", BudgetWindow.MINUTE),
        ("1h", BudgetWindow.HOUR),
        ("1d", BudgetWindow.DAY),
        ("30d", BudgetWindow.MONTH),
    ],
)
def test_budget_windows(window: str, expected: BudgetWindow) -> None:
    result = parse_policy_result(budget(scope="tenant", window=window, limit_calls=1))
    assert result.budgets[0].window is expected


def test_run_budget_gets_window_run() -> None:
    result = parse_policy_result(budget(scope="run", limit_calls=1))
    assert result.budgets == (BudgetSpec(BudgetScope.RUN, BudgetWindow.RUN, limit_calls=1),)


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(5.0, 5), (0, 0), (0.0, 0), (5, 5), (2**40, 2**40)],
)
def test_whole_float_limits_become_int(limit: float, expected: int) -> None:
    spec = parse_policy_result(budget(scope="tenant", window="1m", limit_usd_micros=limit))
    assert spec.budgets[0].limit_usd_micros == expected
    assert type(spec.budgets[0].limit_usd_micros) is int


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(None, id="none"),
        pytest.param([], id="empty-list"),
        pytest.param([{"effect": "allow"}], id="list-of-result"),
        pytest.param("allow", id="string"),
        pytest.param(1, id="number"),
        pytest.param({}, id="empty-object"),
        pytest.param(without("effect"), id="missing-effect"),
        pytest.param(with_(effect="ALLOW"), id="effect-uppercase"),
        pytest.param(with_(effect="permit"), id="unknown-effect"),
        pytest.param(with_(effect=None), id="effect-null"),
        pytest.param(with_(effect=True), id="effect-bool"),
        pytest.param(with_(reasons={"code": "X"}), id="reasons-object"),
        pytest.param(with_(reasons="X"), id="reasons-string"),
        pytest.param(with_(reasons=[{"message": "no code"}]), id="reason-without-code"),
        pytest.param(with_(reasons=[{"code": ""}]), id="reason-empty-code"),
        pytest.param(with_(reasons=["X"]), id="reason-not-object"),
        pytest.param(with_(obligations=[{"parameters": {}}]), id="obligation-without-type"),
        pytest.param(with_(obligations=[{"type": "t", "parameters": []}]), id="obligation-params"),
        pytest.param(with_(approval={"min_approvals": 0}), id="min-approvals-0"),
        pytest.param(with_(approval={"min_approvals": -1}), id="min-approvals-negative"),
        pytest.param(with_(approval={"ttl_seconds": 0}), id="ttl-0"),
        pytest.param(with_(approval={"approver_roles": "finance"}), id="roles-string"),
        pytest.param(with_(approval=[]), id="approval-list"),
        pytest.param(with_(budgets={"scope": "run"}), id="budgets-object"),
        pytest.param(budget(scope="global", window="1m"), id="budget-scope-unknown"),
        pytest.param(budget(window="1m"), id="budget-scope-missing"),
        pytest.param(budget(scope="run", window="1m"), id="run-budget-with-window"),
        pytest.param(budget(scope="run", window="run"), id="run-budget-window-run"),
        pytest.param(budget(scope="tenant"), id="tenant-budget-without-window"),
        pytest.param(budget(scope="principal", window=None), id="principal-window-null"),
        pytest.param(budget(scope="tenant", window="2h"), id="window-unknown"),
        pytest.param(budget(scope="tenant", window="1m", limit_calls=-1), id="negative-calls"),
        pytest.param(budget(scope="tenant", window="1m", limit_usd_micros=-1), id="negative-usd"),
        pytest.param(budget(scope="run", limit_tokens=-5), id="negative-tokens"),
        pytest.param(budget(scope="tenant", window="1m", limit_calls=1.5), id="float-limit"),
        pytest.param(budget(scope="run", limit_usd_micros=0.1), id="fraction-limit"),
        pytest.param(budget(scope="run", limit_usd_micros=[]), id="list-limit"),
        pytest.param(with_(**{"class": "delete"}), id="class-unknown"),
        pytest.param(with_(enforcement="audit"), id="enforcement-unknown"),
        pytest.param(with_(log={"mask": "parameters.x"}), id="mask-string"),
        pytest.param(with_(log=[]), id="log-list"),
    ],
)
def test_malformed_results_raise_policy_error(raw: Any) -> None:
    with pytest.raises(PolicyError, match="malformed policy result"):
        parse_policy_result(raw)


@pytest.mark.parametrize(
    ("raw", "location"),
    [
        ({}, "effect"),
        ({"effect": "allow", "reasons": [{"message": "m"}]}, "reasons.0.code"),
        (budget(scope="tenant", window="1m", limit_calls=-1), "budgets.0.limit_calls"),
        ({"effect": "allow", "approval": {"min_approvals": 0}}, "approval.min_approvals"),
        (None, "result"),
    ],
)
def test_policy_error_names_the_location(raw: Any, location: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy_result(raw)
    assert f"{location}:" in str(info.value)


@pytest.mark.parametrize("value", [True, False, "5", 1.5, None, [5]])
@pytest.mark.parametrize("field", ["limit_calls", "limit_usd_micros", "limit_tokens"])
def test_budget_limits_refuse_non_integers(field: str, value: object) -> None:
    budget = {"scope": "run", field: value}
    if value is None:  # an absent limit is allowed: it is not enforced
        assert parse_policy_result({"effect": "allow", "budgets": [budget]}).budgets
        return
    with pytest.raises(PolicyError):
        parse_policy_result({"effect": "allow", "budgets": [budget]})
