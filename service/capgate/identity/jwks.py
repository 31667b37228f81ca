"""JSON Web Key Sets (RFC 7517) for verifying JWT bearer tokens: read from a file or
an http(s) URL, parsed key by key, refreshed in the background.

Only keys capgate can verify with are accepted: RSA (2048 bits and up) for RS256 and
PS256, EC P-256 for ES256; keys marked ``use: enc`` are skipped. A JWKS that cannot
be read, is not JSON, holds a private member, a repeated ``kid`` or an unusable
signing key raises ``ConfigError`` from :meth:`JwksSource.load`; refreshes log
failures and keep the last good keys.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any

import jwt
import structlog

from capgate.errors import ConfigError

log = structlog.get_logger("capgate")

ALGORITHMS = frozenset({"RS256", "PS256", "ES256"})
_RSA_ALGORITHMS = frozenset({"RS256", "PS256"})
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_MIN_RSA_BITS = 2048
_MAX_JWKS_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One usable JWK: its ``kid`` (``None`` if the JWK has none), the JWS algorithms
    it may verify, and the ``cryptography`` public key."""

    kid: str | None
    algorithms: frozenset[str]
    key: Any


def parse_jwks(document: bytes, *, source: str) -> tuple[VerificationKey, ...]:
    """The signature keys of a JWKS document (RFC 7517 §5). Pure.

    RSA keys (at least 2048 bits) verify RS256 and PS256, EC P-256 keys ES256; a
    JWK's own ``alg`` narrows that. Keys marked ``use: enc`` are skipped.

    Raises:
        ConfigError: naming ``source`` and the key's index, when the document is not a
            JSON key set, a key has another ``kty``, curve or ``alg``, holds private
            members, repeats a ``kid``, or no signature key is left.
    """
    try:
        parsed = json.loads(document)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise ConfigError(f"JWKS {source}: not JSON ({exc})") from exc
    members = parsed.get("keys") if isinstance(parsed, dict) else None
    if not isinstance(members, list):
        raise ConfigError(f'JWKS {source}: not a key set (expected {{"keys": [...]}})')
    found: list[VerificationKey] = []
    for index, jwk in enumerate(members):
        key = _parse_key(jwk, f"JWKS {source}: keys[{index}]")
        if key is None:
            continue
        if key.kid is not None and any(k.kid == key.kid for k in found):
            raise ConfigError(f"JWKS {source}: keys[{index}]: kid repeats an earlier key's")
        found.append(key)
    if not found:
        raise ConfigError(f"JWKS {source}: no signature keys")
    return tuple(found)


def _parse_key(jwk: Any, where: str) -> VerificationKey | None:
    if not isinstance(jwk, dict):
        raise ConfigError(f"{where}: not a JSON object")
    if jwk.get("use") == "enc":
        return None
    if _PRIVATE_MEMBERS & jwk.keys():
        raise ConfigError(f"{where}: holds private key members; publish public keys only")
    kid, alg, kty = jwk.get("kid"), jwk.get("alg"), jwk.get("kty")
    if kid is not None and not isinstance(kid, str):
        raise ConfigError(f"{where}: kid is not a string")
    if kty == "RSA":
        allowed = _RSA_ALGORITHMS
    elif kty == "EC" and jwk.get("crv") == "P-256":
        allowed = frozenset({"ES256"})
    else:
        raise ConfigError(f"{where}: unsupported key (capgate accepts kty RSA and EC P-256)")
    if alg is not None:
        if not isinstance(alg, str) or alg not in allowed:
            raise ConfigError(f"{where}: unsupported alg (capgate accepts RS256, PS256, ES256)")
        allowed = frozenset({alg})
    try:
        key = jwt.PyJWK(jwk, algorithm=min(allowed)).key
    except jwt.PyJWTError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    if kty == "RSA" and key.key_size < _MIN_RSA_BITS:
        raise ConfigError(f"{where}: RSA key shorter than {_MIN_RSA_BITS} bits")
    return VerificationKey(kid, allowed, key)


def _redacted(location: str) -> str:
    """``location`` without userinfo, query or fragment: safe to log."""
    parts = urllib.parse.urlsplit(location)
    if parts.scheme not in ("http", "https"):
        return location
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


class JwksSource:
    """A JWKS read from a file path or an ``http(s)://`` URL, held in memory.

    Call :meth:`load` once at start (it blocks on I/O: run it before serving, or in
    a thread), then run :meth:`refresh_forever` as a background task. :meth:`keys` is
    what the hot path reads; it never does I/O. Example::

        jwks = JwksSource("https://idp.example/.well-known/jwks.json")
        jwks.load()                                  # ConfigError if unusable
        task = asyncio.create_task(jwks.refresh_forever(300))
    """

    def __init__(self, location: str, *, timeout_seconds: float = 5.0) -> None:
        scheme = urllib.parse.urlsplit(location).scheme
        self._is_url = scheme in ("http", "https")
        if "://" in location and not self._is_url:
            raise ConfigError(f"identity.jwt.jwks: {scheme}:// is not supported (path or URL)")
        self._location = location
        self.source = _redacted(location)
        self._timeout = timeout_seconds
        self._document: bytes | None = None
        self._keys: tuple[VerificationKey, ...] = ()

    def keys(self) -> tuple[VerificationKey, ...]:
        """The current keys; the same tuple object until a reload changes the JWKS.
        Empty before :meth:`load`."""
        return self._keys

    def load(self) -> None:
        """Read and parse the JWKS now, replacing the keys.

        Raises:
            ConfigError: the file or URL cannot be read (I/O error, HTTP status other
                than 200, over 1 MiB, timeout), or :func:`parse_jwks` rejects it.
        """
        document, keys = self._fetch()
        self._install(document, keys)

    async def refresh(self) -> bool:
        """Reload in a thread. On failure log ``jwks_refresh_failed`` and keep the
        last good keys. Returns whether the reload succeeded."""
        try:
            document, keys = await asyncio.to_thread(self._fetch)
        except ConfigError as exc:
            log.warning("jwks_refresh_failed", source=self.source, error=str(exc))
            return False
        if self._install(document, keys):
            log.info("jwks_refreshed", source=self.source, keys=len(keys))
        return True

    async def refresh_forever(self, interval_seconds: float) -> None:
        """:meth:`refresh` every ``interval_seconds`` until cancelled."""
        while True:
            await asyncio.sleep(interval_seconds)
            await self.refresh()

    def _install(self, document: bytes, keys: tuple[VerificationKey, ...]) -> bool:
        if document == self._document:
            return False
        self._document, self._keys = document, keys
        return True

    def _fetch(self) -> tuple[bytes, tuple[VerificationKey, ...]]:
        document = self._read_url() if self._is_url else self._read_file()
        if len(document) > _MAX_JWKS_BYTES:
            raise ConfigError(f"JWKS {self.source}: larger than {_MAX_JWKS_BYTES} bytes")
        return document, parse_jwks(document, source=self.source)

    def _read_file(self) -> bytes:
        try:
            with Path(self._location).open("rb") as file:
                return file.read(_MAX_JWKS_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"JWKS {self.source}: cannot read ({exc.strerror})") from exc

    def _read_url(self) -> bytes:
        request = urllib.request.Request(
            self._location, headers={"Accept": "application/json", "User-Agent": "capgate"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                if response.status != 200:
                    raise ConfigError(f"JWKS {self.source}: HTTP status {response.status}")
                return bytes(response.read(_MAX_JWKS_BYTES + 1))
        except urllib.error.HTTPError as exc:
            exc.close()
            raise ConfigError(f"JWKS {self.source}: HTTP status {exc.code}") from exc
        except (OSError, HTTPException, ValueError) as exc:  # URLError is an OSError
            raise ConfigError(f"JWKS {self.source}: cannot fetch ({exc})") from exc
