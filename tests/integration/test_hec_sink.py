"""HecSink against HecReceiver: a real HTTP server speaking Splunk's HEC protocol.

Covers batching, the token, indexer acknowledgement, TLS, outages (503 and refused
connections) and at-least-once delivery in seq order; the last test prints the
events/s one sink sustains (run with -s to see it).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from capgate.errors import ConfigError
from capgate.events.config import HecSinkSettings, TlsClientSettings
from capgate.events.sinks.base import SinkError, StoredEvent
from capgate.events.sinks.hec import HecSink
from capgate.local.hec_receiver import HecReceiver
from tests.identity_keys import issue_cert, make_ca

TOKEN = "0f5c7a8e-hec-token"
T0 = 1_795_293_410.190134


def stored_events(count: int, *, start: int = 1, payload: str = "") -> list[StoredEvent]:
    """Decision-shaped events, seq ``start``…; text with newlines and non-ASCII. The
    body is RFC 8785 canonical JSON (for these strings and integers, sorted compact
    json.dumps is byte-identical, and much faster than the rfc8785 package)."""
    events = []
    for seq in range(start, start + count):
        event: dict[str, Any] = {
            "schema_version": "capgate.decision_event.v1",
            "event_id": f"0190-{seq:08d}",
            "event_type": "decision",
            "time": "2026-11-21T20:36:50.190134Z",
            "seq": seq,
            "tenant_id": "acme",
            "decision_id": f"d-{seq}",
            "principal": {"id": "refund-agent"},
            "capability": "issue_refund",
            "effect": "allow",
            "reasons": [{"code": "OK", "message": "ligne 1\nligne 2 — ünï ✓"}],
            "input": {"parameters": {"note": payload}},
        }
        body = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        events.append(StoredEvent(seq, event["event_id"], T0 + seq / 1000, body.encode()))
    return events


def batches(events: Sequence[StoredEvent], size: int) -> list[Sequence[StoredEvent]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


def settings(url: str, token_file: Path, **extra: Any) -> HecSinkSettings:
    return HecSinkSettings(type="hec", name="splunk", url=url, token_file=token_file, **extra)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "hec-token"
    path.write_text(TOKEN + "\n")  # as a Kubernetes Secret mount may hold it
    return path


@pytest.fixture
def hec() -> Iterator[HecReceiver]:
    with HecReceiver(token=TOKEN) as receiver:
        yield receiver


@pytest.fixture
def hec_ack() -> Iterator[HecReceiver]:
    with HecReceiver(token=TOKEN, ack_enabled=True) as receiver:
        yield receiver


async def deliver(
    sink: HecSink, all_batches: Sequence[Sequence[StoredEvent]], pace: float = 0.0
) -> int:
    """What the exporter does: each batch in order, retried until it is accepted; batch
    ``i`` is ready ``i * pace`` seconds after the start (events arriving over time)."""
    failures = 0
    started = time.monotonic()
    for i, batch in enumerate(all_batches):
        await asyncio.sleep(max(0.0, started + i * pace - time.monotonic()))
        while True:
            try:
                await sink.send(batch)
                break
            except SinkError:
                failures += 1
                await asyncio.sleep(0.02)
    return failures


async def test_batches_arrive_intact_and_in_order(hec: HecReceiver, token_file: Path) -> None:
    events = stored_events(250)
    sink = HecSink(settings(hec.url, token_file, index="audit", batch_size=100), host="node-1")
    try:
        for batch in batches(events, 100):
            assert await sink.send(batch) == len(batch)
    finally:
        await sink.aclose()
    received = hec.received()
    assert [r["event"] for r in received] == [e.event for e in events]
    first = received[0]
    assert first["time"] == round(T0 + 0.001, 3)
    assert (first["host"], first["source"], first["sourcetype"], first["index"]) == (
        "node-1",
        "capgate",
        "capgate:decision",
        "audit",
    )
    assert first["fields"] == {
        "event_id": "0190-00000001",
        "tenant_id": "acme",
        "event_type": "decision",
    }
    assert hec.counts()["requests"] == 3


async def test_a_large_batch_goes_as_several_requests(
    hec_ack: HecReceiver, token_file: Path
) -> None:
    events = stored_events(40, payload="x" * 65_536)  # ~2.6 MB
    sink = HecSink(settings(hec_ack.url, token_file, ack=True))
    try:
        assert await sink.send(events) == 40
    finally:
        await sink.aclose()
    assert hec_ack.events() == [e.event for e in events]
    assert hec_ack.counts()["requests"] >= 3


async def test_indexer_acknowledgement_is_awaited(token_file: Path) -> None:
    with HecReceiver(token=TOKEN, ack_enabled=True, index_delay_seconds=0.2) as hec:
        sink = HecSink(settings(hec.url, token_file, ack=True))
        started = time.monotonic()
        try:
            assert await sink.send(stored_events(10)) == 10
            assert await sink.send(stored_events(10, start=11)) == 10
        finally:
            await sink.aclose()
        assert time.monotonic() - started >= 0.4
        assert hec.counts()["ack_queries"] >= 4  # polled until true, per batch
        assert [e["seq"] for e in hec.events()] == list(range(1, 21))


async def test_no_acknowledgement_in_time_is_a_sink_error(token_file: Path) -> None:
    with HecReceiver(token=TOKEN, ack_enabled=True, index_delay_seconds=3600) as hec:
        sink = HecSink(settings(hec.url, token_file, ack=True, ack_timeout_seconds=0.3))
        started = time.monotonic()
        try:
            with pytest.raises(SinkError, match=r"not acknowledged within 0\.3 s"):
                await sink.send(stored_events(5))
        finally:
            await sink.aclose()
        assert time.monotonic() - started < 2
        assert hec.counts()["events"] == 5  # received, never indexed: sent again later


async def test_ack_without_a_channel_is_refused_by_an_ack_token(
    hec_ack: HecReceiver, token_file: Path
) -> None:
    sink = HecSink(settings(hec_ack.url, token_file, ack=False))
    try:
        with pytest.raises(SinkError, match=r"HTTP 400 \(code 10"):
            await sink.send(stored_events(1))
    finally:
        await sink.aclose()


async def test_a_wrong_token_is_a_sink_error(hec: HecReceiver, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("revoked-token")
    sink = HecSink(settings(hec.url, wrong))
    try:
        with pytest.raises(SinkError, match=r"HTTP 403 \(code 4: Invalid token\)"):
            await sink.send(stored_events(3))
    finally:
        await sink.aclose()
    assert hec.counts() | {"rejected": 1, "events": 0} == hec.counts()


async def test_the_token_from_the_environment(
    hec: HecReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPGATE_TEST_HEC_TOKEN", f"  {TOKEN}\n")
    sink = HecSink(
        HecSinkSettings(type="hec", name="splunk", url=hec.url, token_env="CAPGATE_TEST_HEC_TOKEN")
    )
    try:
        assert await sink.send(stored_events(2)) == 2
    finally:
        await sink.aclose()


def test_a_missing_token_is_a_config_error_naming_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match=r"events.sinks\[splunk\].token_file: cannot read"):
        HecSink(settings("http://127.0.0.1:1", tmp_path / "absent"))
    monkeypatch.delenv("CAPGATE_UNSET_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="CAPGATE_UNSET_TOKEN is unset or empty"):
        HecSink(
            HecSinkSettings(
                type="hec", name="splunk", url="http://x", token_env="CAPGATE_UNSET_TOKEN"
            )
        )


async def test_outages_fail_the_send_until_restored(hec: HecReceiver, token_file: Path) -> None:
    sink = HecSink(settings(hec.url, token_file))
    try:
        await sink.send(stored_events(1))
        hec.outage("503")
        with pytest.raises(SinkError, match=r"HTTP 503 \(code 9: Server is busy\)"):
            await sink.send(stored_events(1, start=2))
        hec.restore()
        await sink.send(stored_events(1, start=2))
        await asyncio.to_thread(hec.outage, "refuse")
        with pytest.raises(SinkError, match="ConnectError"):
            await sink.send(stored_events(1, start=3))
        await asyncio.to_thread(hec.restore)
        await sink.send(stored_events(1, start=3))
    finally:
        await sink.aclose()
    assert [e["seq"] for e in hec.events()] == [1, 2, 3]


@pytest.mark.parametrize("ack", [False, True], ids=["no-ack", "ack"])
async def test_an_outage_mid_stream_loses_nothing(ack: bool, token_file: Path) -> None:
    events = stored_events(400)  # 500 events/s for 0.8 s, in batches of 20
    with HecReceiver(token=TOKEN, ack_enabled=ack) as hec:
        sink = HecSink(settings(hec.url, token_file, ack=ack, ack_timeout_seconds=0.1))
        delivery = asyncio.create_task(deliver(sink, batches(events, 20), pace=0.04))
        await asyncio.sleep(0.1)
        hec.outage("503")
        await asyncio.sleep(0.2)
        hec.restore()
        await asyncio.sleep(0.05)
        await asyncio.to_thread(hec.outage, "refuse")
        await asyncio.sleep(0.2)
        await asyncio.to_thread(hec.restore)
        if ack:  # acks that never come: the batch is sent again, so Splunk sees it twice
            hec.index_delay_seconds = 3600
            await asyncio.sleep(0.25)
            hec.index_delay_seconds = 0
        failures = await asyncio.wait_for(delivery, 30)
        await sink.aclose()
        received = hec.events()
    assert failures > 0
    unique: dict[str, Any] = {}
    for event in received:
        unique.setdefault(event["event_id"], event)
    assert [e["seq"] for e in unique.values()] == list(range(1, 401))
    assert list(unique.values()) == [e.event for e in events]
    if ack:
        assert len(received) > len(unique)  # duplicates, removable by event_id


async def test_ocsf_format(hec: HecReceiver, token_file: Path) -> None:
    sink = HecSink(settings(hec.url, token_file, format="ocsf"))
    try:
        await sink.send(stored_events(2))
    finally:
        await sink.aclose()
    first = hec.events()[0]
    assert (first["class_uid"], first["metadata"]["uid"]) == (6003, "0190-00000001")


async def test_tls_with_a_private_ca_and_server_name(tmp_path: Path, token_file: Path) -> None:
    import ssl

    ca = make_ca()
    leaf = issue_cert(ca, dns_names=["hec.internal"], server=True)
    (tmp_path / "ca.pem").write_text(ca.cert_pem)
    (tmp_path / "cert.pem").write_text(leaf.cert_pem)
    (tmp_path / "key.pem").write_text(leaf.key_pem)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    with HecReceiver(token=TOKEN, ssl_context=server_context) as hec:
        assert hec.url.startswith("https://127.0.0.1:")
        tls = TlsClientSettings(ca_file=tmp_path / "ca.pem", server_name="hec.internal")
        sink = HecSink(settings(hec.url, token_file, tls=tls))
        unnamed = HecSink(
            settings(hec.url, token_file, tls=TlsClientSettings(ca_file=tmp_path / "ca.pem"))
        )
        try:
            assert await sink.send(stored_events(3)) == 3
            with pytest.raises(SinkError, match="ConnectError"):  # 127.0.0.1 is not in the cert
                await unnamed.send(stored_events(1))
        finally:
            await sink.aclose()
            await unnamed.aclose()
        assert len(hec.events()) == 3


@pytest.mark.parametrize("ack", [False, True], ids=["no-ack", "ack"])
async def test_throughput(ack: bool, token_file: Path) -> None:
    """Events/s one HecSink sustains to HecReceiver (same process), batches of 500."""
    events = stored_events(3_000)
    with HecReceiver(token=TOKEN, ack_enabled=ack) as hec:
        sink = HecSink(settings(hec.url, token_file, ack=ack))
        await sink.send(events[:500])  # connect
        started = time.perf_counter()
        for batch in batches(events, 500):
            await sink.send(batch)
        elapsed = time.perf_counter() - started
        await sink.aclose()
        assert hec.counts()["events"] == 3_500
    rate = len(events) / elapsed
    print(f"\nHEC {'ack' if ack else 'no ack'}: {rate:,.0f} events/s ({elapsed:.2f} s for 3,000)")
    assert rate > 1_000  # a floor for a loaded 2-core machine; see docs/siem/splunk-hec.md


async def test_encoding_a_batch_yields_to_the_event_loop(
    hec: HecReceiver, token_file: Path
) -> None:
    """Authorize shares the loop: a batch is encoded in slices, not in one block."""
    events = stored_events(500)
    ticks = 0
    sending = True

    async def ticker() -> None:
        nonlocal ticks
        while sending:
            ticks += 1
            await asyncio.sleep(0)

    sink = HecSink(settings(hec.url, token_file))
    task = asyncio.create_task(ticker())
    try:
        await asyncio.sleep(0)
        ticks = 0
        await sink._encode(events)  # the encoding step of send(), alone
    finally:
        sending = False
        await task
        await sink.aclose()
    assert ticks >= 500 // 32 - 1
