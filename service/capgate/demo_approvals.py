"""The second act of ``capgate demo``: the seed's refund approval and the stop button,
end to end through a real sidecar on ``bundles/default`` (DESIGN §7).

An agent asks to refund $60 (over the $50 threshold), the agent itself tries to approve
its own action, a ``refund-approver`` approves, the agent retries with the approval and
the same idempotency key, tries to use the approval a second time, and an operator
stops the run. The sidecar runs with ``--identity insecure`` on loopback, so approvers
and operators name themselves in ``x-capgate-*`` metadata; in production those come
from their tokens (docs/platform-teams/identity.md).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import grpc

from capgate.v1 import approval_service_pb2 as approvals_api
from capgate.v1 import approval_service_pb2_grpc as approvals_grpc
from capgate.v1 import control_service_pb2 as control_api
from capgate.v1 import control_service_pb2_grpc as control_grpc
from capgate.v1 import types_pb2 as types
from capgate_client import AsyncClient, AuthorizeResult

TENANT = "acme-demo"
TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Step:
    """One step of the walkthrough: who did what, and what capgate answered."""

    actor: str
    action: str
    answer: str

    def as_dict(self) -> dict[str, str]:
        return {"actor": self.actor, "action": self.action, "answer": self.answer}


def _metadata(principal: str, *roles: str) -> tuple[tuple[str, str], ...]:
    return (
        ("x-capgate-principal-id", principal),
        ("x-capgate-tenant-id", TENANT),
        ("x-capgate-roles", ",".join(roles)),
    )


def _answer(result: AuthorizeResult) -> str:
    codes = ", ".join(result.reason_codes)
    return f"{result.effect} {codes}".strip()


async def approval_walkthrough(target: str) -> list[Step]:
    """Run the walkthrough against the sidecar at ``target``; the steps, in order.

    Raises:
        grpc.RpcError: a call failed in a way the walkthrough does not expect.
    """
    run_id = f"refund-{uuid.uuid4().hex[:8]}"
    call: dict[str, Any] = {
        "tenant_id": TENANT,
        "principal_id": "refund-agent",
        "scopes": ["refunds:write"],
        "capability": "issue_refund",
        "tool": "payments.create_refund",
        "parameters": {"amount_usd": 60, "customer_tier": "pro", "reason": "damaged item"},
        "run_id": run_id,
        "workflow": "refund_request",
        "idempotency_key": f"{run_id}-call-1",
    }
    steps: list[Step] = []
    async with (
        AsyncClient(target, timeout_seconds=TIMEOUT_SECONDS) as agent,
        grpc.aio.insecure_channel(target) as channel,
    ):
        approvals = approvals_grpc.ApprovalServiceStub(channel)
        control = control_grpc.ControlServiceStub(channel)
        asked = await agent.authorize(**call)
        steps.append(
            Step("refund-agent", "refund $60", f"{_answer(asked)} (approval {asked.approval_id})")
        )

        async def decide(principal: str, *roles: str) -> str:
            request = approvals_api.DecideApprovalRequest(
                tenant_id=TENANT,
                approval_id=asked.approval_id,
                verdict=approvals_api.APPROVAL_VERDICT_APPROVE,
                comment="customer sent photos of the damage",
            )
            try:
                response = await approvals.DecideApproval(
                    request, metadata=_metadata(principal, *roles), timeout=TIMEOUT_SECONDS
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.PERMISSION_DENIED:
                    raise
                return f"PERMISSION_DENIED: {exc.details()}"
            return types.ApprovalState.Name(response.approval.state).removeprefix("APPROVAL_STATE_")

        steps.append(
            Step(
                "refund-agent",
                "approves its own refund",
                await decide("refund-agent", "refund-approver"),
            )
        )
        steps.append(
            Step("carol (refund-approver)", "approves", await decide("carol", "refund-approver"))
        )
        allowed = await agent.authorize(**call, approval_id=asked.approval_id)
        steps.append(Step("refund-agent", "retries with the approval", _answer(allowed)))
        reused = await agent.authorize(
            **{**call, "idempotency_key": f"{run_id}-call-2"}, approval_id=asked.approval_id
        )
        steps.append(Step("refund-agent", "uses the approval again", _answer(reused)))
        await control.StopRun(
            control_api.StopRunRequest(tenant_id=TENANT, run_id=run_id, reason="demo"),
            metadata=_metadata("ops", "capgate-admin"),
            timeout=TIMEOUT_SECONDS,
        )
        steps.append(Step("ops (capgate-admin)", f"stops run {run_id}", "stopped"))
        small = {**call, "parameters": {**call["parameters"], "amount_usd": 10}}
        stopped = await agent.authorize(**{**small, "idempotency_key": f"{run_id}-call-3"})
        steps.append(Step("refund-agent", "refund $10 in the stopped run", _answer(stopped)))
    return steps
