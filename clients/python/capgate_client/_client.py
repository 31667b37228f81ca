"""Sync and asyncio clients over one request builder."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import grpc
from google.protobuf import struct_pb2

from capgate.v1 import authorization_service_pb2 as api
from capgate.v1 import authorization_service_pb2_grpc as api_grpc
from capgate.v1 import types_pb2 as types
from capgate_client._types import AuthorizeResult, InvalidRequestError, SettleResult

DEFAULT_TIMEOUT_SECONDS = 2.0


def build_request(
    *,
    tenant_id: str,
    principal_id: str,
    capability: str,
    tool: str = "",
    parameters: Mapping[str, Any] | None = None,
    scopes: Iterable[str] = (),
    roles: Iterable[str] = (),
    on_behalf_of: str = "",
    run_id: str = "",
    workflow: str = "",
    step: int = 0,
    estimated_cost_usd_micros: int = 0,
    estimated_tokens: int = 0,
    idempotency_key: str = "",
    approval_id: str = "",
    dry_run: bool = False,
) -> api.AuthorizeRequest:
    """The AuthorizeRequest message for these arguments (money in micro-dollars).

    A message field stays unset when all its arguments are at their defaults: without
    an estimated cost, no ``estimated_cost`` is sent.
    """
    request = api.AuthorizeRequest(
        tenant_id=tenant_id,
        principal=types.Principal(
            id=principal_id, on_behalf_of=on_behalf_of, scopes=list(scopes), roles=list(roles)
        ),
        capability=capability,
        tool=tool,
        run=types.Run(run_id=run_id, workflow=workflow, step=step),
        idempotency_key=idempotency_key,
        approval_id=approval_id,
        dry_run=dry_run,
    )
    if estimated_cost_usd_micros or estimated_tokens:
        request.estimated_cost.CopyFrom(
            types.Cost(usd_micros=estimated_cost_usd_micros, tokens=estimated_tokens)
        )
    if parameters:
        request.parameters.update(dict(parameters))
    return request


def build_settle_request(
    *,
    tenant_id: str,
    decision_id: str,
    outcome: str,
    actual_cost_usd_micros: int | None = None,
    actual_tokens: int | None = None,
    changes: Iterable[Mapping[str, Any]] = (),
    result: Mapping[str, Any] | None = None,
) -> api.SettleRequest:
    """The SettleRequest message. ``outcome``: "SUCCEEDED", "FAILED", "REVERTED" or
    "ABANDONED". Without an actual cost, capgate commits the estimate. ``changes``:
    ``{"resource", "field", "before", "after"}`` dicts (the diff the call made)."""
    request = api.SettleRequest(
        tenant_id=tenant_id,
        decision_id=decision_id,
        outcome=api.Outcome.Value(f"OUTCOME_{outcome.upper()}"),
    )
    if actual_cost_usd_micros is not None or actual_tokens is not None:
        request.actual_cost.CopyFrom(
            types.Cost(usd_micros=actual_cost_usd_micros or 0, tokens=actual_tokens or 0)
        )
    for change in changes:
        entry = request.changes.add(resource=change["resource"], field=change["field"])
        for side in ("before", "after"):
            if side in change:
                getattr(entry, side).CopyFrom(_value(change[side]))
    if result:
        request.result.update(dict(result))
    return request


def _value(python: Any) -> struct_pb2.Value:
    holder = struct_pb2.Struct()
    holder.update({"v": python})
    return holder.fields["v"]


@contextmanager
def _invalid_request_errors() -> Iterator[None]:
    """Turn an INVALID_ARGUMENT status into :class:`InvalidRequestError`; let other
    ``grpc.RpcError`` (sync or asyncio) through."""
    try:
        yield
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.INVALID_ARGUMENT:  # type: ignore[attr-defined]
            raise InvalidRequestError.from_rpc_error(error) from error
        raise


def bearer_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying ``token`` as ``authorization: Bearer <token>`` (RFC 6750
    §2.1), which capgate verifies in ``--identity jwt`` mode; empty without a token."""
    return (("authorization", f"Bearer {token}"),) if token else ()


class AsyncClient:
    """asyncio client: ``async with AsyncClient(target) as c: await c.authorize(...)``.

    ``token``: a JWT sent with every call (``--identity jwt``); ``credentials``: TLS
    channel credentials (``grpc.ssl_channel_credentials(...)``, with a client
    certificate for ``--identity mtls``); without them the channel is plaintext.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self._channel = (
            grpc.aio.secure_channel(target, credentials)
            if credentials
            else grpc.aio.insecure_channel(target)
        )
        self._stub = api_grpc.AuthorizationServiceStub(self._channel)
        self._timeout = timeout_seconds
        self._metadata = bearer_metadata(token)

    async def channel_ready(self) -> None:
        """Wait until the channel is connected (``grpc.aio.Channel.channel_ready``): the
        first call then pays no connection set-up."""
        await self._channel.channel_ready()

    async def authorize(self, **kwargs: Any) -> AuthorizeResult:
        """Arguments as :func:`build_request`. Raises InvalidRequestError or grpc.RpcError."""
        return await self.authorize_message(build_request(**kwargs))

    async def authorize_message(self, request: api.AuthorizeRequest) -> AuthorizeResult:
        with _invalid_request_errors():
            response = await self._stub.Authorize(
                request, timeout=self._timeout, metadata=self._metadata
            )
        return AuthorizeResult.from_proto(response)

    async def settle(self, **kwargs: Any) -> SettleResult:
        """Arguments as :func:`build_settle_request`. Raises InvalidRequestError, or
        grpc.RpcError: NOT_FOUND (no reservation), FAILED_PRECONDITION (settled with
        another outcome), UNAVAILABLE (retry: Settle is idempotent)."""
        with _invalid_request_errors():
            response = await self._stub.Settle(
                build_settle_request(**kwargs), timeout=self._timeout, metadata=self._metadata
            )
        return SettleResult.from_proto(response)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class Client:
    """Blocking client: ``with Client(target) as c: c.authorize(...)``; ``token`` and
    ``credentials`` as :class:`AsyncClient`."""

    def __init__(
        self,
        target: str,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self._channel = (
            grpc.secure_channel(target, credentials)
            if credentials
            else grpc.insecure_channel(target)
        )
        self._stub = api_grpc.AuthorizationServiceStub(self._channel)
        self._timeout = timeout_seconds
        self._metadata = bearer_metadata(token)

    def authorize(self, **kwargs: Any) -> AuthorizeResult:
        """Arguments as :func:`build_request`. Raises InvalidRequestError or grpc.RpcError."""
        return self.authorize_message(build_request(**kwargs))

    def authorize_message(self, request: api.AuthorizeRequest) -> AuthorizeResult:
        with _invalid_request_errors():
            response = self._stub.Authorize(request, timeout=self._timeout, metadata=self._metadata)
        return AuthorizeResult.from_proto(response)

    def settle(self, **kwargs: Any) -> SettleResult:
        """Arguments as :func:`build_settle_request`; errors as :meth:`AsyncClient.settle`."""
        with _invalid_request_errors():
            response = self._stub.Settle(
                build_settle_request(**kwargs), timeout=self._timeout, metadata=self._metadata
            )
        return SettleResult.from_proto(response)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
