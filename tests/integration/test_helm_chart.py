"""The Helm chart (helm/capgate), rendered by the pinned helm: lint --strict, strict
decoding into k8s.io/api types (tools/k8svalidate), the security context, probes,
Secret references and the sidecar in the example agent pod, and the rendered capgate
config loaded by `capgate serve --check-config` (helm/tests/check_config.py)."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.helm_chart import (
    AGENT,
    CHART,
    HELM,
    K8SVALIDATE,
    documents,
    one,
    render,
    render_refused,
    run,
)

OVERLAYS = ["", *sorted(p.name for p in CHART.glob("values-*.yaml"))]
CRDS = ["-allow-kind", "monitoring.coreos.com/v1/ServiceMonitor"]


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


def test_a_bundle_in_the_charts_config_map_compiles_in_capgate(tmp_path: Path) -> None:
    """Every file of bundles/default through the chart's ConfigMap (keys cannot hold "/",
    the volume's items put them back) and the kubelet's mount, then --check-config."""
    bundle = ROOT / "bundles" / "default"
    files = {
        str(f.relative_to(bundle)): f.read_text() for f in sorted(bundle.rglob("*")) if f.is_file()
    }
    assert "capgate/lib/lookup.rego" in files and ".manifest" in files
    values = tmp_path / "values-bundle.yaml"
    bundle_values = {"source": "configMap", "configMap": {"files": files}}
    values.write_text(yaml.safe_dump({"policy": {"bundle": bundle_values}}))
    args = [sys.executable, "helm/tests/check_config.py", "--helm", str(HELM), "-v"]
    out = run(*args, "-f", str(values))
    assert out.startswith("PASS"), out
    revision = json.loads(files[".manifest"])["revision"]
    assert f"revision '{revision}' (unsigned, compiles)" in out
    assert "/pod/etc/capgate/bundle" in out  # the mounted ConfigMap, not the repo's copy


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("replicaCountt=2", "replicaCountt"),
        ("server.unixSocketMode=0999", "/server/unixSocketMode"),
        ("tolerations[0].operatr=Equal", "operatr"),
        ("affinity.nodeAfinity.x=1", "nodeAfinity"),
        ("topologySpreadConstraints[0].maxSkew=1", "'topologyKey', 'whenUnsatisfiable'"),
        ("networkPolicy.grpcFrom[0].podSelectr.a=b", "podSelectr"),
        # The shared definitions (networkPolicyPeer, labelSelector) where they nest deepest.
        ("networkPolicy.egress.rules[0].to[0].podSelector.matchLabelz.a=b", "matchLabelz"),
    ],
)
def test_the_schema_refuses_a_wrong_value_naming_it(value: str, named: str) -> None:
    assert named in render_refused(value)


def test_the_standalone_pod_is_locked_down_and_probed_over_grpc() -> None:
    docs = documents(render(CHART))
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "capgate")
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["capgate.yaml"])
    assert_probes_reach_the_health_listener(container, config)
    assert container["resources"]["requests"] and container["resources"]["limits"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["capgate-outbox"]["emptyDir"]["sizeLimit"]
    grace = config["server"].get("grace_period_seconds", 10)
    assert pod["terminationGracePeriodSeconds"] > grace
    assert config["events"]["outbox"]["path"].startswith("/var/lib/capgate")


def assert_probes_reach_the_health_listener(
    container: dict[str, Any], config: dict[str, Any]
) -> None:
    """Native gRPC probes of the port capgate's health_listen binds on the pod IP:
    readiness on "readiness", startup and liveness on "liveness" (server.py)."""
    host, _, port = config["server"]["health_listen"].rpartition(":")
    assert host == "0.0.0.0"
    ports = {p["name"].removeprefix("capgate-"): p["containerPort"] for p in container["ports"]}
    assert ports["health"] == int(port)
    services = {
        "startupProbe": "liveness",
        "readinessProbe": "readiness",
        "livenessProbe": "liveness",
    }
    for probe, service in services.items():
        assert container[probe]["grpc"] == {"port": int(port), "service": service}, probe


def test_tls_on_the_grpc_port_keeps_native_grpc_probes() -> None:
    docs = documents(
        render(CHART, "", "server.tls.enabled=true", "server.tls.existingSecret=capgate-tls")
    )
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["capgate.yaml"])
    assert config["server"]["tls"]["cert_file"].startswith("/etc/capgate/secrets/tls/")
    assert_probes_reach_the_health_listener(container, config)


PORTS_DIFFER = "server.port, server.healthPort and server.metricsPort must differ"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["server.healthPort=50051"], PORTS_DIFFER),
        (["server.metricsPort=50052"], PORTS_DIFFER),
        (
            ["profile=production", "policy.signing.verificationKey.existingSecret=k"],
            "profile production: the image's default bundle is unsigned",
        ),
        (["profile=production"], "profile production refuses unsigned bundles"),
        (["identity.mode=insecure"], "identity mode insecure is refused in standalone mode"),
    ],
    ids=["health-port", "metrics-port", "production-image-bundle", "production-no-key", "insecure"],
)
def test_rendering_fails_naming_what_to_fix(sets: list[str], message: str) -> None:
    assert message in render_refused(*sets)


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


def render_notes(tmp_path: Path, overlay: str) -> str:
    """NOTES.txt as `helm install` prints it: helm template skips NOTES, so a copy of the
    chart renders it through tpl in an ordinary template."""
    chart = tmp_path / "capgate"
    shutil.copytree(CHART, chart)
    (chart / "NOTES.in").write_text((chart / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "NOTES.txt").unlink()
    dump = 'notes: {{ tpl (.Files.Get "NOTES.in") . | toJson }}\n'
    (chart / "templates" / "zz-notes.yaml").write_text(dump)
    return next(d["notes"] for d in documents(render(chart, overlay)) if "notes" in d)


@pytest.mark.parametrize("overlay", ["values-standalone-ha.yaml", "values-splunk.yaml"])
def test_the_notes_name_every_secret_the_pods_wait_for(tmp_path: Path, overlay: str) -> None:
    pod = one(documents(render(CHART, overlay)), "Deployment")["spec"]["template"]["spec"]
    referenced = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    for env in pod["containers"][0].get("env", []):
        if "secretKeyRef" in env.get("valueFrom", {}):
            referenced.add(env["valueFrom"]["secretKeyRef"]["name"])
    notes = render_notes(tmp_path, overlay)
    listed = re.findall(r"^  - (\S+) \(key", notes, flags=re.MULTILINE)
    assert len(referenced) >= 3
    assert sorted(listed) == sorted(referenced)


def test_the_agents_own_values_never_stand_in_for_capgates() -> None:
    """An agent chart with top-level values named like capgate's (mode, policy, events)
    still gets the sidecar from its capgate subchart's values."""
    sets = ["mode=canary", "policy.team=payments", "events.enabled=true"]
    pod = one(documents(render(AGENT, "", *sets)), "Deployment")["spec"]["template"]["spec"]
    assert "capgate" in [c["name"] for c in pod["containers"]]


@pytest.mark.parametrize(
    ("sets", "mode"),
    [([], 0o440), (["podSecurityContext.fsGroup=null"], 0o444)],
    ids=["fsGroup-reads-them", "no-fsGroup"],
)
def test_secret_files_are_readable_by_capgates_user(sets: list[str], mode: int) -> None:
    """0440 only when the pod's fsGroup (which owns the mounted files) is capgate's group;
    0444 without one, so UID 10001 can still read its keys."""
    docs = documents(render(CHART, "values-splunk.yaml", *sets))
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    modes = {v["name"]: v["secret"]["defaultMode"] for v in pod["volumes"] if "secret" in v}
    assert modes["capgate-secret-sink0-token"] == mode
    assert ("fsGroup" in pod["securityContext"]) == (mode == 0o440)


def test_the_example_agent_pod_carries_the_capgate_sidecar() -> None:
    rendered = render(AGENT)
    docs = documents(rendered)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    containers = pod.get("initContainers", []) + pod["containers"]
    sidecar = next(c for c in containers if c["name"] == "capgate")
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    assert any(v.get("emptyDir", {}).get("sizeLimit") for v in pod["volumes"])
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["capgate.yaml"])
    listen = config["server"]["listen"]
    assert listen.startswith("127.0.0.1:")
    # Port names in the agent's pod carry a prefix; loopback is not declared as a port.
    assert [p["name"] for p in sidecar["ports"]] == ["capgate-health"]
    assert_probes_reach_the_health_listener(sidecar, config)
    agent = next(c for c in pod["containers"] if c["name"] == "agent")
    assert {"name": "CAPGATE_ADDRESS", "value": listen} in agent["env"]
    run(str(K8SVALIDATE), *CRDS, stdin=rendered)


def test_the_example_agent_over_a_unix_socket_shares_it_through_the_pods_group() -> None:
    rendered = render(AGENT, "", "capgate.server.unixSocket=true")
    docs = documents(rendered)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    sidecar = next(c for c in pod["containers"] if c["name"] == "capgate")
    agent = next(c for c in pod["containers"] if c["name"] == "agent")
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["capgate.yaml"])
    socket = config["server"]["listen"].removeprefix("unix:")
    assert config["server"]["unix_socket_mode"] == "0660"  # owner and group
    assert {"name": "CAPGATE_ADDRESS", "value": f"unix:{socket}"} in agent["env"]
    shared = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    own = {m["name"]: m["mountPath"] for m in sidecar["volumeMounts"]}
    assert shared["capgate-socket"] == own["capgate-socket"] == str(Path(socket).parent)
    assert [p["name"] for p in sidecar["ports"]] == ["capgate-health"]  # no API on the pod IP
    assert_probes_reach_the_health_listener(sidecar, config)
    # The agent runs as another user: it reaches the 0660 socket through the fsGroup,
    # which owns the emptyDir and so the socket (test_probes_and_socket.py).
    assert agent["securityContext"]["runAsUser"] != sidecar["securityContext"]["runAsUser"]
    assert pod["securityContext"]["fsGroup"]
    run(str(K8SVALIDATE), *CRDS, stdin=rendered)
