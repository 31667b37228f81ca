"""What binds an approval to one exact action. Pure.

Parameters are serialized as RFC 8785 canonical JSON (JCS,
https://www.rfc-editor.org/rfc/rfc8785) with the ``rfc8785`` package, so the same
parameters always give the same bytes whatever their key order or number spelling.

``action_sha256`` is the hex SHA-256 of the JCS array
``[tenant_id, principal_id, on_behalf_of, capability, tool, parameters]``: an
approval is usable only by a request whose own action hash is equal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import rfc8785

from capgate.decision.model import AuthorizeRequest


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON of ``value``.

    Raises:
        ValueError: ``value`` holds something JSON cannot represent (NaN, a float
            outside IEEE 754 double range, a non-string key).
    """
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError) as exc:
        raise ValueError(f"not canonicalizable as JSON: {exc}") from exc


def parameters_sha256(parameters: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(dict(parameters))).hexdigest()


def action_sha256(request: AuthorizeRequest) -> str:
    """The hash an approval created for ``request`` is bound to."""
    p = request.principal
    action = [
        request.tenant_id,
        p.id,
        p.on_behalf_of,
        request.capability,
        request.tool,
        dict(request.parameters),
    ]
    return hashlib.sha256(canonical_json(action)).hexdigest()
