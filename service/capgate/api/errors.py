"""Domain errors → gRPC status, in one place (AIP-193).

:func:`abort_with` maps every error a servicer lets through: ``Unauthenticated`` →
UNAUTHENTICATED, ``PermissionDenied`` → PERMISSION_DENIED, ``NotFound`` and
``ReservationNotFound`` → NOT_FOUND, ``FailedPrecondition`` and ``SettlementConflict``
→ FAILED_PRECONDITION, ``BudgetStoreUnavailable`` → UNAVAILABLE (retry).
``InvalidArgument`` becomes ``INVALID_ARGUMENT`` with a ``google.rpc.BadRequest`` listing
each field violation and a ``google.rpc.ErrorInfo`` (reason ``INVALID_REQUEST``,
domain ``capgate.dev``). Policy refusals are never errors: they are DENY responses.
"""

from __future__ import annotations

from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from capgate.errors import (
    BudgetStoreUnavailable,
    CapgateError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ReservationNotFound,
    SettlementConflict,
    Unauthenticated,
)
from capgate.observability.metrics import Metrics

ERROR_DOMAIN = "capgate.dev"


async def abort_invalid_argument(
    context: grpc.aio.ServicerContext, exc: InvalidArgument
) -> NoReturn:
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
            for field, description in exc.violations
        ]
    )
    info = error_details_pb2.ErrorInfo(reason="INVALID_REQUEST", domain=ERROR_DOMAIN)
    details = []
    for detail in (bad_request, info):
        packed = any_pb2.Any()
        packed.Pack(detail)
        details.append(packed)
    status = rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=str(exc), details=details)
    )
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("unreachable: context.abort raises")


_STATUS: tuple[tuple[type[CapgateError], grpc.StatusCode], ...] = (
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (ReservationNotFound, grpc.StatusCode.NOT_FOUND),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (SettlementConflict, grpc.StatusCode.FAILED_PRECONDITION),
    (BudgetStoreUnavailable, grpc.StatusCode.UNAVAILABLE),
)


async def abort_with(
    context: grpc.aio.ServicerContext, exc: CapgateError, metrics: Metrics
) -> NoReturn:
    """Abort the call with the status for ``exc`` (see the module docstring); identity
    refusals and malformed requests are counted in ``metrics``.

    Raises:
        TypeError: ``exc`` is an error no status is defined for (a bug).
    """
    if isinstance(exc, Unauthenticated):
        metrics.authentication_failures.labels("unauthenticated").inc()
    elif isinstance(exc, PermissionDenied):
        metrics.authentication_failures.labels("permission_denied").inc()
    elif isinstance(exc, InvalidArgument):
        metrics.invalid_requests.inc()
    if isinstance(exc, InvalidArgument):
        await abort_invalid_argument(context, exc)
    for kind, code in _STATUS:
        if isinstance(exc, kind):
            message = str(exc)
            if kind is BudgetStoreUnavailable:
                message = "the budget store is unavailable; retry"
            await context.abort(code, message)
    raise TypeError(f"no gRPC status for {type(exc).__name__}") from exc
