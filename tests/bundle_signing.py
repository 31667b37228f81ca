"""Signed OPA bundles for tests, made by the real pinned ``opa`` binary; forgeries by hand.

    key = write_key_pair(tmp_path / "keys", "ES256")
    root = write_signable_bundle(tmp_path / "bundle")
    tarball = opa_build_signed(opa, root, tmp_path / "b.tar.gz", key)   # opa build --signing-key
    opa_sign_directory(opa, root, key)                # opa sign: writes root/.signatures.json
    assert opa_verify(opa, read_bundle_files(tarball), key).returncode == 0

``opa`` is the ``opa_binary`` fixture's path. OPA names a directory's files from the path it
is given, so both commands run inside the bundle directory (``-b .``) and :func:`opa_verify`
hands OPA a tarball (:func:`capgate.policy.bundle.to_tarball`): names relative to the root.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from capgate.policy.bundle import BundleFiles, to_tarball

SIGNATURES = ".signatures.json"
# Written compact with sorted keys: OPA's canonical form, so a digest of the raw bytes equals
# OPA's digest of the decoded document (what hand-made listings rely on).
MANIFEST = b'{"revision":"r1","roots":["capgate"]}'
DATA = b'{"limits":{"refund_usd":100}}'
POLICY = b"package capgate.authz\n\ndefault allow := false\n\nallow if input.amount <= 100\n"
_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}


@dataclass(frozen=True)
class KeyPair:
    """A private key, its PEM files (PKCS#8 and SubjectPublicKeyInfo) and its JWS alg."""

    algorithm: str
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    private_pem: Path
    public_pem: Path


def write_key_pair(directory: Path, algorithm: str, name: str = "signing") -> KeyPair:
    """A fresh key for ``algorithm`` (RS*/PS*: RSA 2048; ES256/384/512: its curve) written
    to ``directory/<name>.key.pem`` and ``directory/<name>.pub.pem``."""
    directory.mkdir(parents=True, exist_ok=True)
    if algorithm.startswith("ES"):
        key: Any = ec.generate_private_key(_CURVES[algorithm]())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = directory / f"{name}.key.pem"
    private_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public_pem = directory / f"{name}.pub.pem"
    public_pem.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return KeyPair(algorithm, key, private_pem, public_pem)


def write_signable_bundle(root: Path, extra: Mapping[str, bytes] | None = None) -> Path:
    """A small valid bundle at ``root``: ``.manifest``, ``policy.rego``,
    ``capgate/data.json``, plus ``extra`` files (bundle-relative path -> bytes)."""
    files = {".manifest": MANIFEST, "policy.rego": POLICY, "capgate/data.json": DATA}
    for rel, content in (files | dict(extra or {})).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    return root


def _signing_flags(key: KeyPair, claims: Mapping[str, Any] | None, scratch: Path) -> list[str]:
    flags = ["--signing-key", str(key.private_pem), "--signing-alg", key.algorithm]
    if claims is not None:
        claims_file = scratch / "claims.json"
        claims_file.write_text(json.dumps(claims))
        flags += ["--claims-file", str(claims_file)]
    return flags


def _run(opa: Path, args: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(opa), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def opa_build_signed(
    opa: Path,
    root: Path,
    output: Path,
    key: KeyPair,
    *,
    key_id: str | None = None,
    claims: Mapping[str, Any] | None = None,
) -> Path:
    """``opa build -b . --signing-key ...`` in ``root``: a signed tarball at ``output``.
    ``key_id`` (``--verification-key-id``) becomes the JWS ``kid`` and ``keyid`` claim (OPA
    writes ``default`` unless ``claims`` is given, then neither); ``claims`` go in the payload."""
    with tempfile.TemporaryDirectory() as scratch:
        args = ["build", "-b", ".", "-o", str(output.resolve())]
        args += _signing_flags(key, claims, Path(scratch))
        if key_id is not None:
            args += ["--verification-key-id", key_id]
        proc = _run(opa, args, cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return output


def opa_sign_directory(
    opa: Path, root: Path, key: KeyPair, *, claims: Mapping[str, Any] | None = None
) -> Path:
    """``opa sign -b . -o .`` in ``root``: writes and returns ``root/.signatures.json``."""
    with tempfile.TemporaryDirectory() as scratch:
        args = ["sign", "-b", ".", "-o", ".", *_signing_flags(key, claims, Path(scratch))]
        proc = _run(opa, args, cwd=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root / SIGNATURES


def opa_verify(
    opa: Path,
    bundle: BundleFiles,
    key: KeyPair,
    *,
    key_id: str = "default",
    scope: str | None = None,
    exclude_files: Iterable[str] = (),
) -> subprocess.CompletedProcess:
    """Does OPA accept ``bundle``? ``opa build -b <tarball> --verification-key ...`` (OPA's
    bundle reader, as ``opa run`` uses it); ``returncode`` 0 when it verifies."""
    with tempfile.TemporaryDirectory() as scratch:
        tarball = Path(scratch) / "bundle.tar.gz"
        tarball.write_bytes(to_tarball(bundle))
        args = ["build", "-b", str(tarball), "-o", str(Path(scratch) / "out.tar.gz")]
        args += ["--verification-key", str(key.public_pem), "--signing-alg", key.algorithm]
        args += ["--verification-key-id", key_id]
        if scope is not None:
            args += ["--scope", scope]
        for pattern in exclude_files:
            args += ["--exclude-files-verify", pattern]
        return _run(opa, args)


def token_of(bundle: BundleFiles) -> str:
    """The one JWS in ``bundle``'s ``.signatures.json``."""
    return json.loads(bundle.files[SIGNATURES])["signatures"][0]


def payload_of(bundle: BundleFiles) -> dict[str, Any]:
    """The (unverified) JWS payload of ``bundle``'s signature."""
    part = token_of(bundle).split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def with_tokens(bundle: BundleFiles, *tokens: str) -> BundleFiles:
    """``bundle`` with ``.signatures.json`` holding exactly ``tokens``."""
    signatures = json.dumps({"signatures": list(tokens)}).encode()
    return BundleFiles(bundle.source, {**bundle.files, SIGNATURES: signatures})


def with_files(bundle: BundleFiles, changes: Mapping[str, bytes | None]) -> BundleFiles:
    """``bundle`` with files replaced or added by bundle-relative path (``None`` removes)."""
    files = dict(bundle.files)
    for rel, content in changes.items():
        if content is None:
            files.pop(rel, None)
        else:
            files[rel] = content
    return BundleFiles(bundle.source, files)


def raw_listing(files: Mapping[str, bytes], algorithm: str = "SHA-256") -> list[dict[str, str]]:
    """A ``files`` claim hashing each file's raw bytes with ``algorithm`` (OPA's name:
    ``MD5``, ``SHA-1``, ``SHA-256``, ``SHA-512-224``...). Equals OPA's listing only where
    JSON files are already canonical, as :func:`write_signable_bundle` writes them."""
    name = algorithm.lower().replace("-", "").replace("sha512224", "sha512_224")
    name = name.replace("sha512256", "sha512_256")
    return [
        {"name": rel, "hash": hashlib.new(name, content).hexdigest(), "algorithm": algorithm}
        for rel, content in sorted(files.items())
        if rel != SIGNATURES
    ]


def sign_claims(
    claims: Mapping[str, Any], key: KeyPair, *, kid: str | None = None, alg: str | None = None
) -> str:
    """A JWS of ``claims`` signed with ``key`` (``alg`` defaults to the key's); ``kid``, if
    given, goes in the header."""
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(
        dict(claims), key.private_key, algorithm=alg or key.algorithm, headers=headers
    )
