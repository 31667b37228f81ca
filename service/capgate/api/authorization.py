"""The AuthorizationService servicer: proto ⇄ domain, then the pipeline. Nothing else."""

from __future__ import annotations

from dataclasses import replace

import grpc

from capgate.api import convert
from capgate.api.credentials import authenticate, credentials_of
from capgate.api.errors import abort_with
from capgate.decision.pipeline import Pipeline
from capgate.decision.settle import Settler
from capgate.errors import CapgateError
from capgate.identity.access import tenant_for
from capgate.identity.model import Authenticator
from capgate.observability.metrics import Metrics
from capgate.v1 import authorization_service_pb2 as api
from capgate.v1 import authorization_service_pb2_grpc as api_grpc


class AuthorizationServicer(api_grpc.AuthorizationServiceServicer):
    def __init__(
        self,
        pipeline: Pipeline,
        settler: Settler,
        authenticator: Authenticator,
        metrics: Metrics,
    ) -> None:
        self._pipeline = pipeline
        self._settler = settler
        self._authenticator = authenticator
        self._metrics = metrics

    async def Authorize(
        self, request: api.AuthorizeRequest, context: grpc.aio.ServicerContext
    ) -> api.AuthorizeResponse:
        try:
            decision = await self._pipeline.authorize(
                convert.authorize_request(request), credentials_of(context)
            )
        except CapgateError as exc:
            await abort_with(context, exc, self._metrics)
        return convert.authorize_response(decision)

    async def Settle(
        self, request: api.SettleRequest, context: grpc.aio.ServicerContext
    ) -> api.SettleResponse:
        """NOT_FOUND: no reservation; FAILED_PRECONDITION: settled another way;
        UNAVAILABLE: Redis did not answer (retry: Settle is idempotent)."""
        try:
            caller = authenticate(self._authenticator, context)
            settle_request = convert.settle_request(request)
            if not caller.trusts_body:  # else the settler's validation names every field
                tenant = tenant_for(caller, settle_request.tenant_id)
                settle_request = replace(settle_request, tenant_id=tenant)
            settlement = await self._settler.settle(settle_request)
        except CapgateError as exc:
            await abort_with(context, exc, self._metrics)
        return convert.settle_response(settlement)
