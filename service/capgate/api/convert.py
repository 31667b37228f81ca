"""proto ⇄ domain conversion for the Authorize API. Pure; no decisions here.

Struct values become plain Python (dict, list, str, bool, None, int or float);
numbers with no fractional part become ``int`` (``google.protobuf.Value`` carries
only doubles, https://protobuf.dev/reference/protobuf/google.protobuf/#value).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

from capgate.decision.model import (
    AuthorizeRequest,
    BudgetScope,
    BudgetStatus,
    BudgetWindow,
    Change,
    Cost,
    Decision,
    Effect,
    Evidence,
    Outcome,
    Principal,
    Resource,
    Run,
    Settlement,
    SettleRequest,
)
from capgate.v1 import authorization_service_pb2 as api
from capgate.v1 import types_pb2 as types

EFFECTS = {
    Effect.ALLOW: types.EFFECT_ALLOW,
    Effect.DENY: types.EFFECT_DENY,
    Effect.REQUIRE_APPROVAL: types.EFFECT_REQUIRE_APPROVAL,
}
SCOPES = {
    BudgetScope.TENANT: types.BUDGET_SCOPE_TENANT,
    BudgetScope.PRINCIPAL: types.BUDGET_SCOPE_PRINCIPAL,
    BudgetScope.CAPABILITY: types.BUDGET_SCOPE_CAPABILITY,
    BudgetScope.RUN: types.BUDGET_SCOPE_RUN,
}
APPROVAL_STATES = {
    "pending": types.APPROVAL_STATE_PENDING,
    "approved": types.APPROVAL_STATE_APPROVED,
    "rejected": types.APPROVAL_STATE_REJECTED,
    "expired": types.APPROVAL_STATE_EXPIRED,
    "consumed": types.APPROVAL_STATE_CONSUMED,
}
OUTCOMES = {
    api.OUTCOME_SUCCEEDED: Outcome.SUCCEEDED,
    api.OUTCOME_FAILED: Outcome.FAILED,
    api.OUTCOME_REVERTED: Outcome.REVERTED,
    api.OUTCOME_ABANDONED: Outcome.ABANDONED,
}
OUTCOME_VALUES = {outcome: value for value, outcome in OUTCOMES.items()}
WINDOWS = {
    BudgetWindow.RUN: types.BUDGET_WINDOW_RUN,
    BudgetWindow.MINUTE: types.BUDGET_WINDOW_MINUTE,
    BudgetWindow.HOUR: types.BUDGET_WINDOW_HOUR,
    BudgetWindow.DAY: types.BUDGET_WINDOW_DAY,
    BudgetWindow.MONTH: types.BUDGET_WINDOW_MONTH,
}


def authorize_request(message: api.AuthorizeRequest) -> AuthorizeRequest:
    """The domain request for ``message``; validation happens in the pipeline."""
    p, r, run = message.principal, message.resource, message.run
    return AuthorizeRequest(
        tenant_id=message.tenant_id,
        principal=Principal(
            id=p.id,
            on_behalf_of=p.on_behalf_of,
            delegation_chain=tuple(p.delegation_chain),
            scopes=tuple(p.scopes),
            roles=tuple(p.roles),
            attributes=struct_to_dict(p.attributes),
        ),
        capability=message.capability,
        tool=message.tool,
        parameters=struct_to_dict(message.parameters),
        resource=Resource(type=r.type, id=r.id, attributes=struct_to_dict(r.attributes)),
        run=Run(run_id=run.run_id, workflow=run.workflow, step=run.step, trace_id=run.trace_id),
        estimated_cost=Cost(
            usd_micros=message.estimated_cost.usd_micros, tokens=message.estimated_cost.tokens
        ),
        idempotency_key=message.idempotency_key,
        approval_id=message.approval_id,
        dry_run=message.dry_run,
        evidence=tuple(Evidence(e.kind, e.uri, e.digest) for e in message.evidence),
        size_bytes=message.ByteSize(),
    )


def authorize_response(decision: Decision) -> api.AuthorizeResponse:
    response = api.AuthorizeResponse(
        decision_id=decision.decision_id,
        effect=EFFECTS[decision.effect],
        reasons=[types.Reason(code=r.code, message=r.message) for r in decision.reasons],
        obligations=[
            types.Obligation(type=o.type, parameters=dict_to_struct(o.parameters))
            for o in decision.obligations
        ],
        budgets=[_budget_status(b) for b in decision.budgets],
        policy_revision=decision.policy_revision,
    )
    if decision.approval is not None:
        response.approval.approver_roles.extend(decision.approval.approver_roles)
        response.approval.min_approvals = decision.approval.min_approvals
    if decision.ticket is not None:
        response.approval.approval_id = decision.ticket.approval_id
        response.approval.state = APPROVAL_STATES[decision.ticket.state]
        response.approval.expires_at.FromDatetime(decision.ticket.expires_at)
    response.decided_at.FromDatetime(decision.decided_at)
    return response


def settle_request(message: api.SettleRequest) -> SettleRequest:
    """The domain request for ``message``; an unset ``actual_cost`` is ``None``."""
    return SettleRequest(
        tenant_id=message.tenant_id,
        decision_id=message.decision_id,
        outcome=OUTCOMES.get(message.outcome),
        actual_cost=(
            Cost(message.actual_cost.usd_micros, message.actual_cost.tokens)
            if message.HasField("actual_cost")
            else None
        ),
        changes=tuple(
            Change(c.resource, c.field, _value(c.before), _value(c.after)) for c in message.changes
        ),
        result=struct_to_dict(message.result),
        size_bytes=message.ByteSize(),
    )


def settle_response(settlement: Settlement) -> api.SettleResponse:
    response = api.SettleResponse(
        decision_id=settlement.decision_id,
        outcome=OUTCOME_VALUES[settlement.outcome],
        budgets=[_budget_status(b) for b in settlement.budgets],
    )
    response.settled_at.FromDatetime(settlement.settled_at)
    return response


def _budget_status(b: BudgetStatus) -> types.BudgetStatus:
    return types.BudgetStatus(
        scope=SCOPES[b.scope],
        window=WINDOWS[b.window],
        limit_usd_micros=b.limit_usd_micros,
        spent_usd_micros=b.spent_usd_micros,
        reserved_usd_micros=b.reserved_usd_micros,
        limit_calls=b.limit_calls,
        used_calls=b.used_calls,
        limit_tokens=b.limit_tokens,
        used_tokens=b.used_tokens,
    )


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    return {key: _value(value) for key, value in struct.fields.items()}


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_value(v) for v in value.list_value.values]
    return None


def dict_to_struct(data: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(data)
    return struct
