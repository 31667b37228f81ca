"""The container image: the Dockerfile built as CI builds it (scripts/build_image.sh:
buildah, FROM a debootstrapped stand-in for debian:bookworm-slim), then run with
``buildah run`` (chroot isolation, host network). Its config against the Helm chart's
defaults (image reference, user, ports), its user and writable directories, and the
chart's ``capgate serve`` command in it: real Authorize calls against the session's
Redis, drained on SIGTERM; ``--check-config`` on a small config and on the chart's
rendered default one.

Needs root or passwordless sudo, buildah and debootstrap (scripts/bootstrap.sh installs
them); without them the build fails, and so does every test here."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from capgate.local.redis_server import RedisServer
from capgate.local.serve_process import ServeProcess
from capgate_client import Client
from tests.conftest import ALLOWED_REFUND, ROOT
from tests.helm_chart import CHART, documents, one, render
from tests.identity_keys import rsa_signing_key, write_jwks
from tests.image_lock import locked

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
SUDO = [] if os.geteuid() == 0 else ["sudo", "-n"]
BUILD_TIMEOUT_SECONDS = 900
RUN_TIMEOUT_SECONDS = 60
# Writable for the image's user without any volume (the chart mounts emptyDirs on some).
WRITABLE = [
    "/var/lib/capgate",
    "/var/cache/capgate/bundles",
    "/var/log/capgate",
    "/var/run/capgate",
    "/tmp",
]
# name==version of every distribution in the image, names normalized (PEP 503).
LIST_DISTRIBUTIONS = (
    "import re\n"
    "from importlib import metadata\n"
    "for d in metadata.distributions():\n"
    "    print(re.sub('[-_.]+', '-', d.name).lower() + '==' + d.version)\n"
)
READ_ONLY = [
    "/",
    "/etc",
    "/etc/capgate",
    "/opt/capgate",
    "/opt/capgate/venv/bin",
    "/opt/capgate/bundles/default",
    "/usr/lib",
    "/var/lib",
    "/var/cache",
]


def buildah(*args: str, timeout: float = RUN_TIMEOUT_SECONDS) -> str:
    proc = subprocess.run(
        [*SUDO, "buildah", *args], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"buildah {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def run_command(ctr: str, *command: str, volumes: Mapping[Path, str] | None = None) -> list[str]:
    """``buildah run`` of ``command`` in ``ctr`` as the image's user, in its WORKDIR with
    its environment; ``volumes``: host directory -> path in the container, read-only."""
    mounts = [f"--volume={host}:{path}:ro" for host, path in (volumes or {}).items()]
    isolation = ["--isolation", "chroot", "--network", "host"]
    return [*SUDO, "buildah", "run", *isolation, *mounts, ctr, "--", *command]


def run_in(
    ctr: str, *command: str, volumes: Mapping[Path, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        run_command(ctr, *command, volumes=volumes),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
    )


@pytest.fixture(scope="module")
def chart() -> dict[str, Any]:
    """The default Deployment's pod spec, its capgate container and capgate.yaml."""
    docs = documents(render(CHART))
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "capgate"]
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["capgate.yaml"])
    return {"pod": pod, "container": container, "config": config}


@pytest.fixture(scope="module")
def image() -> str:
    """scripts/build_image.sh (idempotent: a cache hit when nothing changed); the image
    reference it printed."""
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_image.sh")],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/build_image.sh exited {proc.returncode}:\n{proc.stderr[-6000:]}")
    return proc.stdout.split()[-1]


@pytest.fixture(scope="module")
def image_config(image: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(buildah("inspect", "--type", "image", image))
    return config["OCIv1"]["config"]


@pytest.fixture
def container(image: str) -> Iterator[str]:
    """A working container of the image, removed afterwards."""
    name = f"capgate-test-{uuid.uuid4().hex[:12]}"
    buildah("from", "--pull=never", "--name", name, image)
    try:
        yield name
    finally:
        subprocess.run([*SUDO, "buildah", "rm", name], capture_output=True, timeout=60)


def config_dir(path: Path, config: Mapping[str, Any]) -> Path:
    """``path`` as /etc/capgate: capgate.yaml, readable by the image's user."""
    path.chmod(0o755)
    (path / "capgate.yaml").write_text(yaml.safe_dump(dict(config)))
    (path / "capgate.yaml").chmod(0o644)
    return path


@pytest.fixture(scope="module")
def etc_capgate(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory, chart: dict[str, Any]
) -> Path:
    """A small capgate.yaml: loopback ports 0 (insecure identity), the image's bundle
    (where the chart's defaults find it), the session's Redis, a decision log."""
    return config_dir(
        tmp_path_factory.mktemp("etc-capgate"),
        {
            "server": {"listen": "127.0.0.1:0", "metrics_listen": "127.0.0.1:0"},
            "policy": {"bundle": chart["config"]["policy"]["bundle"]},
            "budget": {"redis_url": redis_server.url},
            "decision_log": {"path": "/var/log/capgate/decisions.jsonl"},
        },
    )


class ServeInImage(ServeProcess):
    """``capgate serve`` run by ``buildah run``: ServeProcess's log reading (the
    ``listening`` line gives the ports) with another command line. SIGTERM goes to the
    capgate process itself (chroot isolation shares the host's PID namespace): buildah
    does not forward it."""

    def capgate_pids(self) -> list[int]:
        return [
            pid
            for pid in descendants(self.process.pid)
            if "serve" in (argv := cmdline(pid))
            and "buildah" not in argv[0]
            and any(arg.rsplit("/", 1)[-1] == "capgate" for arg in argv)
        ]

    def stop(self, timeout: float = RUN_TIMEOUT_SECONDS) -> int:
        (pid,) = self.capgate_pids()
        send_signal(pid, signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        for pid in self.capgate_pids():
            with contextlib.suppress(ProcessLookupError, subprocess.CalledProcessError):
                send_signal(pid, signal.SIGKILL)
        super().kill()


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        if stat:
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return [""]
    return raw.decode(errors="replace").rstrip("\0").split("\0")


def send_signal(pid: int, sig: signal.Signals) -> None:
    """``sig`` to ``pid`` (through sudo when the container runs as root and we do not)."""
    if SUDO:
        subprocess.run([*SUDO, "kill", "-s", sig.name.removeprefix("SIG"), str(pid)], check=True)
    else:
        os.kill(pid, sig)


def test_the_chart_defaults_to_this_image(image: str, chart: dict[str, Any]) -> None:
    assert chart["container"]["image"] == image
    assert image.endswith(f":{APP_VERSION}")
    assert APP_VERSION == VERSION


def test_image_config_user_entrypoint_labels_and_ports(
    image_config: dict[str, Any], chart: dict[str, Any]
) -> None:
    security = chart["container"]["securityContext"]
    assert image_config["User"] == "10001:10001"
    assert image_config["User"] == f"{security['runAsUser']}:{security['runAsGroup']}"
    assert image_config["Entrypoint"] == ["capgate"]
    assert image_config["Cmd"][0] == "serve"
    assert image_config["WorkingDir"] == "/var/lib/capgate"
    labels = image_config["Labels"]
    assert labels["org.opencontainers.image.version"] == APP_VERSION
    assert labels["org.opencontainers.image.title"] == "capgate"
    ports = {f"{p['containerPort']}/{p['protocol'].lower()}" for p in chart["container"]["ports"]}
    assert set(image_config["ExposedPorts"]) == ports


def test_runs_as_10001_and_writes_only_its_directories(
    container: str, chart: dict[str, Any]
) -> None:
    ids = run_in(container, "sh", "-c", "id -u; id -g")
    assert ids.returncode == 0, ids.stderr
    assert ids.stdout.split() == ["10001", "10001"]
    # The chart's writable volumes (emptyDirs) are on directories the image's user owns.
    mounts = chart["container"]["volumeMounts"]
    assert {m["mountPath"] for m in mounts if not m.get("readOnly")} <= set(WRITABLE), mounts
    probe = (
        'for d in "$@"; do if touch "$d/.capgate-write-test" 2>/dev/null; '
        'then rm "$d/.capgate-write-test"; echo "$d writable"; else echo "$d read-only"; fi; done'
    )
    proc = run_in(container, "sh", "-c", probe, "probe", *WRITABLE, *READ_ONLY)
    assert proc.returncode == 0, proc.stderr
    found = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert found == {
        **{d: "writable" for d in WRITABLE},
        **{d: "read-only" for d in READ_ONLY},
    }


def test_the_entrypoint_runs_and_the_version_is_the_charts(container: str) -> None:
    help_ = run_in(container, "capgate", "--help")
    assert help_.returncode == 0, help_.stderr
    assert "serve" in help_.stdout
    version = run_in(container, "capgate", "--version")
    assert (version.returncode, version.stdout) == (0, f"capgate {APP_VERSION}\n"), version.stderr


def test_the_image_ships_exactly_the_locked_dependencies(container: str) -> None:
    listing = run_in(container, "python", "-c", LIST_DISTRIBUTIONS)
    assert listing.returncode == 0, listing.stderr
    shipped = sorted(listing.stdout.split())
    pins = [f"{name}=={version}" for name, (version, _) in locked().items()]
    assert shipped == sorted([*pins, f"capgate=={VERSION}"])


def test_serve_decides_on_real_redis_and_drains_on_sigterm(
    container: str, etc_capgate: Path, chart: dict[str, Any]
) -> None:
    # The chart's command: the image's entrypoint and the container's args.
    (serve, *args) = chart["container"]["args"]
    assert serve == "serve"
    buildah_run = run_command(container, "capgate", volumes={etc_capgate: "/etc/capgate"})
    proc = ServeInImage(args, command=buildah_run)
    try:
        proc.wait_for("bundle_activated", timeout=RUN_TIMEOUT_SECONDS)
        with Client(proc.target) as client:
            allowed = client.authorize(
                **ALLOWED_REFUND, run_id=f"image-{uuid.uuid4()}", idempotency_key=str(uuid.uuid4())
            )
            denied = client.authorize(
                **ALLOWED_REFUND | {"capability": "drop_database", "tool": "db.drop"},
                run_id=f"image-{uuid.uuid4()}",
                idempotency_key=str(uuid.uuid4()),
            )
        assert allowed.effect == "ALLOW", allowed.reason_codes
        assert (denied.effect, denied.reason_codes) == ("DENY", ("UNKNOWN_CAPABILITY",))
        # The image's grpcio, as a client: the readiness the chart's probe asks for.
        health = run_in(
            container,
            "python",
            "-c",
            "import sys, grpc; from grpc_health.v1 import health_pb2 as p, health_pb2_grpc as g;"
            " c = grpc.insecure_channel(sys.argv[1]);"
            " print(p.HealthCheckResponse.ServingStatus.Name("
            "g.HealthStub(c).Check(p.HealthCheckRequest(service='readiness'), timeout=5).status))",
            proc.target,
        )
        assert (health.returncode, health.stdout.strip()) == (0, "SERVING"), health.stderr
        assert proc.stop() == 0
        proc.wait_for("stopped")
    finally:
        proc.kill()
    # Drained: both decisions are in the decision log, the outbox in the WORKDIR.
    log = run_in(container, "cat", "/var/log/capgate/decisions.jsonl")
    assert log.returncode == 0, log.stderr
    logged = {json.loads(line)["decision_id"] for line in log.stdout.splitlines()}
    assert {allowed.decision_id, denied.decision_id} <= logged
    outbox = run_in(container, "test", "-s", "/var/lib/capgate/capgate-outbox.db")
    assert outbox.returncode == 0


def test_check_config_passes_on_the_small_config(container: str, etc_capgate: Path) -> None:
    proc = run_in(
        container,
        "capgate",
        "serve",
        "--check-config",
        "--config",
        "/etc/capgate/capgate.yaml",
        volumes={etc_capgate: "/etc/capgate"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("capgate: configuration OK\n")
    assert "(unsigned, compiles)" in proc.stdout


def test_check_config_passes_on_the_charts_default_config(
    container: str, chart: dict[str, Any], tmp_path: Path
) -> None:
    """The rendered default capgate.yaml, with the chart's args, in the image: every path
    it names (bundle, outbox, bundle store) exists there and is usable by its user. The
    one Secret the defaults mount (the JWKS) gets a stand-in."""
    config = chart["config"]
    etc = config_dir(tmp_path, config)
    assert config["identity"]["mode"] == "jwt"
    jwks = Path(config["identity"]["jwt"]["jwks"])
    assert jwks.is_relative_to("/etc/capgate"), jwks
    host_jwks = etc / jwks.relative_to("/etc/capgate")
    host_jwks.parent.mkdir(parents=True)
    for directory in [host_jwks.parent, *host_jwks.parent.parents]:
        if directory == etc:
            break
        directory.chmod(0o755)
    write_jwks(host_jwks, rsa_signing_key()).chmod(0o644)
    proc = run_in(
        container,
        "capgate",
        *chart["container"]["args"],
        "--check-config",
        volumes={etc: "/etc/capgate"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("capgate: configuration OK\n")
