"""Run ``capgate serve`` as a child process and follow its JSON log lines.

Used by ``capgate demo``, the benchmark and the process tests. The server binds port
0; the ``listening`` log line says which ports it got.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT_SECONDS = 30.0


class ServeProcess:
    """``args`` go after ``capgate serve``; ``command`` runs instead of this interpreter's
    ``python -m capgate`` (e.g. ``buildah run … -- capgate``: the container image)."""

    def __init__(
        self,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.process = subprocess.Popen(
            [*(command or [sys.executable, "-m", "capgate"]), "serve", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env={**os.environ, **(env or {})},
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self.grpc_port = 0
        self.metrics_port = 0
        threading.Thread(target=self._read, daemon=True).start()

    @classmethod
    def launch(
        cls,
        *,
        bundle: Path,
        redis_url: str,
        listen: str = "127.0.0.1:0",
        decision_log: Path | None = None,
        outbox: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> ServeProcess:
        """Start ``capgate serve`` (metrics on a free port) without waiting for it.
        ``env`` adds environment variables (``CAPGATE_*`` settings); ``outbox``: the
        event outbox (default: a fresh one in a temporary directory, so processes never
        share one)."""
        outbox = outbox or Path(tempfile.mkdtemp(prefix="capgate-outbox-")) / "outbox.db"
        args = [
            "--bundle",
            str(bundle),
            "--redis-url",
            redis_url,
            "--listen",
            listen,
            "--metrics-listen",
            "127.0.0.1:0",
            "--outbox",
            str(outbox),
        ]
        if decision_log is not None:
            args += ["--decision-log", str(decision_log)]
        return cls(args, env=env)

    @classmethod
    def start(
        cls,
        *,
        bundle: Path,
        redis_url: str,
        decision_log: Path | None = None,
        outbox: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> ServeProcess:
        """Launch on free ports and wait until the bundle is active.

        Raises:
            RuntimeError: the server exited, failed to activate its bundle, or timed out.
        """
        server = cls.launch(
            bundle=bundle, redis_url=redis_url, decision_log=decision_log, outbox=outbox, env=env
        )
        try:
            server.wait_for("bundle_activated")
        except RuntimeError:
            server.kill()
            raise
        return server

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def wait_for(self, event: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> dict[str, Any]:
        """The next log record whose ``event`` is ``event``; RuntimeError on failure."""
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty as exc:
                raise RuntimeError(f"capgate serve: no {event!r} within {timeout} s") from exc
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == "listening":
                self.grpc_port = int(record["grpc_port"])
                self.metrics_port = int(record["metrics_port"])
            if record.get("event") == event:
                return record
            if record.get("event") == "bundle_activation_failed":
                raise RuntimeError(f"capgate serve: {record.get('error')}")

    def stop(self, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> int:
        """SIGTERM, then the exit code once drained."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.put(line)
