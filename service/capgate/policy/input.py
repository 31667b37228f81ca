"""Build the policy input document (DESIGN §5). Pure.

The request appears as proto3 JSON with snake_case keys (the proto field names,
https://protobuf.dev/programming-guides/json/): a field at its default value (``""``,
``0``, ``false``, empty list or object) is absent, so policies read optional fields
with ``object.get``. Two departures from proto3 JSON: int64 values are JSON numbers,
not strings, and whole-number parameters are integers. Facts the sidecar
established itself are added beside the request:
  - ``identity``: how the principal was established, e.g. ``{"method": "insecure"}``;
  - ``tenant_mode``: ``"normal"``, ``"read_only"`` or ``"frozen"``;
  - ``request_time``: RFC 3339 UTC time of the decision.
Keeping the document small matters: rego-cpp's cost of ``set_input`` grows with it.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from datetime import datetime
from typing import Any

from capgate.decision.model import AuthorizeRequest

_SKIPPED = frozenset({"size_bytes"})


def build_input(
    request: AuthorizeRequest,
    *,
    identity: dict[str, Any],
    tenant_mode: str,
    request_time: datetime,
) -> dict[str, Any]:
    """The input document for ``request``; see the module docstring for its shape."""
    document = _compact(request)
    document["identity"] = identity
    document["tenant_mode"] = tenant_mode
    document["request_time"] = request_time.isoformat().replace("+00:00", "Z")
    return document


def _compact(value: Any) -> Any:
    if is_dataclass(value):
        out: dict[str, Any] = {}
        for f in fields(value):
            if f.name in _SKIPPED:
                continue
            item = _compact(getattr(value, f.name))
            if item not in ("", 0, False, None, (), [], {}):
                out[f.name] = item
        return out
    if isinstance(value, tuple | list):
        return [_compact(v) for v in value]
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()}
    return value
