"""The ControlService servicer: credentials and proto ⇄ domain, then the desk."""

from __future__ import annotations

import grpc

from capgate.api import convert_approvals as convert
from capgate.api.credentials import authenticate
from capgate.api.errors import abort_with
from capgate.control.desk import ControlDesk
from capgate.errors import CapgateError
from capgate.identity.model import Authenticator
from capgate.observability.metrics import Metrics
from capgate.v1 import control_service_pb2 as api
from capgate.v1 import control_service_pb2_grpc as api_grpc


class ControlServicer(api_grpc.ControlServiceServicer):
    def __init__(
        self, desk: ControlDesk, authenticator: Authenticator, metrics: Metrics, instance_id: str
    ) -> None:
        self._desk = desk
        self._authenticator = authenticator
        self._metrics = metrics
        self._instance_id = instance_id

    async def StopRun(
        self, request: api.StopRunRequest, context: grpc.aio.ServicerContext
    ) -> api.StopRunResponse:
        try:
            caller = authenticate(self._authenticator, context)
            stop = await self._desk.stop_run(
                caller, request.tenant_id, request.run_id, request.reason
            )
        except CapgateError as exc:
            await abort_with(context, exc, self._metrics)
        response = api.StopRunResponse(
            tenant_id=stop.tenant_id, run_id=stop.run_id, stopped_by=stop.stopped_by
        )
        response.stop_time.FromDatetime(stop.stopped_at)
        return response

    async def SetTenantMode(
        self, request: api.SetTenantModeRequest, context: grpc.aio.ServicerContext
    ) -> api.SetTenantModeResponse:
        try:
            caller = authenticate(self._authenticator, context)
            mode = convert.MODE_OF.get(request.mode)
            change = await self._desk.set_mode(caller, request.tenant_id, mode, request.reason)
        except CapgateError as exc:
            await abort_with(context, exc, self._metrics)
        response = api.SetTenantModeResponse(
            tenant_id=change.tenant_id,
            mode=convert.MODES[change.mode],
            previous_mode=convert.MODES[change.previous],
            changed_by=change.changed_by,
        )
        response.change_time.FromDatetime(change.changed_at)
        return response

    async def GetStatus(
        self, request: api.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> api.GetStatusResponse:
        try:
            caller = authenticate(self._authenticator, context)
            status = await self._desk.status(caller, request.tenant_id)
        except CapgateError as exc:
            await abort_with(context, exc, self._metrics)
        response = api.GetStatusResponse(
            policy_revision=status.policy_revision,
            budget_store_reachable=status.budget_store_reachable,
            tenant_mode=(
                convert.MODES[status.tenant_mode]
                if status.tenant_mode
                else api.TENANT_MODE_UNSPECIFIED
            ),
            pending_approvals=status.pending_approvals or 0,
            decision_log_errors=status.decision_log_errors,
            instance_id=self._instance_id,
            policy_engine=status.policy_engine,
            bundle_source=status.bundle.source,
            bundle_last_error=status.bundle.last_error,
            bundle_activation_failures=status.bundle.failures,
        )
        if status.bundle.activated_at is not None:
            response.bundle_activation_time.FromDatetime(status.bundle.activated_at)
        if status.bundle.last_error_at is not None:
            response.bundle_last_error_time.FromDatetime(status.bundle.last_error_at)
        return response
