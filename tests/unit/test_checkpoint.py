"""Checkpointer: when checkpoints are due, their shape and Ed25519 signature; key files."""

from __future__ import annotations

import base64
import hashlib
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from capgate.audit_cli import audit
from capgate.errors import ConfigError
from capgate.events.canonical import canonical_json
from capgate.events.checkpoint import (
    Checkpointer,
    key_id,
    load_public_key,
    load_signing_key,
    verify_head,
)

T0 = datetime(2026, 11, 21, 19, 14, 47, 859988, tzinfo=UTC)
HEAD_HASH = "ab" * 32


def _checkpointer(key: Ed25519PrivateKey, every_events: int = 10, every_seconds: float = 60.0):
    return Checkpointer(
        key, every_events=every_events, every_seconds=every_seconds, instance_id="capgate-0"
    )


def test_due_after_every_events() -> None:
    checkpointer = _checkpointer(Ed25519PrivateKey.generate(), every_events=3)
    assert not checkpointer.due(0, T0)
    assert not checkpointer.due(2, T0)
    assert checkpointer.due(3, T0)
    assert checkpointer.due(4, T0)


def test_due_after_every_seconds_from_the_first_call_then_from_each_checkpoint() -> None:
    checkpointer = _checkpointer(Ed25519PrivateKey.generate(), every_seconds=60)
    assert not checkpointer.due(1, T0)  # the interval starts here
    assert not checkpointer.due(1, T0 + timedelta(seconds=59.9))
    assert checkpointer.due(1, T0 + timedelta(seconds=60))
    assert not checkpointer.due(0, T0 + timedelta(hours=1))  # nothing new to sign
    checkpointer.event(5, HEAD_HASH, T0 + timedelta(seconds=61), lambda: "id")
    assert not checkpointer.due(1, T0 + timedelta(seconds=120))
    assert checkpointer.due(1, T0 + timedelta(seconds=121))


def test_event_shape_and_signature() -> None:
    key = Ed25519PrivateKey.generate()
    event = _checkpointer(key).event(
        41, HEAD_HASH, T0, lambda: "0190f0c8-0000-7000-8000-000000000001"
    )
    raw_public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert event == {
        "schema_version": "capgate.decision_event.v1",
        "event_type": "checkpoint",
        "event_id": "0190f0c8-0000-7000-8000-000000000001",
        "time": "2026-11-21T19:14:47.859988Z",
        "head": {"instance_id": "capgate-0", "seq": 41, "hash": HEAD_HASH},
        "key_id": hashlib.sha256(raw_public).hexdigest()[:16],
        "signature": event["signature"],
    }
    signature = event["signature"]
    assert len(signature) == 86 and "=" not in signature  # 64 bytes, base64url unpadded
    raw = base64.urlsafe_b64decode(signature + "==")
    # RFC 8032 over the canonical JSON of the head, checked with cryptography directly.
    key.public_key().verify(
        raw, b'{"hash":"' + HEAD_HASH.encode() + b'","instance_id":"capgate-0","seq":41}'
    )
    assert canonical_json(event["head"]) == (
        b'{"hash":"' + HEAD_HASH.encode() + b'","instance_id":"capgate-0","seq":41}'
    )
    assert verify_head(key.public_key(), event["head"], signature)
    assert not verify_head(key.public_key(), {**event["head"], "seq": 42}, signature)
    assert not verify_head(Ed25519PrivateKey.generate().public_key(), event["head"], signature)
    assert not verify_head(key.public_key(), event["head"], "not base64!")
    assert not verify_head(key.public_key(), event["head"], None)


def test_key_id_is_sha256_prefix_of_raw_public_key() -> None:
    raw = bytes(range(32))
    private = Ed25519PrivateKey.from_private_bytes(raw)
    public_raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert key_id(private.public_key()) == hashlib.sha256(public_raw).hexdigest()[:16]


def _pem_private(key: object, password: bytes | None = None) -> bytes:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def test_load_signing_key(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "audit.pem"
    path.write_bytes(_pem_private(key))
    loaded = load_signing_key(path)
    assert key_id(loaded.public_key()) == key_id(key.public_key())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"not a key", "not an unencrypted PEM"),
        ("encrypted", "not an unencrypted PEM"),
        ("ec", "not an Ed25519 private key"),
    ],
)
def test_load_signing_key_errors_name_the_file(
    tmp_path: Path, content: bytes | str | None, message: str
) -> None:
    path = tmp_path / "bad-key.pem"
    if content == "encrypted":
        path.write_bytes(_pem_private(Ed25519PrivateKey.generate(), b"secret"))
    elif content == "ec":
        path.write_bytes(_pem_private(ec.generate_private_key(ec.SECP256R1())))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as raised:
        load_signing_key(path)
    assert str(path) in str(raised.value)


def test_load_public_key_pem_and_raw_base64(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate().public_key()
    expected = key_id(key)
    pem = tmp_path / "audit.pub.pem"
    pem.write_bytes(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    assert key_id(load_public_key(pem)) == expected
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    for encoded in (
        base64.b64encode(raw),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
        base64.b64encode(raw) + b"\n",
    ):
        path = tmp_path / "audit.pub.b64"
        path.write_bytes(encoded)
        assert key_id(load_public_key(path)) == expected


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (base64.b64encode(b"x" * 31), "32 bytes, not 31"),
        (b"%%% not base64 %%%", "neither a PEM public key nor base64"),
        (b"-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n", "not a PEM"),
        ("ec", "not an Ed25519 public key"),
    ],
)
def test_load_public_key_errors_name_the_file(
    tmp_path: Path, content: bytes | str | None, message: str
) -> None:
    path = tmp_path / "bad.pub"
    if content == "ec":
        path.write_bytes(
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as raised:
        load_public_key(path)
    assert str(path) in str(raised.value)


def test_keygen_writes_a_pair_the_loaders_accept(tmp_path: Path) -> None:
    private, public = tmp_path / "audit.pem", tmp_path / "audit.pub.pem"
    args = ["keygen", "--private-key", str(private), "--public-key", str(public)]
    result = CliRunner().invoke(audit, args)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    signing = load_signing_key(private)
    assert key_id(load_public_key(public)) == key_id(signing.public_key())
    assert f"key_id:      {key_id(signing.public_key())}" in result.output

    again = CliRunner().invoke(audit, args)  # never overwrites a key by accident
    assert again.exit_code == 2
    assert key_id(load_signing_key(private).public_key()) == key_id(signing.public_key())
    public.unlink()  # one of the two exists: nothing is written either
    assert CliRunner().invoke(audit, args).exit_code == 2
    assert not public.exists()
    forced = CliRunner().invoke(audit, [*args, "--force"])
    assert forced.exit_code == 0
    assert key_id(load_signing_key(private).public_key()) != key_id(signing.public_key())
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
