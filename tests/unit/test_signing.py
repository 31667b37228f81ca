"""Unit tests for capgate.policy.signing: bundles signed by the real ``opa build`` and
``opa sign``, forgeries made by hand, and each verdict cross-checked against OPA's own
verification (``opa build --verification-key``) where OPA and capgate should agree."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from capgate.errors import ConfigError
from capgate.policy.bundle import BundleFiles, assemble, read_bundle_files
from capgate.policy.signing import (
    BundleSignatureError,
    VerificationConfig,
    VerificationKey,
    _go_glob,
    load_verification_key,
    verify_bundle,
)
from tests.bundle_signing import (
    POLICY,
    SIGNATURES,
    KeyPair,
    opa_build_signed,
    opa_sign_directory,
    opa_verify,
    payload_of,
    raw_listing,
    sign_claims,
    token_of,
    with_files,
    with_tokens,
    write_key_pair,
    write_signable_bundle,
)
from tests.identity_keys import hmac_token, make_ca, unsigned_token

ALGORITHMS = ("RS256", "PS256", "ES256")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyPair]:
    directory = tmp_path_factory.mktemp("keys")
    pairs = {alg: write_key_pair(directory, alg, alg.lower()) for alg in ALGORITHMS}
    return pairs | {"other": write_key_pair(directory, "RS256", "other")}


@pytest.fixture(scope="module")
def built(
    opa_binary: Path, keys: dict[str, KeyPair], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, BundleFiles]:
    """Per algorithm, the tarball ``opa build --signing-key`` makes of the signable bundle."""
    tmp = tmp_path_factory.mktemp("built")
    return {
        alg: read_bundle_files(
            opa_build_signed(
                opa_binary, write_signable_bundle(tmp / alg), tmp / f"{alg}.tar.gz", keys[alg]
            )
        )
        for alg in ALGORITHMS
    }


@pytest.fixture
def unsigned(tmp_path: Path) -> BundleFiles:
    """The signable bundle as a directory, no signature: its JSON files are canonical, so
    :func:`raw_listing` of it is the listing OPA would sign."""
    return read_bundle_files(write_signable_bundle(tmp_path / "bundle"))


def config(key: KeyPair, key_id: str = "default", **options: object) -> VerificationConfig:
    loaded = load_verification_key(key.public_pem, key_id=key_id, algorithm=key.algorithm)
    return VerificationConfig(keys={key_id: loaded}, **options)  # type: ignore[arg-type]


def refused(bundle: BundleFiles, cfg: VerificationConfig, match: str) -> None:
    with pytest.raises(BundleSignatureError, match=match):
        verify_bundle(bundle, cfg)


def opa_refuses(opa: Path, bundle: BundleFiles, key: KeyPair, reason: str, **options) -> None:
    proc = opa_verify(opa, bundle, key, **options)
    assert proc.returncode != 0, "OPA accepted it"
    assert reason in proc.stdout + proc.stderr


# --- bundles OPA signed are accepted, by capgate and by OPA ------------------------------


@pytest.mark.opa
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_tarball_from_opa_build_verifies(
    alg: str, built: dict[str, BundleFiles], keys: dict[str, KeyPair], opa_binary: Path
) -> None:
    bundle = built[alg]
    assert set(bundle.files) == {".manifest", "data.json", "policy.rego", SIGNATURES}
    assert verify_bundle(bundle, config(keys[alg])) == "default"  # opa build writes kid default
    assert opa_verify(opa_binary, bundle, keys[alg]).returncode == 0
    assert assemble(bundle).data == {"capgate": {"limits": {"refund_usd": 100}}}


@pytest.mark.opa
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_directory_signed_by_opa_sign_verifies(
    alg: str, keys: dict[str, KeyPair], opa_binary: Path, tmp_path: Path
) -> None:
    root = write_signable_bundle(tmp_path / "bundle")
    opa_sign_directory(opa_binary, root, keys[alg])
    bundle = read_bundle_files(root)
    assert "kid" not in jwt.get_unverified_header(token_of(bundle))  # so: the default key
    assert verify_bundle(bundle, config(keys[alg])) == "default"
    assert opa_verify(opa_binary, bundle, keys[alg]).returncode == 0


# JSON files are hashed decoded: what may change is the text, never a value nor a number
# as written. Strings cover Go's escaping: <>& raw, U+2028/9 escaped, \b \f short.
TRICKY = """{"z": 1.0, "a": [1e3, -0, 12345678901234567890123, 1E+2],
  "s": "<&> \\u2028 \\u2029 \\b\\f\\n\\r\\t\\u0001 \\u007f \\/ \\"q\\" \\\\ \\ud83d\\ude00 é",
  "é": 1, "Z": 2, "\\ud83d\\ude00": 3, "m": {"b": true, "a": null, "c": false}}""".encode()
SAME_VALUES = (
    """{ "m" : {"c":false,"a":null,"b":true}, "\\u00e9":1, "Z" :2, "😀":3,"""
    """ "s":"\\u003c\\u0026\\u003e \u2028 \u2029 \\u0008\\u000c\\n\\r\\t\\u0001 \x7f"""
    """ / \\"q\\" \\\\ 😀 é", "a":[ 1e3 ,-0,12345678901234567890123,1E+2],"z":1.0 }"""
).encode()


@pytest.mark.opa
def test_json_is_hashed_as_opa_re_encodes_it(
    keys: dict[str, KeyPair], opa_binary: Path, tmp_path: Path
) -> None:
    key = keys["RS256"]
    root = write_signable_bundle(tmp_path / "bundle", {"capgate/data.json": TRICKY})
    opa_sign_directory(opa_binary, root, key)
    bundle = read_bundle_files(root)
    assert verify_bundle(bundle, config(key)) == "default"

    reformatted = with_files(bundle, {"capgate/data.json": SAME_VALUES})
    assert verify_bundle(reformatted, config(key)) == "default"
    assert opa_verify(opa_binary, reformatted, key).returncode == 0

    for changed in (TRICKY.replace(b'"z": 1.0', b'"z": 1'), TRICKY.replace(b'"Z": 2', b'"Z": 3')):
        altered = with_files(bundle, {"capgate/data.json": changed})
        refused(altered, config(key), "capgate/data.json: digest mismatch")
        opa_refuses(opa_binary, altered, key, "capgate/data.json: digest mismatch")


# --- what is refused ---------------------------------------------------------------------


@pytest.mark.opa
def test_a_tampered_file_is_refused(
    built: dict[str, BundleFiles], keys: dict[str, KeyPair], opa_binary: Path
) -> None:
    tampered = with_files(built["ES256"], {"policy.rego": POLICY.replace(b"100", b"100000")})
    refused(tampered, config(keys["ES256"]), "policy.rego: digest mismatch")
    opa_refuses(opa_binary, tampered, keys["ES256"], "policy.rego: digest mismatch")


@pytest.mark.opa
def test_an_extra_unlisted_file_is_refused(
    built: dict[str, BundleFiles], keys: dict[str, KeyPair], opa_binary: Path
) -> None:
    extra = with_files(built["RS256"], {"capgate/extra.rego": b"package capgate.extra\n"})
    refused(extra, config(keys["RS256"]), "capgate/extra.rego is not listed in .signatures.json")
    opa_refuses(opa_binary, extra, keys["RS256"], "not included in bundle signature")


@pytest.mark.opa
def test_a_missing_listed_file_is_refused(
    built: dict[str, BundleFiles], keys: dict[str, KeyPair], opa_binary: Path
) -> None:
    missing = with_files(built["RS256"], {"data.json": None})
    refused(missing, config(keys["RS256"]), "data.json listed in .signatures.json but missing")
    opa_refuses(opa_binary, missing, keys["RS256"], "not found in the target bundle")


@pytest.mark.opa
def test_scope_must_equal_the_required_one(
    keys: dict[str, KeyPair], opa_binary: Path, tmp_path: Path
) -> None:
    key = keys["PS256"]
    root = write_signable_bundle(tmp_path / "bundle")
    scoped = read_bundle_files(
        opa_build_signed(opa_binary, root, tmp_path / "b.tar.gz", key, claims={"scope": "write"})
    )
    assert verify_bundle(scoped, config(key, scope="write")) == "default"
    assert opa_verify(opa_binary, scoped, key, scope="write").returncode == 0
    refused(scoped, config(key, scope="read"), "scope mismatch: token has 'write', required 'read'")
    opa_refuses(opa_binary, scoped, key, "scope mismatch", scope="read")
    refused(scoped, config(key), "scope mismatch")  # no scope required: none may be present
    opa_refuses(opa_binary, scoped, key, "scope mismatch")

    unscoped = read_bundle_files(opa_build_signed(opa_binary, root, tmp_path / "u.tar.gz", key))
    refused(unscoped, config(key, scope="write"), "scope mismatch: token has '', required")
    opa_refuses(opa_binary, unscoped, key, "scope mismatch", scope="write")


@pytest.mark.opa
def test_the_token_names_the_key(
    keys: dict[str, KeyPair], opa_binary: Path, tmp_path: Path
) -> None:
    key = keys["RS256"]
    root = write_signable_bundle(tmp_path / "bundle")
    named = read_bundle_files(
        opa_build_signed(opa_binary, root, tmp_path / "b.tar.gz", key, key_id="release-2")
    )
    refused(named, config(key), "unknown key id 'release-2'")
    # Deliberate deviation: OPA's configured key id overrides the token's kid.
    assert opa_verify(opa_binary, named, key, key_id="default").returncode == 0

    both = VerificationConfig(keys=config(keys["other"]).keys | config(key, "release-2").keys)
    assert verify_bundle(named, both) == "release-2"


def test_the_keyid_claim_names_the_key_when_the_header_does_not(
    keys: dict[str, KeyPair], unsigned: BundleFiles
) -> None:
    token = sign_claims({"files": raw_listing(unsigned.files), "keyid": "second"}, keys["ES256"])
    cfg = VerificationConfig(keys=config(keys["RS256"]).keys | config(keys["ES256"], "second").keys)
    assert verify_bundle(with_tokens(unsigned, token), cfg) == "second"


@pytest.mark.opa
def test_a_signature_by_another_key_is_refused(
    built: dict[str, BundleFiles], keys: dict[str, KeyPair], opa_binary: Path
) -> None:
    forged = with_tokens(built["RS256"], sign_claims(payload_of(built["RS256"]), keys["other"]))
    refused(forged, config(keys["RS256"]), "JWT does not verify with key 'default'")
    opa_refuses(opa_binary, forged, keys["RS256"], "verification error")


@pytest.mark.opa
def test_alg_none_is_refused(
    built: dict[str, BundleFiles], keys: dict[str, KeyPair], opa_binary: Path
) -> None:
    forged = with_tokens(built["RS256"], unsigned_token(payload_of(built["RS256"])))
    refused(forged, config(keys["RS256"]), "does not verify.*alg")
    assert opa_verify(opa_binary, forged, keys["RS256"]).returncode != 0


@pytest.mark.opa
def test_hs256_keyed_with_the_public_key_is_refused(
    built: dict[str, BundleFiles], keys: dict[str, KeyPair], opa_binary: Path
) -> None:
    key = keys["RS256"]
    forged = with_tokens(
        built["RS256"], hmac_token(key.public_pem.read_bytes(), payload_of(built["RS256"]))
    )
    refused(forged, config(key), "does not verify.*alg")
    assert opa_verify(opa_binary, forged, key).returncode != 0
    # Even a key configured for HS256 by hand (load_verification_key refuses it) is refused.
    hmac_key = VerificationKey("default", key.public_pem.read_bytes(), "HS256")
    refused(forged, VerificationConfig(keys={"default": hmac_key}), "refused algorithm HS256")


@pytest.mark.opa
@pytest.mark.parametrize("digest", ["MD5", "SHA-1"])
def test_weak_digests_are_refused(
    digest: str, unsigned: BundleFiles, keys: dict[str, KeyPair], opa_binary: Path
) -> None:
    """Deliberate deviation: OPA accepts these, which shows the forgery is otherwise sound."""
    key = keys["RS256"]
    weak = with_tokens(unsigned, sign_claims({"files": raw_listing(unsigned.files, digest)}, key))
    refused(weak, config(key), f"{digest} digests are refused as weak")
    assert opa_verify(opa_binary, weak, key).returncode == 0


@pytest.mark.opa
@pytest.mark.parametrize("digest", ["SHA-224", "SHA-256", "SHA-384", "SHA-512", "SHA-512-256"])
def test_strong_digests_verify(
    digest: str, unsigned: BundleFiles, keys: dict[str, KeyPair], opa_binary: Path
) -> None:
    key = keys["ES256"]
    bundle = with_tokens(unsigned, sign_claims({"files": raw_listing(unsigned.files, digest)}, key))
    assert verify_bundle(bundle, config(key)) == "default"
    assert opa_verify(opa_binary, bundle, key).returncode == 0


@pytest.mark.opa
def test_an_unknown_digest_algorithm_is_refused(
    unsigned: BundleFiles, keys: dict[str, KeyPair], opa_binary: Path
) -> None:
    key = keys["RS256"]
    listing = [entry | {"algorithm": "SHA3-256"} for entry in raw_listing(unsigned.files)]
    bundle = with_tokens(unsigned, sign_claims({"files": listing}, key))
    refused(bundle, config(key), "unsupported digest algorithm 'SHA3-256'")
    opa_refuses(opa_binary, bundle, key, "unsupported hashing algorithm")


@pytest.mark.opa
def test_two_signatures_are_refused(
    built: dict[str, BundleFiles], keys: dict[str, KeyPair], opa_binary: Path
) -> None:
    token = token_of(built["RS256"])
    doubled = with_tokens(built["RS256"], token, token)
    refused(doubled, config(keys["RS256"]), "expected exactly one JWT string, found 2")
    opa_refuses(opa_binary, doubled, keys["RS256"], "multiple JWTs not supported")


def test_an_unsigned_bundle_is_refused(unsigned: BundleFiles, keys: dict[str, KeyPair]) -> None:
    refused(unsigned, config(keys["RS256"]), "unsigned: no .signatures.json")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"{not json", ".signatures.json is not JSON"),
        (b'["a.b.c"]', "expected {'signatures'"),
        (b'{"signatures": []}', "found 0"),
        (b'{"signatures": [1]}', "expected exactly one JWT string"),
        (b'{"signatures": ["not-a-jwt"]}', "malformed JWT"),
        (b'{"signatures": ["a.b.c"], "plugin": "kms"}', "plugin 'kms'"),
    ],
)
def test_a_malformed_signatures_file_is_refused(
    content: bytes, match: str, unsigned: BundleFiles, keys: dict[str, KeyPair]
) -> None:
    refused(with_files(unsigned, {SIGNATURES: content}), config(keys["RS256"]), match)


@pytest.mark.parametrize(
    ("claims", "match"),
    [
        ({"files": "x"}, "claim 'files' must be a list"),
        ({"files": [], "scope": 1}, "claim 'scope' must be a str"),
        ({"files": [{"name": 1}]}, "malformed files entry"),
        ({"files": [{"name": "policy.rego"}] * 2}, "lists policy.rego twice"),
        ({"files": [{"name": ".manifest", "hash": "zz", "algorithm": "SHA-256"}]}, "not hex"),
    ],
)
def test_a_malformed_payload_is_refused(
    claims: dict, match: str, unsigned: BundleFiles, keys: dict[str, KeyPair]
) -> None:
    bundle = with_tokens(unsigned, sign_claims(claims, keys["RS256"]))
    refused(bundle, config(keys["RS256"]), match)


@pytest.mark.opa
def test_excluded_files_follow_go_filepath_match(
    unsigned: BundleFiles, keys: dict[str, KeyPair], opa_binary: Path
) -> None:
    key = keys["RS256"]
    signed = with_tokens(unsigned, sign_claims({"files": raw_listing(unsigned.files)}, key))
    notes = with_files(signed, {"notes/a.md": b"# a\n", "top.md": b"# top\n"})
    excluded = ("notes/*", "*.md")
    assert verify_bundle(notes, config(key, exclude_files=excluded)) == "default"
    assert opa_verify(opa_binary, notes, key, exclude_files=excluded).returncode == 0
    # '*' stops at '/': "*.md" leaves notes/a.md to be verified.
    refused(notes, config(key, exclude_files=("*.md",)), "notes/a.md is not listed")
    opa_refuses(opa_binary, notes, key, "not included", exclude_files=("*.md",))
    # An excluded file that is listed must still be present.
    gone = with_files(signed, {"policy.rego": None})
    refused(gone, config(key, exclude_files=("*.rego",)), "policy.rego listed .* but missing")
    opa_refuses(opa_binary, gone, key, "not found", exclude_files=("*.rego",))


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.json", "a.json", True),
        ("*.json", "x/a.json", False),
        ("x/?", "x/a", True),
        ("x/?", "x//", False),
        ("[a-c].rego", "b.rego", True),
        ("[^a-c].rego", "b.rego", False),
        ("[^a-c].rego", "/.rego", True),  # a class may match '/'
        ("[\\]]", "]", True),
        ("\\*", "*", True),
        ("\\*", "a", False),
        ("a.b", "axb", False),  # '.' is literal
        # Malformed (Go's ErrBadPattern): OPA ignores the pattern, so it matches nothing.
        ("[", "[", False),
        ("[]a]", "a", False),
        ("[-a]", "a", False),
        ("[a-]", "a", False),
        ("x\\", "x", False),
    ],
)
def test_exclude_patterns_match_as_go_does(pattern: str, path: str, matches: bool) -> None:
    compiled = _go_glob(pattern)
    assert (compiled is not None and compiled.fullmatch(path) is not None) is matches


@pytest.mark.opa
def test_a_checked_data_yaml_is_refused(
    keys: dict[str, KeyPair], opa_binary: Path, tmp_path: Path
) -> None:
    """Deliberate deviation: OPA reads ``no`` as a string, PyYAML as false, so OPA's digest
    of its reading cannot vouch for capgate's."""
    key = keys["RS256"]
    root = write_signable_bundle(tmp_path / "bundle", {"capgate/flags/data.yaml": b"on: no\n"})
    opa_sign_directory(opa_binary, root, key)
    bundle = read_bundle_files(root)
    refused(bundle, config(key), "capgate/flags/data.yaml: refused in a signed bundle")
    assert opa_verify(opa_binary, bundle, key).returncode == 0


# --- loading verification keys -----------------------------------------------------------


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def test_any_pem_form_of_a_key_gives_its_public_key(
    keys: dict[str, KeyPair], tmp_path: Path
) -> None:
    rsa_key = keys["RS256"].private_key
    forms = {
        "spki": keys["RS256"].public_pem,
        "pkcs8": keys["RS256"].private_pem,
        "pkcs1-private": _write(
            tmp_path / "pkcs1.pem",
            rsa_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ),
        ),
        "pkcs1-public": _write(
            tmp_path / "rsa-pub.pem",
            rsa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
            ),
        ),
    }
    expected = keys["RS256"].public_pem.read_bytes()
    for form, path in forms.items():
        loaded = load_verification_key(path, key_id="k", algorithm="RS256")
        assert loaded == VerificationKey("k", expected, "RS256"), form

    ca = make_ca()
    cert = _write(tmp_path / "cert.pem", ca.cert_pem.encode())
    loaded = load_verification_key(cert, key_id="k", algorithm="ES256")
    assert (
        x509.load_pem_x509_certificate(ca.cert_pem.encode())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        == loaded.public_key_pem
    )


@pytest.mark.parametrize("algorithm", ["HS256", "HS512", "none", "EdDSA", "rs256", ""])
def test_algorithms_other_than_rsa_and_ecdsa_are_refused(
    algorithm: str, keys: dict[str, KeyPair]
) -> None:
    with pytest.raises(ConfigError, match="--signing-alg"):
        load_verification_key(keys["RS256"].public_pem, key_id="k", algorithm=algorithm)


@pytest.mark.parametrize(
    ("key", "algorithm"), [("RS256", "ES256"), ("ES256", "RS256"), ("ES256", "ES384")]
)
def test_a_key_of_another_family_is_refused(
    key: str, algorithm: str, keys: dict[str, KeyPair]
) -> None:
    with pytest.raises(ConfigError, match=r"--verification-key .* does not fit --signing-alg"):
        load_verification_key(keys[key].public_pem, key_id="k", algorithm=algorithm)


def test_what_is_not_a_usable_key_is_refused(keys: dict[str, KeyPair], tmp_path: Path) -> None:
    encrypted = keys["RS256"].private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    for path in (
        tmp_path / "absent.pem",
        _write(tmp_path / "garbage.pem", b"-----BEGIN PUBLIC KEY-----\nxx\n"),
        _write(tmp_path / "encrypted.pem", encrypted),
    ):
        with pytest.raises(ConfigError, match=f"--verification-key {path}"):
            load_verification_key(path, key_id="k", algorithm="RS256")
    with pytest.raises(ConfigError, match="--verification-key-id"):
        load_verification_key(keys["RS256"].public_pem, key_id="", algorithm="RS256")
