"""The ApprovalService servicer: credentials and proto ⇄ domain, then the desk."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from capgate.api import convert_approvals as convert
from capgate.api.credentials import authenticate
from capgate.api.errors import abort_with
from capgate.approvals.desk import ApprovalDesk
from capgate.errors import CapgateError
from capgate.identity.model import Authenticator, Identity
from capgate.observability.metrics import Metrics
from capgate.v1 import approval_service_pb2 as api
from capgate.v1 import approval_service_pb2_grpc as api_grpc


class ApprovalServicer(api_grpc.ApprovalServiceServicer):
    def __init__(self, desk: ApprovalDesk, authenticator: Authenticator, metrics: Metrics) -> None:
        self._desk = desk
        self._authenticator = authenticator
        self._metrics = metrics

    async def GetApproval(
        self, request: api.GetApprovalRequest, context: grpc.aio.ServicerContext
    ) -> api.GetApprovalResponse:
        try:
            caller = self._caller(context)
            approval = await self._desk.get(caller, request.tenant_id, request.approval_id)
        except CapgateError as exc:
            await abort_with(context, exc, self._metrics)
        return api.GetApprovalResponse(approval=convert.approval_message(approval))

    async def ListApprovals(
        self, request: api.ListApprovalsRequest, context: grpc.aio.ServicerContext
    ) -> api.ListApprovalsResponse:
        try:
            caller = self._caller(context)
            page = await self._desk.list(
                caller,
                request.tenant_id,
                state=convert.state_filter(request.state),
                page_size=request.page_size,
                cursor=convert.decode_page_token(request.page_token),
            )
        except CapgateError as exc:
            await abort_with(context, exc, self._metrics)
        return api.ListApprovalsResponse(
            approvals=[convert.approval_message(a) for a in page.approvals],
            next_page_token=convert.encode_page_token(page.next_cursor),
            watch_resume_token=page.watch_cursor,
        )

    async def DecideApproval(
        self, request: api.DecideApprovalRequest, context: grpc.aio.ServicerContext
    ) -> api.DecideApprovalResponse:
        try:
            caller = self._caller(context)
            approval = await self._desk.decide(
                caller,
                request.tenant_id,
                request.approval_id,
                convert.VERDICT_OF.get(request.verdict),
                request.comment,
            )
        except CapgateError as exc:
            await abort_with(context, exc, self._metrics)
        return api.DecideApprovalResponse(approval=convert.approval_message(approval))

    async def WatchApprovals(
        self, request: api.WatchApprovalsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[api.WatchApprovalsResponse]:
        try:
            caller = self._caller(context)
            async for transition in self._desk.watch(
                caller, request.tenant_id, request.resume_token
            ):
                yield convert.transition_message(transition)
        except CapgateError as exc:
            await abort_with(context, exc, self._metrics)

    def _caller(self, context: grpc.aio.ServicerContext) -> Identity:
        return authenticate(self._authenticator, context)
