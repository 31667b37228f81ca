"""Unit tests for capgate.budget.keys: escaping, hash tags, key layout."""

from __future__ import annotations

import hashlib
import re

import pytest

from capgate.budget.keys import (
    MAX_ESCAPED_LENGTH,
    budget_prefix,
    escape_id,
    idempotency_key,
    rate_limit_key,
    reservation_key,
    reservations_key,
    run_usage_key,
    tenant_tag,
)

HASHED = re.compile(r"h:[0-9a-f]{64}")
SHORT_ALPHABET = re.compile(r"[A-Za-z0-9_.%-]*")

TEN_KB = "x" * 10_240
# "a" * n escapes to itself, so these sit exactly on the hashing boundary.
AT_LIMIT = "a" * MAX_ESCAPED_LENGTH
OVER_LIMIT = "a" * (MAX_ESCAPED_LENGTH + 1)
# 21 "{" escape to 63 chars; one more raw char lands on 64, one more escaped char on 66.
ESCAPED_63 = "{" * 21

IDS = [
    "",
    "plain-id_1.2",
    "a:b",
    "a%3Ab",
    "{x}",
    "%7Bx%7D",
    "~",
    "%7E",
    "line\nbreak",
    "carriage\rreturn",
    "with space",
    "tab\there",
    "capgate:{evil}:run:x",
    "}{",
    "ünïcødé",
    "emoji 🙂",
    "\x00nul",
    "a/b?c#d&e=f+g",
    AT_LIMIT,
    OVER_LIMIT,
    ESCAPED_63,
    ESCAPED_63 + "a",
    ESCAPED_63 + "{",
    TEN_KB,
    TEN_KB + "y",
]


@pytest.mark.parametrize("identifier", IDS)
def test_escape_id_never_yields_raw_tag_or_separator_characters(identifier: str) -> None:
    escaped = escape_id(identifier)
    for forbidden in ("{", "}", "\n", "\r", " ", "\t", "\x00", "~"):
        assert forbidden not in escaped
    if HASHED.fullmatch(escaped):
        return
    # The short (non-hashed) form never contains ":" and stays in [A-Za-z0-9_.%-].
    assert ":" not in escaped
    assert SHORT_ALPHABET.fullmatch(escaped), escaped


@pytest.mark.parametrize("identifier", IDS)
def test_escape_id_is_bounded(identifier: str) -> None:
    assert len(escape_id(identifier)) <= max(MAX_ESCAPED_LENGTH, len("h:") + 64)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("a:b", "a%3Ab"),
        ("{x}", "%7Bx%7D"),
        ("~", "%7E"),
        ("a", "A"),
        ("", "%"),
        ("a b", "a+b"),
        ("a b", "a%20b"),
        (TEN_KB, TEN_KB + "y"),
        (TEN_KB, TEN_KB[:-1]),
        (AT_LIMIT, OVER_LIMIT),
        (AT_LIMIT[:-1], AT_LIMIT),
        (ESCAPED_63 + "a", ESCAPED_63 + "b"),
        (ESCAPED_63 + "a", ESCAPED_63 + "{"),
    ],
)
def test_escape_id_distinct_ids_stay_distinct(left: str, right: str) -> None:
    assert left != right
    assert escape_id(left) != escape_id(right)


def test_escape_id_is_injective_over_the_whole_table() -> None:
    escaped = [escape_id(i) for i in IDS]
    assert len(set(escaped)) == len(set(IDS))


@pytest.mark.parametrize(
    ("identifier", "expected"),
    [
        ("plain-id_1.2", "plain-id_1.2"),
        ("a:b", "a%3Ab"),
        ("a%3Ab", "a%253Ab"),
        ("{x}", "%7Bx%7D"),
        ("~", "%7E"),
        ("a b\n", "a%20b%0A"),
        ("é", "%C3%A9"),
        (AT_LIMIT, AT_LIMIT),
    ],
)
def test_escape_id_short_forms(identifier: str, expected: str) -> None:
    assert escape_id(identifier) == expected


@pytest.mark.parametrize(
    "identifier",
    [OVER_LIMIT, TEN_KB, TEN_KB + "y", ESCAPED_63 + "{", "é" * 11, "{" * 22],
)
def test_long_ids_are_hashed_to_sha256_hex(identifier: str) -> None:
    escaped = escape_id(identifier)
    assert HASHED.fullmatch(escaped), escaped
    assert escaped == "h:" + hashlib.sha256(identifier.encode("utf-8")).hexdigest()
    assert len(escaped) == 66


@pytest.mark.parametrize(
    ("identifier", "hashed"),
    [
        (AT_LIMIT, False),  # escaped length 64: kept
        (OVER_LIMIT, True),  # escaped length 65: hashed
        (ESCAPED_63, False),  # 63
        (ESCAPED_63 + "a", False),  # 64
        (ESCAPED_63 + "{", True),  # 66
        ("é" * 10, False),  # 60
        ("é" * 11, True),  # 66
    ],
)
def test_hashing_boundary_is_on_escaped_length(identifier: str, hashed: bool) -> None:
    assert bool(HASHED.fullmatch(escape_id(identifier))) is hashed


@pytest.mark.parametrize("tenant", IDS)
def test_tenant_tag_has_exactly_one_hash_tag_holding_the_escaped_tenant(tenant: str) -> None:
    tag = tenant_tag(tenant)
    assert tag.count("{") == 1
    assert tag.count("}") == 1
    assert tag.startswith("capgate:{")
    assert tag.endswith("}")
    content = tag[tag.index("{") + 1 : tag.index("}")]
    assert content == escape_id(tenant)


@pytest.mark.parametrize(
    ("left", "right"),
    [("a:b", "a%3Ab"), ("{x}", "%7Bx%7D"), ("t", "t}"), (TEN_KB, TEN_KB + "y")],
)
def test_distinct_tenants_get_distinct_tags(left: str, right: str) -> None:
    assert tenant_tag(left) != tenant_tag(right)


def _all_keys(tenant: str, subject: str) -> list[str]:
    """Every key capgate builds for ``tenant``, with ``subject`` as each id."""
    return [
        reservations_key(tenant),
        reservation_key(tenant, subject),
        idempotency_key(tenant, subject),
        budget_prefix(tenant, "tenant"),
        budget_prefix(tenant, "principal", subject),
        budget_prefix(tenant, "capability", subject),
        run_usage_key(tenant, subject),
        rate_limit_key(tenant, "principal+tool", {"principal": subject, "tool": subject}, 5, 60),
    ]


@pytest.mark.parametrize(
    ("tenant", "subject"),
    [
        ("acme", "run-1"),
        ("{evil}", "x}:y"),
        ("a:b", "c:d"),
        (TEN_KB, TEN_KB),
        ("t\n", "r\n"),
    ],
)
def test_every_key_keeps_the_tenant_hash_tag(tenant: str, subject: str) -> None:
    for key in _all_keys(tenant, subject):
        assert key.startswith(tenant_tag(tenant) + ":")
        assert key.count("{") == 1
        assert key.count("}") == 1
        assert "\n" not in key
        assert len(key) < 400


def test_key_layout() -> None:
    tag = "capgate:{acme}"
    assert run_usage_key("acme", "r:1") == f"{tag}:b:run:r%3A1:run"
    assert budget_prefix("acme", "principal", "bot") == f"{tag}:b:principal:bot"
    assert budget_prefix("acme", "tenant", "ignored") == f"{tag}:b:tenant"
    assert reservation_key("acme", "d1") == f"{tag}:res:d1"
    assert rate_limit_key("acme", "principal", {"principal": "p"}, 10, 60) == (
        f"{tag}:rl:principal:p:10:60"
    )


def test_unknown_scope_and_dimension_are_refused() -> None:
    with pytest.raises(ValueError, match="budget scope 'workflow'"):
        budget_prefix("acme", "workflow", "x")
    with pytest.raises(ValueError, match="dimension 'user'"):
        rate_limit_key("acme", "principal+user", {"principal": "p"}, 1, 1)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("t", "a:b"), ("t", "a%3Ab")),
        (("t:run:x", "y"), ("t", "x:run:y")),
        (("a", "b"), ("b", "a")),
        (("t", TEN_KB), ("t", TEN_KB + "y")),
    ],
)
def test_keys_of_distinct_ids_do_not_collide(a: tuple[str, str], b: tuple[str, str]) -> None:
    shared = {reservations_key(a[0]), budget_prefix(a[0], "tenant")} if a[0] == b[0] else set()
    assert set(_all_keys(*a)) & set(_all_keys(*b)) == shared
