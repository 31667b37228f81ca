"""HttpOpaSink against a real HTTP server (stdlib) that gunzips and records each POST,
as an OPA decision-log service would receive it."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from capgate import __version__
from capgate.events.config import HttpSinkSettings
from capgate.events.sinks.base import SinkError, StoredEvent
from capgate.events.sinks.http_opa import HttpOpaSink


@dataclass
class LogService:
    """What arrived: one entry per POST (its headers and gunzipped JSON array)."""

    url: str
    posts: list[dict[str, Any]] = field(default_factory=list)
    status: int = 204

    def events(self) -> list[dict[str, Any]]:
        return [event for post in self.posts for event in post["body"]]


@pytest.fixture
def service() -> Iterator[LogService]:
    recorder = LogService(url="")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            if recorder.status < 300:
                recorder.posts.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": json.loads(gzip.decompress(raw)),
                    }
                )
            self.send_response(recorder.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}/logs"
    yield recorder
    server.shutdown()
    server.server_close()


def stored(seq: int, event: dict[str, Any]) -> StoredEvent:
    event = {"event_id": f"e-{seq}", "seq": seq, "time": "2026-11-21T20:36:50.190134Z", **event}
    body = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return StoredEvent(seq, event["event_id"], 1_795_293_410.19, body)


DECISION = {
    "event_type": "decision",
    "decision_id": "d-1",
    "tenant_id": "acme",
    "principal": {"id": "refund-agent"},
    "capability": "issue_refund",
    "run": {"run_id": "r-1", "trace_id": "ab" * 16},
    "effect": "allow",
    "reasons": [],
    "obligations": [{"type": "notify", "parameters": {"channel": "#ops"}}],
    "policy_revision": "rev-7",
    "input": {"parameters": {"amount_usd": 10, "note": "ünï\nline"}},
    "masked": ["parameters.card_number"],
    "latency_ms": {"total": 0.9, "policy": 0.4, "budget": 0.1},
}
SETTLEMENT = {"event_type": "settlement", "decision_id": "d-1", "outcome": "succeeded"}


async def test_gzip_arrays_in_opa_format(service: LogService) -> None:
    sink = HttpOpaSink(
        HttpSinkSettings(
            type="http", name="opa", url=service.url, headers={"Authorization": "Bearer s3cret"}
        ),
        instance_id="capgate-0",
    )
    try:
        assert await sink.send([stored(1, DECISION), stored(2, SETTLEMENT)]) == 2
        assert await sink.send([stored(3, DECISION)]) == 1
    finally:
        await sink.aclose()
    assert len(service.posts) == 2
    post = service.posts[0]
    assert post["path"] == "/logs"
    assert post["headers"]["Content-Encoding"] == "gzip"
    assert post["headers"]["Content-Type"] == "application/json"
    assert post["headers"]["Authorization"] == "Bearer s3cret"
    decision, settlement = post["body"]
    assert decision["labels"] == {"id": "capgate-0", "version": __version__, "app": "capgate"}
    assert decision["decision_id"] == "d-1"
    assert decision["path"] == "capgate/authz/decision"
    assert decision["input"] == DECISION["input"]
    assert decision["result"]["effect"] == "allow"
    assert decision["result"]["obligations"] == DECISION["obligations"]
    assert decision["result"]["event_id"] == "e-1"
    assert decision["requested_by"] == "refund-agent"
    assert decision["timestamp"] == "2026-11-21T20:36:50.190134Z"
    assert decision["metrics"]["timer_server_handler_ns"] == 900_000
    assert decision["bundles"] == {"capgate": {"revision": "rev-7"}}
    assert decision["erased"] == ["/input/parameters/card_number"]
    assert settlement["path"] == "capgate/events/settlement"
    assert settlement["result"]["outcome"] == "succeeded"
    assert [e["result"]["seq"] for e in service.events()] == [1, 2, 3]


async def test_ocsf_arrays(service: LogService) -> None:
    sink = HttpOpaSink(HttpSinkSettings(type="http", name="ocsf", url=service.url, format="ocsf"))
    try:
        await sink.send([stored(1, DECISION)])
    finally:
        await sink.aclose()
    (event,) = service.events()
    assert (event["class_uid"], event["activity_id"], event["status"]) == (6003, 99, "Success")
    assert event["metadata"]["uid"] == "e-1"


async def test_a_non_2xx_answer_is_a_sink_error(service: LogService) -> None:
    sink = HttpOpaSink(HttpSinkSettings(type="http", name="opa", url=service.url))
    try:
        service.status = 503
        with pytest.raises(SinkError, match="HTTP 503"):
            await sink.send([stored(1, DECISION)])
        service.status = 200
        assert await sink.send([stored(1, DECISION)]) == 1
    finally:
        await sink.aclose()
    assert len(service.events()) == 1


async def test_a_refused_connection_is_a_sink_error() -> None:
    sink = HttpOpaSink(HttpSinkSettings(type="http", name="opa", url="http://127.0.0.1:1/logs"))
    try:
        with pytest.raises(SinkError, match="ConnectError"):
            await sink.send([stored(1, DECISION)])
    finally:
        await sink.aclose()
