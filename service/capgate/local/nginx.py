"""A real bundle server: ``nginx`` (Debian) serving a directory of ``opa build`` output.

nginx is what OPA's docs use as a bundle server: static files with ``ETag`` and
``304 Not Modified`` on a matching ``If-None-Match`` (nginx ``etag on``, the default).
One process (``master_process off``), loopback, a free port, every file it writes in a
private temporary directory; the access log shows each request's status.

Example::

    with NginxBundleServer(root) as server:   # root/bundle.tar.gz
        server.url("bundle.tar.gz")           # http://127.0.0.1:PORT/bundle.tar.gz
        server.statuses()                     # [200, 304, ...]

Raises ``RuntimeError`` if nginx is missing or does not come up.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from capgate.local.lifecycle import Managed, accepts_connections, end_process, wait_ready
from capgate.local.redis_server import free_port

STARTUP_TIMEOUT_SECONDS = 10.0

CONFIG = """\
daemon off;
master_process off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 64; }}
http {{
    log_format status '$status $request_method $uri';
    access_log {work}/access.log status;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    types {{ application/gzip gz; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        etag on;
        location / {{ }}
    }}
}}
"""


class NginxBundleServer(Managed):
    def __init__(self, root: Path, executable: str = "nginx") -> None:
        path = shutil.which(executable) or shutil.which(executable, path="/usr/sbin")
        if path is None:
            raise RuntimeError(f"{executable} not found; run scripts/bootstrap.sh")
        self._executable = path
        self._root = root.resolve()
        self._work = tempfile.TemporaryDirectory(prefix="capgate-nginx-")
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def statuses(self) -> list[int]:
        """The HTTP status of every request served so far, in order."""
        log = Path(self._work.name) / "access.log"
        if not log.exists():
            return []
        return [int(line.split()[0]) for line in log.read_text().splitlines() if line]

    def start(self) -> NginxBundleServer:
        work = Path(self._work.name)
        self.port = free_port()
        config = work / "nginx.conf"
        config.write_text(CONFIG.format(work=work, port=self.port, root=self._root))
        self._process = subprocess.Popen(
            [self._executable, "-c", str(config), "-p", str(work), "-e", str(work / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port = self.port
        ready = wait_ready(
            self._process,
            lambda: accepts_connections(port),
            timeout_seconds=STARTUP_TIMEOUT_SECONDS,
        )
        if ready:
            return self
        error = (work / "error.log").read_text() if (work / "error.log").exists() else ""
        self.stop()
        raise RuntimeError(f"nginx did not start on port {self.port}: {error[-500:]}")

    def stop(self) -> None:
        end_process(self._process)
        self._process = None

    def close(self) -> None:
        self.stop()
        self._work.cleanup()
