"""capgate: a policy decision point (PDP) for AI agents, served over gRPC.

The Authorize path is in :mod:`capgate.decision.pipeline`; components are built
in :mod:`capgate.app`; the gRPC transport is in :mod:`capgate.api` and
:mod:`capgate.server`.
"""

from importlib.metadata import version as _version

__version__ = _version("capgate")  # pyproject.toml's [project] version, as installed
