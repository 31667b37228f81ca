"""Erase masked paths from a document before it is logged. Pure.

Paths are dotted, relative to the policy input: ``parameters.card_number``,
``principal.attributes.email``. As in OPA's decision-log masking ("erase", OPA docs:
"Decision Logs: Masking Sensitive Data"), a masked field is removed and its path
listed, so a reader knows something was there. The document is not modified:
containers along a masked path are copied.

Besides the policy's paths, every key under ``parameters`` whose name contains one of
the masked parameter names (``password``, ``secret``, ``token``, ... :
``DEFAULT_MASKED_PARAMETER_NAMES`` in capgate/events/config.py), case-insensitively, is
erased wherever it is nested, in objects and lists: ``parameters.cards.0.card_number``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
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


def mask_parameter_names(
    document: dict[str, Any], names: Sequence[str]
) -> tuple[dict[str, Any], list[str]]:
    """``(copy of document, dotted paths erased)``: every key anywhere under
    ``document["parameters"]`` whose name contains one of ``names`` (case-insensitive)
    is removed with its value; list items are named by index (``parameters.cards.0.cvc``).
    The document is returned as is when nothing matches; otherwise only the containers
    along an erased key are copied."""
    parameters = document.get("parameters")
    if not _is_mapping(parameters):
        return document, []
    matcher = _matcher(tuple(names))
    if matcher is None:
        return document, []
    erased: list[str] = []
    masked = _mask_names(parameters, matcher, "parameters", erased)
    if not erased:
        return document, []
    return {**document, "parameters": masked}, erased


def mask_input(
    document: dict[str, Any], *, paths: Iterable[str] = (), names: Sequence[str] = ()
) -> tuple[dict[str, Any], list[str]]:
    """Both: the policy's ``log.mask`` ``paths`` (:func:`erase_paths`), then the masked
    parameter ``names`` (:func:`mask_parameter_names`); the erased paths of both."""
    result, erased = erase_paths(document, paths)
    result, by_name = mask_parameter_names(result, names)
    return result, erased + by_name


_SCALARS = (str, int, float)  # bool is an int


def _is_mapping(value: Any) -> bool:
    """isinstance(value, Mapping), quick for dicts (the ABC check costs ~1 µs)."""
    return isinstance(value, dict) or (
        not isinstance(value, (*_SCALARS, list, tuple)) and isinstance(value, Mapping)
    )


@functools.lru_cache(maxsize=16)
def _matcher(names: tuple[str, ...]) -> Callable[[str], bool] | None:
    """Whether a key contains one of ``names``, case-insensitively (None: no names)."""
    needles = tuple(sorted({n.lower() for n in names if n}))
    if not needles:
        return None

    def matches(key: str) -> bool:
        lowered = key.lower()
        for needle in needles:  # noqa: SIM110 (a plain loop: faster than any() or a regex)
            if needle in lowered:
                return True
        return False

    return matches


def _mask_names(node: Any, matcher: Callable[[str], bool], path: str, erased: list[str]) -> Any:
    """``node`` without the matching keys: ``node`` itself when nothing matched below
    it, else a copy."""
    if _is_mapping(node):
        result: dict[str, Any] | None = None
        for key, value in node.items():
            if isinstance(key, str) and matcher(key):
                if result is None:
                    result = dict(node)
                del result[key]
                erased.append(f"{path}.{key}")
            elif not isinstance(value, _SCALARS) and value is not None:
                masked = _mask_names(value, matcher, f"{path}.{key}", erased)
                if masked is not value:
                    if result is None:
                        result = dict(node)
                    result[key] = masked
        return node if result is None else result
    if isinstance(node, list | tuple):
        items: list[Any] | None = None
        for index, value in enumerate(node):
            if not isinstance(value, _SCALARS) and value is not None:
                masked = _mask_names(value, matcher, f"{path}.{index}", erased)
                if masked is not value:
                    if items is None:
                        items = list(node)
                    items[index] = masked
        return node if items is None else items
    return node


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
