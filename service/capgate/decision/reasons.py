"""Reason codes the sidecar itself emits (DESIGN §4); policy codes are the bundle's own.

Messages here go back to the agent and are safe to show a model: they never echo
request values. Details go to the decision event.
"""

from __future__ import annotations

from capgate.decision.model import Reason

POLICY_ERROR = "POLICY_ERROR"
POLICY_UNAVAILABLE = "POLICY_UNAVAILABLE"
BUDGET_EXCEEDED = "BUDGET_EXCEEDED"
CALL_LIMIT_EXCEEDED = "CALL_LIMIT_EXCEEDED"
TOKEN_LIMIT_EXCEEDED = "TOKEN_LIMIT_EXCEEDED"
BUDGET_STORE_UNAVAILABLE = "BUDGET_STORE_UNAVAILABLE"
RATE_LIMITED = "RATE_LIMITED"
APPROVAL_INVALID = "APPROVAL_INVALID"
RUN_STOPPED = "RUN_STOPPED"
TENANT_READ_ONLY = "TENANT_READ_ONLY"
TENANT_FROZEN = "TENANT_FROZEN"
AUDIT_UNAVAILABLE = "AUDIT_UNAVAILABLE"

_MESSAGES = {
    POLICY_ERROR: "the policy could not produce a decision; denied",
    POLICY_UNAVAILABLE: "no policy bundle is active; denied",
    BUDGET_EXCEEDED: "this call would exceed the {scope} spend budget",
    CALL_LIMIT_EXCEEDED: "this call would exceed the {scope} tool-call limit",
    TOKEN_LIMIT_EXCEEDED: "this call would exceed the {scope} token budget",
    BUDGET_STORE_UNAVAILABLE: "the budget store is unavailable; denied",
    RATE_LIMITED: "the {key} rate limit is exhausted; retry after {retry_after_ms} ms",
    APPROVAL_INVALID: "the approval cannot be used: {why}",
    RUN_STOPPED: "an operator stopped this run; denied",
    TENANT_READ_ONLY: "the tenant is read-only: only read capabilities are allowed",
    TENANT_FROZEN: "the tenant is frozen: every capability is denied",
    AUDIT_UNAVAILABLE: "this capability needs an audit record and the decision log is full",
}


def sidecar_reason(code: str, **fields: str) -> Reason:
    """The reason for a sidecar ``code``, its message filled from ``fields``."""
    return Reason(code=code, message=_MESSAGES[code].format(**fields))
