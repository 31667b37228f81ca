"""The operator CLI (`capgate approvals|runs|tenants|status`) against a real capgate:
JWT identities (real RS256 tokens, a JWKS file), real Redis, the default bundle.

The server runs in the test's event loop, so the CLI (blocking gRPC) runs in a
thread, or as a subprocess for `approvals watch`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from capgate.app import build_app
from capgate.cli import app
from capgate.local.redis_server import RedisServer
from capgate.server import CapgateServer
from capgate.settings import load_settings
from capgate_client import AsyncClient, AuthorizeResult
from tests.conftest import ALLOWED_REFUND, DEFAULT_BUNDLE, ROOT, start_capgate
from tests.identity_keys import (
    SigningKey,
    issue_cert,
    make_ca,
    rsa_signing_key,
    token_claims,
    write_jwks,
)

ISSUER = "https://idp.example.org"
AUDIENCE = "capgate"
WATCH_SECONDS = 20


@dataclass
class Capgate:
    """A JWT-mode capgate and a way to mint tokens for it."""

    target: str
    key: SigningKey

    def token(self, sub: str, tenant: str | None, roles: list[str], scope: str = "") -> str:
        claims = token_claims(
            issuer=ISSUER,
            audience=AUDIENCE,
            now=datetime.now(UTC),
            sub=sub,
            tenant_id=tenant,
            roles=roles,
            scope=scope or None,
        )
        return self.key.mint(claims)

    def agent(self, tenant: str) -> str:
        return self.token("refund-agent", tenant, [], "refunds:write")

    def approver(self, tenant: str, sub: str = "alice") -> str:
        return self.token(sub, tenant, ["refund-approver"])

    def admin(self, tenant: str | None) -> str:
        return self.token("ops", tenant, ["capgate-admin"])

    async def cli(self, *args: str, token: str | None = None, **env: str | None) -> Result:
        """``capgate ARGS`` in a thread, against this server, with ``$CAPGATE_TOKEN``."""
        environment: dict[str, str | None] = {
            "CAPGATE_TARGET": self.target,
            "CAPGATE_TOKEN": token,
            "CAPGATE_TOKEN_FILE": None,
            "COLUMNS": "250",
        } | env
        return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=environment)

    async def authorize(self, tenant: str, **overrides: Any) -> tuple[AuthorizeResult, dict]:
        """An issue_refund Authorize as the tenant's refund agent; the kwargs sent too."""
        kwargs = ALLOWED_REFUND | {
            "tenant_id": tenant,
            "run_id": f"run-{uuid.uuid4()}",
            "idempotency_key": str(uuid.uuid4()),
        }
        kwargs |= overrides
        async with AsyncClient(self.target, token=self.agent(tenant)) as client:
            return await client.authorize(**kwargs), kwargs

    async def request_approval(self, tenant: str, amount_usd: int = 60) -> tuple[str, dict]:
        """A refund over $50 (REQUIRE_APPROVAL): its approval id and the Authorize kwargs.
        The same action again would get the same pending approval."""
        result, kwargs = await self.authorize(tenant, parameters={"amount_usd": amount_usd})
        assert result.effect == "REQUIRE_APPROVAL", result
        assert result.approval_id
        return result.approval_id, kwargs


@pytest.fixture(scope="module")
async def capgate(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Capgate]:
    root = tmp_path_factory.mktemp("operator-cli")
    key = rsa_signing_key()
    jwks = write_jwks(root / "jwks.json", key)
    identity = {"mode": "jwt", "jwt": {"jwks": str(jwks), "issuer": ISSUER, "audience": AUDIENCE}}
    async with start_capgate(
        bundle=DEFAULT_BUNDLE,
        redis_url=redis_server.url,
        decision_log=root / "decisions.jsonl",
        identity=identity,
    ) as running:
        yield Capgate(running.target, key)


def tenant_id() -> str:
    return f"t-{uuid.uuid4()}"


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result.stdout


async def test_list_shows_the_pending_approval_as_a_table_and_as_json(capgate: Capgate) -> None:
    tenant = tenant_id()
    approval_id, _ = await capgate.request_approval(tenant)
    token = capgate.approver(tenant)

    table = ok(await capgate.cli("approvals", "list", "--state", "pending", token=token))
    assert approval_id in table
    for cell in ("PENDING", "refund-agent", "issue_refund · payments.create_refund"):
        assert cell in table
    for cell in ('{"amount_usd": 60}', "refund-approver", "votes 0/1", "expires in 1"):
        assert cell in table

    listed = json.loads(
        ok(await capgate.cli("approvals", "list", "--tenant", tenant, "--json", token=token))
    )
    [approval] = listed["approvals"]
    assert approval["approval_id"] == approval_id
    assert approval["state"] == "APPROVAL_STATE_PENDING"
    assert approval["tenant_id"] == tenant
    assert approval["requester_principal_id"] == "refund-agent"
    assert approval["parameters"] == {"amount_usd": 60}
    assert approval["approver_roles"] == ["refund-approver"]
    assert approval["min_approvals"] == 1
    assert approval["votes"] == []
    assert listed["next_page_token"] == ""
    assert listed["watch_resume_token"]

    approved = json.loads(
        ok(await capgate.cli("approvals", "list", "--state", "approved", "--json", token=token))
    )
    assert approved["approvals"] == []


async def test_list_all_pages_follows_the_page_tokens(capgate: Capgate) -> None:
    tenant = tenant_id()
    ids = [(await capgate.request_approval(tenant, amount))[0] for amount in (60, 70, 80)]
    token = capgate.approver(tenant)

    first = json.loads(
        ok(await capgate.cli("approvals", "list", "--page-size", "2", "--json", token=token))
    )
    assert len(first["approvals"]) == 2
    assert first["next_page_token"]
    every = json.loads(
        ok(
            await capgate.cli(
                "approvals", "list", "--page-size", "2", "--all-pages", "--json", token=token
            )
        )
    )
    assert [a["approval_id"] for a in every["approvals"]] == ids[::-1]  # newest first
    assert every["next_page_token"] == ""


async def test_list_all_pages_misses_and_repeats_nothing_under_concurrent_creation(
    capgate: Capgate,
) -> None:
    """Approvals created at once may share a created-ms score: the cursor must still
    walk each exactly once."""
    tenant = tenant_id()
    created = await asyncio.gather(
        *(capgate.request_approval(tenant, amount) for amount in range(60, 68))
    )
    every = json.loads(
        ok(
            await capgate.cli(
                "approvals",
                "list",
                "--page-size",
                "1",
                "--all-pages",
                "--json",
                token=capgate.approver(tenant),
            )
        )
    )
    listed = [a["approval_id"] for a in every["approvals"]]
    assert sorted(listed) == sorted(approval_id for approval_id, _ in created)


async def test_show_prints_the_approval(capgate: Capgate) -> None:
    tenant = tenant_id()
    approval_id, kwargs = await capgate.request_approval(tenant)
    token = capgate.approver(tenant)

    panel = ok(await capgate.cli("approvals", "show", approval_id, token=token))
    assert approval_id in panel
    for text in ("PENDING", "refund-agent", '{"amount_usd": 60}', "refund-approver", "0/1"):
        assert text in panel
    assert "REFUND_OVER_APPROVAL_THRESHOLD" in panel
    assert kwargs["run_id"] in panel

    shown = json.loads(
        ok(await capgate.cli("approvals", "show", approval_id, "--json", token=token))
    )
    assert shown["approval"]["approval_id"] == approval_id
    assert shown["approval"]["run_id"] == kwargs["run_id"]
    assert shown["approval"]["expire_time"].endswith("Z")


async def test_approve_lets_the_agents_retry_through_once(capgate: Capgate) -> None:
    tenant = tenant_id()
    approval_id, kwargs = await capgate.request_approval(tenant)

    result = await capgate.cli(
        "approvals",
        "approve",
        approval_id,
        "--comment",
        "customer called [bold]twice[/bold]",
        "--json",
        token=capgate.approver(tenant),
    )
    approval = json.loads(ok(result))["approval"]
    assert approval["state"] == "APPROVAL_STATE_APPROVED"
    [vote] = approval["votes"]
    assert vote["principal_id"] == "alice"
    assert vote["verdict"] == "APPROVAL_VERDICT_APPROVE"
    assert vote["comment"] == "customer called [bold]twice[/bold]"

    retry, _ = await capgate.authorize(tenant, **kwargs | {"approval_id": approval_id})
    assert retry.effect == "ALLOW", retry

    panel = ok(await capgate.cli("approvals", "show", approval_id, token=capgate.agent(tenant)))
    assert "CONSUMED" in panel
    assert "1/1" in panel
    assert "customer called [bold]twice[/bold]" in panel  # printed, not rendered as markup


async def test_two_person_rule_shows_votes_until_the_quorum(capgate: Capgate) -> None:
    """deploy_service needs two distinct release managers (min_approvals 2)."""
    tenant = tenant_id()
    agent = capgate.token("deploy-agent", tenant, [], "deploy:write")
    async with AsyncClient(capgate.target, token=agent) as client:
        asked = await client.authorize(
            tenant_id=tenant,
            principal_id="deploy-agent",
            capability="deploy_service",
            tool="cicd.trigger_deploy",
            parameters={"environment": "staging"},
            run_id=f"run-{uuid.uuid4()}",
            idempotency_key=str(uuid.uuid4()),
        )
    assert asked.effect == "REQUIRE_APPROVAL", asked
    first = capgate.token("rm-1", tenant, ["release-manager"])
    second = capgate.token("rm-2", tenant, ["release-manager"])

    panel = ok(await capgate.cli("approvals", "approve", asked.approval_id, token=first))
    assert re.search(r"state +PENDING ", panel)
    assert re.search(r"votes +1/2 ", panel)
    again = json.loads(
        ok(await capgate.cli("approvals", "approve", asked.approval_id, "--json", token=first))
    )
    assert again["approval"]["state"] == "APPROVAL_STATE_PENDING"  # one vote per approver
    assert len(again["approval"]["votes"]) == 1

    panel = ok(await capgate.cli("approvals", "approve", asked.approval_id, token=second))
    assert re.search(r"state +APPROVED ", panel)
    assert re.search(r"votes +2/2 ", panel)
    assert "rm-1" in panel and "rm-2" in panel


async def test_reject_ends_the_approval(capgate: Capgate) -> None:
    tenant = tenant_id()
    approval_id, kwargs = await capgate.request_approval(tenant)

    panel = ok(
        await capgate.cli(
            "approvals",
            "reject",
            approval_id,
            "--comment",
            "not this customer",
            token=capgate.approver(tenant),
        )
    )
    assert "REJECTED" in panel
    assert "not this customer" in panel

    retry, _ = await capgate.authorize(tenant, **kwargs | {"approval_id": approval_id})
    assert retry.effect != "ALLOW"

    again = await capgate.cli(
        "approvals", "approve", approval_id, token=capgate.approver(tenant, sub="carol")
    )
    assert again.exit_code == 1
    assert again.stderr.startswith("capgate: FAILED_PRECONDITION: ")


async def test_approve_without_an_approver_role_is_permission_denied(capgate: Capgate) -> None:
    tenant = tenant_id()
    approval_id, _ = await capgate.request_approval(tenant)
    viewer = capgate.token("bob", tenant, ["viewer"])

    result = await capgate.cli("approvals", "approve", approval_id, token=viewer)
    assert result.exit_code == 1
    assert result.stderr.startswith("capgate: PERMISSION_DENIED: ")
    assert result.stdout == ""

    own = capgate.token("refund-agent", tenant, ["refund-approver"], "refunds:write")
    self_approval = await capgate.cli("approvals", "approve", approval_id, token=own)
    assert self_approval.exit_code == 1
    assert self_approval.stderr.startswith("capgate: PERMISSION_DENIED: ")

    other_tenant = await capgate.cli(
        "approvals", "show", approval_id, "--tenant", tenant_id(), token=capgate.approver(tenant)
    )
    assert other_tenant.exit_code == 1
    assert other_tenant.stderr.startswith("capgate: PERMISSION_DENIED: ")


async def test_call_errors_print_the_status_and_exit_1(capgate: Capgate) -> None:
    tenant = tenant_id()
    token = capgate.approver(tenant)

    missing = await capgate.cli("approvals", "show", "no-such-approval", token=token)
    assert missing.exit_code == 1
    assert missing.stderr.startswith("capgate: NOT_FOUND: ")

    anonymous = await capgate.cli("approvals", "list")
    assert anonymous.exit_code == 1
    assert anonymous.stderr.startswith("capgate: UNAUTHENTICATED: ")

    invalid = await capgate.cli("approvals", "list", "--page-size", "-1", token=token)
    assert invalid.exit_code == 1
    assert invalid.stderr == "capgate: INVALID_ARGUMENT:\n  page_size: must not be negative\n"

    bad_token = await capgate.cli("approvals", "watch", "--resume-token", "bogus", token=token)
    assert bad_token.exit_code == 1
    assert bad_token.stderr.startswith("capgate: INVALID_ARGUMENT:\n  resume_token: ")
    assert "--resume-token" not in bad_token.stderr

    no_tenant = await capgate.cli("approvals", "list", token=capgate.admin(None))
    assert no_tenant.exit_code == 1
    assert no_tenant.stderr == "capgate: INVALID_ARGUMENT:\n  tenant_id: is required\n"


async def test_runs_stop_denies_the_runs_next_authorize(capgate: Capgate) -> None:
    tenant = tenant_id()
    run_id = f"run-{uuid.uuid4()}"
    first, _ = await capgate.authorize(tenant, run_id=run_id)
    assert first.effect == "ALLOW"

    denied = await capgate.cli(
        "runs", "stop", run_id, "--reason", "loop", token=capgate.approver(tenant)
    )
    assert denied.exit_code == 1
    assert denied.stderr.startswith("capgate: PERMISSION_DENIED: ")

    out = ok(
        await capgate.cli(
            "runs", "stop", run_id, "--reason", "refund loop", token=capgate.admin(tenant)
        )
    )
    assert f"run {run_id} of tenant {tenant} stopped by ops" in out

    after, _ = await capgate.authorize(tenant, run_id=run_id)
    assert after.effect == "DENY"
    assert "RUN_STOPPED" in after.reason_codes
    other_run, _ = await capgate.authorize(tenant)
    assert other_run.effect == "ALLOW"


async def test_tenant_mode_read_only_then_normal(capgate: Capgate) -> None:
    tenant = tenant_id()
    admin = capgate.token("ops", None, ["capgate-admin"])  # a platform operator: any tenant

    out = ok(
        await capgate.cli("tenants", "mode", tenant, "read-only", "--reason", "audit", token=admin)
    )
    assert f"tenant {tenant}: NORMAL → READ_ONLY by ops" in out
    refund, _ = await capgate.authorize(tenant)
    assert refund.effect == "DENY"
    assert "TENANT_READ_ONLY" in refund.reason_codes

    changed = json.loads(
        ok(
            await capgate.cli(
                "tenants", "mode", tenant, "normal", "--reason", "done", "--json", token=admin
            )
        )
    )
    assert changed["mode"] == "TENANT_MODE_NORMAL"
    assert changed["previous_mode"] == "TENANT_MODE_READ_ONLY"
    assert changed["changed_by"] == "ops"
    refund, _ = await capgate.authorize(tenant)
    assert refund.effect == "ALLOW"


async def test_status(capgate: Capgate) -> None:
    tenant = tenant_id()
    await capgate.request_approval(tenant)
    admin = capgate.admin(tenant)

    status = json.loads(ok(await capgate.cli("status", "--tenant", tenant, "--json", token=admin)))
    assert status["policy_revision"]
    assert status["budget_store_reachable"] is True
    assert status["tenant_mode"] == "TENANT_MODE_NORMAL"
    assert status["pending_approvals"] == 1
    assert status["instance_id"]

    panel = ok(await capgate.cli("status", "--tenant", tenant, token=admin))
    assert "reachable" in panel
    assert status["policy_revision"] in panel
    assert re.search(r"pending approvals +1 ", panel)
    assert re.search(r"tenant mode +NORMAL ", panel)
    assert re.search(r"policy engine +embedded ", panel)
    assert re.search(r"bundle activated +\d{4}-\d\d-\d\dT", panel)
    assert "bundle refused" not in panel

    refused = await capgate.cli("status", token=capgate.approver(tenant))
    assert refused.exit_code == 1
    assert refused.stderr.startswith("capgate: PERMISSION_DENIED: ")


async def test_token_file(capgate: Capgate, tmp_path: Path) -> None:
    tenant = tenant_id()
    token_file = tmp_path / "token"
    token_file.write_text(capgate.approver(tenant) + "\n")
    ok(await capgate.cli("approvals", "list", "--token-file", str(token_file)))
    ok(await capgate.cli("approvals", "list", CAPGATE_TOKEN_FILE=str(token_file)))

    missing = tmp_path / "missing-token"
    result = await capgate.cli("approvals", "list", "--token-file", str(missing))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"capgate: cannot read token file {missing}: ")

    (tmp_path / "empty").write_text("\n")
    empty = await capgate.cli("approvals", "list", "--token-file", str(tmp_path / "empty"))
    assert empty.exit_code == 2
    assert "is empty" in empty.stderr


async def test_watch_streams_transitions_until_ctrl_c(capgate: Capgate) -> None:
    """Two watchers (JSON lines, and human lines) from ListApprovals' resume token see
    the approval created, then approved; Ctrl-C ends them with 130."""
    tenant = tenant_id()
    approver = capgate.approver(tenant)
    listed = json.loads(ok(await capgate.cli("approvals", "list", "--json", token=approver)))
    watch = ["approvals", "watch", "--resume-token", listed["watch_resume_token"]]
    environment = os.environ | {"CAPGATE_TARGET": capgate.target, "CAPGATE_TOKEN": approver}
    watchers = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "capgate", *watch, *flags),
            cwd=ROOT,
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for flags in (["--json"], [])
    ]
    try:
        approval_id, _ = await capgate.request_approval(tenant)
        ok(await capgate.cli("approvals", "approve", approval_id, token=approver))
        json_lines, human_lines = [
            [
                (await asyncio.wait_for(w.stdout.readline(), WATCH_SECONDS)).decode()
                for _ in range(2)
            ]
            for w in watchers
            if w.stdout
        ]
    finally:
        for watcher in watchers:
            watcher.send_signal(signal.SIGINT)  # Ctrl-C
        ended = [await asyncio.wait_for(w.communicate(), WATCH_SECONDS) for w in watchers]
    created, approved = (json.loads(line) for line in json_lines)
    assert created["approval"]["approval_id"] == approval_id
    assert created["previous_state"] == "APPROVAL_STATE_UNSPECIFIED"
    assert created["approval"]["state"] == "APPROVAL_STATE_PENDING"
    assert created["actor_principal_id"] == "refund-agent"
    assert approved["approval"]["state"] == "APPROVAL_STATE_APPROVED"
    assert approved["previous_state"] == "APPROVAL_STATE_PENDING"
    assert approved["actor_principal_id"] == "alice"
    assert approved["resume_token"] != created["resume_token"]
    assert f"{approval_id}  new → PENDING  by refund-agent  issue_refund" in human_lines[0]
    assert f"{approval_id}  PENDING → APPROVED  by alice" in human_lines[1]
    assert [w.returncode for w in watchers] == [130, 130], ended


async def test_tls_flags_reach_an_mtls_server(redis_server: RedisServer, tmp_path: Path) -> None:
    """--tls-ca / --tls-cert / --tls-key: a TLS channel with a client certificate,
    whose SPIFFE ID is mapped to capgate-admin."""
    ca = make_ca()
    server_cert = issue_cert(ca, ip_addresses=["127.0.0.1"], server=True)
    spiffe_id = "spiffe://example.org/tenant/acme/principal/ops"
    client = issue_cert(ca, uris=[spiffe_id])
    files = {
        "ca.pem": ca.cert_pem,
        "server.pem": server_cert.cert_pem,
        "server.key": server_cert.key_pem,
        "client.pem": client.cert_pem,
        "client.key": client.key_pem,
    }
    for name, pem in files.items():
        (tmp_path / name).write_text(pem)
    settings = load_settings(
        server={
            "listen": "127.0.0.1:0",
            "metrics_listen": "127.0.0.1:0",
            "tls": {
                "cert_file": tmp_path / "server.pem",
                "key_file": tmp_path / "server.key",
                "client_ca_file": tmp_path / "ca.pem",
            },
        },
        policy={"bundle": DEFAULT_BUNDLE},
        budget={"redis_url": redis_server.url, "deadline_ms": 250},
        decision_log={"path": tmp_path / "decisions.jsonl"},
        identity={
            "mode": "mtls",
            "spiffe": {"trust_domain": "example.org", "roles": {spiffe_id: ["capgate-admin"]}},
        },
    )
    server = CapgateServer(build_app(settings))
    port = await server.start()
    try:
        await server.activate()
        cli = Capgate(f"127.0.0.1:{port}", rsa_signing_key())
        tls = ["--tls-ca", str(tmp_path / "ca.pem")]
        mtls = [*tls, "--tls-cert", str(tmp_path / "client.pem")]
        mtls += ["--tls-key", str(tmp_path / "client.key")]
        status = json.loads(ok(await cli.cli("status", "--tenant", "acme", "--json", *mtls)))
        assert status["budget_store_reachable"] is True

        without_cert = await cli.cli("status", "--timeout", "2", *tls)
        assert without_cert.exit_code == 1
        assert without_cert.stderr.startswith("capgate: UNAVAILABLE: ")

        half = await cli.cli("status", *tls, "--tls-cert", str(tmp_path / "client.pem"))
        assert half.exit_code == 2
        assert "--tls-cert and --tls-key go together" in half.stderr
    finally:
        await server.stop(0)


async def test_insecure_mode_callers_name_themselves(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """--insecure-principal / --insecure-roles: unverified metadata, for a server in
    identity.mode insecure (loopback only)."""
    async with start_capgate(
        bundle=DEFAULT_BUNDLE, redis_url=redis_server.url, decision_log=tmp_path / "log.jsonl"
    ) as running:
        tenant = tenant_id()
        asked = await running.client.authorize(
            **ALLOWED_REFUND
            | {"tenant_id": tenant, "parameters": {"amount_usd": 60}, "run_id": "r"},
            idempotency_key=str(uuid.uuid4()),
        )
        cli = Capgate(running.target, rsa_signing_key())
        as_bob = ["--tenant", tenant, "--insecure-principal", "bob"]

        no_role = await cli.cli("approvals", "approve", asked.approval_id, *as_bob)
        assert no_role.exit_code == 1
        assert no_role.stderr.startswith("capgate: PERMISSION_DENIED: ")
        approved = await cli.cli(
            "approvals",
            "approve",
            asked.approval_id,
            "--json",
            *as_bob,
            CAPGATE_INSECURE_ROLES="refund-approver,capgate-admin",
        )
        assert json.loads(ok(approved))["approval"]["votes"][0]["principal_id"] == "bob"
        status = await cli.cli("status", "--json", *as_bob, "--insecure-roles", "capgate-admin")
        assert json.loads(ok(status))["tenant_mode"] == "TENANT_MODE_NORMAL"
