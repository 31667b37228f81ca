"""Splunk HTTP Event Collector sink.

Wire protocol (Splunk docs, "HTTP Event Collector REST API endpoints" and "About HTTP
Event Collector Indexer Acknowledgment"):

- ``POST /services/collector/event`` with ``Authorization: Splunk <token>``; the body
  is a batch: JSON objects one after another, each ``{"time": <epoch seconds, ms>,
  "host", "source": "capgate", "sourcetype", "index"?, "fields": {"event_id",
  "tenant_id", "event_type"}, "event": <the event, or its OCSF form>}``. The answer is
  ``{"text": "Success", "code": 0}``; any other code, or a non-2xx status, fails.
- With ``ack: true`` every request carries ``X-Splunk-Request-Channel: <uuid4>`` (one
  channel per sink instance); the answer adds ``"ackId": N``. The sink then polls
  ``POST /services/collector/ack`` with ``{"acks": [N, ...]}`` until Splunk answers
  ``{"acks": {"N": true}}`` (the events are indexed), or ``ack_timeout_seconds``
  passes.

A batch larger than ``MAX_REQUEST_BYTES`` goes as several requests, acknowledged
together. Encoding yields to the event loop every ``ENCODE_SLICE`` events, so a large
batch never stalls Authorize, which runs on the same loop.

Any failure (connection refused, timeout, 5xx, 4xx such as 403 for a revoked token, a
code other than 0, no acknowledgement in time) raises ``SinkError``: the exporter
retries the whole batch with backoff, so Splunk may index an event twice (deduplicate
by ``event_id``). A 4xx is retried too: a fixed token or index lets the backlog drain
without losing events.

Example::

    sink = HecSink(HecSinkSettings(type="hec", name="splunk", url="https://splunk:8088",
                                   token_env="CAPGATE_HEC_TOKEN", ack=True))
    acknowledged = await sink.send(batch)
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from capgate.errors import ConfigError
from capgate.events.config import HecSinkSettings, TlsClientSettings
from capgate.events.formats.ocsf import ocsf_api_activity
from capgate.events.sinks.base import SinkError, StoredEvent

EVENT_PATH = "/services/collector/event"
ACK_PATH = "/services/collector/ack"
# Requests stay under this size (Splunk's own limit is max_content_length in
# limits.conf [http_input]; Splunk Cloud's is smaller than Enterprise's default).
MAX_REQUEST_BYTES = 1 << 20
# Ack polling: immediately, then every 20 ms doubling to 1 s, until the timeout.
ACK_POLL_FIRST_SECONDS = 0.02
ACK_POLL_MAX_SECONDS = 1.0
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
ENCODE_SLICE = 32  # events encoded between two yields to the event loop


class HecSink:
    """One Splunk HEC endpoint; see the module docstring for the protocol.

    ``host``: the HEC ``host`` field of events that carry no ``instance_id``
    (default: this machine's host name).

    Raises:
        ConfigError: the token file cannot be read, or the variable is unset or empty
            (the message names the setting, never the token).
    """

    def __init__(self, settings: HecSinkSettings, *, host: str | None = None) -> None:
        self.name = settings.name
        self._settings = settings
        self._host = host or socket.gethostname()
        self._channel = str(uuid.uuid4())
        self._prefixes: dict[str, bytes] = {}
        headers = {
            "Authorization": f"Splunk {read_token(settings)}",
            "Content-Type": "application/json",
        }
        if settings.ack:
            headers["X-Splunk-Request-Channel"] = self._channel
        self._client, self._extensions = http_client(
            settings.url, settings.tls, headers, key=f"events.sinks[{settings.name}].tls"
        )

    @property
    def channel(self) -> str:
        """The ``X-Splunk-Request-Channel`` of this sink (sent only with ``ack``)."""
        return self._channel

    async def send(self, batch: Sequence[StoredEvent]) -> int:
        """POST ``batch`` in order; with ``ack``, wait until Splunk indexed it.

        Returns:
            ``len(batch)``, once every request was accepted (and acknowledged).

        Raises:
            SinkError: see the module docstring.
        """
        if not batch:
            return 0
        ack_ids = [await self._post(body) for body in await self._encode(batch)]
        if self._settings.ack:
            await self._wait_for_acks([a for a in ack_ids if a is not None])
        return len(batch)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _encode(self, batch: Sequence[StoredEvent]) -> list[bytes]:
        """The request bodies for ``batch``."""
        items = await encode_in_slices(batch, self._envelope)
        return split_bodies(items, MAX_REQUEST_BYTES)

    def _envelope(self, stored: StoredEvent) -> bytes:
        event = stored.event
        fields = {
            key: str(event[key])
            for key in ("event_id", "tenant_id", "event_type")
            if event.get(key) not in (None, "")
        }
        if self._settings.format == "ocsf":
            payload = _compact(ocsf_api_activity(event))
        else:
            payload = stored.body  # canonical JSON already: no second serialisation
        return b"".join(
            (
                b'{"time":%.3f' % stored.time,
                self._metadata(str(event.get("instance_id") or self._host)),
                b',"fields":',
                _compact(fields),
                b',"event":',
                payload,
                b"}",
            )
        )

    def _metadata(self, host: str) -> bytes:
        """``,"host":…,"source":"capgate","sourcetype":…[,"index":…]``, once per host."""
        cached = self._prefixes.get(host)
        if cached is None:
            metadata: dict[str, str] = {
                "host": host,
                "source": "capgate",
                "sourcetype": self._settings.sourcetype,
            }
            if self._settings.index:
                metadata["index"] = self._settings.index
            cached = b"," + _compact(metadata)[1:-1]
            self._prefixes[host] = cached
        return cached

    async def _post(self, body: bytes) -> int | None:
        """POST one request; its ``ackId`` (None without ack)."""
        answer = await self._request(EVENT_PATH, body)
        if not self._settings.ack:
            return None
        ack_id = answer.get("ackId")
        if not isinstance(ack_id, int):
            raise SinkError(f"HEC {self.name}: no ackId in the answer (is ack on for the token?)")
        return ack_id

    async def _wait_for_acks(self, ack_ids: list[int]) -> None:
        pending = set(ack_ids)
        deadline = time.monotonic() + self._settings.ack_timeout_seconds
        pause = ACK_POLL_FIRST_SECONDS
        while True:
            body = json.dumps({"acks": sorted(pending)}).encode()
            acks = (await self._request(ACK_PATH, body, check_code=False)).get("acks")
            if not isinstance(acks, dict):
                raise SinkError(f"HEC {self.name}: malformed ack answer")
            pending -= {int(k) for k, v in acks.items() if v is True and k.isdigit()}
            if not pending:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SinkError(
                    f"HEC {self.name}: ackIds {sorted(pending)} not acknowledged within "
                    f"{self._settings.ack_timeout_seconds} s"
                )
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, ACK_POLL_MAX_SECONDS)

    async def _request(self, path: str, body: bytes, *, check_code: bool = True) -> dict[str, Any]:
        try:
            response = await self._client.post(path, content=body, extensions=self._extensions)
        except httpx.HTTPError as exc:
            raise SinkError(f"HEC {self.name}: {type(exc).__name__}: {exc}") from exc
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if not response.is_success:
            raise SinkError(
                f"HEC {self.name}: HTTP {response.status_code} "
                f"(code {answer.get('code')}: {answer.get('text', '')})"
            )
        if not isinstance(answer, dict) or (check_code and answer.get("code") != 0):
            raise SinkError(f"HEC {self.name}: answer {str(answer)[:200]!r} is not a success")
        return answer


def _compact(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def split_bodies(items: Sequence[bytes], limit: int) -> list[bytes]:
    """HEC batch bodies: ``items`` concatenated, each body at most ``limit`` bytes (a
    single larger item goes alone)."""
    bodies: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for item in items:
        if current and size + len(item) > limit:
            bodies.append(b"".join(current))
            current, size = [], 0
        current.append(item)
        size += len(item)
    bodies.append(b"".join(current))
    return bodies


async def encode_in_slices(
    batch: Sequence[StoredEvent], encode: Callable[[StoredEvent], bytes]
) -> list[bytes]:
    """``[encode(e) for e in batch]``, yielding to the event loop every
    ``ENCODE_SLICE`` events: encoding 500 events takes 10-20 ms of CPU, and Authorize
    runs on the same loop (a slice costs well under a millisecond)."""
    encoded: list[bytes] = []
    for start in range(0, len(batch), ENCODE_SLICE):
        if start:
            await asyncio.sleep(0)
        encoded.extend(encode(stored) for stored in batch[start : start + ENCODE_SLICE])
    return encoded


def read_token(settings: HecSinkSettings) -> str:
    """The HEC token, from ``token_file`` (stripped) or the variable ``token_env``."""
    if settings.token_file is not None:
        key = f"events.sinks[{settings.name}].token_file"
        try:
            token = settings.token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read {settings.token_file}: {exc.strerror}") from exc
        if not token:
            raise ConfigError(f"{key}: {settings.token_file} is empty")
        return token
    variable = settings.token_env or ""
    token = os.environ.get(variable, "").strip()
    if not token:
        raise ConfigError(
            f"events.sinks[{settings.name}].token_env: environment variable "
            f"{variable} is unset or empty"
        )
    return token


def http_client(
    url: str, tls: TlsClientSettings | None, headers: dict[str, str], *, key: str
) -> tuple[httpx.AsyncClient, dict[str, Any]]:
    """An HTTP/1.1 keep-alive client for ``url`` and the per-request extensions (the
    SNI name of ``tls.server_name``). Shared by the HEC and HTTP sinks; ``key`` names
    the TLS setting in errors.

    Raises:
        ConfigError: a CA, certificate or key file cannot be loaded.
    """
    verify: ssl.SSLContext | bool = True
    extensions: dict[str, Any] = {}
    if tls is not None:
        verify = tls_context(tls, key=key)
        if tls.server_name:
            extensions["sni_hostname"] = tls.server_name
    client = httpx.AsyncClient(
        base_url=url,
        headers=headers,
        verify=verify,
        timeout=TIMEOUT,
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
    )
    return client, extensions


def tls_context(tls: TlsClientSettings, *, key: str = "tls") -> ssl.SSLContext:
    """A client context: ``ca_file`` (else the system's trust store), an optional
    client certificate; hostname checking on."""
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        if tls.cert_file is not None:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{key}: cannot load the CA, certificate or key: {exc}") from exc
    return context
