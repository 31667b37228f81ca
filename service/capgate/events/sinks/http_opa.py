"""HTTP sink in OPA's decision-log upload format, so pipelines built for OPA accept it.

OPA's "Decision Log Service API" (https://www.openpolicyagent.org/docs/management-decision-logs/):
``POST <url>`` with ``Content-Encoding: gzip`` and ``Content-Type: application/json``;
the body is a gzip-compressed JSON array of events. capgate sends one array per batch,
in order, each element ``opa_decision_log(event)`` (``format: opa``, see
capgate.events.formats.opa) or ``ocsf_api_activity(event)`` (``format: ocsf``). The
settings' ``headers`` go with every request (an ``Authorization`` header, for
instance). Events are encoded in slices that yield to the event loop, and gzip runs in
a worker thread (zlib releases the GIL), so Authorize is not stalled.

Any non-2xx answer, timeout or connection failure raises ``SinkError``; the exporter
retries the batch, so the receiver may see an event twice (deduplicate by
``result.event_id``, or ``metadata.uid`` in OCSF).

Example::

    sink = HttpOpaSink(HttpSinkSettings(type="http", name="opa-compatible",
                                        url="https://logs.example/logs"))
    await sink.send(batch)
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import Sequence
from typing import Any

import httpx

from capgate.events.config import HttpSinkSettings
from capgate.events.formats.ocsf import ocsf_api_activity
from capgate.events.formats.opa import opa_decision_log
from capgate.events.sinks.base import SinkError, StoredEvent
from capgate.events.sinks.hec import encode_in_slices, http_client

# Fast, and within a few percent of level 9 on JSON (OPA's encoder uses Go's default).
GZIP_LEVEL = 6


class HttpOpaSink:
    """POSTs gzip JSON arrays to ``settings.url``; see the module docstring.

    ``instance_id``: OPA's ``labels.id`` for events that carry none of their own
    (default: this machine's host name).

    Raises:
        ConfigError: a TLS file cannot be loaded.
    """

    def __init__(self, settings: HttpSinkSettings, *, instance_id: str | None = None) -> None:
        self.name = settings.name
        self._format = settings.format
        self._instance_id = instance_id or socket.gethostname()
        headers = {
            **settings.headers,
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }
        self._client, self._extensions = http_client(
            settings.url, settings.tls, headers, key=f"events.sinks[{settings.name}].tls"
        )
        self._url = settings.url

    async def send(self, batch: Sequence[StoredEvent]) -> int:
        """POST ``batch`` as one gzip JSON array.

        Returns:
            ``len(batch)`` once the receiver answered 2xx.

        Raises:
            SinkError: connection failure, timeout or a non-2xx answer.
        """
        if not batch:
            return 0
        items = await encode_in_slices(batch, self._encode)
        # zlib releases the GIL: compressing in a thread keeps the event loop free.
        body = await asyncio.to_thread(gzip.compress, b"[" + b",".join(items) + b"]", GZIP_LEVEL)
        try:
            response = await self._client.post(self._url, content=body, extensions=self._extensions)
        except httpx.HTTPError as exc:
            raise SinkError(f"HTTP {self.name}: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise SinkError(
                f"HTTP {self.name}: HTTP {response.status_code}: {response.text[:200]!r}"
            )
        return len(batch)

    def _encode(self, stored: StoredEvent) -> bytes:
        """One element of the JSON array."""
        item: dict[str, Any]
        if self._format == "ocsf":
            item = ocsf_api_activity(stored.event)
        else:
            item = opa_decision_log(stored.event, instance_id=self._instance_id)
        return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()

    async def aclose(self) -> None:
        await self._client.aclose()
