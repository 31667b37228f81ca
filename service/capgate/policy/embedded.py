r"""The embedded engine: rego-cpp (Microsoft) through ``regopy``.

A bundle is compiled once, at construction (~200 ms); each request then costs one
``set_input`` and one ``query_bundle_entrypoint`` on the compiled plan.
An ``Interpreter`` is not thread-safe: build one engine per worker process and call
it from that worker's event loop only.

rego-cpp caveats handled here:
  - reading ``Output.expressions()`` on an undefined result aborts the process, so
    only the parsed ``Output.results`` are read;
  - rego-cpp finds a key in an object, or an element in a list, by comparing it with
    every one in turn (about 1 us each), and copies a list passed to a function. So
    ``data.capgate.tenants[id]`` cost 10 ms with 10,000 tenants when ``id`` is not
    listed, and a ``not_in`` condition on a fact of 10,000 payees 20 ms. The data is
    given a lookup index, ``data.capgate_index`` (:func:`with_lookup_index`): each
    map the library looks keys up in (:data:`INDEXED_MAPS`, and each fact under
    ``capgate.facts``) filed in 4,096 buckets, nested arrays of 16 indexed by the
    first three hex digits of the key's md5, which ``capgate.lib.lookup``
    and ``capgate.lib.allowlist`` walk (``rego/capgate/lib/``). An array index costs
    rego-cpp the same at any size, so a lookup costs about the same with 32 entries
    or 10,000 (smaller maps are not indexed: :data:`INDEX_MIN_ENTRIES`); OPA, which
    has no index, reads the data as it is (and looks keys up by hash). The index holds
    the entries a second time (memory); ``capgate_index`` at the top of bundle data is
    reserved;
  - looking up a path missing from ``data`` costs rego-cpp 60-250 us (more with more
    data), and a package declared over bundle data costs ~6 us per entry under it. So
    :data:`EMPTY_LOOKUPS` (``data.capgate.tenants``, read by every decision of the
    library in ``rego/``) is added as ``{}`` when a bundle leaves it out: a lookup in
    an empty object is cheap, and every result stays the same;
  - data is handed over as JSON with non-ASCII characters as they are: rego-cpp keeps
    a ``\uXXXX`` escape as written, so an escaped key never equals the same key in the
    input (``Breizh Caf\u00e9`` vs ``Breizh Café``). Strings with ``"``, ``\`` or
    control characters still differ between data and input in rego-cpp (it keeps their
    escapes too); maps with such keys are not indexed.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from regopy import Input, Interpreter, RegoError

from capgate.decision.model import PolicyResult
from capgate.errors import BundleError, PolicyError
from capgate.policy.bundle import Bundle
from capgate.policy.engine import Evaluation
from capgate.policy.result import parse_policy_result

EMPTY_LOOKUPS = (("capgate", "tenants"),)
INDEX_ROOT = "capgate_index"
INDEXED_MAPS = ("tenants", "capabilities", "workflows")
# Below this many entries a direct lookup is as cheap as the index (~5 us a key
# against ~150 us for md5, three digits and four steps, in rego-cpp 1.5.2).
INDEX_MIN_ENTRIES = 32
# Keys JSON escapes: rego-cpp compares and hashes them in their escaped form.
ESCAPED_KEY = re.compile(r'["\\\x00-\x1f\x7f]')
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


def index_path(key: str) -> tuple[int, int, int]:
    """Where ``key`` sits in an index tree: the values of the first three hex digits of
    the md5 of its UTF-8 bytes (``crypto.md5`` in ``capgate.lib.lookup``).

    >>> index_path("acme")  # md5 53bce4f1...
    (5, 3, 11)
    """
    digest = hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()
    return int(digest[0], 16), int(digest[1], 16), int(digest[2], 16)


def indexable(mapping: Any) -> dict[str, Any] | None:
    """``mapping`` if it is an object, ``{element: True}`` if it is a list of strings,
    of at least :data:`INDEX_MIN_ENTRIES` entries; ``None`` for anything else, or for
    a key or element that JSON escapes."""
    if isinstance(mapping, list) and all(isinstance(e, str) for e in mapping):
        mapping = dict.fromkeys(mapping, True)
    if not isinstance(mapping, dict) or len(mapping) < INDEX_MIN_ENTRIES:
        return None
    if any(ESCAPED_KEY.search(key) for key in mapping):
        return None
    return mapping


def add_to_tree(tree: list[Any], mapping: dict[str, Any]) -> None:
    """File each entry of ``mapping`` at ``tree[d0][d1][d2][key]``, where ``d0, d1, d2``
    is :func:`index_path` of ``key``. A tree is nested lists of 16, ``[]`` where
    nothing is filed yet (:func:`new_tree`); values are shared with ``mapping``, not
    copied.

    >>> tree = new_tree(); add_to_tree(tree, {"acme": 1}); tree[5][3][11]
    {'acme': 1}
    """
    for key, value in mapping.items():
        d0, d1, d2 = index_path(key)
        if not tree[d0]:
            tree[d0] = new_tree()
        if not tree[d0][d1]:
            tree[d0][d1] = [{} for _ in range(16)]
        tree[d0][d1][d2][key] = value


def new_tree() -> list[Any]:
    return [[] for _ in range(16)]


def with_lookup_index(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` plus ``capgate_index``, which ``capgate.lib.lookup`` reads::

        {"tenants": tree, "capabilities": tree, "workflows": tree,
         "facts": {fact: tree}, "members": {fact: tree},
         "indexed": {"tenants": bool, ...}, "indexed_facts": {fact: bool},
         "indexed_members": {fact: bool}}

    (see :func:`add_to_tree`): each of :data:`INDEXED_MAPS` under ``data.capgate``,
    each object under ``data.capgate.facts`` (``facts``) and each list of strings there
    (``members``: ``tree[d0][d1][d2][element] == True``). A map or list that is small
    or cannot be indexed (:func:`indexable`) gets no tree and is flagged ``false``:
    the library then reads it directly. ``data`` without a ``capgate`` object is
    returned as it is; ``data`` is not changed.

    Raises :class:`BundleError` if ``data`` already has ``capgate_index``.
    """
    if INDEX_ROOT in data:
        raise BundleError(f"bundle data may not define {INDEX_ROOT}: the engine builds it")
    capgate = data.get("capgate")
    if not isinstance(capgate, dict):
        return data
    index: dict[str, Any] = {
        "facts": {},
        "members": {},
        "indexed": {},
        "indexed_facts": {},
        "indexed_members": {},
    }
    for name in INDEXED_MAPS:
        mapping = capgate.get(name)
        indexed = isinstance(mapping, dict) and indexable(mapping) is not None
        if indexed:
            index[name] = new_tree()
            add_to_tree(index[name], mapping)
        index["indexed"][name] = indexed
    facts = capgate.get("facts")
    for name, fact in facts.items() if isinstance(facts, dict) else ():
        mapping = indexable(fact)
        kind = "facts" if isinstance(fact, dict) else "members"
        if mapping is not None:
            index[kind][name] = new_tree()
            add_to_tree(index[kind][name], mapping)
        index["indexed_facts"][name] = mapping is not None and kind == "facts"
        index["indexed_members"][name] = mapping is not None and kind == "members"
    return {**data, INDEX_ROOT: index}


class EmbeddedEngine:
    """Evaluates one compiled bundle. Construction compiles; raises :class:`BundleError`."""

    def __init__(self, bundle: Bundle, entrypoint: str = "data.capgate.authz.decision") -> None:
        self._revision = bundle.revision
        self._entrypoint = entrypoint_path(entrypoint)
        try:
            data = with_lookup_index(with_empty_lookups(bundle.data))
        except BundleError as exc:
            raise BundleError(f"bundle {bundle.source}: {exc}") from exc
        builder = Interpreter()
        try:
            for name, source in bundle.modules.items():
                builder.add_module(name, source)
            builder.add_data_json(json.dumps(data, ensure_ascii=False))
            compiled = builder.build(None, [self._entrypoint])
        except (RegoError, ValueError) as exc:
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
