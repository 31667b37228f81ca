"""The fingerprint of an Authorize request, for idempotency keys. Pure.

SHA-256 (hex) over the RFC 8785 canonical JSON (JCS, https://www.rfc-editor.org/rfc/rfc8785)
of every request field except ``idempotency_key`` itself. A retry of the same tool call
has the same fingerprint; the same key on a different request does not.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from typing import Any

import rfc8785

from capgate.decision.model import AuthorizeRequest

_EXCLUDED = ("idempotency_key", "size_bytes")


def request_fingerprint(request: AuthorizeRequest) -> str:
    fields: dict[str, Any] = asdict(request)
    for name in _EXCLUDED:
        del fields[name]
    return hashlib.sha256(rfc8785.dumps(fields)).hexdigest()
