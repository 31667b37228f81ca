"""Kafka sink: each event is one record on ``topic``, produced with aiokafka.

- Delivery: ``acks=all`` and the idempotent producer (KIP-98): the broker keeps a
  record only once per producer session however often the producer retries it, and a
  partition's records stay in order. :meth:`KafkaSink.send` returns once every record
  of the batch is acknowledged by all in-sync replicas.
- Record: key = the event's ``tenant_id`` (events capgate raises itself, such as gap
  and checkpoint events, use the instance id), so one tenant's events share a
  partition and keep their order; value = the event's canonical JSON (``format:
  json``) or its OCSF API Activity form (``format: ocsf``); headers ``event_id``,
  ``event_type`` and ``seq`` (UTF-8), so consumers can deduplicate and route without
  parsing the value.
- Failure: a batch not acknowledged within ``send_timeout_seconds`` raises
  :class:`SinkError` and the exporter retries it. Records still pending are kept by the
  producer, which keeps retrying them in order; the retried batch waits for those same
  records instead of producing them again, so an outage adds no duplicates within a
  producer session. A record the producer gives up on (rejected by the broker, or its
  partition without a leader for longer than the timeout) discards the producer; the
  next send starts a new session, which may write the unacknowledged records again
  (at-least-once: consumers deduplicate by ``event_id``).

The producer connects on the first :meth:`KafkaSink.send`, not in the constructor,
so capgate starts while the brokers are down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from capgate.errors import ConfigError
from capgate.events.config import KafkaSinkSettings, TlsClientSettings
from capgate.events.formats.ocsf import ocsf_api_activity
from capgate.events.sinks.base import SinkError, StoredEvent

DEFAULT_SEND_TIMEOUT_SECONDS = 30.0
DEFAULT_LINGER_MS = 5
# Larger than aiokafka's 16 KiB so a batch of events rides in few produce requests.
MAX_BATCH_BYTES = 512 << 10
COMPRESSION_TYPES = (None, "gzip", "lz4", "zstd", "snappy")
# The broker's default message.max.bytes is 1 MiB; events are far smaller.
MAX_REQUEST_BYTES = 1 << 20


def ssl_context(tls: TlsClientSettings) -> ssl.SSLContext:
    """A client context: ``ca_file`` (or the system's trust anchors), an optional
    client certificate, host names checked.

    Raises:
        ConfigError: a file cannot be read, or ``server_name`` is set (aiokafka checks
            each broker's advertised host name; it cannot override the name).
    """
    if tls.server_name is not None:
        raise ConfigError(
            "events.sinks kafka tls.server_name: not supported; the Kafka client checks "
            "each broker's advertised host name"
        )
    try:
        context = ssl.create_default_context(
            cafile=str(tls.ca_file) if tls.ca_file is not None else None
        )
        if tls.cert_file is not None:
            context.load_cert_chain(
                str(tls.cert_file), str(tls.key_file) if tls.key_file is not None else None
            )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"events.sinks kafka tls: {exc}") from exc
    return context


class KafkaSink:
    """``KafkaSink(settings)``; ``send_timeout_seconds`` bounds one :meth:`send`
    (connecting included); ``instance_id`` keys the events that have no tenant;
    ``compression_type``: None, "gzip" (or "lz4", "zstd", "snappy" with their Python
    libraries installed)."""

    def __init__(
        self,
        settings: KafkaSinkSettings,
        *,
        send_timeout_seconds: float = DEFAULT_SEND_TIMEOUT_SECONDS,
        linger_ms: int = DEFAULT_LINGER_MS,
        compression_type: str | None = None,
        instance_id: str | None = None,
    ) -> None:
        if compression_type not in COMPRESSION_TYPES:
            raise ConfigError(
                f"kafka compression_type {compression_type!r}: not one of "
                f"{', '.join(map(str, COMPRESSION_TYPES))}"
            )
        self.name = settings.name
        self._settings = settings
        self._topic = settings.topic
        self._send_timeout = send_timeout_seconds
        self._linger_ms = linger_ms
        self._compression_type = compression_type
        self._instance_key = (instance_id or socket.gethostname()).encode()
        self._ssl_context = ssl_context(settings.tls) if settings.tls is not None else None
        self._encode: Callable[[StoredEvent], bytes] = (
            _ocsf_value if settings.format == "ocsf" else _json_value
        )
        self._producer: AIOKafkaProducer | None = None
        # event_id -> delivery future of the current producer, for records a failed
        # send left pending: a retry of the batch waits for them instead of re-sending.
        self._pending: dict[str, asyncio.Future[Any]] = {}

    async def send(self, batch: Sequence[StoredEvent]) -> int:
        """Produce ``batch`` in order and wait until every record is acknowledged.

        Raises:
            SinkError: no connection, a record rejected, or not all acknowledged
                within ``send_timeout_seconds``.
        """
        if not batch:
            return 0
        if self._failed_earlier(batch):
            await self._discard()
        futures: list[asyncio.Future[Any]] = []
        stage = "connect"
        try:
            async with asyncio.timeout(self._send_timeout):
                producer = await self._started()
                stage = "produce"
                self._forget_settled(batch)
                for stored in batch:
                    futures.append(await self._enqueue(producer, stored))
                # asyncio.wait, not gather: a timeout must not cancel the deliveries.
                done, _ = await asyncio.wait(futures, return_when=asyncio.FIRST_EXCEPTION)
        except TimeoutError:
            if stage == "connect":
                raise SinkError(
                    f"kafka {self._topic}: no connection within {self._send_timeout:g} s"
                ) from None
            acknowledged = sum(
                1 for f in futures if f.done() and not f.cancelled() and not f.exception()
            )
            raise SinkError(
                f"kafka {self._topic}: {acknowledged} of {len(batch)} records acknowledged "
                f"within {self._send_timeout:g} s"
            ) from None
        except KafkaError as exc:
            await self._discard()
            raise SinkError(f"kafka {self._topic}: {exc!r}") from exc
        failed = next((f.exception() for f in done if f.exception() is not None), None)
        if failed is not None or len(done) < len(set(futures)):
            # A record the producer gave up on: later records may be stored after it is
            # retried, so start a new producer session for the retry.
            await self._discard()
            raise SinkError(f"kafka {self._topic}: record not delivered: {failed!r}")
        for stored in batch:
            self._pending.pop(stored.event_id, None)
        return len(batch)

    async def aclose(self) -> None:
        """Stop the producer; records not yet acknowledged are abandoned."""
        await self._discard()

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        producer = AIOKafkaProducer(
            bootstrap_servers=list(self._settings.bootstrap_servers),
            client_id=f"capgate-{self.name}",
            acks="all",
            enable_idempotence=True,
            linger_ms=self._linger_ms,
            compression_type=self._compression_type,
            max_batch_size=MAX_BATCH_BYTES,
            max_request_size=MAX_REQUEST_BYTES,
            request_timeout_ms=int(self._send_timeout * 1000),
            security_protocol="SSL" if self._ssl_context is not None else "PLAINTEXT",
            ssl_context=self._ssl_context,
        )
        try:
            await producer.start()
        except BaseException:
            await _abandon(producer)
            raise
        self._producer = producer
        return producer

    async def _enqueue(self, producer: AIOKafkaProducer, stored: StoredEvent) -> Any:
        """The record's delivery future: the one still pending from an earlier
        attempt, or a new one."""
        pending = self._pending.get(stored.event_id)
        if pending is not None:
            return pending
        try:
            event = stored.event
            value = self._encode(stored)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # Not the broker's fault, but the exporter only survives a SinkError.
            raise SinkError(f"kafka: cannot encode event seq {stored.seq}: {exc!r}") from exc
        tenant = event.get("tenant_id")
        key = str(tenant).encode() if tenant else self._instance_key
        headers = [
            ("event_id", stored.event_id.encode()),
            ("event_type", str(event.get("event_type", "")).encode()),
            ("seq", str(stored.seq).encode()),
        ]
        future = await producer.send(self._topic, value=value, key=key, headers=headers)
        self._pending[stored.event_id] = future
        return future

    def _failed_earlier(self, batch: Sequence[StoredEvent]) -> bool:
        """True if a record of ``batch`` is pending from an earlier attempt and has
        since failed: the retry needs a new producer session to keep the order."""
        for stored in batch:
            future = self._pending.get(stored.event_id)
            if future is not None and future.done() and future.exception() is not None:
                return True
        return False

    def _forget_settled(self, batch: Sequence[StoredEvent]) -> None:
        """Drop pending futures that have settled and are not in ``batch`` (the
        exporter moved past them), so the map only holds what may be retried."""
        wanted = {stored.event_id for stored in batch}
        for event_id in [i for i, f in self._pending.items() if f.done() and i not in wanted]:
            del self._pending[event_id]

    async def _discard(self) -> None:
        producer, self._producer = self._producer, None
        for future in self._pending.values():
            future.add_done_callback(_retrieve)  # no "exception never retrieved" noise
        self._pending.clear()
        if producer is not None:
            await _abandon(producer)


async def _abandon(producer: AIOKafkaProducer) -> None:
    """Stop ``producer`` without waiting for its pending records (``stop()`` alone
    flushes them first, which never ends while the brokers are down)."""
    # Failing what is queued lets stop() skip the flush; aiokafka has no public way.
    producer._message_accumulator.fail_all(SinkError("kafka sink closed"))
    with contextlib.suppress(KafkaError, OSError, SinkError):
        await producer.stop()


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _json_value(stored: StoredEvent) -> bytes:
    return stored.body


def _ocsf_value(stored: StoredEvent) -> bytes:
    mapped = ocsf_api_activity(stored.event)
    return json.dumps(mapped, ensure_ascii=False, separators=(",", ":")).encode()
