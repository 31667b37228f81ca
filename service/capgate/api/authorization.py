"""The AuthorizationService servicer: proto ⇄ domain, then the pipeline. Nothing else."""

from __future__ import annotations

import grpc

from capgate.api import convert
from capgate.api.errors import abort_invalid_argument
from capgate.decision.pipeline import Pipeline
from capgate.decision.settle import Settler
from capgate.errors import (
    BudgetStoreUnavailable,
    InvalidArgument,
    ReservationNotFound,
    SettlementConflict,
)
from capgate.observability.metrics import Metrics
from capgate.v1 import authorization_service_pb2 as api
from capgate.v1 import authorization_service_pb2_grpc as api_grpc


class AuthorizationServicer(api_grpc.AuthorizationServiceServicer):
    def __init__(self, pipeline: Pipeline, settler: Settler, metrics: Metrics) -> None:
        self._pipeline = pipeline
        self._settler = settler
        self._metrics = metrics

    async def Authorize(
        self, request: api.AuthorizeRequest, context: grpc.aio.ServicerContext
    ) -> api.AuthorizeResponse:
        try:
            decision = await self._pipeline.authorize(convert.authorize_request(request))
        except InvalidArgument as exc:
            self._metrics.invalid_requests.inc()
            await abort_invalid_argument(context, exc)
        return convert.authorize_response(decision)

    async def Settle(
        self, request: api.SettleRequest, context: grpc.aio.ServicerContext
    ) -> api.SettleResponse:
        """NOT_FOUND: no reservation; FAILED_PRECONDITION: settled another way;
        UNAVAILABLE: Redis did not answer (retry: Settle is idempotent)."""
        try:
            settlement = await self._settler.settle(convert.settle_request(request))
        except InvalidArgument as exc:
            self._metrics.invalid_requests.inc()
            await abort_invalid_argument(context, exc)
        except ReservationNotFound as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except SettlementConflict as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except BudgetStoreUnavailable:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "the budget store is unavailable; retry Settle"
            )
        return convert.settle_response(settlement)
