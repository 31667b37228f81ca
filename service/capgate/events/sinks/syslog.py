"""The syslog sink: RFC 5424 messages over TCP (RFC 6587) or TLS (RFC 5425), with
octet-counting framing, the event as JSON or CEF.

One frame per event (RFC 6587 §3.4.1, RFC 5425 §4.3: ``MSG-LEN SP SYSLOG-MSG``, so
newlines inside an event are safe); one message (RFC 5424 §6)::

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [capgate@32473 event_id=".." seq=".."
    tenant=".."] MSG

- PRI = facility * 8 + severity (:func:`syslog_severity`); facility from the settings
  (default 13, log audit).
- TIMESTAMP the event's ``time``; PROCID this process's id; MSGID the ``event_type``.
- STRUCTURED-DATA: one element, SD-ID ``capgate@32473`` (32473 is the enterprise
  number RFC 5612 reserves for documentation), values escaped per RFC 5424 §6.3.3.
- MSG: the canonical JSON body as stored (UTF-8), or :func:`~capgate.events.formats.cef.cef_line`.
  No BOM: RFC 8259 §8.1 forbids one before JSON, and rsyslog keeps it in ``%msg%``;
  without it MSG is MSG-ANY (RFC 5424 §6.4), which receivers accept.

Delivery: one connection is kept open and reused; :meth:`SyslogSink.send` writes the
batch and waits (``drain``) until the kernel took it. TCP syslog has no application
acknowledgement, so "acknowledged" here means *written to the socket*: a receiver that
stops while data is in flight loses it silently (rsyslog's RELP would acknowledge each
message; not built). To keep at-least-once anyway, the sink remembers the last
``resend_window_bytes`` of frames written on a connection; when a connection turns
out broken (an error, or the receiver closed it), they are sent again first on the next
one (duplicates, removable by ``event_id``). This covers what sits in the two kernels'
buffers; it does not survive a restart of capgate.

Errors: connecting, writing or exceeding the time limit (``timeout_seconds`` plus one
second per MiB written) raises
:class:`~capgate.events.sinks.base.SinkError`; the connection is dropped and the next
``send`` reconnects. ``ssl.SSLError`` and ``OSError`` are converted here.

Example::

    sink = SyslogSink(SyslogSinkSettings(type="syslog", name="siem", host="10.0.0.5",
                                         port=6514, tls=TlsClientSettings(ca_file=ca)),
                      hostname="capgate-0")
    acknowledged = await sink.send(batch)      # len(batch), or raises SinkError
    await sink.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import ssl
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from capgate.clock import rfc3339
from capgate.errors import ConfigError
from capgate.events.config import SyslogSinkSettings, TlsClientSettings
from capgate.events.formats.cef import cef_line
from capgate.events.sinks.base import SinkError, StoredEvent

SD_ID = "capgate@32473"
NILVALUE = "-"
DEFAULT_TIMEOUT_SECONDS = 10.0
# A send may take DEFAULT_TIMEOUT_SECONDS plus one second per MiB it writes.
SLOWEST_BYTES_PER_SECOND = 1 << 20
DEFAULT_RESEND_WINDOW_BYTES = 8 << 20

# RFC 5424 severities.
EMERGENCY, ALERT, CRITICAL, ERROR, WARNING, NOTICE, INFO, DEBUG = range(8)
# (event_type, what) -> severity; ``what`` None is the type's default.
SEVERITY: dict[tuple[str, str | None], int] = {
    ("decision", "allow"): INFO,
    ("decision", "require_approval"): NOTICE,
    ("decision", None): WARNING,  # deny
    ("settlement", "succeeded"): INFO,
    ("settlement", None): NOTICE,  # failed, reverted, abandoned
    ("approval", None): NOTICE,
    ("control", None): WARNING,
    ("gap", None): ERROR,
    ("checkpoint", None): INFO,
}

_RFC3339_5424 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$")
_NOT_PRINTUSASCII = re.compile(r"[^\x21-\x7e]")


def syslog_severity(event: dict[str, Any]) -> int:
    """:data:`SEVERITY` of ``event`` (what: effect, outcome, approval state, action)."""
    event_type = str(event.get("event_type", ""))
    match event_type:
        case "decision":
            what = event.get("effect")
        case "settlement":
            what = event.get("outcome")
        case _:
            what = None
    return SEVERITY.get((event_type, what), SEVERITY.get((event_type, None), NOTICE))


def sd_escape(value: str) -> str:
    """An RFC 5424 §6.3.3 PARAM-VALUE: backslash before ``"``, ``\\`` and ``]``."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def header_field(value: str, max_length: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces (others become
    ``_``), at most ``max_length`` characters; NILVALUE if empty."""
    return _NOT_PRINTUSASCII.sub("_", value)[:max_length] or NILVALUE


def structured_data(event_id: str, seq: int, tenant_id: str | None) -> str:
    """``[capgate@32473 event_id=".." seq=".." tenant=".."]`` (tenant left out if None)."""
    params = [f'event_id="{sd_escape(event_id)}"', f'seq="{seq}"']
    if tenant_id is not None:
        params.append(f'tenant="{sd_escape(tenant_id)}"')
    return f"[{SD_ID} {' '.join(params)}]"


def syslog_message(
    stored: StoredEvent,
    *,
    payload: bytes,
    facility: int,
    hostname: str,
    app_name: str,
    procid: str,
) -> bytes:
    """The RFC 5424 message of ``stored`` with ``payload`` as MSG (no framing)."""
    event = stored.event
    pri = facility * 8 + syslog_severity(event)
    time = event.get("time")
    if not (isinstance(time, str) and _RFC3339_5424.match(time)):
        time = rfc3339(datetime.fromtimestamp(stored.time, UTC))
    tenant = event.get("tenant_id")
    header = " ".join(
        (
            f"<{pri}>1",
            time,
            header_field(hostname, 255),
            header_field(app_name, 48),
            header_field(procid, 128),
            header_field(str(event.get("event_type", "")), 32),
            structured_data(stored.event_id, stored.seq, None if tenant is None else str(tenant)),
        )
    )
    return header.encode() + b" " + payload


def octet_frame(message: bytes) -> bytes:
    """RFC 6587 §3.4.1 / RFC 5425 §4.3 octet counting: ``MSG-LEN SP SYSLOG-MSG``."""
    return b"%d %b" % (len(message), message)


def client_ssl_context(tls: TlsClientSettings) -> ssl.SSLContext:
    """TLS ≥ 1.2, the server verified against ``ca_file`` (else the system's trust
    store) and its name checked; the client certificate if given. Raises OSError or
    ssl.SSLError for unreadable or invalid files."""
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert_file is not None:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


class SyslogSink:
    """:class:`~capgate.events.sinks.base.Sink` to a syslog receiver (module docstring)."""

    def __init__(
        self,
        settings: SyslogSinkSettings,
        *,
        hostname: str,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        resend_window_bytes: int = DEFAULT_RESEND_WINDOW_BYTES,
    ) -> None:
        """``hostname``: the HOSTNAME field (this instance); ``timeout_seconds`` bounds
        each ``send`` (connecting included), plus a second per MiB written, so a batch
        of large events fits through a slow link; ``resend_window_bytes``: how much of
        what was written on a connection is sent again after it broke (0: nothing).

        Raises:
            ConfigError: the TLS files cannot be loaded.
        """
        self.name = settings.name
        self._settings = settings
        self._hostname = hostname
        self._procid = str(os.getpid())
        self._timeout = timeout_seconds
        self._window = resend_window_bytes
        if settings.tls is not None:
            try:
                client_ssl_context(settings.tls)  # fail now on bad files
            except OSError as exc:  # ssl.SSLError included
                raise ConfigError(f"syslog sink {settings.name}: TLS files: {exc}") from exc
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._written: deque[bytes] = deque()  # frames on the current connection
        self._written_bytes = 0
        self._resend: list[bytes] = []  # frames to send again on the next connection

    def frame(self, stored: StoredEvent) -> bytes:
        """The framed message of one event."""
        cef = self._settings.format == "cef"
        payload = cef_line(stored.event).encode() if cef else stored.body
        message = syslog_message(
            stored,
            payload=payload,
            facility=self._settings.facility,
            hostname=self._hostname,
            app_name=self._settings.app_name,
            procid=self._procid,
        )
        return octet_frame(message)

    async def send(self, batch: Sequence[StoredEvent]) -> int:
        """Write ``batch``, one frame per event, in order; returns ``len(batch)`` once
        the kernel accepted it. Raises SinkError (connect, TLS, write, timeout)."""
        if not batch:
            return 0
        frames = [self.frame(stored) for stored in batch]
        size = sum(map(len, frames)) + sum(map(len, self._resend))
        try:
            async with asyncio.timeout(self._timeout + size / SLOWEST_BYTES_PER_SECOND):
                writer = await self._connection()
                if self._resend:
                    writer.write(b"".join(self._resend))
                writer.write(b"".join(frames))
                await writer.drain()
        except (OSError, TimeoutError, EOFError) as exc:  # ssl.SSLError is an OSError
            self._drop()
            raise SinkError(
                f"syslog {self._settings.host}:{self._settings.port}: {type(exc).__name__}: {exc}"
            ) from exc
        if self._resend:
            self._remember(self._resend)
            self._resend = []
        self._remember(frames)
        return len(batch)

    async def aclose(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        self._written.clear()
        self._written_bytes = 0
        self._resend = []
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), timeout=1.0)

    async def _connection(self) -> asyncio.StreamWriter:
        """The open connection, or a new one if there is none or the receiver closed it
        (syslog receivers never write, so end of stream means gone)."""
        if self._writer is not None and not self._broken():
            return self._writer
        if self._writer is not None:
            self._drop()
        settings = self._settings
        context = None if settings.tls is None else client_ssl_context(settings.tls)
        server_name = None
        if settings.tls is not None:
            server_name = settings.tls.server_name or settings.host
        self._reader, self._writer = await asyncio.open_connection(
            settings.host, settings.port, ssl=context, server_hostname=server_name
        )
        # drain() then returns once everything left Python's buffers, not just once
        # they fell below 64 KiB. (Sockets pause when size > high, TLS when size >= high.)
        self._writer.transport.set_write_buffer_limits(high=0 if context is None else 1, low=0)
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return self._writer

    def _broken(self) -> bool:
        assert self._reader is not None and self._writer is not None
        return (
            self._writer.is_closing()
            or self._reader.at_eof()
            or self._reader.exception() is not None
        )

    def _drop(self) -> None:
        """Forget the connection; what was written on it is due again."""
        if self._writer is not None:
            self._writer.transport.abort()
        self._writer = self._reader = None
        self._resend = [*self._resend, *self._written]
        self._written.clear()
        self._written_bytes = 0

    def _remember(self, frames: Sequence[bytes]) -> None:
        for frame in frames:
            self._written.append(frame)
            self._written_bytes += len(frame)
        while self._written and self._written_bytes > self._window:
            self._written_bytes -= len(self._written.popleft())
