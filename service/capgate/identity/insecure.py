"""Insecure identity: the request body's principal is trusted as-is.

For loopback and development only; verified identities (JWT, mTLS/SPIFFE) arrive with
the identity issue (DESIGN §7). The policy sees ``input.identity.method == "insecure"``.
"""

from __future__ import annotations

from typing import Any

from capgate.decision.model import AuthorizeRequest


class InsecureIdentity:
    def resolve(self, request: AuthorizeRequest) -> dict[str, Any]:
        """The ``identity`` fact for the policy input."""
        return {"method": "insecure"}
