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
        min_time_left_seconds: float = 0.0,
    ) -> None:
        """``min_time_left_seconds``: see ``server.min_time_left_ms``."""
        self._pipeline = pipeline
        self._settler = settler
        self._authenticator = authenticator
        self._metrics = metrics
        self._min_time_left_seconds = min_time_left_seconds

    async def Authorize(
        self, request: api.AuthorizeRequest, context: grpc.aio.ServicerContext
    ) -> api.AuthorizeResponse:
        """DEADLINE_EXCEEDED, not decided: the call arrived too close to its deadline
        (nothing is reserved or logged; retrying with the same key is safe)."""
        time_left = context.time_remaining()
        if time_left is not None and time_left < self._min_time_left_seconds:
            self._metrics.authorize_shed.inc()
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"not decided: {time_left * 1000:.0f} ms left before the call's deadline, "
                f"under server.min_time_left_ms ({self._min_time_left_seconds * 1000:.0f})",
            )
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
