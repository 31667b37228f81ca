"""Signed bundles through a running capgate: a bad bundle of each kind is refused at
the signature stage, the signed revision keeps serving, and no decision comes from
the bad bundle.

The good bundle is signed by the real ``opa build --signing-key``. Each bad one carries
an evil policy (DENY, revision ``evil``) and one defect, so a decision made by it would
show."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from capgate.local.redis_server import RedisServer
from capgate.policy.bundle import BundleFiles, read_bundle_files, to_tarball
from capgate.policy.signing import bundle_verifier
from tests.bundle_serving import (
    decide,
    eventually,
    failures,
    made_by,
    revision_policy,
)
from tests.bundle_signing import (
    KeyPair,
    opa_build_signed,
    payload_of,
    raw_listing,
    sign_claims,
    with_files,
    with_tokens,
    write_key_pair,
)
from tests.conftest import OPA, start_capgate, write_bundle
from tests.identity_keys import hmac_token, unsigned_token

pytestmark = pytest.mark.opa

SCOPE = "write"
EVIL_MANIFEST = b'{"revision":"evil","roots":["capgate"]}'
EVIL_POLICY = b'package capgate.authz\n\ndecision := {"effect": "deny"}\n'


def _evil(good: BundleFiles) -> BundleFiles:
    # data.json as OPA hashes it (opa build writes "{}\n"): raw_listing hashes bytes, so
    # the evil listing is right for every file and each forgery has only its own defect.
    changes = {".manifest": EVIL_MANIFEST, "policy.rego": EVIL_POLICY, "data.json": b"{}"}
    return with_files(good, changes)


Forge = Callable[[BundleFiles, KeyPair], BundleFiles]


def _forged(
    token: Callable[[dict, KeyPair], str], algorithm: str = "SHA-256", **more: object
) -> Forge:
    """The evil files with a ``token`` over their correct listing (``algorithm`` digests,
    scope SCOPE unless ``more`` says otherwise)."""

    def forge(good: BundleFiles, key: KeyPair) -> BundleFiles:
        evil = _evil(good)
        claims = {"files": raw_listing(evil.files, algorithm), "scope": SCOPE, **more}
        return with_tokens(evil, token(claims, key))

    return forge


# Each forgery, and the reason capgate must give for refusing it.
BAD_BUNDLES: dict[str, tuple[Forge, str]] = {
    # The good signature over changed files.
    "tampered-file": (lambda good, key: _evil(good), "digest mismatch"),
    "extra-file": (
        lambda good, key: with_files(good, {"extra/data.json": b'{"x":1}'}),
        "extra/data.json is not listed",
    ),
    "missing-file": (
        lambda good, key: with_files(good, {"data.json": None}),
        "data.json listed in .signatures.json but missing",
    ),
    # Evil files, correctly listed, and one defect in the signature.
    "wrong-scope": (_forged(sign_claims, scope="read"), "scope mismatch"),
    "unknown-kid": (
        _forged(lambda claims, key: sign_claims(claims, key, kid="someone-else")),
        "unknown key id 'someone-else'",
    ),
    "alg-none": (_forged(lambda claims, key: unsigned_token(claims)), "alg value is not allowed"),
    "hs256-with-the-public-key": (
        _forged(lambda claims, key: hmac_token(key.public_pem.read_bytes(), claims)),
        "alg value is not allowed",
    ),
    "md5-hashes": (_forged(sign_claims, "MD5"), "MD5 digests are refused"),
}


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return write_key_pair(tmp_path_factory.mktemp("keys"), "RS256")


def test_the_evil_files_signed_properly_would_verify(tmp_path: Path, key: KeyPair) -> None:
    """So each forgery differs from a bundle capgate accepts only by its named defect."""
    source = write_bundle(tmp_path / "src", revision_policy("good"), "good")
    good = read_bundle_files(
        opa_build_signed(OPA, source, tmp_path / "good.tar.gz", key, claims={"scope": SCOPE})
    )
    assert payload_of(good)["scope"] == SCOPE
    signed_evil = _forged(sign_claims)(good, key)
    verifier = bundle_verifier(key.public_pem, key_id="default", algorithm="RS256", scope=SCOPE)
    assert verifier(signed_evil) == "default"


@pytest.mark.parametrize("defect", list(BAD_BUNDLES))
async def test_a_bad_bundle_is_refused_and_the_signed_revision_keeps_serving(
    tmp_path: Path, redis_server: RedisServer, defect: str, key: KeyPair
) -> None:
    forge, why = BAD_BUNDLES[defect]
    source = write_bundle(tmp_path / "src", revision_policy("good"), "good")
    live = tmp_path / "live" / "bundle.tar.gz"
    live.parent.mkdir()
    opa_build_signed(OPA, source, live, key, claims={"scope": SCOPE})
    good = read_bundle_files(live)
    signing = {"verification_key": key.public_pem, "signing_alg": "RS256", "scope": SCOPE}
    async with start_capgate(
        bundle=live, redis_url=redis_server.url, decision_log=None, policy={"signing": signing}
    ) as capgate:
        assert made_by(await decide(capgate)) == "good"

        staged = live.with_name("staged.tar.gz")
        staged.write_bytes(to_tarball(forge(good, key)))
        os.replace(staged, live)

        async def refused() -> bool:
            return failures(capgate, "signature") == 1

        await eventually(refused)
        for _ in range(20):
            result = await decide(capgate)
            assert (result.effect, result.policy_revision, made_by(result)) == (
                "ALLOW",
                "good",
                "good",
            )
        status = capgate.app.bundles.status  # type: ignore[union-attr]
        assert (status.revision, status.activations, status.failures) == ("good", 1, 1)
        assert why in status.last_error
