"""The embedded engine: rego-cpp (Microsoft) through ``regopy``.

A bundle is compiled once, at construction (~200 ms); each request then costs one
``set_input`` and one ``query_bundle_entrypoint`` on the compiled plan.
An ``Interpreter`` is not thread-safe: build one engine per worker process and call
it from that worker's event loop only.

rego-cpp caveats handled here:
  - reading ``Output.expressions()`` on an undefined result aborts the process, so
    only the parsed ``Output.results`` are read;
  - looking up a path missing from ``data`` costs rego-cpp 60-250 us (more with more
    data), and a package declared over bundle data costs ~6 us per entry under it. So
    :data:`EMPTY_LOOKUPS` (``data.capgate.tenants``, read by every decision of the
    library in ``rego/``) is added as ``{}`` when a bundle leaves it out: a lookup in
    an empty object is cheap, and every result stays the same.
"""

from __future__ import annotations

import re
from typing import Any

from regopy import Input, Interpreter, RegoError

from capgate.decision.model import PolicyResult
from capgate.errors import BundleError, PolicyError
from capgate.policy.bundle import Bundle
from capgate.policy.engine import Evaluation
from capgate.policy.result import parse_policy_result

EMPTY_LOOKUPS = (("capgate", "tenants"),)
ENTRYPOINT_PATTERN = re.compile(r"data(\.[A-Za-z_][A-Za-z0-9_]*)+")


def entrypoint_path(entrypoint: str) -> str:
    """``data.capgate.authz.decision`` -> ``capgate/authz/decision`` (regopy's form)."""
    if ENTRYPOINT_PATTERN.fullmatch(entrypoint) is None:
        raise BundleError(f"entrypoint {entrypoint!r} must look like data.pkg.rule")
    return entrypoint.removeprefix("data.").replace(".", "/")


def with_empty_lookups(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with each :data:`EMPTY_LOOKUPS` path that is missing set to ``{}``,
    below a root the bundle already has (shallow copies; ``data`` is not changed)."""
    out = dict(data)
    for root, key in EMPTY_LOOKUPS:
        if isinstance(out.get(root), dict) and key not in out[root]:
            out[root] = {**out[root], key: {}}
    return out


class EmbeddedEngine:
    """Evaluates one compiled bundle. Construction compiles; raises :class:`BundleError`."""

    def __init__(self, bundle: Bundle, entrypoint: str = "data.capgate.authz.decision") -> None:
        self._revision = bundle.revision
        self._entrypoint = entrypoint_path(entrypoint)
        builder = Interpreter()
        try:
            for name, source in bundle.modules.items():
                builder.add_module(name, source)
            builder.add_data(with_empty_lookups(bundle.data))
            compiled = builder.build(None, [self._entrypoint])
        except RegoError as exc:
            raise BundleError(f"bundle {bundle.source}: does not compile: {exc}") from exc
        if not compiled.ok():
            raise BundleError(f"bundle {bundle.source}: does not compile")
        self._compiled = compiled
        self._interpreter = Interpreter()

    @property
    def revision(self) -> str:
        return self._revision

    def query(self, input_document: dict[str, Any]) -> Any:
        """The entrypoint's raw value. Raises :class:`PolicyError` if undefined or failing."""
        try:
            self._interpreter.set_input(Input(input_document))
            output = self._interpreter.query_bundle_entrypoint(self._compiled, self._entrypoint)
            ok = output.ok()
            results = output.results
        except (RegoError, ValueError, TypeError) as exc:
            raise PolicyError(f"evaluation failed: {exc}") from exc
        if not ok:
            raise PolicyError(f"evaluation failed: {output}")
        if len(results) != 1 or len(results[0].expressions) != 1:
            raise PolicyError(f"entrypoint {self._entrypoint} is undefined for this input")
        return results[0].expressions[0]

    def evaluate(self, input_document: dict[str, Any]) -> PolicyResult:
        """The parsed decision. Raises :class:`PolicyError`."""
        return parse_policy_result(self.query(input_document))

    async def decide(self, input_document: dict[str, Any]) -> Evaluation:
        """:meth:`evaluate`, inline on the event loop (cheaper than a thread hop)."""
        return Evaluation(self.evaluate(input_document), self._revision)
