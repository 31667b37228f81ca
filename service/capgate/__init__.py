"""capgate: a policy decision point (PDP) for AI agents, served over gRPC.

The Authorize path is in :mod:`capgate.decision.pipeline`; components are built
in :mod:`capgate.app`; the gRPC transport is in :mod:`capgate.api` and
:mod:`capgate.server`.
"""

__version__ = "0.1.0"
