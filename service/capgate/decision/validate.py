"""Request validation: the first step of the Authorize path. Pure.

Every violation names its field path (AIP-193 ``BadRequest.FieldViolation``).
Rules (issue 2, DESIGN §4):
  - ``tenant_id``, ``principal.id`` and ``capability`` are required;
  - ``capability`` matches ``[a-z0-9_.:-]{1,128}``;
  - the serialized request is at most 1 MiB;
  - ``parameters`` nest at most 32 levels and hold only finite numbers;
  - ``estimated_cost`` amounts are not negative.
"""

from __future__ import annotations

import math
import re
from typing import Any

from capgate.decision.model import AuthorizeRequest, SettleRequest
from capgate.errors import InvalidArgument

MAX_REQUEST_BYTES = 1 << 20
MAX_PARAMETER_DEPTH = 32
CAPABILITY_PATTERN = re.compile(r"[a-z0-9_.:-]{1,128}")


def validate_request(request: AuthorizeRequest) -> None:
    """Raise :class:`InvalidArgument` listing every violated rule; return None if valid."""
    violations: list[tuple[str, str]] = []
    if request.size_bytes > MAX_REQUEST_BYTES:
        violations.append(
            ("request", f"is {request.size_bytes} bytes; the limit is {MAX_REQUEST_BYTES}")
        )
    if not request.tenant_id:
        violations.append(("tenant_id", "is required"))
    if not request.principal.id:
        violations.append(("principal.id", "is required"))
    if not request.capability:
        violations.append(("capability", "is required"))
    elif CAPABILITY_PATTERN.fullmatch(request.capability) is None:
        violations.append(("capability", "must match [a-z0-9_.:-]{1,128}"))
    if request.estimated_cost.usd_micros < 0:
        violations.append(("estimated_cost.usd_micros", "must not be negative"))
    if request.estimated_cost.tokens < 0:
        violations.append(("estimated_cost.tokens", "must not be negative"))
    _check_value("parameters", request.parameters, 1, violations)
    if violations:
        raise InvalidArgument(violations)


def _check_value(path: str, value: Any, depth: int, out: list[tuple[str, str]]) -> None:
    """Depth counts containers: ``{"a": 1}`` is depth 1, ``{"a": {"b": 1}}`` depth 2."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        if isinstance(value, float) and not math.isfinite(value):
            out.append((path, "must be a finite number"))
        return
    if depth > MAX_PARAMETER_DEPTH:
        out.append((path, f"nests deeper than {MAX_PARAMETER_DEPTH} levels"))
        return
    for key, child in items:
        _check_value(f"{path}.{key}", child, depth + 1, out)


def validate_settle(request: SettleRequest) -> None:
    """Raise :class:`InvalidArgument` listing every violated rule of a Settle call:
    at most 1 MiB; ``tenant_id``, ``decision_id`` and ``outcome`` are required;
    ``actual_cost`` amounts are not negative; ``changes`` and ``result`` hold only
    finite numbers and nest at most 32 levels."""
    violations: list[tuple[str, str]] = []
    if request.size_bytes > MAX_REQUEST_BYTES:
        violations.append(
            ("request", f"is {request.size_bytes} bytes; the limit is {MAX_REQUEST_BYTES}")
        )
    if not request.tenant_id:
        violations.append(("tenant_id", "is required"))
    if not request.decision_id:
        violations.append(("decision_id", "is required"))
    if request.outcome is None:
        violations.append(("outcome", "is required: SUCCEEDED, FAILED, REVERTED or ABANDONED"))
    if request.actual_cost is not None:
        if request.actual_cost.usd_micros < 0:
            violations.append(("actual_cost.usd_micros", "must not be negative"))
        if request.actual_cost.tokens < 0:
            violations.append(("actual_cost.tokens", "must not be negative"))
    for i, change in enumerate(request.changes):
        _check_value(f"changes.{i}.before", change.before, 1, violations)
        _check_value(f"changes.{i}.after", change.after, 1, violations)
    _check_value("result", request.result, 1, violations)
    if violations:
        raise InvalidArgument(violations)
