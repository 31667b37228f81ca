"""Insecure identity: the request body's principal is trusted as-is.

For loopback and Unix sockets only (:func:`listen_is_local`); the policy sees
``input.identity.method == "insecure"``. Optional gRPC metadata can name the caller
for tools that want it (``x-capgate-principal-id``, ``x-capgate-tenant-id``,
``x-capgate-roles``), but nothing is verified.
"""

from __future__ import annotations

import ipaddress

from capgate.identity.model import Credentials, Identity
from capgate.settings import parse_host_port

PRINCIPAL_ID_HEADER = "x-capgate-principal-id"
TENANT_ID_HEADER = "x-capgate-tenant-id"
ROLES_HEADER = "x-capgate-roles"


class InsecureAuthenticator:
    """Accepts every caller; the request body is trusted (``trusts_body=True``)."""

    def authenticate(self, credentials: Credentials) -> Identity:
        """``Identity(method="insecure", trusts_body=True)`` with ``principal_id``,
        ``tenant_id`` and ``roles`` (comma-separated) from the metadata above, each
        "" or empty when absent. Never raises."""
        metadata: dict[str, str] = {}
        for key, value in credentials.metadata:
            metadata.setdefault(key, value)
        roles = metadata.get(ROLES_HEADER, "").split(",")
        return Identity(
            method="insecure",
            principal_id=metadata.get(PRINCIPAL_ID_HEADER, ""),
            tenant_id=metadata.get(TENANT_ID_HEADER, ""),
            roles=tuple(role.strip() for role in roles if role.strip()),
            trusts_body=True,
        )


def listen_is_local(listen: str) -> bool:
    """Whether ``server.listen`` only accepts local callers: ``unix:/path`` or a
    ``HOST:PORT`` whose host is ``localhost`` or a loopback address (127.0.0.0/8,
    ``::1``, IPv4-mapped loopback). ``0.0.0.0``, ``::``, other addresses, other names
    and malformed values are not local."""
    if listen.startswith("unix:"):
        return True
    try:
        host, _ = parse_host_port(listen)
    except ValueError:
        return False
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
