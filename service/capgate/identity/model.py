"""Who is calling: credentials as the transport saw them, and the identity verified
from them. Pure types; each mode (insecure.py, jwt.py, mtls.py) turns
:class:`Credentials` into an :class:`Identity` behind the :class:`Authenticator`
protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the transport carries about the caller.

    ``bearer_token``: the token of gRPC metadata ``authorization: Bearer <token>``
    (RFC 6750 §2.1), or "". ``peer_certificate_pem``: the client's verified TLS
    certificate (PEM), or "". ``peer``: gRPC's peer string (``ipv4:127.0.0.1:5555``,
    ``unix:/run/capgate.sock``). ``metadata``: other lower-cased metadata, only read
    by the insecure mode.
    """

    bearer_token: str = ""
    peer_certificate_pem: str = ""
    peer: str = ""
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified caller.

    ``method``: ``"jwt"``, ``"mtls"`` or ``"insecure"``. ``tenant_id`` is "" when the
    credentials name no tenant (such an identity may not call Authorize; with the
    ``capgate-admin`` role it may act on any tenant). ``delegation_chain`` is
    outermost first (user → agent → sub-agent), ending with ``principal_id``.
    ``trusts_body``: the insecure mode, where the request body's principal is taken
    as-is. ``claims``: what the policy sees as ``input.identity.claims`` (JWT claims,
    or the SPIFFE ID), never secrets.
    """

    method: str
    principal_id: str
    tenant_id: str = ""
    on_behalf_of: str = ""
    delegation_chain: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    trusts_body: bool = False
    claims: dict[str, Any] | None = None

    def fact(self) -> dict[str, Any]:
        """``input.identity`` for the policy: method, subject and claims."""
        fact: dict[str, Any] = {"method": self.method}
        if self.principal_id:
            fact["principal_id"] = self.principal_id
        if self.claims:
            fact["claims"] = self.claims
        return fact


class Authenticator(Protocol):
    def authenticate(self, credentials: Credentials) -> Identity:
        """The verified identity of the caller.

        Raises:
            Unauthenticated: no credentials, or credentials that fail verification
                (bad signature, expired, wrong issuer or audience, ...).
        """
        ...
