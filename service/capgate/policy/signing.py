"""Verify a bundle's ``.signatures.json`` as OPA does (``opa build --signing-key``, ``opa sign``).

Sources: OPA docs, "Bundle signing" (https://www.openpolicyagent.org/docs/management-bundles#signing);
open-policy-agent/opa ``v1/bundle/verify.go`` (``verifyJWTSignature``, ``VerifyBundleFile``),
``hash.go`` (``walk``), ``bundle.go`` (``Reader.Read``, ``IsStructuredDoc``), ``keys.go``.

``.signatures.json`` is ``{"signatures": ["<compact JWS>"], "plugin"?: "_default"}`` with
exactly one JWS, whose payload is ``{"files": [{"name", "hash", "algorithm"}], "keyid"?,
"scope"?}``: ``name`` relative to the bundle root, ``hash`` hex, ``algorithm`` ``SHA-256`` (what
OPA writes) or SHA-224/384/512/512-224/512-256. Every file but ``.signatures.json`` must be
listed with a matching digest and every listed file must exist; a file whose path matches an
``exclude_files`` pattern (Go ``filepath.Match``: ``*`` and ``?`` stop at ``/``) is not checked.
A file named ``data.json``, ``.manifest`` or ``signatures.json`` is hashed as OPA re-encodes
it: keys sorted, no whitespace, numbers as written, strings as Go's encoding/json writes them
(``<>&`` raw, U+2028/9 escaped); any other file is hashed as its bytes.

Key id: the JWS ``kid`` header, else the ``keyid`` claim, else ``default_key_id``; that key
fixes the one algorithm accepted. Scope: the ``scope`` claim must equal ``scope`` (absent and
``None`` both count as ``""``, as in OPA).

Deliberate deviations, each refusing what OPA accepts: MD5 and SHA-1 digests (weak); HMAC and
``none`` (a bundle is signed with a private key); a ``kid`` not configured (OPA's configured key
id overrides the token's); a name listed twice; a signature plugin; a checked ``data.yaml``
(OPA hashes its own YAML reading, which differs from PyYAML's, e.g. ``no``: a re-quoted value
could keep OPA's digest and change capgate's data); an unlisted file named like
``x/signatures.json`` (OPA skips those). Sign a directory from inside it
(``cd dir && opa sign -b . -o .``): OPA names files after the path it is given.

    keys = {"default": load_verification_key(pem, key_id="default", algorithm="RS256")}
    key_id = verify_bundle(read_bundle_files(path), VerificationConfig(keys))
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from capgate.errors import BundleError, ConfigError
from capgate.policy.bundle import BundleFiles
from capgate.settings import SIGNING_ALGORITHMS

_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
# OPA's names (hash.go) -> hashlib's.
HASHES = {"SHA-224": "sha224", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}
HASHES |= {"SHA-512-224": "sha512_224", "SHA-512-256": "sha512_256"}
WEAK_HASHES = ("MD5", "SHA-1")
SIGNATURES_FILE = ".signatures.json"
_STRUCTURED = ("data.json", "data.yaml", "signatures.json", ".manifest")
_CLAIM_TYPES = {"files": list, "keyid": str, "scope": str, "iss": str, "iat": int}


class BundleSignatureError(BundleError):
    """The bundle is unsigned or its signature fails; the message names the file or field."""


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key (SubjectPublicKeyInfo PEM) and the one JWS algorithm it verifies."""

    key_id: str
    public_key_pem: bytes
    algorithm: str


@dataclass(frozen=True, slots=True)
class VerificationConfig:
    """Trusted keys by id, and what a signature must satisfy (see the module docstring)."""

    keys: Mapping[str, VerificationKey]
    default_key_id: str = "default"
    scope: str | None = None
    exclude_files: tuple[str, ...] = ()


def load_verification_key(path: Path, *, key_id: str, algorithm: str) -> VerificationKey:
    """The public key in PEM file ``path`` (public key, unencrypted private key or certificate,
    as OPA accepts) for ``algorithm``. Raises :class:`ConfigError` naming the flag for an HMAC,
    ``none`` or unknown algorithm, an unusable file, or a key outside the algorithm's family."""
    if algorithm not in SIGNING_ALGORITHMS:
        raise ConfigError(
            f"--signing-alg {algorithm!r}: must be one of {', '.join(SIGNING_ALGORITHMS)} "
            "(HMAC and none are refused: a bundle is signed with a private key)"
        )
    if not key_id:
        raise ConfigError("--verification-key-id: must not be empty")
    try:
        public = _public_key(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"--verification-key {path}: unreadable: {exc}") from exc
    if public is None:
        raise ConfigError(
            f"--verification-key {path}: not a PEM public key, certificate or unencrypted "
            "private key"
        )
    if algorithm[:2] in ("RS", "PS"):
        fits = isinstance(public, rsa.RSAPublicKey)
    else:
        fits = isinstance(public, ec.EllipticCurvePublicKey) and (
            public.curve.name == _CURVES[algorithm]
        )
    if not fits:
        raise ConfigError(
            f"--verification-key {path}: a {type(public).__name__} does not fit "
            f"--signing-alg {algorithm}"
        )
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return VerificationKey(key_id, public.public_bytes(serialization.Encoding.PEM, spki), algorithm)


def bundle_verifier(
    key_path: Path,
    *,
    key_id: str,
    algorithm: str,
    scope: str | None = None,
    exclude_files: Sequence[str] = (),
) -> Callable[[BundleFiles], str]:
    """The signature check ``opa run --verification-key key_path --verification-key-id
    key_id --signing-alg algorithm [--scope] [--exclude-files-verify]`` does: a function
    of the bundle's files that returns the verifying key's id or raises
    :class:`BundleSignatureError`. Raises :class:`ConfigError` as
    :func:`load_verification_key`."""
    key = load_verification_key(key_path, key_id=key_id, algorithm=algorithm)
    config = VerificationConfig(
        keys={key_id: key}, default_key_id=key_id, scope=scope, exclude_files=tuple(exclude_files)
    )
    return lambda files: verify_bundle(files, config)


def _public_key(pem: bytes) -> Any:
    for load in (
        serialization.load_pem_public_key,
        lambda b: serialization.load_pem_private_key(b, password=None).public_key(),
        lambda b: x509.load_pem_x509_certificate(b).public_key(),
    ):
        try:
            return load(pem)
        except (ValueError, TypeError):  # TypeError: an encrypted private key
            continue
    return None


def verify_bundle(bundle: BundleFiles, config: VerificationConfig) -> str:
    """Check ``bundle``'s signature and every file's digest; return the id of the key that
    verified it. Raises :class:`BundleSignatureError`, also when the bundle is unsigned."""
    where = f"bundle {bundle.source}"
    raw = bundle.files.get(SIGNATURES_FILE)
    if raw is None:
        raise BundleSignatureError(f"{where}: unsigned: no {SIGNATURES_FILE}")
    key_id, claims = _verify_token(f"{where}: {SIGNATURES_FILE}", _token(where, raw), config)
    listed = _listing(f"{where}: {SIGNATURES_FILE}", claims.get("files", []))
    excluded = [p for p in map(_go_glob, config.exclude_files) if p is not None]
    for rel, content in sorted(bundle.files.items()):
        if rel == SIGNATURES_FILE:
            continue
        entry = listed.pop(rel, None)  # excluded: not checked, yet no longer missing
        if any(p.fullmatch(rel) for p in excluded):
            continue
        if entry is None:
            raise BundleSignatureError(f"{where}: {rel} is not listed in {SIGNATURES_FILE}")
        _check_digest(f"{where}: {rel}", rel, content, entry)
    if listed:
        raise BundleSignatureError(
            f"{where}: {', '.join(sorted(listed))} listed in {SIGNATURES_FILE} but missing "
            "from the bundle (names must be relative to the bundle root)"
        )
    return key_id


def _token(where: str, raw: bytes) -> str:
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BundleSignatureError(f"{where}: {SIGNATURES_FILE} is not JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("signatures", []), list):
        raise BundleSignatureError(f"{where}: {SIGNATURES_FILE}: expected {{'signatures': [...]}}")
    if document.get("plugin", "") not in ("", "_default"):  # OPA's built-in verifier
        raise BundleSignatureError(f"{where}: {SIGNATURES_FILE}: plugin {document['plugin']!r}")
    tokens = document.get("signatures", [])
    if len(tokens) != 1 or not isinstance(tokens[0], str):
        raise BundleSignatureError(
            f"{where}: {SIGNATURES_FILE}: expected exactly one JWT string, found {len(tokens)}"
        )
    return tokens[0]


def _verify_token(at: str, token: str, config: VerificationConfig) -> tuple[str, dict[str, Any]]:
    jws = jwt.PyJWS()
    try:
        header = jws.get_unverified_header(token)
        claims = _claims(at, jws.decode_complete(token, options={"verify_signature": False}))
    except jwt.PyJWTError as exc:
        raise BundleSignatureError(f"{at}: malformed JWT: {exc}") from exc
    key_id = header.get("kid") or claims.get("keyid") or config.default_key_id
    key = config.keys.get(key_id)
    if key is None:
        configured = ", ".join(map(repr, sorted(config.keys))) or "none"
        raise BundleSignatureError(f"{at}: unknown key id {key_id!r} (configured: {configured})")
    if key.algorithm not in SIGNING_ALGORITHMS:
        raise BundleSignatureError(f"{at}: key {key_id!r} has refused algorithm {key.algorithm}")
    try:
        verified = jws.decode_complete(token, key.public_key_pem, algorithms=[key.algorithm])
    except jwt.PyJWTError as exc:
        raise BundleSignatureError(
            f"{at}: JWT does not verify with key {key_id!r} ({key.algorithm}): {exc}"
        ) from exc
    claims = _claims(at, verified)
    if (scope := claims.get("scope", "")) != (config.scope or ""):
        raise BundleSignatureError(
            f"{at}: scope mismatch: token has {scope!r}, required {config.scope or ''!r}"
        )
    return key_id, claims


def _claims(at: str, decoded: dict[str, Any]) -> dict[str, Any]:
    try:
        claims = json.loads(decoded["payload"])
    except (ValueError, RecursionError) as exc:
        raise BundleSignatureError(f"{at}: JWT payload is not JSON: {exc}") from exc
    if not isinstance(claims, dict):
        raise BundleSignatureError(f"{at}: JWT payload is not an object")
    for name, kind in _CLAIM_TYPES.items():
        if name in claims and type(claims[name]) is not kind:
            raise BundleSignatureError(f"{at}: JWT claim {name!r} must be a {kind.__name__}")
    return claims


def _listing(at: str, files: list[Any]) -> dict[str, dict[str, str]]:
    listed: dict[str, dict[str, str]] = {}
    for entry in files:
        fields = ("name", "hash", "algorithm")
        if not isinstance(entry, dict) or any(
            not isinstance(entry.get(f, ""), str) for f in fields
        ):
            raise BundleSignatureError(f"{at}: malformed files entry {entry!r}")
        if (name := entry.get("name", "")) in listed:
            raise BundleSignatureError(f"{at}: lists {name} twice")
        listed[name] = entry
    return listed


def _check_digest(at: str, rel: str, content: bytes, entry: Mapping[str, str]) -> None:
    algorithm = entry.get("algorithm", "")
    if algorithm in WEAK_HASHES:
        raise BundleSignatureError(f"{at}: {algorithm} digests are refused as weak")
    if algorithm not in HASHES:
        raise BundleSignatureError(f"{at}: unsupported digest algorithm {algorithm!r}")
    try:
        want = binascii.unhexlify(entry.get("hash", ""))
    except (binascii.Error, ValueError) as exc:
        raise BundleSignatureError(f"{at}: digest is not hex") from exc
    if rel.rsplit("/", 1)[-1] in _STRUCTURED:
        content = _canonical_json(at, rel, content)
    if not hmac.compare_digest(want, hashlib.new(HASHES[algorithm], content).digest()):
        raise BundleSignatureError(f"{at}: digest mismatch (altered since signing)")


# --- OPA's digest input for a structured file: hash.go ``walk`` of ``util.Unmarshal`` ------


class _Number(str):
    """A JSON number as written: Go's json.Number, which OPA hashes verbatim."""


def _canonical_json(at: str, rel: str, content: bytes) -> bytes:
    if rel.rsplit("/", 1)[-1] == "data.yaml":
        raise BundleSignatureError(f"{at}: refused in a signed bundle; use data.json")
    try:
        text = content.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
        value = json.loads(text, parse_int=_Number, parse_float=_Number, parse_constant=_nan)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BundleSignatureError(f"{at}: not UTF-8 JSON: {exc}") from exc
    out: list[str] = []
    try:
        _walk(value, out)
        return "".join(out).encode("utf-8")
    except (UnicodeEncodeError, RecursionError) as exc:  # a lone surrogate escape
        raise BundleSignatureError(f"{at}: cannot be hashed as OPA does: {exc}") from exc


def _nan(literal: str) -> Any:
    raise ValueError(f"{literal} is not JSON")


def _walk(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value)):  # code point order = Go's UTF-8 byte order
            out.extend(("," if i else "", _go_string(key), ":"))
            _walk(value[key], out)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            out.append("," if i else "")
            _walk(item, out)
        out.append("]")
    elif isinstance(value, str):
        out.append(value if isinstance(value, _Number) else _go_string(value))
    else:
        out.append(json.dumps(value))  # true, false, null


def _go_string(text: str) -> str:
    """Go's encoding/json string, HTML escaping off: as Python's but for U+2028/U+2029."""
    quoted = json.dumps(text, ensure_ascii=False)
    return quoted.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


# --- Go's filepath.Match, for exclude_files --------------------------------------------------

_GLOB_TOKEN = re.compile(r"\\(.)|\[(\^?)((?:\\.|[^\\\]])+)\]|[^\\\[]", re.DOTALL)
_GLOB_CHAR = r"(?:\\.|[^-\\\]])"
_GLOB_CLASS = re.compile(rf"(?:{_GLOB_CHAR}(?:-{_GLOB_CHAR})?)+", re.DOTALL)
_GLOB_CLASS_CHAR = re.compile(r"\\(.)|([^-])", re.DOTALL)


def _go_glob(pattern: str) -> re.Pattern[str] | None:
    """``pattern`` as a regex: ``*`` and ``?`` stop at ``/``, ``[^a-z]`` is a class, ``\\``
    escapes. ``None`` when malformed (OPA ignores the error: no match) or a reversed range
    (Go matches nothing with it): never broader than Go, so nothing goes unverified."""
    out, end = [], 0
    for m in _GLOB_TOKEN.finditer(pattern):
        if m.start() != end:
            return None  # a '[' that opens no class
        end, escaped, negate, chars = m.end(), m.group(1), m.group(2), m.group(3)
        if escaped is not None:
            out.append(re.escape(escaped))
        elif chars is not None:
            if not _GLOB_CLASS.fullmatch(chars):
                return None
            out.append(f"[{negate}{_GLOB_CLASS_CHAR.sub(_class_escape, chars)}]")
        else:
            out.append({"*": "[^/]*", "?": "[^/]"}.get(m.group(), re.escape(m.group())))
    try:
        return re.compile("".join(out), re.DOTALL) if end == len(pattern) else None
    except re.error:
        return None


def _class_escape(m: re.Match[str]) -> str:
    return re.escape(m.group(1) or m.group(2))
