"""The Kafka sink against a real Apache Kafka broker (KRaft, one node) that the module
starts from the jars ``scripts/kafka.sh`` fetches: records arrive complete and in
order with their headers, an outage fails the send within its timeout, and after the
broker comes back (same ports, same log directory) every event is delivered."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from capgate.errors import ConfigError
from capgate.events.config import KafkaSinkSettings, TlsClientSettings
from capgate.events.sinks.base import SinkError, StoredEvent
from capgate.events.sinks.kafka import KafkaSink
from capgate.local.kafka_broker import DEFAULT_LIBS, KafkaBroker, KafkaBrokerTls
from tests.identity_keys import issue_cert, make_ca

if not any(Path(DEFAULT_LIBS).glob("kafka_*.jar")):
    pytest.skip(
        f"no Kafka broker jars in {DEFAULT_LIBS}: run `bash scripts/kafka.sh` (needs java 17+"
        " and mvn) to fetch them from Maven Central",
        allow_module_level=True,
    )

SEND_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, the broker's certificate for 127.0.0.1 and a client certificate (PEM)."""
    directory = tmp_path_factory.mktemp("kafka-pki")
    ca = make_ca()
    server = issue_cert(ca, common_name="kafka", ip_addresses=["127.0.0.1"], server=True)
    client = issue_cert(ca, common_name="capgate")
    files = {
        "ca": ca.cert_pem,
        "server_cert": server.cert_pem,
        "server_key": server.key_pem,
        "client_cert": client.cert_pem,
        "client_key": client.key_pem,
    }
    paths = {name: directory / f"{name}.pem" for name in files}
    for name, text in files.items():
        paths[name].write_text(text)
    return paths


@pytest.fixture(scope="module")
def kafka(pki: dict[str, Path]) -> Iterator[KafkaBroker]:
    """One broker for the module: PLAINTEXT, and TLS requiring a client certificate."""
    tls = KafkaBrokerTls(
        cert_file=pki["server_cert"], key_file=pki["server_key"], client_ca_file=pki["ca"]
    )
    with KafkaBroker(tls=tls) as broker:
        yield broker


@pytest.fixture
def topic() -> str:
    return f"capgate.test.{uuid.uuid4().hex[:12]}"


def sink_for(kafka: KafkaBroker, topic: str, **settings: Any) -> KafkaSink:
    config = KafkaSinkSettings(
        type="kafka",
        name="bus",
        bootstrap_servers=[kafka.bootstrap_servers],
        topic=topic,
        **settings,
    )
    return KafkaSink(config, send_timeout_seconds=SEND_TIMEOUT, instance_id="capgate-test")


def events(count: int, *, start: int = 1, tenants: Sequence[str] = ("acme",)) -> list[StoredEvent]:
    """Decision-like events; every third one has newlines and non-ASCII text."""
    stored = []
    for seq in range(start, start + count):
        event_id = str(uuid.uuid4())
        event = {
            "schema_version": "capgate.decision_event.v1",
            "event_id": event_id,
            "event_type": "decision",
            "seq": seq,
            "time": "2026-01-01T00:00:00.000Z",
            "tenant_id": tenants[seq % len(tenants)],
            "capability": "issue_refund",
            "effect": "ALLOW",
            "input": {"parameters": {"note": "ünï\nline" if seq % 3 == 0 else "ok"}},
        }
        stored.append(StoredEvent(seq=seq, event_id=event_id, time=0.0, body=rfc8785.dumps(event)))
    return stored


async def consume_all(kafka: KafkaBroker, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of partition 0 of ``topic``, from the beginning to its end offset."""
    partition = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        end = (await consumer.end_offsets([partition]))[partition]
        records: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(30):
            while await consumer.position(partition) < end:
                batches = await consumer.getmany(partition, timeout_ms=1000, max_records=5000)
                records.extend(batches.get(partition, []))
        return records
    finally:
        await consumer.stop()


async def export(sink: KafkaSink, stored: Sequence[StoredEvent], batch_size: int) -> list[float]:
    """What the exporter does: send in batches, retry a failed batch after a short
    backoff until it is acknowledged. Returns how long each failed send took."""
    failures: list[float] = []
    for first in range(0, len(stored), batch_size):
        batch = stored[first : first + batch_size]
        while True:
            started = time.monotonic()
            try:
                assert await sink.send(batch) == len(batch)
                break
            except SinkError:
                failures.append(time.monotonic() - started)
                await asyncio.sleep(0.2)
    return failures


def assert_delivered_in_order(
    records: Sequence[ConsumerRecord[bytes, bytes]], stored: Sequence[StoredEvent]
) -> int:
    """Every event arrived, first occurrences in ``seq`` order; returns the duplicates."""
    first_seen: list[str] = []
    seen: set[str] = set()
    for record in records:
        event_id = dict(record.headers)["event_id"].decode()
        if event_id not in seen:
            seen.add(event_id)
            first_seen.append(event_id)
    assert first_seen == [s.event_id for s in stored]
    return len(records) - len(first_seen)


async def test_2000_events_arrive_in_order_with_key_and_headers(
    kafka: KafkaBroker, topic: str
) -> None:
    stored = events(2000, tenants=("acme", "globex"))
    sink = sink_for(kafka, topic)
    try:
        for first in range(0, len(stored), 500):
            assert await sink.send(stored[first : first + 500]) == 500
    finally:
        await sink.aclose()

    records = await consume_all(kafka, topic)
    assert [r.value for r in records] == [s.body for s in stored]
    for record, sent in zip(records, stored, strict=True):
        assert record.key == sent.event["tenant_id"].encode()
        assert dict(record.headers) == {
            "event_id": sent.event_id.encode(),
            "event_type": b"decision",
            "seq": str(sent.seq).encode(),
        }


async def test_events_without_tenant_are_keyed_by_instance(kafka: KafkaBroker, topic: str) -> None:
    gap = {"event_id": str(uuid.uuid4()), "event_type": "gap", "seq": 9, "first": 1, "last": 8}
    stored = StoredEvent(seq=9, event_id=gap["event_id"], time=0.0, body=rfc8785.dumps(gap))
    sink = sink_for(kafka, topic)
    try:
        assert await sink.send([stored]) == 1
    finally:
        await sink.aclose()
    [record] = await consume_all(kafka, topic)
    assert record.key == b"capgate-test"
    assert dict(record.headers)["event_type"] == b"gap"


async def test_ocsf_format(kafka: KafkaBroker, topic: str) -> None:
    stored = events(5)
    sink = sink_for(kafka, topic, format="ocsf")
    try:
        assert await sink.send(stored) == 5
    finally:
        await sink.aclose()
    records = await consume_all(kafka, topic)
    values = [json.loads(r.value) for r in records]
    assert [v["class_uid"] for v in values] == [6003] * 5
    assert [v["metadata"]["uid"] for v in values] == [s.event_id for s in stored]


async def test_no_broker_raises_sink_error(kafka: KafkaBroker) -> None:
    settings = KafkaSinkSettings(
        type="kafka", name="down", bootstrap_servers=["127.0.0.1:1"], topic="t"
    )
    sink = KafkaSink(settings, send_timeout_seconds=SEND_TIMEOUT)
    started = time.monotonic()
    with pytest.raises(SinkError):
        await sink.send(events(1))
    assert time.monotonic() - started < SEND_TIMEOUT + 1
    await sink.aclose()


async def test_mutual_tls(kafka: KafkaBroker, pki: dict[str, Path], topic: str) -> None:
    tls = TlsClientSettings(
        ca_file=pki["ca"], cert_file=pki["client_cert"], key_file=pki["client_key"]
    )
    config = KafkaSinkSettings(
        type="kafka",
        name="tls",
        bootstrap_servers=[kafka.tls_bootstrap_servers],
        topic=topic,
        tls=tls,
    )
    stored = events(20)
    sink = KafkaSink(config, send_timeout_seconds=SEND_TIMEOUT * 2)
    try:
        assert await sink.send(stored) == 20
    finally:
        await sink.aclose()
    assert [r.value for r in await consume_all(kafka, topic)] == [s.body for s in stored]


async def test_tls_without_a_client_certificate_is_refused(
    kafka: KafkaBroker, pki: dict[str, Path], topic: str
) -> None:
    config = KafkaSinkSettings(
        type="kafka",
        name="tls",
        bootstrap_servers=[kafka.tls_bootstrap_servers],
        topic=topic,
        tls=TlsClientSettings(ca_file=pki["ca"]),
    )
    sink = KafkaSink(config, send_timeout_seconds=SEND_TIMEOUT)
    with pytest.raises(SinkError):
        await sink.send(events(1))
    await sink.aclose()


def test_tls_settings_the_client_cannot_honour_are_config_errors(pki: dict[str, Path]) -> None:
    for tls in (
        TlsClientSettings(ca_file=pki["ca"], server_name="kafka.example"),
        TlsClientSettings(ca_file=pki["ca"].with_name("missing.pem")),
    ):
        config = KafkaSinkSettings(
            type="kafka", name="tls", bootstrap_servers=["127.0.0.1:1"], topic="t", tls=tls
        )
        with pytest.raises(ConfigError):
            KafkaSink(config)


@pytest.mark.parametrize("crash", [False, True], ids=["stopped", "killed"])
async def test_broker_outage_mid_stream_loses_nothing(
    kafka: KafkaBroker, topic: str, crash: bool
) -> None:
    """The broker goes down while batches are being sent, and comes back on the same
    ports with the same log: sends fail within their timeout, the retried batches are
    delivered, every event arrives and first occurrences keep their order."""
    stored = events(3000)
    sink = sink_for(kafka, topic)
    a_third_acknowledged, broker_down = asyncio.Event(), asyncio.Event()

    async def outage() -> None:
        await a_third_acknowledged.wait()
        await asyncio.to_thread(kafka.kill if crash else kafka.stop)
        broker_down.set()
        await asyncio.sleep(SEND_TIMEOUT)  # at least one send times out meanwhile
        await asyncio.to_thread(kafka.restart)

    async def counting_export() -> list[float]:
        failures: list[float] = []
        for first in range(0, len(stored), 100):
            failures += await export(sink, stored[first : first + 100], 100)
            if first + 100 >= len(stored) // 3:
                a_third_acknowledged.set()
            if first + 100 >= 2 * len(stored) // 3:
                await broker_down.wait()  # the last third meets the outage, however fast
        return failures

    try:
        failures, _ = await asyncio.wait_for(
            asyncio.gather(counting_export(), outage()), timeout=60
        )
    finally:
        await sink.aclose()
        if not kafka.running:
            kafka.restart()

    assert failures, "no send failed during the outage"
    assert max(failures) < SEND_TIMEOUT + 1.5
    records = await consume_all(kafka, topic)
    assert_delivered_in_order(records, stored)  # duplicates allowed (at-least-once)
