"""Run a private, real ``rsyslogd`` (Debian's rsyslog 8) on free loopback ports and
capture every message it receives.

Two listeners (``imtcp``): plain TCP on :attr:`Rsyslog.tcp_port` (RFC 6587) and, when
given certificates, TLS on :attr:`Rsyslog.tls_port` (RFC 5425; the ``gtls`` or ``ossl``
network stream driver, ``StreamDriver.Mode`` 1). Both accept octet-counted frames up to
``max_message_size`` bytes. Every message is appended to :attr:`Rsyslog.output` as one
JSON object per line, its RFC 5424 parts JSON-escaped by rsyslog itself, so newlines,
non-ASCII text and 64 KiB payloads come back exactly as received::

    with Rsyslog(tls=RsyslogTls(cert_file=..., key_file=..., ca_file=...)) as rsyslog:
        ...send to 127.0.0.1:rsyslog.tcp_port or :rsyslog.tls_port...
        received = rsyslog.wait_for(10_000)      # list[ReceivedMessage]

rsyslogd runs in the foreground (``-n``) with its own configuration (``-f``), pid file
(``-i``) and work directory, and is stopped on exit. :meth:`Rsyslog.config_text` is the
configuration it runs, also a working receiver example (docs/siem/syslog.md).

Raises ``RuntimeError`` if ``rsyslogd`` is missing (run scripts/bootstrap.sh) or does
not come up.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from capgate.local.lifecycle import Managed, accepts_connections, end_process, wait_ready
from capgate.local.redis_server import free_port

STARTUP_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20

# One JSON object per received message; rsyslog's ``format="json"`` escapes the value
# for a JSON string (quotes, backslashes, control characters), UTF-8 is kept as is.
_FIELDS = {
    "listener": "inputname",
    "pri": "pri",
    "timestamp": "timereported",
    "hostname": "hostname",
    "app_name": "app-name",
    "procid": "procid",
    "msgid": "msgid",
    "structured_data": "structured-data",
    "msg": "msg",
}


def _template() -> str:
    lines = ['template(name="capture" type="list") {']
    for i, (key, prop) in enumerate(_FIELDS.items()):
        before = "{" if i == 0 else '\\",'
        date = ' dateFormat="rfc3339"' if prop == "timereported" else ""
        lines.append(f'  constant(value="{before}\\"{key}\\":\\"")')
        lines.append(f'  property(name="{prop}" format="json"{date})')
    lines += ['  constant(value="\\"}\\n")', "}"]
    return "\n".join(lines)


@dataclass(frozen=True)
class RsyslogTls:
    """The TLS listener: the server's certificate and key (PEM), the CA that signs
    client certificates (and is announced to clients), the stream driver, and how
    clients are authenticated: ``anon`` (none), ``x509/certvalid`` (a client
    certificate signed by ``ca_file``)."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    driver: Literal["gtls", "ossl"] = "gtls"
    auth_mode: Literal["anon", "x509/certvalid"] = "anon"


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as rsyslog parsed it (RFC 5424 §6 parts); ``listener`` is ``tcp``
    or ``tls``."""

    listener: str
    pri: int
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    structured_data: str
    msg: str


def receiver_config(
    *,
    directory: Path,
    output: Path,
    tcp_port: int,
    tls_port: int | None = None,
    tls: RsyslogTls | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    address: str = "127.0.0.1",
) -> str:
    """The rsyslog configuration (RainerScript) of a capturing receiver: listeners on
    ``address``, every message to ``output`` through the ``capture`` template;
    rsyslog's own messages to ``directory/internal.log``."""
    lines = [
        "global(",
        f'  workDirectory="{directory}"',
        f'  maxMessageSize="{max_message_size}"',
        "  # keep newlines and tabs inside messages (the default turns them into #012)",
        '  parser.escapeControlCharactersOnReceive="off"',
    ]
    if tls is not None:
        lines += [
            f'  defaultNetstreamDriverCAFile="{tls.ca_file}"',
            f'  defaultNetstreamDriverCertFile="{tls.cert_file}"',
            f'  defaultNetstreamDriverKeyFile="{tls.key_file}"',
        ]
    lines += [
        ")",
        "# each message is written by the thread that read it: none waits in memory",
        'main_queue(queue.type="Direct")',
        "# octet-counted frames (RFC 6587 3.4.1) as large as the largest message",
        f'module(load="imtcp" maxFrameSize="{max_message_size + 64}")',
        "# one JSON object per line; rsyslog escapes each part for a JSON string",
        _template(),
        'ruleset(name="capture") {',
        f'  action(type="omfile" file="{output}" template="capture")',
        "}",
        "# plain TCP (RFC 6587)",
        f'input(type="imtcp" name="tcp" address="{address}" port="{tcp_port}" ruleset="capture")',
    ]
    if tls is not None and tls_port is not None:
        lines += [
            "# TLS (RFC 5425)",
            f'input(type="imtcp" name="tls" address="{address}" port="{tls_port}"'
            f' ruleset="capture"\n      streamDriver.name="{tls.driver}" streamDriver.mode="1"'
            f' streamDriver.authMode="{tls.auth_mode}")',
        ]
    lines += [
        "# rsyslog's own messages",
        f'*.* action(type="omfile" file="{directory / "internal.log"}")',
    ]
    return "\n".join(lines) + "\n"


class Rsyslog(Managed):
    """``with Rsyslog() as rsyslog: rsyslog.tcp_port`` — a fresh receiver for the block."""

    def __init__(
        self,
        *,
        tls: RsyslogTls | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        executable: str = "rsyslogd",
    ) -> None:
        path = shutil.which(executable) or shutil.which(executable, path="/usr/sbin:/sbin")
        if path is None:
            raise RuntimeError(f"{executable} not found; run scripts/bootstrap.sh")
        self._executable = path
        self._tls = tls
        self._max_message_size = max_message_size
        self._tmp = tempfile.TemporaryDirectory(prefix="capgate-rsyslog-")
        self.directory = Path(self._tmp.name)
        self.output = self.directory / "received.jsonl"
        self.config_file = self.directory / "rsyslog.conf"
        self._process: subprocess.Popen[bytes] | None = None
        self._received: list[ReceivedMessage] = []
        self._read_up_to = 0
        self.tcp_port = 0
        self.tls_port: int | None = None

    @property
    def pid(self) -> int:
        """The running rsyslogd's process id. Raises RuntimeError if stopped."""
        if self._process is None:
            raise RuntimeError("rsyslogd is not running")
        return self._process.pid

    def config_text(self) -> str:
        return receiver_config(
            directory=self.directory,
            output=self.output,
            tcp_port=self.tcp_port,
            tls_port=self.tls_port,
            tls=self._tls,
            max_message_size=self._max_message_size,
        )

    def start(self) -> Rsyslog:
        for _attempt in range(5):
            self.tcp_port = free_port()
            self.tls_port = free_port() if self._tls is not None else None
            if self._launch():
                return self
            self.stop()
        raise RuntimeError(f"rsyslogd did not start; see {self.directory}/rsyslogd.stderr")

    def restart(self) -> Rsyslog:
        """Stop rsyslogd and start it again on the same ports (the output is kept)."""
        self.stop()
        if not self._launch():
            self.stop()
            raise RuntimeError(f"rsyslogd did not restart on port {self.tcp_port}")
        return self

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; returns once the process is gone."""
        end_process(self._process)
        self._process = None

    def messages(self) -> list[ReceivedMessage]:
        """Every message received so far (complete lines of the output; read on from
        where the last call stopped)."""
        if not self.output.exists():
            return list(self._received)
        with self.output.open("rb") as file:
            file.seek(self._read_up_to)
            data = file.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._read_up_to += len(complete)
        for line in complete.splitlines():
            fields = json.loads(line)
            fields["pri"] = int(fields["pri"])
            self._received.append(ReceivedMessage(**fields))
        return list(self._received)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[ReceivedMessage]:
        """The messages, once at least ``count`` have arrived. Raises TimeoutError."""
        return self.wait_until(lambda received: len(received) >= count, timeout)

    def wait_until(
        self, done: Callable[[list[ReceivedMessage]], bool], timeout: float = 30.0
    ) -> list[ReceivedMessage]:
        """The messages, once ``done(messages)`` holds. Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            received = self.messages()
            if done(received):
                return received
            if time.monotonic() > deadline:
                raise TimeoutError(f"not done after {timeout} s ({len(received)} messages)")
            time.sleep(0.05)

    def _launch(self) -> bool:
        self.config_file.write_text(self.config_text())
        stderr = (self.directory / "rsyslogd.stderr").open("ab")
        with stderr:
            self._process = subprocess.Popen(
                [
                    self._executable,
                    "-n",
                    "-f",
                    str(self.config_file),
                    "-i",
                    str(self.directory / "rsyslogd.pid"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        return self._wait_ready()

    def _wait_ready(self) -> bool:
        ports = [self.tcp_port] + ([self.tls_port] if self.tls_port else [])
        assert self._process is not None
        return wait_ready(
            self._process,
            lambda: all(accepts_connections(port) for port in ports),
            timeout_seconds=STARTUP_TIMEOUT_SECONDS,
            interval_seconds=0.02,
        )

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()
