"""The syslog sink against a real rsyslogd (Debian) on loopback, over TCP and TLS
(issue 6): 10,000 events with newlines, 64 KiB payloads and non-ASCII text arrive
intact, counted at the receiver; a receiver restart mid-stream loses nothing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rfc8785
import uuid6

from capgate.errors import ConfigError
from capgate.events.config import SyslogSinkSettings, TlsClientSettings
from capgate.events.formats.cef import cef_line
from capgate.events.sinks.base import SinkError, StoredEvent
from capgate.events.sinks.syslog import (
    SD_ID,
    SyslogSink,
    header_field,
    octet_frame,
    sd_escape,
    structured_data,
    syslog_severity,
)
from capgate.local.rsyslog import ReceivedMessage, Rsyslog, RsyslogTls, receiver_config
from tests.conftest import ROOT
from tests.identity_keys import issue_cert, make_ca

HOSTNAME = "capgate-test"
BATCH = 500
# 64 KiB of UTF-8 with newlines, tabs, accents, CJK and emoji.
PATTERN = 'line é 中文 😀\n\ttab "quote" back\\slash ]bracket\r\n'
BIG_TEXT = (
    (PATTERN * (65536 // len(PATTERN.encode()) + 1)).encode()[:65536].decode("utf-8", "ignore")
)
TENANTS = ["acme", 'qu"ote', "back\\slash", "br]acket", "line\nbreak", "ünï 中文 😀"]
SD_PARAM = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("syslog-pki")
    ca = make_ca()
    server = issue_cert(ca, ip_addresses=["127.0.0.1"], server=True)
    client = issue_cert(ca, common_name="capgate")
    files = {
        "ca.pem": ca.cert_pem,
        "server.pem": server.cert_pem,
        "server.key": server.key_pem,
        "client.pem": client.cert_pem,
        "client.key": client.key_pem,
    }
    for name, text in files.items():
        (directory / name).write_text(text)
    return Pki(*(directory / name for name in files))


@pytest.fixture(scope="module")
def events() -> list[StoredEvent]:
    """10,000 events, built once (RFC 8785 in pure Python takes a while)."""
    return make_events(10_000)


@pytest.fixture
def rsyslog(pki: Pki) -> Iterator[Rsyslog]:
    """A fresh rsyslogd: plain TCP, and TLS requiring a client certificate from our CA."""
    tls = RsyslogTls(
        cert_file=pki.server_cert,
        key_file=pki.server_key,
        ca_file=pki.ca_file,
        auth_mode="x509/certvalid",
    )
    with Rsyslog(tls=tls) as receiver:
        yield receiver


def sink_for(rsyslog: Rsyslog, pki: Pki, transport: str, **settings: Any) -> SyslogSink:
    if transport == "tls":
        assert rsyslog.tls_port is not None
        settings |= {
            "port": rsyslog.tls_port,
            "tls": TlsClientSettings(
                ca_file=pki.ca_file, cert_file=pki.client_cert, key_file=pki.client_key
            ),
        }
    else:
        settings |= {"port": rsyslog.tcp_port}
    return SyslogSink(
        SyslogSinkSettings(type="syslog", name="siem", host="127.0.0.1", **settings),
        hostname=HOSTNAME,
    )


# --- events ---------------------------------------------------------------------------


def _event(i: int, tenant: str) -> dict[str, Any]:
    """Event ``i`` of a realistic mix of all six event types."""
    common = {"schema_version": "capgate.decision_event.v1", "tenant_id": tenant}
    run = {"run_id": f"run-{i // 50}", "workflow": "refund_request"}
    principal = {"id": "refund-agent", "on_behalf_of": "user:Zoë"}
    kind = i % 10
    if kind < 6:
        effect = ["allow", "allow", "allow", "deny", "require_approval", "allow"][kind]
        note = BIG_TEXT if i % 100 == 5 else f"customer says:\n« remboursé » 退款 🙏 #{i}"
        return common | {
            "event_type": "decision",
            "decision_id": str(uuid6.uuid7()),
            "principal": principal | {"delegation_chain": [], "scopes": [], "roles": []},
            "capability": "issue_refund",
            "tool": "payments.create_refund",
            "run": run | {"step": i, "trace_id": f"{i:032x}"},
            "effect": effect,
            "reasons": [{"code": "OK" if effect == "allow" else "LIMIT", "message": "a\nb"}],
            "obligations": [],
            "approval": None,
            "budgets": [],
            "policy_revision": "r1",
            "dry_run": False,
            "idempotent_replay": False,
            "shadow": None,
            "input": {"parameters": {"amount_usd": i % 97, "note": note}},
            "masked": ["parameters.card"],
            "error": None,
            "latency_ms": {"total": 1.25, "policy": 0.5, "budget": 0.5},
        }
    if kind == 6:
        return common | {
            "event_type": "settlement",
            "decision_id": str(uuid6.uuid7()),
            "principal": {"id": "refund-agent"},
            "capability": "issue_refund",
            "tool": "payments.create_refund",
            "run": run,
            "outcome": "failed" if i % 20 == 6 else "succeeded",
            "estimated_cost": {"usd_micros": 10, "tokens": 0},
            "actual_cost": None,
            "committed_cost": {"usd_micros": 10, "tokens": 0},
            "overrun_usd_micros": 0,
            "expired_before_settlement": False,
            "changes": [{"resource": "order/1", "field": "status", "before": "a", "after": "b"}],
            "result": {"message": "refunded\n✓"},
            "budgets": [],
        }
    if kind == 7:
        return common | {
            "event_type": "approval",
            "approval_id": str(uuid6.uuid7()),
            "transition": {"from": "pending", "to": "approved"},
            "actor": {"principal_id": "alice", "roles": ["finance"], "method": "jwt"},
            "decision_id": str(uuid6.uuid7()),
            "approval": None,
            "comment": "ok\nlooks right — Zoë",
        }
    if kind == 8:
        return common | {
            "event_type": "control",
            "action": "stop_run",
            "actor": {"principal_id": "ops", "roles": ["operator"], "method": "mtls"},
            "run_id": run["run_id"],
            "mode": "",
            "previous_mode": "",
            "reason": "runaway loop\nstopped",
        }
    if i % 20 == 9:
        dropped = {"from_seq": i - 5, "to_seq": i - 1, "count": 5, "last_hash": "a" * 64}
        return {"schema_version": common["schema_version"], "event_type": "gap"} | {
            "dropped": dropped
        }
    return {"schema_version": common["schema_version"], "event_type": "checkpoint"} | {
        "head": {"instance_id": "capgate-test", "seq": i - 1, "hash": "b" * 64},
        "key_id": "0123456789abcdef",
        "signature": "c2ln",
    }


def make_events(count: int, start_seq: int = 1) -> list[StoredEvent]:
    """``count`` sealed events (seq, prev_hash, hash) as the outbox would hand them over."""
    stored = []
    prev_hash = "0" * 64
    for seq in range(start_seq, start_seq + count):
        event = _event(seq, TENANTS[seq % len(TENANTS)])
        event |= {
            "event_id": str(uuid6.uuid7()),
            "time": f"2026-11-21T19:14:{seq % 60:02d}.{seq % 1_000_000:06d}Z",
            "instance_id": "capgate-test",
            "seq": seq,
            "prev_hash": prev_hash,
        }
        # The chain's values only need to look right here (the outbox computes them).
        unsealed = json.dumps(event, sort_keys=True, ensure_ascii=False).encode()
        event["hash"] = prev_hash = hashlib.sha256(unsealed).hexdigest()
        stored.append(StoredEvent(seq, event["event_id"], 1_795_288_487.0, rfc8785.dumps(event)))
    return stored


async def send_all(
    sink: SyslogSink, events: Sequence[StoredEvent], *, batch_size: int = BATCH, pause: float = 0
) -> int:
    """Send like the exporter: batches in order, a failed batch retried after 50 ms;
    ``pause`` seconds between batches. Returns the number of SinkErrors."""
    errors = 0
    for start in range(0, len(events), batch_size):
        batch = events[start : start + batch_size]
        while True:
            try:
                assert await sink.send(batch) == len(batch)
                break
            except SinkError:
                errors += 1
                assert errors < 200, "the receiver did not come back"
                await asyncio.sleep(0.05)
        await asyncio.sleep(pause)
    return errors


def sd_params(received: ReceivedMessage) -> dict[str, str]:
    element = received.structured_data
    assert element.startswith(f"[{SD_ID} ") and element.endswith("]")
    return {
        key: re.sub(r"\\(.)", r"\1", value, flags=re.S) for key, value in SD_PARAM.findall(element)
    }


def by_event_id(received: list[ReceivedMessage]) -> dict[str, list[ReceivedMessage]]:
    found: dict[str, list[ReceivedMessage]] = {}
    for message in received:
        found.setdefault(sd_params(message)["event_id"], []).append(message)
    return found


def assert_intact(
    events: Sequence[StoredEvent], received: list[ReceivedMessage], listener: str
) -> None:
    """Every event arrived (duplicates allowed), byte for byte, with its header."""
    found = by_event_id(received)
    assert set(found) == {e.event_id for e in events}
    for stored in events:
        for message in found[stored.event_id]:
            assert message.msg == stored.body.decode()
            assert json.loads(message.msg) == stored.event
            params = sd_params(message)
            assert params["seq"] == str(stored.seq)
            assert params.get("tenant") == stored.event.get("tenant_id")
            assert message.pri == 13 * 8 + syslog_severity(stored.event)
            assert message.msgid == stored.event["event_type"]
            assert message.timestamp == stored.event["time"]
            assert (message.hostname, message.app_name, message.procid) == (
                HOSTNAME,
                "capgate",
                str(os.getpid()),
            )
            assert message.listener == listener


# --- tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_ten_thousand_events_arrive_intact(
    rsyslog: Rsyslog,
    pki: Pki,
    transport: str,
    events: list[StoredEvent],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert sum(len(e.body) > 65536 for e in events) == 100
    # Fresh copies, as the outbox hands them over: the sink parses each body once.
    events = [StoredEvent(e.seq, e.event_id, e.time, e.body) for e in events]
    sink = sink_for(rsyslog, pki, transport)
    started = time.perf_counter()
    assert await send_all(sink, events) == 0
    sent = time.perf_counter() - started
    received = await asyncio.to_thread(rsyslog.wait_for, len(events))
    arrived = time.perf_counter() - started
    await sink.aclose()

    assert len(received) == 10_000  # no failure, so no duplicate either
    assert_intact(events, received, transport)
    megabytes = sum(len(e.body) for e in events) / 1e6
    with capsys.disabled():
        print(
            f"\nsyslog {transport}: 10,000 events ({megabytes:.1f} MB, 100 of 64 KiB) "
            f"written in {sent:.2f} s = {len(events) / sent:,.0f} events/s; "
            f"all at rsyslog after {arrived:.2f} s = {len(events) / arrived:,.0f} events/s"
        )


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_receiver_restart_mid_stream_loses_nothing(
    rsyslog: Rsyslog, pki: Pki, transport: str, events: list[StoredEvent]
) -> None:
    events = events[:6_000]
    sink = sink_for(rsyslog, pki, transport)
    assert await send_all(sink, events[:1_000]) == 0
    await asyncio.to_thread(rsyslog.wait_for, 1_000)

    # The receiver goes away: the next send fails, and keeps failing while it is down.
    await asyncio.to_thread(rsyslog.stop)
    with pytest.raises(SinkError):
        await sink.send(events[1_000:1_500])
    await asyncio.to_thread(rsyslog.restart)
    # Back: the failed batch is sent again and goes through on a new connection.
    assert await send_all(sink, events[1_000:2_000]) == 0

    # Restarted again while batches stream (100 events every 20 ms, for ~0.8 s): the
    # exporter-style loop retries until the receiver is back.
    sender = asyncio.create_task(send_all(sink, events[2_000:], batch_size=100, pause=0.02))
    await asyncio.sleep(0.1)
    await asyncio.to_thread(rsyslog.restart)
    errors = await sender
    expected = {e.event_id for e in events}

    def all_arrived(received: list[ReceivedMessage]) -> bool:
        return set(by_event_id(received)) >= expected

    try:
        received = await asyncio.to_thread(rsyslog.wait_until, all_arrived, 10)
    except TimeoutError:
        lost = expected - set(by_event_id(rsyslog.messages()))
        pytest.fail(f"{len(lost)} events lost")
    await sink.aclose()

    assert errors >= 1
    assert_intact(events, received, transport)


async def test_cef_over_tcp_arrives_intact(
    rsyslog: Rsyslog, pki: Pki, events: list[StoredEvent]
) -> None:
    events = events[:1_000]
    sink = sink_for(rsyslog, pki, "tcp", format="cef")
    assert await send_all(sink, events) == 0
    received = await asyncio.to_thread(rsyslog.wait_for, len(events))
    await sink.aclose()

    assert len(received) == len(events)
    found = by_event_id(received)
    for stored in events:
        (message,) = found[stored.event_id]
        assert message.msg == cef_line(stored.event)
    denied = next(e for e in events if e.event.get("effect") == "deny")
    line = found[denied.event_id][0].msg
    assert line.startswith("CEF:0|capgate|capgate|0.1.0|decision:deny|tool call denied|6|")
    assert f"externalId={denied.event_id} " in line
    assert "msg=a\\nb " in line  # the newline of the reason message, escaped
    assert "\n" not in line


async def test_tls_refuses_an_untrusted_receiver(
    rsyslog: Rsyslog, pki: Pki, tmp_path: Path
) -> None:
    (tmp_path / "other-ca.pem").write_text(make_ca("someone else").cert_pem)
    assert rsyslog.tls_port is not None
    sink = SyslogSink(
        SyslogSinkSettings(
            type="syslog",
            name="siem",
            host="127.0.0.1",
            port=rsyslog.tls_port,
            tls=TlsClientSettings(ca_file=tmp_path / "other-ca.pem"),
        ),
        hostname=HOSTNAME,
    )
    with pytest.raises(SinkError, match="CERTIFICATE_VERIFY_FAILED"):
        await sink.send(make_events(1))
    await sink.aclose()
    assert rsyslog.messages() == []


def test_unreadable_tls_files_are_a_config_error(tmp_path: Path) -> None:
    settings = SyslogSinkSettings(
        type="syslog",
        name="siem",
        host="127.0.0.1",
        port=6514,
        tls=TlsClientSettings(ca_file=tmp_path / "missing.pem"),
    )
    with pytest.raises(ConfigError, match="syslog sink siem"):
        SyslogSink(settings, hostname=HOSTNAME)


def test_the_documented_receiver_is_the_tested_one() -> None:
    """docs/siem/syslog.md shows the configuration these tests run, on a real host's
    paths and ports."""
    doc = (ROOT / "docs" / "siem" / "syslog.md").read_text()
    shown = re.search(r"```conf\n(.*?)```", doc, re.S)
    assert shown is not None
    tls = RsyslogTls(
        cert_file=Path("/etc/rsyslog.d/tls/server.pem"),
        key_file=Path("/etc/rsyslog.d/tls/server.key"),
        ca_file=Path("/etc/rsyslog.d/tls/ca.pem"),
        auth_mode="x509/certvalid",
    )
    assert shown[1] == receiver_config(
        directory=Path("/var/spool/rsyslog"),
        output=Path("/var/log/capgate/events.jsonl"),
        tcp_port=514,
        tls_port=6514,
        tls=tls,
        address="0.0.0.0",
    )


# --- the message format, without a receiver ------------------------------------------


def test_structured_data_escaping() -> None:
    assert sd_escape('a"b\\c]d') == 'a\\"b\\\\c\\]d'
    assert structured_data("e1", 7, 'x"]') == f'[{SD_ID} event_id="e1" seq="7" tenant="x\\"\\]"]'
    assert structured_data("e1", 7, None) == f'[{SD_ID} event_id="e1" seq="7"]'


def test_header_fields_are_printable_ascii() -> None:
    assert header_field("host name\né", 255) == "host_name__"
    assert header_field("", 48) == "-"
    assert header_field("x" * 40, 32) == "x" * 32


def test_octet_frame_counts_bytes() -> None:
    assert octet_frame("é\n".encode()) == b"3 \xc3\xa9\n"


@pytest.mark.parametrize(
    ("event", "severity"),
    [
        ({"event_type": "decision", "effect": "allow"}, 6),
        ({"event_type": "decision", "effect": "require_approval"}, 5),
        ({"event_type": "decision", "effect": "deny"}, 4),
        ({"event_type": "settlement", "outcome": "succeeded"}, 6),
        ({"event_type": "settlement", "outcome": "failed"}, 5),
        ({"event_type": "approval"}, 5),
        ({"event_type": "control"}, 4),
        ({"event_type": "gap"}, 3),
        ({"event_type": "checkpoint"}, 6),
        ({"event_type": "future"}, 5),
    ],
)
def test_severity(event: dict[str, Any], severity: int) -> None:
    assert syslog_severity(event) == severity
