"""proto ⇄ domain conversion for ApprovalService and ControlService. Pure.

``page_token`` is the store's cursor, base64url-encoded (opaque to callers, AIP-158).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from google.protobuf import timestamp_pb2

from capgate.api.convert import dict_to_struct
from capgate.approvals.model import Approval, ApprovalState, Transition, Verdict
from capgate.control.store import TenantMode
from capgate.errors import InvalidArgument
from capgate.v1 import approval_service_pb2 as approvals_api
from capgate.v1 import control_service_pb2 as control_api
from capgate.v1 import types_pb2 as types

STATES = {
    ApprovalState.PENDING: types.APPROVAL_STATE_PENDING,
    ApprovalState.APPROVED: types.APPROVAL_STATE_APPROVED,
    ApprovalState.REJECTED: types.APPROVAL_STATE_REJECTED,
    ApprovalState.EXPIRED: types.APPROVAL_STATE_EXPIRED,
    ApprovalState.CONSUMED: types.APPROVAL_STATE_CONSUMED,
}
STATE_OF = {value: state for state, value in STATES.items()}
VERDICTS = {
    Verdict.APPROVE: approvals_api.APPROVAL_VERDICT_APPROVE,
    Verdict.REJECT: approvals_api.APPROVAL_VERDICT_REJECT,
}
VERDICT_OF = {value: verdict for verdict, value in VERDICTS.items()}
MODES = {
    TenantMode.NORMAL: control_api.TENANT_MODE_NORMAL,
    TenantMode.READ_ONLY: control_api.TENANT_MODE_READ_ONLY,
    TenantMode.FROZEN: control_api.TENANT_MODE_FROZEN,
}
MODE_OF = {value: mode for mode, value in MODES.items()}


def approval_message(approval: Approval) -> approvals_api.Approval:
    message = approvals_api.Approval(
        approval_id=approval.approval_id,
        tenant_id=approval.tenant_id,
        state=STATES[approval.state],
        requester_principal_id=approval.requester_principal_id,
        on_behalf_of=approval.on_behalf_of,
        capability=approval.capability,
        tool=approval.tool,
        parameters=dict_to_struct(approval.parameters),
        parameters_sha256=approval.parameters_sha256,
        action_sha256=approval.action_sha256,
        policy_revision=approval.policy_revision,
        approver_roles=list(approval.approver_roles),
        min_approvals=approval.min_approvals,
        votes=[
            approvals_api.Vote(
                principal_id=v.principal_id,
                roles=list(v.roles),
                verdict=VERDICTS[v.verdict],
                comment=v.comment,
                decide_time=_timestamp(v.decided_at),
            )
            for v in approval.votes
        ],
        request_decision_id=approval.request_decision_id,
        consumed_by_decision_id=approval.consumed_by_decision_id,
        run_id=approval.run_id,
        workflow=approval.workflow,
        reasons=[types.Reason(code=r.code, message=r.message) for r in approval.reasons],
        create_time=_timestamp(approval.created_at),
        expire_time=_timestamp(approval.expires_at),
        update_time=_timestamp(approval.updated_at),
    )
    return message


def transition_message(transition: Transition) -> approvals_api.WatchApprovalsResponse:
    previous = transition.previous_state
    return approvals_api.WatchApprovalsResponse(
        resume_token=transition.cursor,
        approval=approval_message(transition.approval),
        previous_state=STATES[previous] if previous else types.APPROVAL_STATE_UNSPECIFIED,
        actor_principal_id=transition.actor,
    )


def state_filter(value: int) -> ApprovalState | None:
    """ListApprovals' ``state``: UNSPECIFIED lists all. Raises InvalidArgument."""
    if value == types.APPROVAL_STATE_UNSPECIFIED:
        return None
    if value not in STATE_OF:
        raise InvalidArgument([("state", "is not an ApprovalState")])
    return STATE_OF[value]


def encode_page_token(cursor: str) -> str:
    return base64.urlsafe_b64encode(cursor.encode("utf-8")).decode("ascii") if cursor else ""


def decode_page_token(token: str) -> str:
    """Raises InvalidArgument naming ``page_token`` for a token we did not issue."""
    if not token:
        return ""
    try:
        cursor = base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise InvalidArgument([("page_token", "is not a token ListApprovals gave")]) from exc
    score, sep, key = cursor.partition(" ")
    if not (sep and score.isdigit() and key):
        raise InvalidArgument([("page_token", "is not a token ListApprovals gave")])
    return cursor


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp
