"""A policy that fails, is undefined or is malformed yields DENY POLICY_ERROR; a bundle
that reaches the network is refused at load; shadow enforcement allows and records."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from capgate.errors import BundleError
from capgate.local.redis_server import RedisServer
from capgate.policy.bundle import load_bundle
from tests.conftest import ALLOWED_REFUND, start_capgate, write_bundle

CALL = {"tenant_id": "acme", "principal_id": "agent", "capability": "noop", "tool": "noop"}


@pytest.mark.parametrize(
    ("policy", "why"),
    [
        ('decision := {"effect": "allow"} if input.tool == "never"\n', "undefined"),
        ('decision := {"effect": "maybe"}\n', "effect"),
        (
            'decision := {"effect": "allow", "budgets": [{"scope": "run", "limit_calls": -1}]}\n',
            "limit_calls",
        ),
        (
            'decision := {"effect": "allow", "rate_limits": [{"key": "user", "limit": 3, '
            '"period_seconds": 1}]}\n',
            "dimensions",
        ),
        ('decision := "allow"\n', "result"),
    ],
    ids=["undefined", "unknown-effect", "negative-limit", "unknown-dimension", "not-an-object"],
)
async def test_bad_policy_results_deny_with_policy_error(
    tmp_path: Path, redis_server: RedisServer, policy: str, why: str
) -> None:
    bundle = write_bundle(tmp_path / "bundle", policy)
    async with start_capgate(
        bundle=bundle, redis_url=redis_server.url, decision_log=tmp_path / "d.jsonl"
    ) as running:
        client = running.client
        result = await client.authorize(**CALL, run_id="r")
        event = await running.event_for(result.decision_id)
    assert (result.effect, result.reason_codes) == ("DENY", ("POLICY_ERROR",))
    assert why in event["error"]
    assert why not in result.reasons[0].message


@pytest.mark.parametrize(
    "limits",
    [
        '"budgets": [{"scope": "run", "limit_calls": 5}]',
        '"rate_limits": [{"key": "principal+run", "limit": 5, "period_seconds": 1}]',
    ],
    ids=["run-budget", "run-rate-limit"],
)
async def test_run_limits_without_a_run_id_deny_with_policy_error(
    tmp_path: Path, redis_server: RedisServer, limits: str
) -> None:
    """Without this, every call that names no run would share one run's counters."""
    bundle = write_bundle(tmp_path / "bundle", f'decision := {{"effect": "allow", {limits}}}\n')
    async with start_capgate(
        bundle=bundle, redis_url=redis_server.url, decision_log=tmp_path / "d.jsonl"
    ) as running:
        result = await running.client.authorize(**CALL)
        event = await running.event_for(result.decision_id)
    assert (result.effect, result.reason_codes) == ("DENY", ("POLICY_ERROR",))
    assert "run.run_id" in event["error"]


@pytest.mark.parametrize(
    "call", ['http.send({"method": "get", "url": "http://x"})', 'net.lookup_ip_addr("x")']
)
def test_network_builtins_are_refused_at_load(tmp_path: Path, call: str) -> None:
    bundle = write_bundle(tmp_path / "bundle", f'decision := {{"effect": "allow", "x": {call}}}\n')
    with pytest.raises(BundleError, match="reaches the network"):
        load_bundle(bundle)


async def test_shadow_enforcement_allows_and_records_the_real_effect(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    bundle = write_bundle(
        tmp_path / "bundle",
        'decision := {"effect": "deny", "enforcement": "shadow",\n'
        '  "reasons": [{"code": "WOULD_DENY", "message": "m"}]}\n',
    )
    async with start_capgate(
        bundle=bundle, redis_url=redis_server.url, decision_log=tmp_path / "d.jsonl"
    ) as running:
        client = running.client
        result = await client.authorize(**CALL)
        event = await running.event_for(result.decision_id)
    assert (result.effect, result.reason_codes) == ("ALLOW", ())
    assert event["shadow"] == {
        "effect": "deny",
        "reasons": [{"code": "WOULD_DENY", "message": "m"}],
    }


async def test_bundle_from_tarball_decides_like_its_directory(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    import tarfile

    from tests.conftest import DEFAULT_BUNDLE

    tarball = tmp_path / "default.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        for path in sorted(DEFAULT_BUNDLE.rglob("*")):
            tar.add(path, arcname=path.relative_to(DEFAULT_BUNDLE).as_posix(), recursive=False)
    async with start_capgate(
        bundle=tarball, redis_url=redis_server.url, decision_log=tmp_path / "d.jsonl"
    ) as running:
        client = running.client
        result = await client.authorize(
            **ALLOWED_REFUND | {"parameters": {"amount_usd": 60}},
            run_id="r",
            idempotency_key=str(uuid.uuid4()),
        )
    assert result.effect == "REQUIRE_APPROVAL"
    assert result.policy_revision == "default-2026.11.21-1"
