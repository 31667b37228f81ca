"""capgate's exception hierarchy. Library exceptions are converted where they enter.

    CapgateError
    ├── InvalidArgument          a malformed request; carries (field, description) pairs
    ├── ConfigError              settings that fail validation; names the key
    ├── BundleError              a bundle that cannot be loaded or compiled
    ├── PolicyError              evaluation failed, or its result is undefined or malformed
    └── BudgetStoreUnavailable   Redis unreachable, failing, or slower than its deadline

The pipeline turns PolicyError and BudgetStoreUnavailable into DENY decisions with
reason codes (fail closed); only InvalidArgument reaches the caller as a gRPC error.
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
