"""Run a private, real ``opa run --server`` on a free loopback port or a Unix socket.

``OpaServer(binary, bundle)`` serves one bundle (a directory or ``.tar.gz``, loaded with
``--bundle``); ``extra_args`` adds any other ``opa run`` flags, e.g. ``--set`` lines
that point OPA at an HTTP bundle service, or bundle verification flags. Telemetry is
off. Entering waits until ``GET /health?bundles=true`` answers 200 (the bundles are
active; with ``wait_for_bundles=False``, until ``GET /health`` does). OPA's log goes
to a file in a private temporary directory, quoted in the ``RuntimeError`` raised
when it does not come up.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from capgate.local.lifecycle import Managed, end_process, wait_ready
from capgate.local.redis_server import free_port

STARTUP_TIMEOUT_SECONDS = 15.0


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class OpaServer(Managed):
    """``with OpaServer(opa, bundle) as opa: opa.url`` — a fresh OPA for the block.

    ``socket_path``: listen there (``unix://``; keep it under ~100 bytes) instead of
    on a free ``127.0.0.1`` port. Raises ``RuntimeError`` if OPA does not come up.
    """

    def __init__(
        self,
        binary: Path,
        bundle: Path | None = None,
        *,
        socket_path: Path | None = None,
        extra_args: Sequence[str] = (),
        wait_for_bundles: bool = True,
    ) -> None:
        if not binary.is_file():
            raise RuntimeError(f"{binary} not found; run scripts/bootstrap.sh")
        self._binary = binary
        self._bundle = bundle
        self._socket_path = socket_path
        self._extra_args = list(extra_args)
        self._wait_path = "/health?bundles=true" if wait_for_bundles else "/health"
        self._dir = tempfile.TemporaryDirectory(prefix="capgate-opa-")
        self._log = Path(self._dir.name) / "opa.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` or ``unix:///path`` (the form ``--opa-url`` takes)."""
        if self._socket_path is not None:
            return f"unix://{self._socket_path}"
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("opa is not running")
        return self._process.pid

    def args(self) -> list[str]:
        """The ``opa`` command line for the current address."""
        addr = f"unix://{self._socket_path}" if self._socket_path else f"127.0.0.1:{self.port}"
        bundle = ["--bundle", str(self._bundle)] if self._bundle is not None else []
        return [
            str(self._binary),
            "run",
            "--server",
            "--addr",
            addr,
            "--disable-telemetry",
            *bundle,
            *self._extra_args,
        ]

    def health(self, path: str = "/health?bundles=true") -> int | None:
        """The HTTP status of ``GET path``, or ``None`` if OPA does not answer."""
        if self._socket_path is not None:
            conn: http.client.HTTPConnection = _UnixHTTPConnection(str(self._socket_path), 1.0)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1.0)
        try:
            conn.request("GET", path)
            return conn.getresponse().status
        except OSError:
            return None
        finally:
            conn.close()

    def start(self) -> OpaServer:
        for _attempt in range(1 if self._socket_path else 5):
            self.port = 0 if self._socket_path else free_port()
            if self._launch():
                return self
            self.stop()
        log = self._log.read_text(errors="replace")[-2000:] if self._log.exists() else ""
        raise RuntimeError(f"{self._binary} did not start:\n{log}")

    def _launch(self) -> bool:
        if self._socket_path is not None:
            self._socket_path.unlink(missing_ok=True)
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                self.args(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        return wait_ready(
            self._process,
            lambda: self.health(self._wait_path) == 200,
            timeout_seconds=STARTUP_TIMEOUT_SECONDS,
        )

    def stop(self) -> None:
        end_process(self._process)
        self._process = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()
