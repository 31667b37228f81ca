"""Erase masked paths from a document before it is logged. Pure.

Paths are dotted, relative to the policy input: ``parameters.card_number``,
``principal.attributes.email``. As in OPA's decision-log masking ("erase", OPA docs:
"Decision Logs: Masking Sensitive Data"), a masked field is removed and its path
listed, so a reader knows something was there. The document is not modified:
containers along a masked path are copied.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def erase_paths(document: dict[str, Any], paths: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
    """``(copy of document without the paths, the paths that were present and erased)``."""
    erased: list[str] = []
    result = document
    for path in paths:
        parts = path.split(".")
        updated = _erase(result, parts)
        if updated is not None:
            result = updated
            erased.append(path)
    return result, erased


def _erase(node: dict[str, Any], parts: list[str]) -> dict[str, Any] | None:
    """A copy of ``node`` with ``parts`` erased, or None if the path is absent."""
    head, rest = parts[0], parts[1:]
    if head not in node:
        return None
    if not rest:
        return {k: v for k, v in node.items() if k != head}
    child = node[head]
    if not isinstance(child, dict):
        return None
    updated = _erase(child, rest)
    if updated is None:
        return None
    return {**node, head: updated}
