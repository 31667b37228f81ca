"""Blocking calls to ApprovalService and ControlService (proto/capgate/v1/*.proto).

    with open_operator(connection) as operator:
        page = operator.list_approvals("acme", state=types.APPROVAL_STATE_PENDING)

Every method returns the RPC's response message and raises :class:`CallFailed` for a
gRPC error status (converted here, where it enters). Unary calls carry the
connection's timeout; :meth:`Operator.watch` has none.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from capgate.operator.connection import Connection
from capgate.operator.errors import CallFailed
from capgate.v1 import approval_service_pb2 as approvals_api
from capgate.v1 import approval_service_pb2_grpc as approvals_grpc
from capgate.v1 import control_service_pb2 as control_api
from capgate.v1 import control_service_pb2_grpc as control_grpc


@contextmanager
def open_operator(connection: Connection) -> Iterator[Operator]:
    """An :class:`Operator` on a new channel, closed on exit."""
    channel = connection.open_channel()
    try:
        yield Operator(channel, connection)
    finally:
        channel.close()


@contextmanager
def _converted(hint: str = "") -> Iterator[None]:
    try:
        yield
    except grpc.RpcError as error:
        raise CallFailed.from_rpc_error(error, hint=hint) from None


class Operator:
    """The operator's calls over one channel. ``tenant_id`` "" lets the server use
    the tenant the caller's credentials name."""

    def __init__(self, channel: grpc.Channel, connection: Connection) -> None:
        self._approvals = approvals_grpc.ApprovalServiceStub(channel)
        self._control = control_grpc.ControlServiceStub(channel)
        self._metadata = connection.metadata()
        self._timeout = connection.timeout_seconds

    def get_approval(self, tenant_id: str, approval_id: str) -> approvals_api.GetApprovalResponse:
        request = approvals_api.GetApprovalRequest(tenant_id=tenant_id, approval_id=approval_id)
        with _converted():
            return self._approvals.GetApproval(
                request, timeout=self._timeout, metadata=self._metadata
            )

    def list_approvals(
        self, tenant_id: str, *, state: int = 0, page_size: int = 0, page_token: str = ""
    ) -> approvals_api.ListApprovalsResponse:
        """One page, newest first; ``state`` an ``ApprovalState`` value (0: every state)."""
        request = approvals_api.ListApprovalsRequest(
            tenant_id=tenant_id, state=state, page_size=page_size, page_token=page_token
        )
        with _converted():
            return self._approvals.ListApprovals(
                request, timeout=self._timeout, metadata=self._metadata
            )

    def list_all_approvals(
        self, tenant_id: str, *, state: int = 0, page_size: int = 0
    ) -> approvals_api.ListApprovalsResponse:
        """Every page in one response: ``next_page_token`` empty, and the first page's
        ``watch_resume_token`` (a watch from there misses no transition after the
        listing began)."""
        merged = self.list_approvals(tenant_id, state=state, page_size=page_size)
        token = merged.next_page_token
        while token:
            page = self.list_approvals(
                tenant_id, state=state, page_size=page_size, page_token=token
            )
            merged.approvals.extend(page.approvals)
            token = page.next_page_token
        merged.next_page_token = ""
        return merged

    def decide_approval(
        self, tenant_id: str, approval_id: str, verdict: int, comment: str
    ) -> approvals_api.DecideApprovalResponse:
        """``verdict``: APPROVAL_VERDICT_APPROVE or APPROVAL_VERDICT_REJECT."""
        request = approvals_api.DecideApprovalRequest(
            tenant_id=tenant_id, approval_id=approval_id, verdict=verdict, comment=comment
        )
        with _converted():
            return self._approvals.DecideApproval(
                request, timeout=self._timeout, metadata=self._metadata
            )

    def watch_approvals(
        self, tenant_id: str, resume_token: str = ""
    ) -> Iterator[approvals_api.WatchApprovalsResponse]:
        """Transitions as they happen, until the caller stops iterating (the stream is
        then cancelled) or the server ends it: CallFailed; for UNAVAILABLE (Redis or
        the connection failed) its message names the ``--resume-token`` that
        continues where the stream broke off."""
        request = approvals_api.WatchApprovalsRequest(
            tenant_id=tenant_id, resume_token=resume_token
        )
        stream = self._approvals.WatchApprovals(request, metadata=self._metadata)
        last = resume_token
        try:
            for transition in stream:
                last = transition.resume_token
                yield transition
        except grpc.RpcError as error:
            broke = error.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
            hint = f"resume with --resume-token {last}" if broke and last else ""
            raise CallFailed.from_rpc_error(error, hint=hint) from None
        finally:
            stream.cancel()

    def stop_run(self, tenant_id: str, run_id: str, reason: str) -> control_api.StopRunResponse:
        request = control_api.StopRunRequest(tenant_id=tenant_id, run_id=run_id, reason=reason)
        with _converted():
            return self._control.StopRun(request, timeout=self._timeout, metadata=self._metadata)

    def set_tenant_mode(
        self, tenant_id: str, mode: int, reason: str
    ) -> control_api.SetTenantModeResponse:
        """``mode``: a ``TenantMode`` value."""
        request = control_api.SetTenantModeRequest(tenant_id=tenant_id, mode=mode, reason=reason)
        with _converted():
            return self._control.SetTenantMode(
                request, timeout=self._timeout, metadata=self._metadata
            )

    def status(self, tenant_id: str) -> control_api.GetStatusResponse:
        request = control_api.GetStatusRequest(tenant_id=tenant_id)
        with _converted():
            return self._control.GetStatus(request, timeout=self._timeout, metadata=self._metadata)
