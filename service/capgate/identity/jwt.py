"""JWT bearer identities: RFC 7519 tokens signed per RFC 7515 (JWS), verified against
an RFC 7517 key set (JWKS) read from a file or an http(s) URL.

    authorization: Bearer <token>           gRPC metadata (RFC 6750 §2.1)
      → JwtAuthenticator.authenticate       key by ``kid``; RS256, PS256 or ES256 only;
                                            iss, aud, exp, nbf against the injected clock
      → identity_from_claims                sub, tenant_id, scope, roles, act (RFC 8693)
      → Identity(method="jwt", ...)

Errors, converted here from pyjwt's: a token that fails any check raises
``Unauthenticated`` with a short message that never echoes the token; a JWKS that
cannot be read, is not JSON, or holds a key capgate cannot use raises ``ConfigError``
from :meth:`JwksSource.load` (refreshes log it and keep the last good keys).
"""

from __future__ import annotations

import asyncio
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any

import jwt
import structlog

from capgate.clock import Clock
from capgate.errors import ConfigError, Unauthenticated
from capgate.identity.model import Credentials, Identity

log = structlog.get_logger("capgate")

ALGORITHMS = frozenset({"RS256", "PS256", "ES256"})
_RSA_ALGORITHMS = frozenset({"RS256", "PS256"})
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_MIN_RSA_BITS = 2048
_MAX_JWKS_BYTES = 1 << 20
_MAX_TOKEN_CHARS = 16_384
_MAX_ACT_DEPTH = 16


# --- key sets -------------------------------------------------------------------------


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


# --- tokens ---------------------------------------------------------------------------

_PYJWT_ERRORS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
    (jwt.InvalidAudienceError, "the token's audience (aud) is not accepted"),
    (jwt.InvalidIssuerError, "the token's issuer (iss) is not accepted"),
    (jwt.InvalidAlgorithmError, "the token's algorithm is not allowed"),
    (jwt.exceptions.InvalidSubjectError, "the token's sub claim must be a string"),
    (jwt.exceptions.InvalidJTIError, "the token's jti claim must be a string"),
    (jwt.DecodeError, "the bearer token is malformed"),
)


def _unauthenticated(exc: jwt.PyJWTError) -> Unauthenticated:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return Unauthenticated(f"the token lacks the {exc.claim} claim")
    for kind, message in _PYJWT_ERRORS:
        if isinstance(exc, kind):
            return Unauthenticated(message)
    return Unauthenticated("the bearer token is invalid")


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """RFC 7519 §2 NumericDate: seconds since the epoch, finite, possibly fractional."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Unauthenticated(f"the token's {name} claim must be a number of seconds")
    return float(value)


def _string_claim(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name, "")
    if not isinstance(value, str):
        raise Unauthenticated(f"the token's {name} claim must be a string")
    return value


def _actors(act: Any) -> list[str]:
    """The ``act`` chain (RFC 8693 §4.1), current actor first."""
    actors: list[str] = []
    while act is not None:
        sub = act.get("sub") if isinstance(act, dict) else None
        if not isinstance(sub, str) or not sub:
            raise Unauthenticated("the token's act claim must nest objects with a sub string")
        if len(actors) == _MAX_ACT_DEPTH:
            raise Unauthenticated(f"the token's act claim nests over {_MAX_ACT_DEPTH} actors")
        actors.append(sub)
        act = act.get("act")
    return actors


def identity_from_claims(claims: Mapping[str, Any]) -> Identity:
    """The identity of verified JWT ``claims``. Pure.

    ``sub`` → ``principal_id``; ``tenant_id`` → ``tenant_id``; ``scope`` (a
    space-separated string, RFC 8693 §4.2) → ``scopes``; ``roles`` (list of strings)
    → ``roles``; ``act`` (RFC 8693 §4.1, outermost = current actor) → the
    ``delegation_chain``, earliest actor first and ``sub`` last, e.g. ``{"sub":
    "refund-agent", "act": {"sub": "orchestrator", "act": {"sub": "alice"}}}`` →
    ``("alice", "orchestrator", "refund-agent")``; ``on_behalf_of`` from its claim,
    else the chain's first element when the chain is longer than one.

    Raises:
        Unauthenticated: ``sub`` missing or empty, or a claim of the wrong type (the
            message names it).
    """
    sub = _string_claim(claims, "sub")
    if not sub:
        raise Unauthenticated("the token lacks the sub claim")
    scope = _string_claim(claims, "scope")
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise Unauthenticated("the token's roles claim must be a list of strings")
    chain = (*reversed(_actors(claims.get("act"))), sub)
    on_behalf_of = _string_claim(claims, "on_behalf_of") or (chain[0] if len(chain) > 1 else "")
    return Identity(
        method="jwt",
        principal_id=sub,
        tenant_id=_string_claim(claims, "tenant_id"),
        on_behalf_of=on_behalf_of,
        delegation_chain=chain,
        scopes=tuple(scope.split()),
        roles=tuple(roles),
        claims=dict(claims),
    )


class JwtAuthenticator:
    """Verifies ``credentials.bearer_token`` (RFC 6750) against ``jwks``.

    ``leeway_seconds`` widens ``exp`` and ``nbf`` for clock skew; both are checked
    against ``clock``. Verified tokens are cached (at most ``cache_size``) until
    their ``exp`` plus leeway, and forgotten when the JWKS changes.
    """

    def __init__(
        self,
        jwks: JwksSource,
        *,
        issuer: str,
        audience: str,
        leeway_seconds: int,
        clock: Clock,
        cache_size: int = 1024,
    ) -> None:
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_seconds
        self._clock = clock
        self._cache_size = cache_size
        self._cache: dict[str, tuple[Identity, float]] = {}
        self._cache_keys: tuple[VerificationKey, ...] = ()

    def authenticate(self, credentials: Credentials) -> Identity:
        """The identity the token's claims name (see :func:`identity_from_claims`).

        Raises:
            Unauthenticated: no token; malformed; ``alg`` other than RS256, PS256,
                ES256 or not allowed for the key; unknown ``kid``; a ``crit`` header;
                bad signature; ``iss`` not the issuer; ``aud`` without the audience;
                ``exp`` or ``sub`` missing; expired or not yet valid; a malformed claim.
        """
        token = credentials.bearer_token
        if not token:
            raise Unauthenticated("a bearer token is required")
        if len(token) > _MAX_TOKEN_CHARS:
            raise Unauthenticated("the bearer token is too long")
        now = self._clock.now().timestamp()
        keys = self._jwks.keys()
        if keys is not self._cache_keys:
            self._cache.clear()
            self._cache_keys = keys
        cached = self._cache.pop(token, None)
        if cached is not None and now < cached[1] + self._leeway:
            self._cache[token] = cached
            return cached[0]
        claims = self._verify(token, keys, now)
        identity = identity_from_claims(claims)
        if len(self._cache) >= self._cache_size:
            del self._cache[next(iter(self._cache))]
        self._cache[token] = (identity, float(claims["exp"]))
        return identity

    def _verify(self, token: str, keys: tuple[VerificationKey, ...], now: float) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated("the bearer token is malformed") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            raise Unauthenticated("the token's algorithm is not allowed (RS256, PS256, ES256)")
        if "crit" in header:  # RFC 7515 §4.1.11: we understand no extension
            raise Unauthenticated("the token has critical header parameters")
        key = _select_key(keys, header.get("kid"), alg)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "verify_exp": False,  # checked below against the injected clock
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": ["exp", "iss", "aud", "sub"],
                },
            )
        except jwt.PyJWTError as exc:
            raise _unauthenticated(exc) from exc
        exp = _numeric_date(claims, "exp")
        nbf = _numeric_date(claims, "nbf")
        _numeric_date(claims, "iat")
        if exp is None or now >= exp + self._leeway:  # RFC 7519 §4.1.4
            raise Unauthenticated("the token has expired")
        if nbf is not None and now < nbf - self._leeway:  # RFC 7519 §4.1.5
            raise Unauthenticated("the token is not valid yet (nbf)")
        return claims


def _select_key(keys: tuple[VerificationKey, ...], kid: Any, alg: str) -> VerificationKey:
    if kid is None:
        if len(keys) != 1:
            raise Unauthenticated("the token names no key (kid)")
        key = keys[0]
    else:
        key = next((k for k in keys if isinstance(kid, str) and k.kid == kid), None)
        if key is None:
            raise Unauthenticated("the token's key (kid) is unknown")
    if alg not in key.algorithms:
        raise Unauthenticated("the token's algorithm is not allowed for its key")
    return key
