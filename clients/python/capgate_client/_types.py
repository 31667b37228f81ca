"""Result and error types returned by the client."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2

from capgate.v1 import authorization_service_pb2 as api
from capgate.v1 import types_pb2 as types

STATUS_DETAILS_KEY = "grpc-status-details-bin"
# Budget windows in the policy's own vocabulary (bundle data and decision log).
WINDOWS = {
    types.BUDGET_WINDOW_RUN: "run",
    types.BUDGET_WINDOW_MINUTE: "1m",
    types.BUDGET_WINDOW_HOUR: "1h",
    types.BUDGET_WINDOW_DAY: "1d",
    types.BUDGET_WINDOW_MONTH: "30d",
}


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    """One budget after the decision. ``scope``: "run", "tenant", "principal",
    "capability"; ``window``: "run", "1m", "1h", "1d", "30d"; money in micro-dollars.

    A ``limit_*`` of ``None`` is not enforced.
    """

    scope: str
    window: str
    limit_usd_micros: int | None
    reserved_usd_micros: int
    spent_usd_micros: int
    limit_calls: int | None
    used_calls: int
    limit_tokens: int | None
    used_tokens: int


@dataclass(frozen=True, slots=True)
class AuthorizeResult:
    """A decision. ``effect`` is "ALLOW", "DENY" or "REQUIRE_APPROVAL". For
    REQUIRE_APPROVAL, ``approval_id`` names the approval to wait for (its
    ``approval_state``: "PENDING", "APPROVED", ...; ``approval_expires_at``); retry
    Authorize with it, and the same idempotency key, once it is APPROVED."""

    decision_id: str
    effect: str
    reasons: tuple[Reason, ...]
    obligations: tuple[dict[str, Any], ...]
    budgets: tuple[BudgetUsage, ...]
    approver_roles: tuple[str, ...]
    min_approvals: int
    policy_revision: str
    decided_at: datetime
    approval_id: str = ""
    approval_state: str = ""
    approval_expires_at: datetime | None = None

    @property
    def allowed(self) -> bool:
        return self.effect == "ALLOW"

    @property
    def reason_codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.reasons)

    @classmethod
    def from_proto(cls, response: api.AuthorizeResponse) -> AuthorizeResult:
        return cls(
            decision_id=response.decision_id,
            effect=types.Effect.Name(response.effect).removeprefix("EFFECT_"),
            reasons=tuple(Reason(r.code, r.message) for r in response.reasons),
            obligations=tuple(
                {
                    "type": o.type,
                    "parameters": _whole_numbers(json_format.MessageToDict(o.parameters)),
                }
                for o in response.obligations
            ),
            budgets=tuple(_budget_usage(b) for b in response.budgets),
            approver_roles=tuple(response.approval.approver_roles),
            min_approvals=response.approval.min_approvals,
            policy_revision=response.policy_revision,
            decided_at=response.decided_at.ToDatetime(tzinfo=UTC),
            approval_id=response.approval.approval_id,
            approval_state=types.ApprovalState.Name(response.approval.state).removeprefix(
                "APPROVAL_STATE_"
            )
            if response.approval.state
            else "",
            approval_expires_at=response.approval.expires_at.ToDatetime(tzinfo=UTC)
            if response.approval.HasField("expires_at")
            else None,
        )


@dataclass(frozen=True, slots=True)
class SettleResult:
    """A settlement. ``outcome`` is "SUCCEEDED", "FAILED", "REVERTED" or "ABANDONED"."""

    decision_id: str
    outcome: str
    budgets: tuple[BudgetUsage, ...]
    settled_at: datetime

    @classmethod
    def from_proto(cls, response: api.SettleResponse) -> SettleResult:
        return cls(
            decision_id=response.decision_id,
            outcome=api.Outcome.Name(response.outcome).removeprefix("OUTCOME_"),
            budgets=tuple(_budget_usage(b) for b in response.budgets),
            settled_at=response.settled_at.ToDatetime(tzinfo=UTC),
        )


def _budget_usage(b: types.BudgetStatus) -> BudgetUsage:
    return BudgetUsage(
        scope=types.BudgetScope.Name(b.scope).removeprefix("BUDGET_SCOPE_").lower(),
        window=WINDOWS.get(b.window, ""),
        limit_usd_micros=_optional(b, "limit_usd_micros"),
        reserved_usd_micros=b.reserved_usd_micros,
        spent_usd_micros=b.spent_usd_micros,
        limit_calls=_optional(b, "limit_calls"),
        used_calls=b.used_calls,
        limit_tokens=_optional(b, "limit_tokens"),
        used_tokens=b.used_tokens,
    )


def _optional(message: types.BudgetStatus, field: str) -> int | None:
    return getattr(message, field) if message.HasField(field) else None


def _whole_numbers(value: Any) -> Any:
    """Struct numbers are doubles; give back ints where the number is whole."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


class InvalidRequestError(ValueError):
    """The server refused the request as INVALID_ARGUMENT.

    ``field_violations`` holds ``(field_path, description)`` pairs from the
    ``google.rpc.BadRequest`` detail.
    """

    def __init__(self, message: str, field_violations: tuple[tuple[str, str], ...]) -> None:
        super().__init__(message)
        self.field_violations = field_violations

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(f for f, _ in self.field_violations)

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> InvalidRequestError:
        violations: list[tuple[str, str]] = []
        for key, value in error.trailing_metadata() or ():  # type: ignore[attr-defined]
            if key != STATUS_DETAILS_KEY:
                continue
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad_request = error_details_pb2.BadRequest()
                    detail.Unpack(bad_request)
                    violations += [(v.field, v.description) for v in bad_request.field_violations]
        return cls(error.details() or "invalid request", tuple(violations))  # type: ignore[attr-defined]
