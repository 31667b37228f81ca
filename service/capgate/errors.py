"""capgate's exception hierarchy. Library exceptions are converted where they enter.

    CapgateError
    ├── InvalidArgument          a malformed request; carries (field, description) pairs
    ├── ConfigError              settings that fail validation; names the key
    ├── BundleError              a bundle that cannot be loaded or compiled
    ├── PolicyError              evaluation failed, or its result is undefined or malformed
    ├── BudgetStoreUnavailable   Redis unreachable, failing, or slower than its deadline
    ├── IdempotencyConflict      an idempotency key reused for a different request
    ├── ReservationNotFound      Settle of a decision that holds no reservation
    ├── SettlementConflict       Settle of a decision already settled another way
    ├── Unauthenticated          missing or unverifiable credentials
    ├── PermissionDenied         verified, but not allowed: another tenant or principal
    │                            than the token's, a missing role
    ├── NotFound                 an approval that does not exist in this tenant
    └── FailedPrecondition       an approval that is no longer pending

The pipeline turns PolicyError and BudgetStoreUnavailable into DENY decisions with
reason codes (fail closed). InvalidArgument and IdempotencyConflict reach the caller
as INVALID_ARGUMENT, ReservationNotFound as NOT_FOUND, SettlementConflict as
FAILED_PRECONDITION (api/errors.py); Unauthenticated as UNAUTHENTICATED,
PermissionDenied as PERMISSION_DENIED, NotFound as NOT_FOUND and FailedPrecondition
as FAILED_PRECONDITION.
"""

from __future__ import annotations

from collections.abc import Sequence


class CapgateError(Exception):
    """Base of every error capgate raises on purpose."""


class InvalidArgument(CapgateError):
    """A request field is missing or malformed.

    ``violations`` holds ``(field_path, description)`` pairs, e.g.
    ``("principal.id", "is required")``; they become a ``google.rpc.BadRequest``.
    """

    def __init__(self, violations: Sequence[tuple[str, str]]) -> None:
        self.violations = tuple(violations)
        super().__init__("; ".join(f"{field}: {desc}" for field, desc in self.violations))


class ConfigError(CapgateError):
    """Settings failed validation; the message names each bad key."""


class BundleError(CapgateError):
    """A bundle could not be read, verified or compiled; the message says which file."""


class PolicyError(CapgateError):
    """Policy evaluation failed or returned an undefined or malformed result."""


class BudgetStoreUnavailable(CapgateError):
    """The budget store could not answer within its deadline."""


class IdempotencyConflict(CapgateError):
    """The idempotency key was recorded, within its TTL, for a different request."""


class ReservationNotFound(CapgateError):
    """No reservation of this decision in this tenant: not an ALLOW, a dry run, another
    tenant's decision, or settled or expired more than 24 h ago."""


class SettlementConflict(CapgateError):
    """The decision was already settled with another outcome; ``outcome`` names it."""

    def __init__(self, decision_id: str, outcome: str) -> None:
        self.outcome = outcome
        super().__init__(f"decision {decision_id} was already settled as {outcome.upper()}")


class Unauthenticated(CapgateError):
    """The caller's credentials are missing or fail verification; the message says why
    (safe to return: it never echoes the token)."""


class PermissionDenied(CapgateError):
    """The caller is verified but may not do this: the request names another tenant or
    principal than its credentials, or it lacks a required role."""


class NotFound(CapgateError):
    """The named object (an approval) does not exist in this tenant."""


class FailedPrecondition(CapgateError):
    """The object is not in a state that allows this (an approval no longer pending)."""
