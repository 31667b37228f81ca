"""Run a private, real Apache Kafka broker (KRaft, one node as broker and controller)
on free loopback ports, from the jars ``scripts/kafka.sh`` puts in ``.tools/kafka/libs``.

    with KafkaBroker() as kafka:
        ...AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers)...
        kafka.stop()     # an outage (SIGTERM, controlled shutdown); kill() for SIGKILL
        kafka.restart()  # same ports, same log directory: nothing acknowledged is lost

``KafkaBroker(tls=KafkaBrokerTls(cert_file=..., key_file=..., client_ca_file=...))``
adds a TLS listener, :attr:`KafkaBroker.tls_bootstrap_servers` (PEM files; the key
unencrypted PKCS#8; with ``client_ca_file`` clients must present a certificate it
issued).

Its storage is formatted with a random cluster id in a temporary directory, removed
on exit; the broker's own log is :attr:`KafkaBroker.log_path`. Topics are created on
first use (one partition unless the client asks for more). Needs ``java`` (17+).
Raises ``RuntimeError`` if the jars or java are missing or the broker does not come up.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from capgate.local.lifecycle import Managed, wait_ready
from capgate.local.redis_server import free_port

DEFAULT_LIBS = Path(__file__).resolve().parents[3] / ".tools" / "kafka" / "libs"
STARTUP_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
JVM_OPTIONS = (
    "-Xms64m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",  # C1 only: starts in about half the time; ample for tests
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = FILE
"""


def random_cluster_id() -> str:
    """A cluster id as ``kafka-storage random-uuid`` makes one: 16 random bytes,
    URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


@dataclass(frozen=True)
class KafkaBrokerTls:
    """A TLS listener: the broker's certificate chain and key (PEM; the key unencrypted
    PKCS#8); ``client_ca_file``: require client certificates issued by this CA."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None


def server_properties(
    *,
    broker_port: int,
    controller_port: int,
    log_dir: Path,
    tls_port: int = 0,
    tls: KafkaBrokerTls | None = None,
    keystore: Path | None = None,
) -> str:
    """``server.properties`` of a one-node KRaft cluster on loopback: node 1 is broker
    and controller; every internal topic has replication factor 1. With ``tls``, an
    ``SSL`` listener on ``tls_port`` whose PEM key store (key, then chain) is
    ``keystore``."""
    listeners = [f"PLAINTEXT://127.0.0.1:{broker_port}"]
    protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if tls is not None:
        listeners.append(f"SSL://127.0.0.1:{tls_port}")
        protocols += ",SSL:SSL"
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": ",".join([*listeners, f"CONTROLLER://127.0.0.1:{controller_port}"]),
        "advertised.listeners": ",".join(listeners),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": protocols,
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # A broker that crashed holds its registration until its session times out
        # (default 9 s): keep that short so a restart after kill() is quick.
        "broker.heartbeat.interval.ms": "500",
        "broker.session.timeout.ms": "2000",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
    }
    if tls is not None:
        settings |= {
            "listener.name.ssl.ssl.keystore.type": "PEM",
            "listener.name.ssl.ssl.keystore.location": str(keystore),
        }
        if tls.client_ca_file is not None:
            settings |= {
                "listener.name.ssl.ssl.client.auth": "required",
                "listener.name.ssl.ssl.truststore.type": "PEM",
                "listener.name.ssl.ssl.truststore.location": str(tls.client_ca_file),
            }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


class KafkaBroker(Managed):
    """``with KafkaBroker() as kafka: kafka.bootstrap_servers`` — a fresh, empty
    single-node cluster for the block."""

    def __init__(
        self,
        libs: Path = DEFAULT_LIBS,
        *,
        java: str = "java",
        log_level: str = "INFO",
        tls: KafkaBrokerTls | None = None,
    ) -> None:
        """``libs``: the directory of broker jars (``scripts/kafka.sh``); ``java``: a
        name looked up on PATH, or a path; ``log_level``: of :attr:`log_path`;
        ``tls``: add a TLS listener."""
        if not any(libs.glob("kafka_*.jar")):
            raise RuntimeError(f"no Kafka broker jars in {libs}; run scripts/kafka.sh")
        path = shutil.which(java)
        if path is None:
            raise RuntimeError(f"{java} not found; Kafka needs a Java 17+ runtime")
        self._java = path
        self._classpath = f"{libs}{os.sep}*"
        self._log_level = log_level
        self._tls = tls
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._formatted = False
        self.port = 0
        self.controller_port = 0
        self.tls_port = 0

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def tls_bootstrap_servers(self) -> str:
        """The TLS listener. Raises RuntimeError if the broker has none."""
        if self._tls is None:
            raise RuntimeError("the Kafka broker has no TLS listener (pass tls=)")
        return f"127.0.0.1:{self.tls_port}"

    @property
    def pid(self) -> int:
        """The running broker's process id. Raises RuntimeError if stopped."""
        if self._process is None:
            raise RuntimeError("the Kafka broker is not running")
        return self._process.pid

    @property
    def log_path(self) -> Path:
        """The broker's log (log4j), appended to across restarts."""
        return self._workdir / "server.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def _workdir(self) -> Path:
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="capgate-kafka-")
        return Path(self._dir.name)

    def start(self) -> KafkaBroker:
        """Format fresh storage and start the broker on free ports."""
        atexit.register(self.close)
        for _attempt in range(3):
            self.port, self.controller_port = free_port(), free_port()
            self.tls_port = free_port() if self._tls is not None else 0
            ports = [self.port, self.controller_port] + [self.tls_port] * (self._tls is not None)
            if len(set(ports)) < len(ports):
                continue
            self._write_config()
            if not self._formatted:
                self._format()
            if self._launch():
                return self
            self.stop()
        raise RuntimeError(f"the Kafka broker did not start; see {self.log_path}\n{self._tail()}")

    def restart(self) -> KafkaBroker:
        """Stop the broker (if running) and start it again on the same ports with the
        same storage: everything it acknowledged is still there."""
        self.stop()
        if not self._launch():
            self.stop()
            raise RuntimeError(
                f"the Kafka broker did not restart on port {self.port}; see {self.log_path}\n"
                f"{self._tail()}"
            )
        return self

    def stop(self) -> None:
        """SIGTERM (a controlled shutdown), SIGKILL after ``STOP_TIMEOUT_SECONDS``."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def kill(self) -> None:
        """SIGKILL: a crash. Acknowledged records are in the OS page cache and survive."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def close(self) -> None:
        """Stop the broker and remove its storage."""
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
            self._formatted = False
        atexit.unregister(self.close)

    def _write_config(self) -> None:
        work = self._workdir
        keystore = work / "keystore.pem"
        if self._tls is not None:
            keystore.write_text(self._tls.key_file.read_text() + self._tls.cert_file.read_text())
        (work / "server.properties").write_text(
            server_properties(
                broker_port=self.port,
                controller_port=self.controller_port,
                log_dir=work / "data",
                tls_port=self.tls_port,
                tls=self._tls,
                keystore=keystore,
            )
        )
        (work / "log4j2.properties").write_text(
            _LOG4J2.format(log=work / "server.log", level=self._log_level)
        )

    def _java_command(self, main: str, *args: str) -> list[str]:
        return [
            self._java,
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={self._workdir / 'log4j2.properties'}",
            "-cp",
            self._classpath,
            main,
            *args,
        ]

    def _format(self) -> None:
        properties = str(self._workdir / "server.properties")
        command = self._java_command(
            "kafka.tools.StorageTool", "format", "-t", random_cluster_id(), "-c", properties
        )
        result = subprocess.run(command, capture_output=True, timeout=STARTUP_TIMEOUT_SECONDS)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")
            raise RuntimeError(f"kafka StorageTool format failed:\n{output}")
        self._formatted = True

    def _launch(self) -> bool:
        properties = str(self._workdir / "server.properties")
        with (self._workdir / "console.log").open("ab") as console:
            self._process = subprocess.Popen(
                self._java_command("kafka.Kafka", properties),
                stdout=console,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self._wait_ready()

    def _wait_ready(self) -> bool:
        """True once the broker answers an ApiVersions request on its listener."""
        assert self._process is not None
        return wait_ready(
            self._process,
            lambda: _answers_api_versions(self.port),
            timeout_seconds=STARTUP_TIMEOUT_SECONDS,
        )

    def _tail(self, lines: int = 30) -> str:
        text = ""
        for name in ("console.log", "server.log"):
            with contextlib.suppress(OSError):
                text += "\n".join((self._workdir / name).read_text().splitlines()[-lines:])
        return text


def _answers_api_versions(port: int) -> bool:
    """Send ApiVersions v0 (api key 18, request header v1, client id "probe") and check
    that a response with our correlation id comes back."""
    client_id = b"probe"
    correlation_id = 7
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exactly(sock, 8)
    except OSError:
        return False
    if header is None:
        return False
    _size, answered = struct.unpack(">ii", header)
    return bool(answered == correlation_id)


def _recv_exactly(sock: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data
