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

import math
from collections.abc import Mapping
from typing import Any

import jwt

from capgate.clock import Clock
from capgate.errors import Unauthenticated
from capgate.identity.jwks import ALGORITHMS, JwksSource, VerificationKey
from capgate.identity.model import Credentials, Identity

_MAX_TOKEN_CHARS = 16_384
_MAX_ACT_DEPTH = 16


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
        if self._cache_size <= 0:  # caching off: every call verifies
            return identity
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
