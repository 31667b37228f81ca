"""Unit tests for capgate.identity.jwt: real keys, real signatures, a real HTTP JWKS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from structlog.testing import capture_logs

from capgate.errors import ConfigError, Unauthenticated
from capgate.identity.jwks import JwksSource, parse_jwks
from capgate.identity.jwt import JwtAuthenticator, identity_from_claims
from capgate.identity.model import Credentials, Identity
from tests.identity_keys import (
    SigningKey,
    ec_signing_key,
    hmac_token,
    jwks_document,
    rsa_signing_key,
    serve_jwks,
    token_claims,
    unsigned_token,
    write_jwks,
)

ISSUER = "https://idp.example"
AUDIENCE = "capgate"
NOW = datetime(2026, 11, 21, 19, 14, 47, tzinfo=UTC)
LEEWAY = 30


@dataclass
class FixedClock:
    at: datetime = NOW

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.at.timestamp()


@dataclass(frozen=True)
class Keys:
    rsa: SigningKey  # kid rsa-1, JWK without alg: RS256 and PS256
    pinned: SigningKey  # kid rsa-pinned, JWK alg RS256
    pss: SigningKey  # kid pss-1, JWK alg PS256
    ec: SigningKey  # kid ec-1, ES256
    impostor: SigningKey  # kid rsa-1, not in the JWKS


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        rsa=rsa_signing_key("rsa-1"),
        pinned=rsa_signing_key("rsa-pinned"),
        pss=rsa_signing_key("pss-1", alg="PS256"),
        ec=ec_signing_key("ec-1"),
        impostor=rsa_signing_key("rsa-1"),
    )


@pytest.fixture
def jwks_file(tmp_path: Path, keys: Keys) -> Path:
    return write_jwks(
        tmp_path / "jwks.json", keys.rsa.public_jwk(alg=None), keys.pinned, keys.pss, keys.ec
    )


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def authenticator(jwks_file: Path, clock: FixedClock) -> JwtAuthenticator:
    source = JwksSource(str(jwks_file))
    source.load()
    return JwtAuthenticator(
        source, issuer=ISSUER, audience=AUDIENCE, leeway_seconds=LEEWAY, clock=clock
    )


def claims(**extra: Any) -> dict[str, Any]:
    """Valid claims for ``refund-agent``; ``extra`` overrides (``None`` removes)."""
    return token_claims(
        issuer=ISSUER, audience=AUDIENCE, now=NOW, **{"sub": "refund-agent", **extra}
    )


def bearer(token: str) -> Credentials:
    return Credentials(bearer_token=token)


def rejects(authenticator: JwtAuthenticator, token: str, message: str) -> None:
    with pytest.raises(Unauthenticated, match=message) as caught:
        authenticator.authenticate(bearer(token))
    assert token not in str(caught.value)


# --- accepted -------------------------------------------------------------------------


def test_rs256_token_maps_claims(authenticator: JwtAuthenticator, keys: Keys) -> None:
    token = keys.rsa.mint(
        claims(tenant_id="acme", scope="refunds:write  refunds:read", roles=["ops"], jti="j1")
    )
    identity = authenticator.authenticate(bearer(token))
    assert identity == Identity(
        method="jwt",
        principal_id="refund-agent",
        tenant_id="acme",
        on_behalf_of="",
        delegation_chain=("refund-agent",),
        scopes=("refunds:write", "refunds:read"),
        roles=("ops",),
        claims=claims(
            tenant_id="acme", scope="refunds:write  refunds:read", roles=["ops"], jti="j1"
        ),
    )
    assert identity.fact()["claims"]["jti"] == "j1"


@pytest.mark.parametrize(
    ("key_name", "alg"),
    [("rsa", "RS256"), ("rsa", "PS256"), ("pinned", "RS256"), ("pss", "PS256"), ("ec", "ES256")],
)
def test_allowed_algorithms(
    authenticator: JwtAuthenticator, keys: Keys, key_name: str, alg: str
) -> None:
    token = getattr(keys, key_name).mint(claims(), alg=alg)
    assert authenticator.authenticate(bearer(token)).principal_id == "refund-agent"


def test_audience_list_containing_ours(authenticator: JwtAuthenticator, keys: Keys) -> None:
    token = keys.ec.mint(claims(aud=["billing", AUDIENCE]))
    assert authenticator.authenticate(bearer(token)).principal_id == "refund-agent"


def test_token_without_kid_uses_the_only_key(tmp_path: Path, keys: Keys) -> None:
    source = JwksSource(str(write_jwks(tmp_path / "one.json", keys.ec)))
    source.load()
    auth = JwtAuthenticator(
        source, issuer=ISSUER, audience=AUDIENCE, leeway_seconds=0, clock=FixedClock()
    )
    assert auth.authenticate(bearer(keys.ec.mint(claims(), kid=None))).principal_id


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(-LEEWAY - 1, False), (-LEEWAY, False), (-LEEWAY + 1, True), (0, True)],
)
def test_exp_with_leeway(
    authenticator: JwtAuthenticator, keys: Keys, offset: int, accepted: bool
) -> None:
    """exp is honoured while now < exp + leeway (RFC 7519 §4.1.4)."""
    token = keys.ec.mint(claims(exp=int(NOW.timestamp()) + offset))
    if accepted:
        assert authenticator.authenticate(bearer(token)).principal_id
    else:
        rejects(authenticator, token, "expired")


@pytest.mark.parametrize(("offset", "accepted"), [(LEEWAY, True), (LEEWAY + 1, False)])
def test_nbf_with_leeway(
    authenticator: JwtAuthenticator, keys: Keys, offset: int, accepted: bool
) -> None:
    token = keys.ec.mint(claims(nbf=int(NOW.timestamp()) + offset))
    if accepted:
        assert authenticator.authenticate(bearer(token)).principal_id
    else:
        rejects(authenticator, token, "not valid yet")


# --- rejected -------------------------------------------------------------------------


def test_alg_none(authenticator: JwtAuthenticator) -> None:
    rejects(authenticator, unsigned_token(claims(), headers={"kid": "rsa-1"}), "algorithm")


@pytest.mark.parametrize("kid", ["rsa-1", "rsa-pinned", None])
def test_hs256_signed_with_the_public_key(
    authenticator: JwtAuthenticator, keys: Keys, kid: str | None
) -> None:
    """The algorithm-confusion attack: HMAC keyed with the RSA public key's PEM."""
    key = keys.pinned if kid == "rsa-pinned" else keys.rsa
    headers = {} if kid is None else {"kid": kid}
    for secret in (key.public_pem(), json.dumps(key.public_jwk()).encode()):
        rejects(authenticator, hmac_token(secret, claims(), headers=headers), "algorithm")


def test_alg_not_allowed_for_the_key(authenticator: JwtAuthenticator, keys: Keys) -> None:
    rejects(authenticator, keys.pinned.mint(claims(), alg="PS256"), "not allowed for its key")
    rejects(authenticator, keys.pss.mint(claims(), alg="RS256"), "not allowed for its key")


def test_alg_outside_the_allowed_set(authenticator: JwtAuthenticator, keys: Keys) -> None:
    rejects(authenticator, keys.rsa.mint(claims(), alg="RS512"), "algorithm is not allowed")


def test_another_key_with_the_same_kid(authenticator: JwtAuthenticator, keys: Keys) -> None:
    rejects(authenticator, keys.impostor.mint(claims()), "signature")


def test_unknown_kid(authenticator: JwtAuthenticator, keys: Keys) -> None:
    rejects(authenticator, keys.rsa.mint(claims(), kid="rsa-9"), "kid")


def test_no_kid_with_several_keys(authenticator: JwtAuthenticator, keys: Keys) -> None:
    rejects(authenticator, keys.rsa.mint(claims(), kid=None), "kid")


def test_critical_header(authenticator: JwtAuthenticator, keys: Keys) -> None:
    """RFC 7515 §4.1.11: capgate understands no critical extension, not even b64."""
    rejects(authenticator, keys.ec.mint(claims(), headers={"crit": ["exp"]}), "malformed")
    token = keys.ec.mint_raw(
        {"alg": "ES256", "kid": "ec-1", "crit": ["b64"], "b64": True}, claims()
    )
    rejects(authenticator, token, "critical")
    plain = keys.ec.mint_raw({"alg": "ES256", "kid": "ec-1"}, claims())
    assert authenticator.authenticate(bearer(plain)).principal_id == "refund-agent"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"aud": "billing"}, r"audience \(aud\)"),
        ({"aud": ["billing", "capgate-admin"]}, r"audience \(aud\)"),
        ({"iss": "https://evil.example"}, r"issuer \(iss\)"),
        ({"iss": ISSUER + "/"}, r"issuer \(iss\)"),
        ({"iss": ISSUER[:-1]}, r"issuer \(iss\)"),
        ({"sub": None}, "lacks the sub claim"),
        ({"sub": ""}, "lacks the sub claim"),
        ({"exp": None}, "lacks the exp claim"),
        ({"iss": None}, "lacks the iss claim"),
        ({"aud": None}, "lacks the aud claim"),
        ({"sub": 7}, "sub claim must be a string"),
        ({"exp": "tomorrow"}, "exp claim must be a number"),
        ({"exp": True}, "exp claim must be a number"),
        ({"nbf": "now"}, "nbf claim must be a number"),
        ({"iat": [1]}, "iat claim must be a number"),
        ({"tenant_id": 5}, "tenant_id claim must be a string"),
        ({"scope": ["refunds:write"]}, "scope claim must be a string"),
        ({"roles": "admin"}, "roles claim must be a list of strings"),
        ({"roles": ["ops", 1]}, "roles claim must be a list of strings"),
        ({"act": "alice"}, "act claim"),
        ({"act": {"sub": "orchestrator", "act": {"client_id": "x"}}}, "act claim"),
        ({"act": {"sub": ""}}, "act claim"),
        ({"on_behalf_of": ["alice"]}, "on_behalf_of claim must be a string"),
    ],
)
def test_bad_claims(
    authenticator: JwtAuthenticator, keys: Keys, changes: dict[str, Any], message: str
) -> None:
    rejects(authenticator, keys.rsa.mint(claims(**changes)), message)


def test_infinite_exp(authenticator: JwtAuthenticator, keys: Keys) -> None:
    """Python's JSON reads ``Infinity``; a token must not live forever that way."""
    token = keys.ec.mint(claims(exp=float("inf")))
    rejects(authenticator, token, "exp claim must be a number")


def test_act_nested_too_deeply(authenticator: JwtAuthenticator, keys: Keys) -> None:
    act: dict[str, Any] = {"sub": "a0"}
    for depth in range(1, 17):
        act = {"sub": f"a{depth}", "act": act}
    rejects(authenticator, keys.ec.mint(claims(act=act)), "nests over 16 actors")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-token",
        "a.b.c",
        "eyJhbGciOiJSUzI1NiJ9.e30",
        "eyJhbGciOiJSUzI1NiJ9.!!.x",
        "x" * 20000,
    ],
)
def test_malformed_tokens(authenticator: JwtAuthenticator, token: str) -> None:
    with pytest.raises(Unauthenticated) as caught:
        authenticator.authenticate(bearer(token))
    assert token not in str(caught.value) or not token


def test_signature_tampered(authenticator: JwtAuthenticator, keys: Keys) -> None:
    head, _, signature = keys.rsa.mint(claims()).split(".")
    forged_payload = keys.rsa.mint(claims(tenant_id="other")).split(".")[1]
    rejects(authenticator, f"{head}.{forged_payload}.{signature}", "signature")


# --- claims mapping -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "chain", "on_behalf_of"),
    [
        ({}, ("refund-agent",), ""),
        ({"act": {"sub": "alice"}}, ("alice", "refund-agent"), "alice"),
        (
            {"act": {"sub": "orchestrator", "act": {"sub": "alice"}}},
            ("alice", "orchestrator", "refund-agent"),
            "alice",
        ),
        (
            {"act": {"sub": "orchestrator", "act": {"sub": "alice"}}, "on_behalf_of": "bob"},
            ("alice", "orchestrator", "refund-agent"),
            "bob",
        ),
        ({"on_behalf_of": "bob"}, ("refund-agent",), "bob"),
    ],
)
def test_delegation_chain(extra: dict[str, Any], chain: tuple[str, ...], on_behalf_of: str) -> None:
    identity = identity_from_claims({"sub": "refund-agent", **extra})
    assert identity.delegation_chain == chain
    assert identity.on_behalf_of == on_behalf_of
    assert identity.claims == {"sub": "refund-agent", **extra}


# --- cache ----------------------------------------------------------------------------


def test_cached_token_still_expires(
    authenticator: JwtAuthenticator, keys: Keys, clock: FixedClock
) -> None:
    token = keys.ec.mint(claims(ttl_seconds=60))
    first = authenticator.authenticate(bearer(token))
    assert authenticator.authenticate(bearer(token)) is first
    clock.at = NOW + timedelta(seconds=60 + LEEWAY)
    rejects(authenticator, token, "expired")


def test_cache_forgets_tokens_when_the_jwks_changes(tmp_path: Path, keys: Keys) -> None:
    path = write_jwks(tmp_path / "jwks.json", keys.ec)
    source = JwksSource(str(path))
    source.load()
    auth = JwtAuthenticator(
        source, issuer=ISSUER, audience=AUDIENCE, leeway_seconds=0, clock=FixedClock()
    )
    token = keys.ec.mint(claims())
    assert auth.authenticate(bearer(token)).principal_id
    write_jwks(path, keys.rsa)  # the EC key is revoked
    source.load()
    rejects(auth, token, "kid")


def test_cache_is_bounded(tmp_path: Path, keys: Keys) -> None:
    source = JwksSource(str(write_jwks(tmp_path / "jwks.json", keys.ec)))
    source.load()
    auth = JwtAuthenticator(
        source,
        issuer=ISSUER,
        audience=AUDIENCE,
        leeway_seconds=0,
        clock=FixedClock(),
        cache_size=2,
    )
    tokens = [keys.ec.mint(claims(jti=str(n))) for n in range(3)]
    identities = [auth.authenticate(bearer(token)) for token in tokens]
    assert auth.authenticate(bearer(tokens[2])) is identities[2]
    assert auth.authenticate(bearer(tokens[0])) is not identities[0]


def test_cache_size_zero_verifies_every_call(tmp_path: Path, keys: Keys) -> None:
    source = JwksSource(str(write_jwks(tmp_path / "jwks.json", keys.ec)))
    source.load()
    auth = JwtAuthenticator(
        source, issuer=ISSUER, audience=AUDIENCE, leeway_seconds=0, clock=FixedClock(), cache_size=0
    )
    token = keys.ec.mint(claims())
    first, second = (auth.authenticate(bearer(token)) for _ in range(2))
    assert first == second and first is not second


# --- JWKS -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_rsa() -> SigningKey:
    return rsa_signing_key("short", bits=1024)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "not a key set"),
        (b'{"keys": {}}', "not a key set"),
        (b'{"keys": []}', "no signature keys"),
        (b'{"keys": ["x"]}', r"keys\[0\]: not a JSON object"),
        (b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "private key members"),
        (b'{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AA"}]}', "unsupported key"),
        (b'{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}', r"keys\[0\]: Unable"),
    ],
)
def test_parse_jwks_rejects(document: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=f"JWKS test: .*{message}"):
        parse_jwks(document, source="test")


def test_parse_jwks_rejects_unusable_keys(keys: Keys, short_rsa: SigningKey) -> None:
    p384 = SigningKey(ec.generate_private_key(ec.SECP384R1()), "p384", "ES384")
    cases = [
        ([p384], "unsupported key"),
        ([keys.rsa.public_jwk(alg="RS384")], "unsupported alg"),
        ([keys.ec.public_jwk(alg="RS256")], "unsupported alg"),
        ([keys.ec.public_jwk(alg=["ES256"])], "unsupported alg"),  # type: ignore[arg-type]
        ([{"kty": "RSA", "e": "AQAB"}], "Not a public or private key"),
        ([{**keys.rsa.public_jwk(), "d": "AQAB"}], "private key members"),
        ([keys.rsa, keys.pss.public_jwk(kid="rsa-1")], r"keys\[1\]: kid repeats"),
        ([keys.rsa.public_jwk(kid=7)], "kid is not a string"),  # type: ignore[arg-type]
        ([short_rsa], "shorter than 2048 bits"),
        ([{**keys.rsa.public_jwk(), "use": "enc"}], "no signature keys"),
    ]
    for members, message in cases:
        document = json.dumps(jwks_document(*members)).encode()
        with pytest.raises(ConfigError, match=message):
            parse_jwks(document, source="test")


def test_parse_jwks_skips_encryption_keys(keys: Keys) -> None:
    document = jwks_document({**keys.pss.public_jwk(), "use": "enc", "alg": "RSA-OAEP"}, keys.ec)
    parsed = parse_jwks(json.dumps(document).encode(), source="test")
    assert [(k.kid, k.algorithms) for k in parsed] == [("ec-1", frozenset({"ES256"}))]


def test_parse_jwks_algorithms(keys: Keys) -> None:
    document = jwks_document(keys.rsa.public_jwk(alg=None), keys.pinned, keys.pss, keys.ec)
    parsed = parse_jwks(json.dumps(document).encode(), source="test")
    assert {k.kid: k.algorithms for k in parsed} == {
        "rsa-1": {"RS256", "PS256"},
        "rsa-pinned": {"RS256"},
        "pss-1": {"PS256"},
        "ec-1": {"ES256"},
    }


def kids(source: JwksSource) -> list[str | None]:
    current = source.keys()  # a method, not dict.keys()
    return [key.kid for key in current]


async def eventually(condition: Callable[[], bool], timeout_seconds: float = 2.0) -> None:
    for _ in range(int(timeout_seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        JwksSource(str(tmp_path / "absent.json")).load()


def test_unsupported_scheme() -> None:
    with pytest.raises(ConfigError, match="ftp:// is not supported"):
        JwksSource("ftp://idp.example/jwks.json")


def test_keys_empty_before_load(tmp_path: Path) -> None:
    source = JwksSource(str(tmp_path / "jwks.json"))
    assert source.keys() == ()
    auth = JwtAuthenticator(
        source, issuer=ISSUER, audience=AUDIENCE, leeway_seconds=0, clock=FixedClock()
    )
    with pytest.raises(Unauthenticated, match="kid"):
        auth.authenticate(bearer(ec_signing_key().mint(claims())))


def test_source_redacts_credentials() -> None:
    source = JwksSource("https://user:secret@idp.example:8443/keys?token=abc#x")
    assert source.source == "https://idp.example:8443/keys"


def test_jwks_over_http(keys: Keys) -> None:
    with serve_jwks(jwks_document(keys.ec)) as server:
        source = JwksSource(server.url)
        source.load()
        assert kids(source) == ["ec-1"]
        server.set(b"{}", status=503)
        with pytest.raises(ConfigError, match="HTTP status 503"):
            source.load()
        server.set(b"x" * ((1 << 20) + 1))
        with pytest.raises(ConfigError, match="larger than"):
            source.load()
    assert kids(source) == ["ec-1"]


def test_jwks_url_down_at_start(keys: Keys) -> None:
    with serve_jwks(jwks_document(keys.ec)) as server:
        url = server.url
    with pytest.raises(ConfigError, match="cannot fetch"):
        JwksSource(url, timeout_seconds=1).load()


async def test_refresh_keeps_last_good_keys(keys: Keys) -> None:
    with serve_jwks(jwks_document(keys.ec)) as server:
        source = JwksSource(server.url)
        source.load()
        good = source.keys()
        server.set(b"<html>gateway error</html>")
        with capture_logs() as logs:
            assert await source.refresh() is False
        assert source.keys() is good
        assert logs[0]["event"] == "jwks_refresh_failed"
        assert logs[0]["log_level"] == "warning"
        assert "not JSON" in logs[0]["error"]

        server.set(jwks_document(keys.ec))
        assert await source.refresh() is True
        assert source.keys() is good  # unchanged document: same keys, cache kept

        server.set(jwks_document(keys.ec, keys.pss))
        with capture_logs() as logs:
            assert await source.refresh() is True
        assert kids(source) == ["ec-1", "pss-1"]
        assert logs == [
            {"event": "jwks_refreshed", "log_level": "info", "source": server.url, "keys": 2}
        ]


async def test_refresh_forever(keys: Keys) -> None:
    with serve_jwks(jwks_document(keys.ec)) as server:
        source = JwksSource(server.url)
        source.load()
        server.set(b"garbage")
        task = asyncio.create_task(source.refresh_forever(0.01))
        try:
            await eventually(lambda: server.requests >= 3)
            assert kids(source) == ["ec-1"]
            server.set(jwks_document(keys.pss))
            await eventually(lambda: kids(source) == ["pss-1"])
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
