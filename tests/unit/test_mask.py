"""erase_paths: OPA-style erase of masked input paths, without touching the original."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from capgate.events.mask import erase_paths

DOC: dict[str, Any] = {
    "parameters": {"card": {"number": "4111", "cvc": "123"}, "amount_usd": 10},
    "principal": {"id": "a", "attributes": {"email": "x@y"}},
    "tool": "t",
}


@pytest.mark.parametrize(
    ("paths", "erased", "gone", "kept"),
    [
        (
            ["parameters.card.number"],
            ["parameters.card.number"],
            [("parameters", "card", "number")],
            [("parameters", "card", "cvc")],
        ),
        (
            ["parameters.card"],
            ["parameters.card"],
            [("parameters", "card")],
            [("parameters", "amount_usd")],
        ),
        (
            ["principal.attributes.email", "tool"],
            ["principal.attributes.email", "tool"],
            [("principal", "attributes", "email"), ("tool",)],
            [("principal", "id")],
        ),
        (["parameters.missing", "tool.sub", "nope"], [], [], [("tool",)]),
    ],
)
def test_erase_paths(
    paths: list[str], erased: list[str], gone: list[tuple[str, ...]], kept: list[tuple[str, ...]]
) -> None:
    original = copy.deepcopy(DOC)
    result, listed = erase_paths(DOC, paths)
    assert listed == erased
    assert original == DOC  # never mutated
    for path in gone:
        assert _get(result, path) is _ABSENT
    for path in kept:
        assert _get(result, path) == _get(original, path)


_ABSENT = object()


def _get(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return _ABSENT
        doc = doc[key]
    return doc
