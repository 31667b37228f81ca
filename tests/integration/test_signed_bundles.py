"""Signed bundles through a running capgate: a bad bundle of each kind is refused at
the signature stage, the signed revision keeps serving, and no decision comes from
the bad bundle.

The good bundle is signed by the real ``opa build --signing-key``. Each bad one carries
an evil policy (DENY, revision ``evil``) and one defect, so a decision made by it would
show."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from capgate.local.redis_server import RedisServer
from capgate.policy.bundle import BundleFiles, read_bundle_files, to_tarball
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
from tests.integration.test_bundle_activation import (
    decide,
    eventually,
    failures,
    made_by,
    revision_policy,
)

pytestmark = pytest.mark.opa

SCOPE = "write"
EVIL_MANIFEST = b'{"revision":"evil","roots":["capgate"]}'
EVIL_POLICY = b'package capgate.authz\n\ndecision := {"effect": "deny"}\n'


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned_token(header: dict[str, str], claims: dict[str, object], secret: bytes) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if not secret:
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def _evil(good: BundleFiles) -> BundleFiles:
    return with_files(good, {".manifest": EVIL_MANIFEST, "policy.rego": EVIL_POLICY})


def _listing_claims(files: BundleFiles, algorithm: str = "SHA-256", **more: object) -> dict:
    return {"files": raw_listing(files.files, algorithm), "scope": SCOPE, **more}


Forge = Callable[[BundleFiles, KeyPair], BundleFiles]

BAD_BUNDLES: dict[str, Forge] = {
    # The good signature over changed files.
    "tampered-file": lambda good, key: _evil(good),
    "extra-file": lambda good, key: with_files(good, {"extra/data.json": b'{"x":1}'}),
    "missing-file": lambda good, key: with_files(good, {"data.json": None}),
    # Evil files, correctly listed, and one defect in the signature.
    "wrong-scope": lambda good, key: with_tokens(
        _evil(good), sign_claims({**_listing_claims(_evil(good)), "scope": "read"}, key)
    ),
    "unknown-kid": lambda good, key: with_tokens(
        _evil(good), sign_claims(_listing_claims(_evil(good)), key, kid="someone-else")
    ),
    "alg-none": lambda good, key: with_tokens(
        _evil(good), _unsigned_token({"alg": "none"}, _listing_claims(_evil(good)), b"")
    ),
    "hs256-with-the-public-key": lambda good, key: with_tokens(
        _evil(good),
        _unsigned_token(
            {"alg": "HS256", "typ": "JWT"},
            _listing_claims(_evil(good)),
            key.public_pem.read_bytes(),
        ),
    ),
    "md5-hashes": lambda good, key: with_tokens(
        _evil(good), sign_claims(_listing_claims(_evil(good), "MD5"), key)
    ),
}


WHY = {
    "tampered-file": "digest mismatch",
    "extra-file": "extra/data.json is not listed",
    "missing-file": "data.json listed in .signatures.json but missing",
    "wrong-scope": "scope mismatch",
    "unknown-kid": "unknown key id 'someone-else'",
    "alg-none": "alg value is not allowed",
    "hs256-with-the-public-key": "alg value is not allowed",
    "md5-hashes": "MD5 digests are refused",
}


def test_every_bad_bundle_differs_from_the_good_one_only_as_named(tmp_path: Path) -> None:
    """The forgeries are what they claim: the evil listing matches the evil files."""
    key = write_key_pair(tmp_path / "keys", "RS256")
    source = write_bundle(tmp_path / "src", revision_policy("good"), "good")
    good = read_bundle_files(
        opa_build_signed(OPA, source, tmp_path / "good.tar.gz", key, claims={"scope": SCOPE})
    )
    assert payload_of(good)["scope"] == SCOPE
    evil = _evil(good)
    listed = {entry["name"] for entry in _listing_claims(evil)["files"]}
    assert listed == set(evil.files) - {".signatures.json"}


@pytest.mark.parametrize("defect", list(BAD_BUNDLES))
async def test_a_bad_bundle_is_refused_and_the_signed_revision_keeps_serving(
    tmp_path: Path, redis_server: RedisServer, defect: str
) -> None:
    key = write_key_pair(tmp_path / "keys", "RS256")
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
        staged.write_bytes(to_tarball(BAD_BUNDLES[defect](good, key)))
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
        assert WHY[defect] in status.last_error
