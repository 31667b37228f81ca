"""Render the capgate chart and run `capgate serve --check-config` on every capgate.yaml.

    .venv/bin/python helm/tests/check_config.py [--helm .tools/bin/helm] [-f values-x.yaml ...]

Without -f: the defaults and every helm/capgate/values-*.yaml overlay (a relative -f is
in helm/capgate; an absolute one is used as is). The rendered file names paths that exist
only in the pod (Secrets under /etc/capgate/secrets, the image's
/opt/capgate/bundles/default, the emptyDirs). For the check each such path is rewritten
to a temporary stand-in: generated keys, certificates, a JWKS and a token; the
repository's bundles/default; temporary directories. A JWKS URL is rewritten to a
stand-in file too (--check-config would fetch it). A bundle from the chart's own
ConfigMap is written out as the kubelet mounts it (the Deployment's volume items, key ->
path), so the check compiles the bundle the chart rendered. Nothing else is changed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from cryptography.hazmat.primitives.asymmetric import ed25519

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "capgate"
sys.path.insert(0, str(ROOT))  # the test suite's helpers, tests/identity_keys.py

from tests.identity_keys import make_ca, private_pem, rsa_signing_key, write_jwks  # noqa: E402


def stand_ins(tmp: Path) -> dict[str, Path]:
    """Generated stand-ins for the files Secrets hold in the pod (the test suite's key and
    certificate helpers): a JWKS and the matching bundle verification key, an Ed25519
    checkpoint key, a token, and a certificate with its key."""
    signing = rsa_signing_key("stand-in")
    ca = make_ca("stand-in")
    written = {
        "jwks": write_jwks(tmp / "jwks.json", signing),
        "verification": tmp / "verification.pem",
        "ed25519": tmp / "ed25519.pem",
        "token": tmp / "token",
        "cert": tmp / "cert.pem",
        "key": tmp / "key.pem",
    }
    written["verification"].write_bytes(signing.public_pem())
    written["ed25519"].write_text(private_pem(ed25519.Ed25519PrivateKey.generate()))
    written["token"].write_text("stand-in-token\n")
    written["cert"].write_text(ca.cert_pem)
    written["key"].write_text(ca.key_pem)
    return written


def mount_bundle_config_map(docs: list[dict], pod_root: Path) -> None:
    """Write the rendered bundle ConfigMap where the Deployment's capgate-bundle volume
    puts it: each item's key at its path under /etc/capgate/bundle."""
    pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Deployment"]
    volumes = [v for pod in pods for v in pod["volumes"] if v["name"] == "capgate-bundle"]
    if not volumes or "configMap" not in volumes[0]:
        return
    source = volumes[0]["configMap"]
    config_map = next(
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == source["name"]
    )
    data = config_map.get("data", {})
    items = source.get("items") or [{"key": k, "path": k} for k in data]
    for item in items:
        target = pod_root / "etc" / "capgate" / "bundle" / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data[item["key"]])


def rewrite(config: dict, files: dict[str, Path], tmp: Path) -> dict:
    """Pod paths -> local stand-ins, by the kind of file each key names."""

    def walk(node, key=""):
        if isinstance(node, dict):
            return {k: walk(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, key) for v in node]
        if not isinstance(node, str):
            return node
        if node.startswith("/etc/capgate/secrets/"):
            by_key = {
                "jwks": "jwks",
                "verification_key": "verification",
                "signing_key_file": "ed25519",
                "token_file": "token",
                "bearer_token_file": "token",
                "key_file": "key",
            }
            return str(files.get(by_key.get(key, "cert")))  # ca_file, cert_file, client_ca_file
        if node.startswith("/opt/capgate/bundles/default"):
            return str(ROOT / "bundles" / "default")
        if node.startswith("/etc/capgate/bundle"):
            mounted = tmp / "pod" / node.lstrip("/")
            if not mounted.exists():
                raise SystemExit(f"{node}: an existing ConfigMap or volume; check it separately")
            return str(mounted)
        for pod_dir in ("/var/lib/capgate", "/var/cache/capgate", "/var/log/capgate"):
            if node.startswith(pod_dir):
                return str(tmp / "pod" / node.lstrip("/"))
        if key == "jwks" and node.startswith("http"):
            return str(files["jwks"])
        return node

    return walk(config)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--helm", default=str(ROOT / ".tools" / "bin" / "helm"))
    parser.add_argument("-f", dest="overlays", action="append")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    overlays = args.overlays or ["", *sorted(p.name for p in CHART.glob("values-*.yaml"))]
    capgate = Path(sys.executable).with_name("capgate")
    failed = 0
    for overlay in overlays:
        cmd = [args.helm, "template", "check", str(CHART)]
        if overlay:
            cmd += ["-f", str(CHART / overlay)]  # an absolute overlay stays as it is
        docs = [d for d in yaml.safe_load_all(subprocess.check_output(cmd, text=True)) if d]
        configs = [
            d["data"]["capgate.yaml"]
            for d in docs
            if d["kind"] == "ConfigMap" and "capgate.yaml" in d.get("data", {})
        ]
        assert len(configs) == 1, f"{overlay}: {len(configs)} capgate ConfigMaps"
        with tempfile.TemporaryDirectory() as t:
            tmp = Path(t)
            mount_bundle_config_map(docs, tmp / "pod")
            config = rewrite(yaml.safe_load(configs[0]), stand_ins(tmp), tmp)
            (tmp / "pod" / "var" / "lib" / "capgate").mkdir(parents=True)
            path = tmp / "capgate.yaml"
            path.write_text(yaml.safe_dump(config))
            run = subprocess.run(
                [str(capgate), "serve", "--config", str(path), "--check-config"],
                capture_output=True,
                text=True,
                cwd=tmp,
            )
        ok = run.returncode == 0 and "configuration OK" in run.stdout + run.stderr
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'} {overlay or 'defaults'}")
        if args.verbose:
            print(run.stdout + run.stderr)
        if not ok:
            print(run.stdout + run.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
