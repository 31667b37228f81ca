"""The per-instance hash chain of decision events (DESIGN §8). Pure.

Every event an instance records is sealed with three fields and a hash::

    {..., "instance_id": str, "seq": int (1, 2, 3, ... per instance),
     "prev_hash": <the previous event's "hash"; GENESIS_HASH for seq 1>,
     "hash": <hex SHA-256 (FIPS 180-4) over RFC 8785 canonical JSON of the event
              without "hash">}

and stored as RFC 8785 canonical JSON (UTF-8) with ``hash`` included. A verifier
recomputes each hash (:func:`event_hash`), checks that ``prev_hash`` names the previous
event's hash and that ``seq`` goes up by one; an edited, deleted or moved event breaks
the chain at its ``seq``. Events the outbox had to drop at its cap are announced by a
gap event sealed after them (``dropped``: ``from_seq``, ``to_seq``, ``count`` and
``last_hash``, the hash of the last dropped event, which the next surviving event's
``prev_hash`` names); signed checkpoint events pin the head.

Example::

    >>> body, digest = seal({"event_type": "decision"}, instance_id="i", seq=1,
    ...                     prev_hash=GENESIS_HASH)
    >>> json.loads(body)["hash"] == digest == event_hash(json.loads(body))
    True
"""

from __future__ import annotations

import hashlib
from typing import Any

from capgate.events.canonical import canonical_json

GENESIS_HASH = "0" * 64
_HASH = "hash"


def seal(event: dict[str, Any], *, instance_id: str, seq: int, prev_hash: str) -> tuple[bytes, str]:
    """``event`` with ``instance_id``, ``seq`` and ``prev_hash`` set (replacing any
    given, and dropping any ``hash``), as RFC 8785 canonical JSON with its ``hash``;
    returns ``(body, hash)``. ``event`` itself is not modified.

    Raises:
        ValueError: ``event`` is not representable as canonical JSON (see
            :func:`capgate.events.canonical.canonical_json`).
    """
    # The hash covers the event without "hash"; the body is the same object with it.
    # Both are the canonical JSON of the keys before "hash" and of those after it,
    # joined, with '"hash":"<hex>"' between them in the body: JCS sorts keys by UTF-16
    # code units, and comparing any key with the ASCII "hash" gives the same answer
    # in code units and in code points, so the split puts each key on the right side.
    sealed = dict(event)
    sealed.pop(_HASH, None)
    sealed["instance_id"] = instance_id
    sealed["seq"] = seq
    sealed["prev_hash"] = prev_hash
    try:
        low = {k: v for k, v in sealed.items() if k < _HASH}
        high = {k: v for k, v in sealed.items() if k > _HASH}
    except TypeError:  # a key that is not a string: canonical_json raises ValueError
        canonical_json(sealed)
        raise
    before = canonical_json(low)[1:-1]
    after = canonical_json(high)[1:-1]
    digest = hashlib.sha256(_object(before, after)).hexdigest()
    return _object(before, b'"hash":"' + digest.encode("ascii") + b'"', after), digest


def event_hash(event: dict[str, Any]) -> str:
    """The hash ``event`` should carry: hex SHA-256 over the canonical JSON of
    ``event`` without its ``hash`` field.

    Raises:
        ValueError: ``event`` is not representable as canonical JSON.
    """
    unhashed = {k: v for k, v in event.items() if k != _HASH}
    return hashlib.sha256(canonical_json(unhashed)).hexdigest()


def _object(*members: bytes) -> bytes:
    """A JSON object from the inner text of objects (already in key order)."""
    return b"{" + b",".join(m for m in members if m) + b"}"
