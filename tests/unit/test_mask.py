"""erase_paths: OPA-style erase of masked input paths, without touching the original;
mask_parameter_names: keys under ``parameters`` named like secrets, wherever they are."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from capgate.events.config import DEFAULT_MASKED_PARAMETER_NAMES
from capgate.events.mask import erase_paths, mask_input, mask_parameter_names

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


SECRETS: dict[str, Any] = {
    "tenant_id": "acme",
    "token": "outside parameters: kept",
    "parameters": {
        "amount_usd": 10,
        "Password": "hunter2",
        "auth": {"API_KEY": "k", "client_secret": "s", "region": "eu"},
        "cards": [{"card_number": "4111", "holder": "A"}, {"holder": "B"}],
        "items": [[{"apiKey": "x"}], "plain", 3],
        "note": "a token in a value is not a key",
        "accessToken": None,
    },
}


def test_mask_parameter_names_defaults() -> None:
    original = copy.deepcopy(SECRETS)
    masked, erased = mask_parameter_names(SECRETS, DEFAULT_MASKED_PARAMETER_NAMES)
    assert original == SECRETS  # never mutated
    assert erased == [
        "parameters.Password",
        "parameters.auth.API_KEY",
        "parameters.auth.client_secret",
        "parameters.cards",  # "cards" contains "card": the whole list goes
        "parameters.items.0.0.apiKey",
        "parameters.accessToken",
    ]
    assert masked == {
        "tenant_id": "acme",
        "token": "outside parameters: kept",
        "parameters": {
            "amount_usd": 10,
            "auth": {"region": "eu"},
            "items": [[{}], "plain", 3],
            "note": "a token in a value is not a key",
        },
    }


def test_mask_parameter_names_list_paths_use_indices() -> None:
    document = {"parameters": {"cards": [{"card_number": "4111", "holder": "A"}, {"x": 1}]}}
    masked, erased = mask_parameter_names(document, ["card_number"])
    assert erased == ["parameters.cards.0.card_number"]
    assert masked == {"parameters": {"cards": [{"holder": "A"}, {"x": 1}]}}
    assert masked["parameters"]["cards"][1] is document["parameters"]["cards"][1]  # not copied


@pytest.mark.parametrize(
    "document",
    [
        {"tool": "t"},
        {"parameters": {}},
        {"parameters": "not an object"},
        {"parameters": {"amount": 1, "nested": [{"a": 1}]}},
    ],
)
def test_mask_parameter_names_nothing_to_mask(document: dict[str, Any]) -> None:
    masked, erased = mask_parameter_names(document, DEFAULT_MASKED_PARAMETER_NAMES)
    assert erased == [] and masked is document


def test_mask_parameter_names_without_names() -> None:
    masked, erased = mask_parameter_names(SECRETS, [])
    assert erased == [] and masked is SECRETS
    masked, erased = mask_parameter_names(SECRETS, [""])  # an empty name matches nothing
    assert erased == [] and masked is SECRETS


def test_mask_input_combines_policy_paths_and_names() -> None:
    original = copy.deepcopy(SECRETS)
    masked, erased = mask_input(
        SECRETS, paths=["parameters.amount_usd", "tenant_id"], names=("secret",)
    )
    assert original == SECRETS
    assert erased == ["parameters.amount_usd", "tenant_id", "parameters.auth.client_secret"]
    assert "tenant_id" not in masked and "amount_usd" not in masked["parameters"]
    assert masked["parameters"]["auth"] == {"API_KEY": "k", "region": "eu"}
