"""A real HTTP server speaking the Splunk HTTP Event Collector wire protocol, for tests
and benchmarks: no Splunk runs here, so this implements what Splunk documents.

Sources (Splunk Enterprise "Getting Data In" manual):
  - "HTTP Event Collector REST API endpoints": ``POST /services/collector/event``
    (also ``/services/collector`` and ``/services/collector/event/1.0``), ``POST
    /services/collector/ack``, ``GET /services/collector/health``;
  - "Format events for HTTP Event Collector": a batch is JSON event objects one after
    another, each with a required, non-blank ``event``;
  - "About HTTP Event Collector Indexer Acknowledgment": with ack on, every request
    names a channel (``X-Splunk-Request-Channel`` or ``?channel=``), the answer
    carries an ``ackId`` (per channel, from 0), and ``{"acks": [ids]}`` sent to the
    ack endpoint is answered ``{"acks": {"<id>": true|false}}``; an id answered true
    is released;
  - "Troubleshoot HTTP Event Collector": the status codes (0 Success; 2 Token is
    required and 3 Invalid authorization, HTTP 401; 4 Invalid token, 403; 5 No data,
    6 Invalid data format, 10 Data channel is missing, 11 Invalid data channel, 12
    Event field is required, 13 Event field cannot be blank, 14 ACK is disabled,
    400; 9 Server is busy, 503; 17 HEC is healthy; 18 HEC is unhealthy, 503).

One departure: a batch is accepted or refused whole (Splunk may index the events
before a malformed one).

Example::

    with HecReceiver(token="t", ack_enabled=True) as hec:
        ...  # point a sink at hec.url
        hec.outage("refuse"); hec.restore()
        hec.events()  # the event payloads, in arrival order
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from capgate.local.lifecycle import Managed

EVENT_PATHS = frozenset(
    {"/services/collector", "/services/collector/event", "/services/collector/event/1.0"}
)
ACK_PATH = "/services/collector/ack"
HEALTH_PATH = "/services/collector/health"

_ANSWERS: dict[int, tuple[int, str]] = {
    0: (200, "Success"),
    2: (401, "Token is required"),
    3: (401, "Invalid authorization"),
    4: (403, "Invalid token"),
    5: (400, "No data"),
    6: (400, "Invalid data format"),
    9: (503, "Server is busy"),
    10: (400, "Data channel is missing"),
    11: (400, "Invalid data channel"),
    12: (400, "Event field is required"),
    13: (400, "Event field cannot be blank"),
    14: (400, "ACK is disabled"),
    17: (200, "HEC is healthy"),
    18: (503, "HEC is unhealthy, queues are full"),
}


class _Refused(Exception):
    """A request that gets a HEC error answer: ``code`` and extra answer fields."""

    def __init__(self, code: int, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.extra = extra


class HecReceiver(Managed):
    """A HEC endpoint on a free loopback port, served from a background thread.

    ``token``: the one valid token; ``ack_enabled``: indexer acknowledgement is on for
    the token (requests must then name a channel); ``index_delay_seconds``: how long
    after receipt an ackId turns true; ``ssl_context``: serve HTTPS with it (a server
    context holding the certificate); ``keep_events``: False keeps only counts (for
    benchmarks: millions of retained dicts would slow the process down). All methods
    are thread-safe.
    """

    def __init__(
        self,
        token: str = "capgate-test-token",
        *,
        ack_enabled: bool = False,
        index_delay_seconds: float = 0.0,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
        keep_events: bool = True,
    ) -> None:
        self.token = token
        self.ack_enabled = ack_enabled
        self.index_delay_seconds = index_delay_seconds
        self.host = host
        self.ssl_context = ssl_context
        self.keep_events = keep_events
        self._event_count = 0
        self.port = 0
        self._lock = threading.Lock()
        self._received: list[dict[str, Any]] = []
        self._counts = {"requests": 0, "rejected": 0, "ack_queries": 0, "health_checks": 0}
        self._next_ack: dict[str, int] = {}
        self._acks: dict[tuple[str, int], float] = {}  # (channel, ackId) → indexed at
        self._outage: Literal["503", "refuse"] | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self) -> HecReceiver:
        """Bind (a free port the first time, the same port after an outage) and serve."""
        server = _Server((self.host, self.port), _handler_for(self))
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open connections."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            connections, self._connections = set(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def outage(self, mode: Literal["503", "refuse"] = "503") -> None:
        """``503``: answer every request 503 "Server is busy" (code 9); ``refuse``: stop
        listening and drop connections, so connecting is refused."""
        with self._lock:
            self._outage = mode
        if mode == "refuse":
            self.stop()

    def restore(self) -> None:
        """End the outage; after ``refuse``, listen again on the same port."""
        with self._lock:
            self._outage = None
        if self._server is None:
            self.start()

    def received(self) -> list[dict[str, Any]]:
        """Every accepted HEC event object (``time``, ``host``, ``fields``, ``event``,
        ...), in arrival order."""
        with self._lock:
            return list(self._received)

    def events(self) -> list[Any]:
        """The ``event`` payloads, in arrival order."""
        return [item["event"] for item in self.received()]

    def counts(self) -> dict[str, int]:
        """``events`` accepted, event ``requests`` accepted, requests ``rejected``,
        ``ack_queries`` and ``health_checks`` answered."""
        with self._lock:
            return {"events": self._event_count, **self._counts}

    def clear(self) -> None:
        """Forget received events and counts (not ack state)."""
        with self._lock:
            self._received.clear()
            self._event_count = 0
            self._counts = dict.fromkeys(self._counts, 0)

    # Request handling (called from the server's threads).

    def _answer(
        self, method: str, target: str, headers: Any, body: bytes
    ) -> tuple[int, dict[str, Any]]:
        split = urlsplit(target)
        try:
            with self._lock:
                if self._outage is not None:
                    raise _Refused(18 if split.path == HEALTH_PATH else 9)
            if method == "GET" and split.path == HEALTH_PATH:
                with self._lock:
                    self._counts["health_checks"] += 1
                return 200, {"text": _ANSWERS[17][1], "code": 17}
            if method != "POST" or split.path not in EVENT_PATHS | {ACK_PATH}:
                return 404, {"text": "The requested URL was not found on this server.", "code": 404}
            self._authorize(headers.get("Authorization"))
            channel = self._channel(headers, split.query)
            if split.path == ACK_PATH:
                return 200, self._ack_query(channel, body)
            return 200, self._accept(channel, _parse_batch(body))
        except _Refused as refused:
            with self._lock:
                self._counts["rejected"] += 1
            status, text = _ANSWERS[refused.code]
            return status, {"text": text, "code": refused.code, **refused.extra}

    def _authorize(self, authorization: str | None) -> None:
        if not authorization:
            raise _Refused(2)
        scheme, _, token = authorization.partition(" ")
        if scheme != "Splunk" or not token:
            raise _Refused(3)
        if token.strip() != self.token:
            raise _Refused(4)

    def _channel(self, headers: Any, query: str) -> str | None:
        channel = (
            headers.get("X-Splunk-Request-Channel") or (parse_qs(query).get("channel") or [None])[0]
        )
        if channel is None:
            if self.ack_enabled:
                raise _Refused(10)
            return None
        try:
            uuid.UUID(channel)
        except ValueError:
            raise _Refused(11) from None
        return str(channel)

    def _accept(self, channel: str | None, items: list[dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            if self.keep_events:
                self._received.extend(items)
            self._event_count += len(items)
            self._counts["requests"] += 1
            if not (self.ack_enabled and channel):
                return {"text": "Success", "code": 0}
            ack_id = self._next_ack.get(channel, 0)
            self._next_ack[channel] = ack_id + 1
            self._acks[(channel, ack_id)] = time.monotonic() + self.index_delay_seconds
        return {"text": "Success", "code": 0, "ackId": ack_id}

    def _ack_query(self, channel: str | None, body: bytes) -> dict[str, Any]:
        if not self.ack_enabled:
            raise _Refused(14)
        assert channel is not None  # _channel refuses a missing one when ack is on
        try:
            ids = json.loads(body)["acks"]
            wanted = [int(i) for i in ids]
        except (ValueError, KeyError, TypeError):
            raise _Refused(6) from None
        now = time.monotonic()
        answer: dict[str, bool] = {}
        with self._lock:
            self._counts["ack_queries"] += 1
            for ack_id in wanted:
                indexed_at = self._acks.get((channel, ack_id))
                answer[str(ack_id)] = indexed_at is not None and indexed_at <= now
                if answer[str(ack_id)]:
                    del self._acks[(channel, ack_id)]
        return {"acks": answer}

    def _track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about clients that hang up or fail the TLS handshake (tests do that)."""
        if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError):
            super().handle_error(request, client_address)


def _parse_batch(body: bytes) -> list[dict[str, Any]]:
    """Concatenated JSON event objects; each needs a non-blank ``event``."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise _Refused(6, **{"invalid-event-number": 0}) from None
    decoder = json.JSONDecoder()
    items: list[dict[str, Any]] = []
    position = 0
    while True:
        while position < len(text) and text[position] in " \t\r\n":
            position += 1
        if position == len(text):
            break
        number = len(items)
        try:
            item, position = decoder.raw_decode(text, position)
        except ValueError:
            raise _Refused(6, **{"invalid-event-number": number}) from None
        if not isinstance(item, dict):
            raise _Refused(6, **{"invalid-event-number": number})
        if "event" not in item:
            raise _Refused(12, **{"invalid-event-number": number})
        if item["event"] in ("", None):
            raise _Refused(13, **{"invalid-event-number": number})
        items.append(item)
    if not items:
        raise _Refused(5)
    return items


def _handler_for(receiver: HecReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Splunk's HEC
        disable_nagle_algorithm = True

        def setup(self) -> None:
            if receiver.ssl_context is not None:  # handshake here, not in accept()
                self.request = receiver.ssl_context.wrap_socket(self.request, server_side=True)
            super().setup()
            receiver._track(self.connection, open_=True)

        def finish(self) -> None:
            receiver._track(self.connection, open_=False)
            super().finish()

        def do_GET(self) -> None:
            self._reply(*receiver._answer("GET", self.path, self.headers, b""))

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding", "").lower() == "gzip":
                try:
                    body = gzip.decompress(body)
                except (OSError, EOFError):
                    self._reply(400, {"text": "Invalid data format", "code": 6})
                    return
            self._reply(*receiver._answer("POST", self.path, self.headers, body))

        def _reply(self, status: int, answer: dict[str, Any]) -> None:
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler
