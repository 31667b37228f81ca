"""``capgate bundle build|sign|test|verify``, run as the real CLI over the pinned opa."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from capgate.policy.bundle import BundleFiles, read_tarball, to_tarball
from tests.bundle_signing import KeyPair, write_key_pair
from tests.conftest import DEFAULT_BUNDLE, ROOT
from tests.conftest import run_capgate as capgate

pytestmark = pytest.mark.opa

FAILING_TEST = """\
package capgate.broken_test

test_that_fails if {
	1 == 2
}
"""


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return write_key_pair(tmp_path_factory.mktemp("keys"), "RS256", "signer")


@pytest.fixture(scope="module")
def signed(opa_binary: Path, keys: KeyPair, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bundles/default built and signed by ``capgate bundle build`` (the pinned opa,
    found in the checkout's .tools/bin: no --opa)."""
    out = tmp_path_factory.mktemp("build") / "bundle.tar.gz"
    done = capgate(
        "bundle", "build", "-b", DEFAULT_BUNDLE.relative_to(ROOT), "-o", out,
        "--signing-key", keys.private_pem, "--signing-alg", "RS256",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def test_a_built_and_signed_bundle_verifies_and_opa_loads_it(
    signed: Path, keys: KeyPair, opa_binary: Path
) -> None:
    done = capgate("bundle", "verify", signed, "--verification-key", keys.public_pem)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((DEFAULT_BUNDLE / ".manifest").read_text())
    assert f"revision: {manifest['revision']}" in done.stdout
    assert "key id:   default" in done.stdout
    assert ".signatures.json" in done.stdout
    assert "compiles: data.capgate.authz.decision" in done.stdout

    evaluated = subprocess.run(
        [opa_binary, "eval", "--bundle", signed, "--format", "json", "data.capgate.authz.decision"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["result"][0]["expressions"][0]["value"]["effect"] == "deny"


def test_a_tampered_bundle_is_refused(signed: Path, tmp_path: Path, keys: KeyPair) -> None:
    files = read_tarball(str(signed), signed.read_bytes()).files
    data = json.loads(files["data.json"])
    data["capgate"]["tampered"] = True
    tampered = tmp_path / "tampered.tar.gz"
    tampered.write_bytes(
        to_tarball(BundleFiles("t", {**files, "data.json": json.dumps(data).encode()}))
    )
    done = capgate("bundle", "verify", tampered, "--verification-key", keys.public_pem)
    assert done.returncode == 1
    assert "data.json: digest mismatch" in done.stderr


def test_verify_checks_the_scope_and_exits_2_on_bad_flags(
    signed: Path, tmp_path: Path, keys: KeyPair
) -> None:
    scoped = capgate(
        "bundle", "verify", signed, "--verification-key", keys.public_pem, "--scope", "prod"
    )
    assert scoped.returncode == 1
    assert "scope mismatch" in scoped.stderr
    missing_key = capgate("bundle", "verify", signed, "--verification-key", tmp_path / "no.pem")
    assert missing_key.returncode == 2
    assert "--verification-key" in missing_key.stderr
    no_bundle = capgate(
        "bundle", "verify", tmp_path / "none", "--verification-key", keys.public_pem
    )
    assert no_bundle.returncode == 2
    assert "no such bundle" in no_bundle.stderr


def test_sign_then_verify_a_directory_bundle(
    opa_binary: Path, tmp_path: Path, keys: KeyPair
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    # A signed bundle's data is JSON (what opa build writes; YAML may hash differently).
    data = yaml.safe_load((bundle / "data.yaml").read_text())
    (bundle / "data.yaml").unlink()
    (bundle / "data.json").write_text(json.dumps(data))
    # As OPA's docs say: names relative to the bundle root. The working directory has no
    # .tools/bin/opa, so the checkout's pinned opa is found.
    done = capgate(
        "bundle", "sign", "--signing-key", keys.private_pem, "--bundle", ".", "-o", ".", cwd=bundle
    )
    assert done.returncode == 0, done.stderr
    assert (bundle / ".signatures.json").is_file()
    verified = capgate("bundle", "verify", bundle, "--verification-key", keys.public_pem)
    assert verified.returncode == 0, verified.stderr


def test_opa_test_passes_on_rego_and_fails_on_a_failing_test(
    opa_binary: Path, tmp_path: Path
) -> None:
    passed = capgate("bundle", "test", "rego/", "--opa", opa_binary)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "PASS" in passed.stdout

    failing = tmp_path / "broken_test.rego"
    failing.write_text(FAILING_TEST)
    failed = capgate("bundle", "test", failing, "--opa", opa_binary)
    assert failed.returncode != 0
    assert "test_that_fails" in failed.stdout


def test_the_opa_binary_comes_from_the_environment_or_the_flag(
    opa_binary: Path, tmp_path: Path
) -> None:
    env = {"CAPGATE_OPA": str(opa_binary)}
    assert capgate("bundle", "test", ROOT / "rego", cwd=tmp_path, env=env).returncode == 0
    missing = capgate(
        "bundle", "build", "--opa", tmp_path / "no-opa", "-b", DEFAULT_BUNDLE, env=env
    )
    assert missing.returncode == 2
    assert "no-opa not found" in missing.stderr
