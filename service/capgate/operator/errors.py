"""What an operator command reports when it fails, and the exit code it fails with.

    OperatorError        str(error) goes to stderr after "capgate: "; ``exit_code``
    ├── UsageError (2)   a token or TLS file that cannot be read, flags that do not fit
    └── CallFailed (1)   the server answered with a gRPC error status

``grpc.RpcError`` is converted into :class:`CallFailed` where it enters
(:mod:`capgate.operator.calls`); nothing above that sees a gRPC exception.
"""

from __future__ import annotations

import grpc

from capgate_client import InvalidRequestError

USAGE_EXIT_CODE = 2
CALL_EXIT_CODE = 1


class OperatorError(Exception):
    """A command failed; the message is safe to print (it never holds the token)."""

    exit_code = CALL_EXIT_CODE


class UsageError(OperatorError):
    """A flag, file or environment variable the command cannot use."""

    exit_code = USAGE_EXIT_CODE


class CallFailed(OperatorError):
    """The server answered with an error status.

    ``status``: the gRPC status name ("PERMISSION_DENIED", "NOT_FOUND", ...);
    ``details``: the server's message; ``field_violations``: ``(field, description)``
    pairs of an INVALID_ARGUMENT's ``google.rpc.BadRequest`` detail.
    """

    def __init__(
        self,
        status: str,
        details: str,
        field_violations: tuple[tuple[str, str], ...] = (),
        *,
        hint: str = "",
    ) -> None:
        self.status = status
        self.details = details
        self.field_violations = field_violations
        self.hint = hint
        super().__init__(self._message())

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError, *, hint: str = "") -> CallFailed:
        """The failure of a sync or streaming call; ``hint`` is appended on its own line."""
        code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
        details: str = error.details() or ""  # type: ignore[attr-defined]
        violations: tuple[tuple[str, str], ...] = ()
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            violations = InvalidRequestError.from_rpc_error(error).field_violations
        return cls(code.name, details, violations, hint=hint)

    def _message(self) -> str:
        """``STATUS: details``; for field violations, ``STATUS:`` and one indented
        ``field: description`` line each."""
        if self.field_violations:
            lines = [f"{self.status}:"]
            lines += [f"  {field}: {description}" for field, description in self.field_violations]
        else:
            lines = [f"{self.status}: {self.details}"]
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)
