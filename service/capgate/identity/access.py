"""Which tenant a verified caller acts on, and which roles an operation needs. Pure.

- A caller whose credentials name a tenant acts on that tenant only; a request naming
  another is refused (PERMISSION_DENIED); a request naming none gets the caller's.
- A caller whose credentials name no tenant may act on any tenant only with the
  ``capgate-admin`` role (a platform operator).
- The insecure mode trusts the request: the tenant is the one it names.
"""

from __future__ import annotations

from capgate.errors import InvalidArgument, PermissionDenied
from capgate.identity.model import Identity

ADMIN_ROLE = "capgate-admin"


def tenant_for(identity: Identity, requested: str) -> str:
    """The tenant ``identity`` acts on when the request names ``requested`` ("" = none).

    Raises:
        PermissionDenied: ``requested`` is another tenant than the credentials', or the
            credentials name no tenant and lack the ``capgate-admin`` role.
        InvalidArgument: neither the request nor the credentials name a tenant.
    """
    if identity.tenant_id and not identity.trusts_body:
        if requested and requested != identity.tenant_id:
            raise PermissionDenied(
                "tenant_id: the request names another tenant than the credentials"
            )
        return identity.tenant_id
    if not requested:
        raise InvalidArgument([("tenant_id", "is required")])
    if not identity.trusts_body and ADMIN_ROLE not in identity.roles:
        raise PermissionDenied(f"the credentials name no tenant and lack the {ADMIN_ROLE} role")
    return requested


def require_role(identity: Identity, role: str) -> None:
    """Raises PermissionDenied unless ``identity`` holds ``role``."""
    if role not in identity.roles:
        raise PermissionDenied(f"this operation needs the {role} role")
