"""Decision-log behaviour: masking from the policy, and a failing write."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from capgate.app import build_events
from capgate.clock import SystemClock
from capgate.errors import ConfigError
from capgate.local.redis_server import RedisServer
from capgate.local.serve_process import ServeProcess
from capgate.observability.metrics import Metrics
from capgate.settings import load_settings
from tests.conftest import ALLOWED_REFUND, DEFAULT_BUNDLE, start_capgate, write_bundle


async def test_masked_paths_are_erased_from_the_logged_input(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    bundle = write_bundle(
        tmp_path / "b",
        'decision := {"effect": "allow", "log": {"mask": ["parameters.card_number", "tool"]}}\n',
    )
    async with start_capgate(
        bundle=bundle, redis_url=redis_server.url, decision_log=tmp_path / "d.jsonl"
    ) as running:
        client = running.client
        result = await client.authorize(
            tenant_id="acme",
            principal_id="p",
            capability="pay",
            tool="cards.charge",
            parameters={"card_number": "4111111111111111", "amount_usd": 5},
        )
        event = await running.event_for(result.decision_id)
    assert result.effect == "ALLOW"
    assert event["input"]["parameters"] == {"amount_usd": 5}
    assert "tool" not in event["input"]
    assert event["masked"] == ["parameters.card_number", "tool"]
    assert "4111111111111111" not in json.dumps(event)


async def test_a_failing_sink_never_fails_or_slows_authorize_the_outbox_keeps_the_event(
    redis_server: RedisServer,
) -> None:
    """/dev/full refuses every write: the decision is answered from the outbox's
    append, and the exporter keeps retrying (counted) while the event waits there."""
    async with start_capgate(
        bundle=DEFAULT_BUNDLE, redis_url=redis_server.url, decision_log=Path("/dev/full")
    ) as running:
        client = running.client
        result = await client.authorize(
            **ALLOWED_REFUND, run_id="full-disk", idempotency_key=str(uuid.uuid4())
        )
        assert not await running.app.events.drain(0.5)
        registry = running.app.metrics.registry
        failures = registry.get_sample_value(
            "capgate_sink_failures_total", {"sink": "decision-log"}
        )
        waiting = registry.get_sample_value("capgate_outbox_events")
    assert result.effect == "ALLOW"
    assert failures is not None and failures >= 1
    assert waiting == 1


def test_a_port_already_in_use_is_an_error(redis_server: RedisServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = ServeProcess.launch(
            bundle=DEFAULT_BUNDLE, redis_url=redis_server.url, listen=f"127.0.0.1:{port}"
        )
        record = proc.wait_for("listen_failed")
        assert str(port) in record["error"]
        assert proc.process.wait(timeout=30) == 2


async def test_secret_parameter_names_are_masked_by_default_and_configurable(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    bundle = write_bundle(tmp_path / "b", 'decision := {"effect": "allow"}\n')
    parameters = {"password": "hunter2", "nested": {"API_KEY": "k"}, "amount_usd": 5, "pin": "1234"}
    async with start_capgate(
        bundle=bundle, redis_url=redis_server.url, decision_log=tmp_path / "d.jsonl"
    ) as running:
        result = await running.client.authorize(
            tenant_id="acme", principal_id="p", capability="pay", parameters=parameters
        )
        default = await running.event_for(result.decision_id)
    assert default["input"]["parameters"] == {"nested": {}, "amount_usd": 5, "pin": "1234"}
    assert sorted(default["masked"]) == ["parameters.nested.API_KEY", "parameters.password"]
    async with start_capgate(
        bundle=bundle,
        redis_url=redis_server.url,
        decision_log=tmp_path / "e.jsonl",
        events={
            "outbox": {"path": tmp_path / "o.db"},
            "masked_parameter_names": ["pin"],
        },
    ) as running:
        result = await running.client.authorize(
            tenant_id="acme", principal_id="p", capability="pay", parameters=parameters
        )
        configured = await running.event_for(result.decision_id)
    assert configured["masked"] == ["parameters.pin"]
    assert configured["input"]["parameters"] == {
        "password": "hunter2",
        "nested": {"API_KEY": "k"},
        "amount_usd": 5,
    }
    # Nor anywhere else (quoted: hashes and ids are hex and may hold 1234).
    assert '"1234"' not in json.dumps(configured)


async def test_an_outbox_of_another_instance_is_a_config_error(tmp_path: Path) -> None:
    def settings(instance: str) -> Any:
        return load_settings(
            policy={"bundle": "b"},
            decision_log={"path": tmp_path / "d.jsonl"},
            events={"instance_id": instance, "outbox": {"path": tmp_path / "o.db"}},
        )

    metrics = Metrics(CollectorRegistry())
    first = build_events(settings("capgate-a"), clock=SystemClock(), metrics=metrics)
    await first.aclose()
    with pytest.raises(ConfigError, match=r"events\.outbox\.path .*o\.db"):
        build_events(settings("capgate-b"), clock=SystemClock(), metrics=metrics)
