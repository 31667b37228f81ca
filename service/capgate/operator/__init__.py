"""The operator CLI's engine: ``capgate approvals|runs|tenants|status`` over gRPC.

One job per module:

- :mod:`~capgate.operator.errors`: what a command reports when it fails, and its
  exit code (1: the server refused or failed; 2: a flag or file we cannot use).
- :mod:`~capgate.operator.connection`: the flags → a :class:`Connection` (token,
  TLS files, timeout) → a blocking ``grpc.Channel`` and call metadata.
- :mod:`~capgate.operator.calls`: :class:`Operator`, the ApprovalService and
  ControlService calls, gRPC errors converted where they enter.
- :mod:`~capgate.operator.render`: responses → rich tables and panels, or JSON.
- :mod:`~capgate.operator.commands`: the typer sub-apps ``capgate.cli`` mounts.
"""

from capgate.operator.calls import Operator, open_operator
from capgate.operator.connection import Connection, load_connection
from capgate.operator.errors import CallFailed, OperatorError, UsageError

__all__ = [
    "CallFailed",
    "Connection",
    "Operator",
    "OperatorError",
    "UsageError",
    "load_connection",
    "open_operator",
]
