"""seal: the sealed body is RFC 8785 canonical JSON with its hash; hashes link."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from capgate.events.chain import GENESIS_HASH, event_hash, seal

EVENT: dict[str, Any] = {
    "schema_version": "capgate.decision_event.v1",
    "event_id": "0193a8f2-7c1e-7b4a-9d2f-3e8c1a2b4c5e",
    "event_type": "decision",
    "time": "2026-11-21T19:14:47.859988Z",
    "effect": "ALLOW",
    "input": {"parameters": {"amount_usd": 10.0, "hash": "not ours"}},
    "latency_ms": {"total": 1.25},
}


def expected_hash(sealed: dict[str, Any]) -> str:
    """The definition, with the reference implementation."""
    unhashed = {k: v for k, v in sealed.items() if k != "hash"}
    return hashlib.sha256(rfc8785.dumps(unhashed)).hexdigest()


def test_seal_adds_the_chain_fields_and_the_hash() -> None:
    original = copy.deepcopy(EVENT)
    body, digest = seal(EVENT, instance_id="capgate-0", seq=1, prev_hash=GENESIS_HASH)
    sealed = json.loads(body)
    assert original == EVENT  # not mutated
    assert body == rfc8785.dumps(sealed)
    assert sealed == {
        **EVENT,
        "instance_id": "capgate-0",
        "seq": 1,
        "prev_hash": GENESIS_HASH,
        "hash": digest,
    }
    assert digest == expected_hash(sealed) == event_hash(sealed)
    assert len(digest) == 64 and int(digest, 16) >= 0


def test_seal_replaces_given_chain_fields() -> None:
    forged = {**EVENT, "seq": 99, "prev_hash": "f" * 64, "hash": "e" * 64, "instance_id": "x"}
    body, digest = seal(forged, instance_id="capgate-0", seq=2, prev_hash="a" * 64)
    sealed = json.loads(body)
    assert (sealed["seq"], sealed["prev_hash"], sealed["instance_id"]) == (2, "a" * 64, "capgate-0")
    assert sealed["hash"] == digest == expected_hash(sealed)


def test_a_chain_links_and_any_edit_breaks_it() -> None:
    prev, bodies = GENESIS_HASH, []
    for seq in range(1, 6):
        body, prev = seal({**EVENT, "n": seq}, instance_id="i", seq=seq, prev_hash=prev)
        bodies.append(body)
    events = [json.loads(b) for b in bodies]
    assert events[0]["prev_hash"] == GENESIS_HASH
    for before, after in itertools.pairwise(events):
        assert after["prev_hash"] == before["hash"]
        assert after["seq"] == before["seq"] + 1
    assert all(event_hash(e) == e["hash"] for e in events)
    edited = {**events[2], "effect": "DENY"}
    assert event_hash(edited) != edited["hash"]


KEYS = st.sampled_from(["", "a", "h", "has", "hash0", "hasi", "hasg", "hash ", "z", "\U0001f600"])
VALUES = st.none() | st.integers(-(2**53) + 1, 2**53 - 1) | st.floats(allow_nan=False) | st.text()
SAFE_VALUES = VALUES.filter(lambda v: not (isinstance(v, float) and abs(v) == float("inf")))


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(KEYS | st.text(max_size=6), SAFE_VALUES, max_size=8))
def test_the_split_at_hash_is_canonical_for_any_keys(event: dict[str, Any]) -> None:
    body, digest = seal(event, instance_id="i", seq=7, prev_hash=GENESIS_HASH)
    unhashed = {**event, "instance_id": "i", "seq": 7, "prev_hash": GENESIS_HASH}
    unhashed.pop("hash", None)
    assert digest == hashlib.sha256(rfc8785.dumps(unhashed)).hexdigest()
    assert body == rfc8785.dumps({**unhashed, "hash": digest})


def test_seal_refuses_values_outside_jcs() -> None:
    for bad in ({"x": float("nan")}, {1: "non-string key"}):
        try:
            seal(bad, instance_id="i", seq=1, prev_hash=GENESIS_HASH)
        except ValueError:
            continue
        raise AssertionError(f"sealed {bad!r}")
