"""How an operator command reaches capgate: target, credentials, TLS and timeout.

:func:`load_connection` reads every file up front (token, TLS PEMs), so a missing
file fails before any call with :class:`UsageError` naming it. The bearer token
travels as ``authorization: Bearer <token>`` (RFC 6750 §2.1); in ``--identity
insecure`` mode nothing is verified and the caller may name itself with the
``x-capgate-principal-id`` / ``x-capgate-roles`` / ``x-capgate-tenant-id`` metadata
(capgate/identity/insecure.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from capgate.identity.insecure import PRINCIPAL_ID_HEADER, ROLES_HEADER, TENANT_ID_HEADER
from capgate.operator.errors import UsageError
from capgate_client._client import bearer_metadata

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Tls:
    """PEM bytes; ``root_certificates`` None trusts the system roots; a client
    certificate (for mTLS) needs both ``certificate_chain`` and ``private_key``."""

    root_certificates: bytes | None
    certificate_chain: bytes | None
    private_key: bytes | None


@dataclass(frozen=True, slots=True)
class Connection:
    """``tls`` None: a plaintext channel. ``insecure_*``: metadata naming the caller,
    read only by a server in insecure identity mode."""

    target: str
    token: str | None
    tls: Tls | None
    timeout_seconds: float
    insecure_principal: str = ""
    insecure_roles: tuple[str, ...] = ()
    insecure_tenant: str = ""

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The gRPC metadata sent with every call."""
        insecure = (
            (PRINCIPAL_ID_HEADER, self.insecure_principal),
            (ROLES_HEADER, ",".join(self.insecure_roles)),
            (TENANT_ID_HEADER, self.insecure_tenant),
        )
        return bearer_metadata(self.token) + tuple((k, v) for k, v in insecure if v)

    def open_channel(self) -> grpc.Channel:
        """A blocking channel (TLS when :attr:`tls` is set); the caller closes it."""
        if self.tls is None:
            return grpc.insecure_channel(self.target)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.tls.root_certificates,
            private_key=self.tls.private_key,
            certificate_chain=self.tls.certificate_chain,
        )
        return grpc.secure_channel(self.target, credentials)


def load_connection(
    *,
    target: str,
    token_file: Path | None,
    token_env: str | None,
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    timeout_seconds: float,
    insecure_principal: str = "",
    insecure_roles: str = "",
    tenant: str = "",
) -> Connection:
    """The connection the flags describe. The token is ``token_file``'s content,
    stripped, else ``token_env`` (``$CAPGATE_TOKEN``), else none. ``insecure_roles``
    is comma-separated; ``tenant`` is sent as ``x-capgate-tenant-id`` only together
    with an insecure principal or roles.

    Raises:
        UsageError: a file cannot be read (the message names it), the token file is
            empty, only one of ``tls_cert``/``tls_key`` is given, or the timeout is not
            positive.
    """
    if timeout_seconds <= 0:
        raise UsageError(f"--timeout must be positive, not {timeout_seconds}")
    token = token_env or None
    if token_file is not None:
        token = _read(token_file, "token file").decode("utf-8", "replace").strip()
        if not token:
            raise UsageError(f"token file {token_file} is empty")
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together (a client certificate and its key)")
    tls = None
    if tls_ca or tls_cert or tls_key:
        tls = Tls(
            root_certificates=_read(tls_ca, "--tls-ca file") if tls_ca else None,
            certificate_chain=_read(tls_cert, "--tls-cert file") if tls_cert else None,
            private_key=_read(tls_key, "--tls-key file") if tls_key else None,
        )
    roles = tuple(role.strip() for role in insecure_roles.split(",") if role.strip())
    insecure = bool(insecure_principal or roles)
    return Connection(
        target=target,
        token=token,
        tls=tls,
        timeout_seconds=timeout_seconds,
        insecure_principal=insecure_principal,
        insecure_roles=roles,
        insecure_tenant=tenant if insecure else "",
    )


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
