"""The fingerprint of an Authorize request, for idempotency keys. Pure.

SHA-256 (hex) over canonical JSON of every request field except ``idempotency_key``
(and the transport's ``size_bytes``): keys sorted, no whitespace, UTF-8, Python's
shortest round-trip form for floats. A retry of the same tool call has the same
fingerprint; the same key on a different request does not. (Not RFC 8785: the
fingerprint is only ever compared with one this same code made, and the standard
library's encoder is ~5x faster than a pure-Python JCS encoder on the hot path.)
"""

from __future__ import annotations

import hashlib
import json

from capgate.decision.model import AuthorizeRequest


def request_fingerprint(request: AuthorizeRequest) -> str:
    p, res, run, cost = request.principal, request.resource, request.run, request.estimated_cost
    fields = [
        request.tenant_id,
        [p.id, p.on_behalf_of, p.delegation_chain, p.scopes, p.roles, p.attributes],
        request.capability,
        request.tool,
        request.parameters,
        [res.type, res.id, res.attributes],
        [run.run_id, run.workflow, run.step, run.trace_id],
        [cost.usd_micros, cost.tokens],
        request.approval_id,
        request.dry_run,
        [[e.kind, e.uri, e.digest] for e in request.evidence],
    ]
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
