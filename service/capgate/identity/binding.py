"""Bind an Authorize request to its caller's verified identity. Pure.

The body may repeat who the caller is, but may not contradict it: a body naming
another tenant, principal or on-behalf-of than the credentials is refused with
``PermissionDenied`` (never silently rewritten). Whatever the body said, the
principal the policy sees comes from the identity; only ``principal.attributes``
are kept from the body. In insecure mode (``identity.trusts_body``) the body is
taken as-is.
"""

from __future__ import annotations

from dataclasses import replace

from capgate.decision.model import AuthorizeRequest
from capgate.errors import PermissionDenied
from capgate.identity.model import Identity


def bind_request(identity: Identity, request: AuthorizeRequest) -> AuthorizeRequest:
    """``request`` with ``tenant_id`` and the principal's ``id``, ``on_behalf_of``,
    ``delegation_chain``, ``scopes`` and ``roles`` taken from ``identity``.

    Raises:
        PermissionDenied: the identity names no tenant, or the body's non-empty
            ``tenant_id``, ``principal.id`` or ``principal.on_behalf_of`` differs from
            the identity's (the message names the field, never the values).
    """
    if identity.trusts_body:
        return request
    if not identity.tenant_id:
        raise PermissionDenied("the credentials name no tenant")
    principal = request.principal
    for field, claimed, verified in (
        ("tenant_id", request.tenant_id, identity.tenant_id),
        ("principal.id", principal.id, identity.principal_id),
        ("principal.on_behalf_of", principal.on_behalf_of, identity.on_behalf_of),
    ):
        if claimed and claimed != verified:
            raise PermissionDenied(f"{field} differs from the caller's credentials")
    return replace(
        request,
        tenant_id=identity.tenant_id,
        principal=replace(
            principal,
            id=identity.principal_id,
            on_behalf_of=identity.on_behalf_of,
            delegation_chain=identity.delegation_chain,
            scopes=identity.scopes,
            roles=identity.roles,
        ),
    )
