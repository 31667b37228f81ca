"""Validate the raw policy result (DESIGN §5) into a :class:`PolicyResult`.

Expected shape of ``data.capgate.authz.decision``::

    {"effect": "allow" | "deny" | "require_approval",
     "reasons": [{"code": str, "message": str}],
     "obligations": [{"type": str, "parameters": {...}}],
     "approval": {"approver_roles": [str], "min_approvals": int >= 1, "ttl_seconds": int >= 1},
     "budgets": [{"scope": "tenant" | "principal" | "capability" | "run",
                  "window": "1m" | "1h" | "1d" | "30d"   (absent for scope "run"),
                  "limit_usd_micros": int, "limit_calls": int, "limit_tokens": int}],
     "rate_limits": [{"key": "tenant" | "principal" | ... | "principal+capability",
                      "limit": int >= 1, "period_seconds": int >= 1, "burst": int >= 1}],
     "reservation_ttl_seconds": int >= 1,
     "class": "read" | "write",
     "enforcement": "enforce" | "shadow",
     "log": {"mask": [str], "audit_required": bool}}

Integers may be Rego numbers with no fraction (``5.0``); booleans and strings are refused.
Only ``effect`` is required. Anything else malformed raises :class:`PolicyError`,
which the pipeline turns into DENY ``POLICY_ERROR``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from capgate.budget.keys import RATE_LIMIT_DIMENSIONS
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


def _integral(value: Any) -> Any:
    """Accept ints and integral floats (Rego numbers); refuse bools, strings and 1.5."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("must be an integer")
    return int(value)


Integer = Annotated[int, BeforeValidator(_integral)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Reason(_Model):
    code: str = Field(min_length=1)
    message: str = ""


class _Obligation(_Model):
    type: str = Field(min_length=1)
    parameters: dict[str, Any] = {}


class _Approval(_Model):
    approver_roles: list[str] = []
    min_approvals: Integer = Field(default=1, ge=1)
    ttl_seconds: Integer = Field(default=900, ge=1)


class _Budget(_Model):
    scope: Literal["tenant", "principal", "capability", "run"]
    window: Literal["1m", "1h", "1d", "30d"] | None = None
    limit_usd_micros: Integer | None = Field(default=None, ge=0)
    limit_calls: Integer | None = Field(default=None, ge=0)
    limit_tokens: Integer | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _window_matches_scope(self) -> _Budget:
        if (self.scope == "run") != (self.window is None):
            raise ValueError("window is required for every scope but run, and absent for run")
        return self


class _RateLimit(_Model):
    key: str
    limit: Integer = Field(ge=1)
    period_seconds: Integer = Field(ge=1)
    burst: Integer | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _known_dimensions(self) -> _RateLimit:
        names = self.key.split("+")
        if any(name not in RATE_LIMIT_DIMENSIONS for name in names) or len(set(names)) != len(
            names
        ):
            raise ValueError(
                f"key must join distinct dimensions from {'|'.join(RATE_LIMIT_DIMENSIONS)} with '+'"
            )
        return self


class _Log(_Model):
    mask: list[str] = []
    audit_required: bool = False


class _PolicyResult(_Model):
    effect: Literal["allow", "deny", "require_approval"]
    reasons: list[_Reason] = []
    obligations: list[_Obligation] = []
    approval: _Approval | None = None
    budgets: list[_Budget] = []
    rate_limits: list[_RateLimit] = []
    reservation_ttl_seconds: Integer | None = Field(default=None, ge=1, le=86_400)
    action_class: Literal["read", "write"] = Field(default="write", alias="class")
    enforcement: Literal["enforce", "shadow"] = "enforce"
    log: _Log = _Log()


def parse_policy_result(raw: Any) -> PolicyResult:
    """Validate ``raw`` (the entrypoint's value) into a :class:`PolicyResult`."""
    try:
        model = _PolicyResult.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'result'}: {e['msg']}" for e in exc.errors()
        )
        raise PolicyError(f"malformed policy result: {problems}") from exc
    return PolicyResult(
        effect=Effect(model.effect),
        reasons=tuple(Reason(r.code, r.message) for r in model.reasons),
        obligations=tuple(Obligation(o.type, o.parameters) for o in model.obligations),
        approval=(
            ApprovalRequirement(
                tuple(model.approval.approver_roles),
                model.approval.min_approvals,
                model.approval.ttl_seconds,
            )
            if model.approval
            else None
        ),
        budgets=tuple(
            BudgetSpec(
                scope=BudgetScope(b.scope),
                window=BudgetWindow(b.window or "run"),
                limit_usd_micros=b.limit_usd_micros,
                limit_calls=b.limit_calls,
                limit_tokens=b.limit_tokens,
            )
            for b in model.budgets
        ),
        rate_limits=tuple(
            RateLimitSpec(r.key, r.limit, r.period_seconds, r.burst or r.limit)
            for r in model.rate_limits
        ),
        reservation_ttl_seconds=model.reservation_ttl_seconds,
        action_class=model.action_class,
        enforcement=model.enforcement,
        mask=tuple(model.log.mask),
        audit_required=model.log.audit_required,
    )
