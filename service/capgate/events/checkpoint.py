"""Signed checkpoints over the head of the event chain (DESIGN §8).

Every ``every_events`` events or ``every_seconds`` seconds (whichever comes first, and
only when events were added since the last one), the outbox asks :class:`Checkpointer`
for a ``checkpoint`` event and seals it into the chain like any other::

    {"schema_version": "capgate.decision_event.v1", "event_type": "checkpoint",
     "event_id", "time", "head": {"instance_id", "seq", "hash"},
     "key_id": <first 16 hex chars of SHA-256 over the raw 32-byte public key>,
     "signature": <base64url without padding: Ed25519 (RFC 8032) over canonical_json(head)>}

``head`` names the last sealed event before the checkpoint. The hash chain makes every
event up to ``head.seq`` depend on ``head.hash``; the signature makes that hash
unforgeable by whoever can write the log but does not hold the private key.

Keys: the private key is PEM PKCS#8 (``capgate audit keygen`` writes one); the public
key PEM SubjectPublicKeyInfo, or the raw 32 bytes in base64.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from capgate.clock import rfc3339
from capgate.errors import ConfigError
from capgate.events.canonical import canonical_json

SCHEMA_VERSION = "capgate.decision_event.v1"


class Checkpointer:
    """Decides when a checkpoint is due and builds it. Not thread-safe: one per outbox.

    The time interval starts at the first :meth:`due` call (the outbox's start) and
    restarts at each :meth:`event`; ``events_since_last`` is counted by the caller (events
    sealed since the last checkpoint, not counting the checkpoint itself)."""

    def __init__(
        self,
        signing_key: Ed25519PrivateKey,
        *,
        every_events: int,
        every_seconds: float,
        instance_id: str,
    ) -> None:
        if every_events < 1:
            raise ValueError("every_events must be at least 1")
        if every_seconds <= 0:
            raise ValueError("every_seconds must be positive")
        self._key = signing_key
        self._every_events = every_events
        self._every_seconds = every_seconds
        self._instance_id = instance_id
        self._last_at: datetime | None = None
        self.key_id = key_id(signing_key.public_key())

    def due(self, events_since_last: int, now: datetime) -> bool:
        """True when a checkpoint should be sealed now: some events since the last one,
        and either ``every_events`` of them or ``every_seconds`` elapsed."""
        if self._last_at is None:
            self._last_at = now
        if events_since_last <= 0:
            return False
        if events_since_last >= self._every_events:
            return True
        return (now - self._last_at).total_seconds() >= self._every_seconds

    def event(
        self, head_seq: int, head_hash: str, now: datetime, new_id: Callable[[], str]
    ) -> dict[str, Any]:
        """The checkpoint event over the chain head (``head_seq``, ``head_hash``): not yet
        sealed. Restarts the interval."""
        head = {"instance_id": self._instance_id, "seq": head_seq, "hash": head_hash}
        self._last_at = now
        return {
            "schema_version": SCHEMA_VERSION,
            "event_type": "checkpoint",
            "event_id": new_id(),
            "time": rfc3339(now),
            "head": head,
            "key_id": self.key_id,
            "signature": sign_head(self._key, head),
        }


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex characters of SHA-256 over the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_head(signing_key: Ed25519PrivateKey, head: dict[str, Any]) -> str:
    """Ed25519 over ``canonical_json(head)``, base64url without padding."""
    return _b64url(signing_key.sign(canonical_json(head)))


def verify_head(public_key: Ed25519PublicKey, head: Any, signature: Any) -> bool:
    """Whether ``signature`` (base64url, padding optional) is ``public_key``'s over
    ``canonical_json(head)``. False on any malformed input."""
    if not isinstance(signature, str) or not isinstance(head, dict):
        return False
    try:
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        public_key.verify(raw, canonical_json(head))
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        return False
    return True


def load_signing_key(path: Path | str) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``path`` (PEM PKCS#8, unencrypted).

    Raises ConfigError naming the file when it cannot be read or holds anything else."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the checkpoint signing key: {exc}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not an unencrypted PEM (PKCS#8) private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 private key ({type(key).__name__})")
    return key


def load_public_key(path: Path | str) -> Ed25519PublicKey:
    """The Ed25519 public key in ``path``: PEM SubjectPublicKeyInfo, or the raw 32 bytes
    in base64 (standard or URL-safe alphabet, padding optional).

    Raises ConfigError naming the file when it cannot be read or holds anything else."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the checkpoint public key: {exc}") from exc
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: not a PEM public key: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(f"{path}: not an Ed25519 public key ({type(key).__name__})")
        return key
    text = b"".join(data.split())
    try:
        raw = base64.b64decode(
            text.replace(b"-", b"+").replace(b"_", b"/") + b"=" * (-len(text) % 4),
            validate=True,
        )
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(
            f"{path}: neither a PEM public key nor base64 of a raw Ed25519 key"
        ) from exc
    if len(raw) != 32:
        raise ConfigError(f"{path}: a raw Ed25519 public key is 32 bytes, not {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
