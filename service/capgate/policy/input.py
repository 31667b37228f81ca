"""Build the policy input document (DESIGN §5). Pure.

The request appears as proto3 JSON with snake_case keys (the proto field names,
https://protobuf.dev/programming-guides/json/): a field at its default value (``""``,
``0``, ``false``, empty list or object) is absent, so policies read optional fields
with ``object.get``. Two departures from proto3 JSON: int64 values are JSON numbers,
not strings, and whole-number parameters are integers. Facts the sidecar
established itself are added beside the request:
  - ``identity``: how the principal was established (``method``: ``jwt``, ``mtls`` or
    ``insecure``), its ``principal_id`` and verified ``claims``;
  - ``approval``: the approval the request presents, only once the sidecar verified
    it (see approvals/flow.py ``approval_fact``); absent otherwise;
  - ``request_time``: RFC 3339 UTC time of the decision, with microseconds.
The tenant's mode and the run's stop are not in the input: the sidecar enforces them
in the same Redis step as the budgets, after the policy (DESIGN §6).
Keeping the document small matters: rego-cpp's cost of ``set_input`` grows with it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from capgate.clock import rfc3339
from capgate.decision.model import AuthorizeRequest

_DEFAULTS: tuple[Any, ...] = ("", 0, False, None, [], {})


def build_input(
    request: AuthorizeRequest,
    *,
    identity: dict[str, Any],
    request_time: datetime,
    approval: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The input document for ``request``; see the module docstring for its shape.

    ``parameters`` and ``attributes`` are passed through as they are (not copied).
    """
    p, res, run, cost = request.principal, request.resource, request.run, request.estimated_cost
    document = _present(
        {
            "tenant_id": request.tenant_id,
            "principal": _present(
                {
                    "id": p.id,
                    "on_behalf_of": p.on_behalf_of,
                    "delegation_chain": list(p.delegation_chain),
                    "scopes": list(p.scopes),
                    "roles": list(p.roles),
                    "attributes": p.attributes,
                }
            ),
            "capability": request.capability,
            "tool": request.tool,
            "parameters": request.parameters,
            "resource": _present({"type": res.type, "id": res.id, "attributes": res.attributes}),
            "run": _present(
                {
                    "run_id": run.run_id,
                    "workflow": run.workflow,
                    "step": run.step,
                    "trace_id": run.trace_id,
                }
            ),
            "estimated_cost": _present({"usd_micros": cost.usd_micros, "tokens": cost.tokens}),
            "idempotency_key": request.idempotency_key,
            "approval_id": request.approval_id,
            "dry_run": request.dry_run,
            "evidence": [
                _present({"kind": e.kind, "uri": e.uri, "digest": e.digest})
                for e in request.evidence
            ],
        }
    )
    document["identity"] = identity
    if approval is not None:
        document["approval"] = approval
    document["request_time"] = rfc3339(request_time)
    return document


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    """Drop fields at their proto3 default value."""
    return {k: v for k, v in fields.items() if v not in _DEFAULTS}
