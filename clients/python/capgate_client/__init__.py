"""Typed Python client for capgate's AuthorizationService (sync and asyncio).

    from capgate_client import Client
    with Client("127.0.0.1:50051") as capgate:
        result = capgate.authorize(
            tenant_id="acme", principal_id="refund-agent", scopes=["refunds:write"],
            capability="issue_refund", tool="payments.create_refund",
            parameters={"amount_usd": 30}, run_id="run-1", workflow="refund_request",
            idempotency_key="call-1",
        )
        if result.allowed:
            ...  # run the tool, then report what happened and what it cost:
            capgate.settle(tenant_id="acme", decision_id=result.decision_id,
                           outcome="SUCCEEDED", actual_cost_usd_micros=41_000)

A DENY is a result, not an exception; a malformed request raises
:class:`InvalidRequestError` listing each field. Other failures raise ``grpc.RpcError``:
treat them as DENY (fail closed).
"""

from capgate_client._client import AsyncClient, Client, build_request, build_settle_request
from capgate_client._types import (
    AuthorizeResult,
    BudgetUsage,
    InvalidRequestError,
    Reason,
    SettleResult,
)

__all__ = [
    "AsyncClient",
    "AuthorizeResult",
    "BudgetUsage",
    "Client",
    "InvalidRequestError",
    "Reason",
    "SettleResult",
    "build_request",
    "build_settle_request",
]
