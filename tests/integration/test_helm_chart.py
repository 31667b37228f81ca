"""The Helm chart (helm/capgate), rendered by the pinned helm: lint --strict, strict
decoding into k8s.io/api types (tools/k8svalidate), the security context, probes,
Secret references and the sidecar in the example agent pod, and the rendered capgate
config loaded by `capgate serve --check-config` (helm/tests/check_config.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

HELM = ROOT / ".tools" / "bin" / "helm"
K8SVALIDATE = ROOT / ".tools" / "bin" / "k8svalidate"
CHART = ROOT / "helm" / "capgate"
AGENT = ROOT / "helm" / "examples" / "agent"
OVERLAYS = ["", *sorted(p.name for p in CHART.glob("values-*.yaml"))]
CRDS = ["-allow-kind", "monitoring.coreos.com/v1/ServiceMonitor"]


def run(*args: str, stdin: str | None = None, cwd: Path = ROOT) -> str:
    proc = subprocess.run(
        list(args), input=stdin, capture_output=True, text=True, cwd=cwd, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def render(chart: Path, overlay: str = "", *sets: str) -> str:
    args = [str(HELM), "template", "t", str(chart)]
    if overlay:
        args += ["-f", str(chart / overlay)]
    for value in sets:
        args += ["--set", value]
    return run(*args)


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, [d["kind"] for d in docs]
    return found[0]


@pytest.fixture(scope="module", autouse=True)
def agent_dependency() -> None:
    run(str(HELM), "dependency", "build", cwd=AGENT)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[o or "defaults" for o in OVERLAYS])
def test_each_overlay_lints_renders_and_decodes_into_kubernetes_types(overlay: str) -> None:
    lint = [str(HELM), "lint", "--strict", str(CHART)]
    run(*([*lint, "-f", str(CHART / overlay)] if overlay else lint))
    out = run(str(K8SVALIDATE), *CRDS, stdin=render(CHART, overlay))
    assert "documents valid" in out


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[o or "defaults" for o in OVERLAYS])
def test_the_rendered_config_loads_in_capgate(overlay: str) -> None:
    args = [sys.executable, "helm/tests/check_config.py", "--helm", str(HELM)]
    out = run(*args, "-f", overlay) if overlay else run(*args, "-f", "values.yaml")
    assert out.startswith("PASS"), out


def test_the_schema_refuses_an_unknown_value() -> None:
    proc = subprocess.run(
        [str(HELM), "template", "t", str(CHART), "--set", "replicaCountt=2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "replicaCountt" in proc.stderr


def test_the_standalone_pod_is_locked_down_and_probed_over_grpc() -> None:
    docs = documents(render(CHART))
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "capgate")
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == 50051
    assert container["resources"]["requests"] and container["resources"]["limits"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["capgate-outbox"]["emptyDir"]["sizeLimit"]
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["capgate.yaml"])
    grace = config["server"].get("grace_period_seconds", 10)
    assert pod["terminationGracePeriodSeconds"] > grace
    assert config["events"]["outbox"]["path"].startswith("/var/lib/capgate")


def test_secrets_are_mounted_by_reference_and_never_rendered_as_values() -> None:
    docs = documents(render(CHART, "values-splunk.yaml"))
    assert not [d for d in docs if d["kind"] == "Secret"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    secret_names = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secret_names, "the JWKS and the HEC token come from existing Secrets"
    config = one(docs, "ConfigMap")["data"]["capgate.yaml"]
    hec = next(s for s in yaml.safe_load(config)["events"]["sinks"] if s["type"] == "hec")
    assert hec["token_file"].startswith("/etc/capgate/secrets/")
    assert "token:" not in config


def test_the_example_agent_pod_carries_the_capgate_sidecar() -> None:
    docs = documents(render(AGENT))
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    containers = pod.get("initContainers", []) + pod["containers"]
    sidecar = next(c for c in containers if c["name"] == "capgate")
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert any(v.get("emptyDir", {}).get("sizeLimit") for v in pod["volumes"])
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["capgate.yaml"])
    listen = config["server"]["listen"]
    assert listen.startswith(("127.0.0.1:", "unix:"))
    run(str(K8SVALIDATE), *CRDS, stdin=render(AGENT))
