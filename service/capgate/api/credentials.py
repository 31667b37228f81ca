"""What the transport knows about the caller, as :class:`Credentials`. gRPC only.

The bearer token comes from metadata ``authorization: Bearer <token>`` (RFC 6750
§2.1, as gRPC call credentials send it); the client certificate from the TLS auth
context (``x509_pem_cert``, present only when the server verified it against its
client CA).
"""

from __future__ import annotations

import grpc

from capgate.identity.model import Authenticator, Credentials, Identity

_INSECURE_METADATA_PREFIX = "x-capgate-"


def credentials_of(context: grpc.aio.ServicerContext) -> Credentials:
    bearer = ""
    extra: list[tuple[str, str]] = []
    for key, value in context.invocation_metadata() or ():
        if not isinstance(value, str):
            continue
        if key == "authorization":
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer":
                bearer = token.strip()
        elif key.startswith(_INSECURE_METADATA_PREFIX):
            extra.append((key, value))
    certificates = context.auth_context().get("x509_pem_cert") or [b""]
    pem = certificates[0]
    return Credentials(
        bearer_token=bearer,
        peer_certificate_pem=pem.decode("ascii", "replace") if isinstance(pem, bytes) else pem,
        peer=context.peer() or "",
        metadata=tuple(extra),
    )


def authenticate(authenticator: Authenticator, context: grpc.aio.ServicerContext) -> Identity:
    """The caller's verified identity. Raises Unauthenticated."""
    return authenticator.authenticate(credentials_of(context))
