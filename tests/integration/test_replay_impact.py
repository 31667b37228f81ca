"""``capgate replay`` on a real decision log: the AgentDojo banking workload decided by a
real capgate (port 0, real Redis), then replayed against the same bundle and against a
candidate that tightens one rule. The changes expected are computed from the log."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from capgate.local.redis_server import RedisServer
from capgate.replay.agentdojo import bundle_path, new_idempotency_key, tenant_id
from capgate.replay.runner import replay_suite
from capgate.replay.workload import group_runs, load_workload
from tests.conftest import ROOT, start_capgate
from tests.conftest import run_capgate as capgate

WORKLOAD = ROOT / "workloads" / "agentdojo-v1.2.jsonl"
BANKING = bundle_path(ROOT / "bundles", "banking")
SEND_MONEY = "banking.send_money"
# The candidate: payments over 5 (not 2000) need the user's confirmation.
THRESHOLD = 5
# Dry runs the log gets besides the workload: to a payee the user has paid before.
DRY_RUN_AMOUNTS = (THRESHOLD, 50)


@pytest.fixture(scope="module")
async def decision_log(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The banking suite's decision log: every workload run through a real sidecar on
    the banking bundle (a Redis database of its own: run ids repeat), and two dry runs."""
    directory = tmp_path_factory.mktemp("replay-impact")
    log = directory / "banking.jsonl"
    runs = group_runs(c for c in load_workload(WORKLOAD) if c.suite == "banking")
    redis_url = redis_server.url.removesuffix("/0") + "/5"
    async with start_capgate(bundle=BANKING, redis_url=redis_url, decision_log=log) as running:
        await replay_suite("banking", runs, running.client.authorize_message)
        for amount in DRY_RUN_AMOUNTS:
            result = await running.client.authorize(
                tenant_id=tenant_id("banking"),
                principal_id="assistant",
                capability=SEND_MONEY,
                tool="send_money",
                parameters={"recipient": "Apple", "amount": amount, "subject": "dry run"},
                run_id="banking/dry_run",
                workflow="banking",
                idempotency_key=new_idempotency_key(),
                dry_run=True,
            )
            assert result.allowed
        await running.events()  # every event delivered to the log
    return log


@pytest.fixture(scope="module")
def candidate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the banking bundle whose send_money approval threshold is THRESHOLD.
    Only send_money changes: its rules are copied apart from the YAML anchor that
    schedule_transaction shares."""
    bundle = tmp_path_factory.mktemp("candidate") / "agentdojo-banking"
    shutil.copytree(BANKING, bundle)
    data = yaml.safe_load((bundle / "data.yaml").read_text())
    capabilities = data["capgate"]["capabilities"]
    send_money = capabilities[SEND_MONEY] = copy.deepcopy(capabilities[SEND_MONEY])
    (rule,) = [
        r for r in send_money["requires_approval_if"] if r["code"] == "OVER_APPROVAL_THRESHOLD"
    ]
    rule["value"] = THRESHOLD
    (bundle / "data.yaml").write_text(yaml.safe_dump(data))
    manifest = json.loads((bundle / ".manifest").read_text())
    manifest["revision"] = "agentdojo-banking-candidate"
    (bundle / ".manifest").write_text(json.dumps(manifest))
    return bundle


def decisions(log: Path) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in log.read_text().splitlines()]
    return [e for e in events if e["event_type"] == "decision"]


def report(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return json.loads(done.stdout)


def test_the_unchanged_bundle_changes_nothing(decision_log: Path) -> None:
    done = capgate("replay", "--log", decision_log, "--bundle", BANKING, "--max-changes", "0")
    assert done.returncode == 0, done.stdout + done.stderr
    recorded = decisions(decision_log)
    n = len(recorded)
    assert f"compared:       {n}: unchanged {n}, changed 0 (tightened 0, loosened 0)" in done.stdout


def test_a_tightened_rule_changes_exactly_the_decisions_it_covers(
    decision_log: Path, candidate: Path
) -> None:
    # Independently of capgate.impact: which recorded decisions does the new threshold hit?
    recorded = decisions(decision_log)
    over = [
        e
        for e in recorded
        if e["capability"] == SEND_MONEY and e["input"]["parameters"]["amount"] > THRESHOLD
    ]
    now_need_approval = {e["decision_id"] for e in over if e["effect"] == "allow"}
    gain_a_reason = {
        e["decision_id"]
        for e in over
        if e["effect"] == "require_approval"
        and "OVER_APPROVAL_THRESHOLD" not in {r["code"] for r in e["reasons"]}
    }
    dry_run_hit = {e["decision_id"] for e in over if e["dry_run"]}
    assert len(dry_run_hit) == 1 and dry_run_hit <= now_need_approval
    assert gain_a_reason
    # payments of THRESHOLD or less stay allowed: the boundary is in the log
    assert any(
        e["capability"] == SEND_MONEY
        and e["effect"] == "allow"
        and e["input"]["parameters"]["amount"] <= THRESHOLD
        for e in recorded
    )

    done = capgate(
        "replay", "--log", decision_log.parent, "--bundle", candidate,
        "--json", "--examples", "100", "--max-loosened", "0",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    impact = report(done)
    assert impact["ok"] is True
    assert impact["candidate_revision"] == "agentdojo-banking-candidate"
    assert (impact["decisions"], impact["compared"], impact["not_comparable"]) == (
        len(recorded),
        len(recorded),
        {},
    )
    assert impact["transitions"] == {
        "allow->require_approval": len(now_need_approval),
        "reasons": len(gain_a_reason),
    }
    examples = impact["examples"]
    assert {e["decision_id"] for e in examples["allow->require_approval"]} == now_need_approval
    assert {e["decision_id"] for e in examples["reasons"]} == gain_a_reason
    assert all(
        e["after"]["reason_codes"].count("OVER_APPROVAL_THRESHOLD") == 1
        for e in examples["allow->require_approval"] + examples["reasons"]
    )
    assert [c for c, v in impact["capabilities"].items() if v["changed"]] == [SEND_MONEY]
    assert (impact["tightened"], impact["loosened"], impact["errors"]) == (
        len(now_need_approval),
        0,
        0,
    )
    assert impact["dry_run"] == len(DRY_RUN_AMOUNTS)
    assert impact["masked"] == sum(1 for e in recorded if e["masked"]) > 0


def test_against_a_baseline_bundle_the_table_shows_the_same_changes(
    decision_log: Path, candidate: Path
) -> None:
    done = capgate(
        "replay", "--log", decision_log, "--bundle", candidate, "--baseline", BANKING,
        "--max-tightened", "0", "--max-loosened", "0",
    )  # fmt: skip
    assert done.returncode == 1
    assert "compared with:  the baseline bundle agentdojo-banking-2026" in done.stdout
    assert "warning" not in done.stdout  # the baseline reproduces every recorded decision
    assert f"{SEND_MONEY} (" in done.stdout
    assert "allow → require_approval" in done.stdout
    assert "reason codes only" in done.stdout
    assert "(dry run)" in done.stdout
    crossed = done.stderr.splitlines()
    assert len(crossed) == 1
    assert crossed[0].startswith("capgate: threshold crossed: ")
    assert crossed[0].endswith(" tightened > --max-tightened 0")


def test_shadow_enforcement_is_reported_as_loosening(decision_log: Path, tmp_path: Path) -> None:
    """A candidate that puts send_money in shadow mode: every recorded refusal of it would
    reach the caller as ALLOW; the shadowed verdicts stay the same."""
    bundle = tmp_path / "shadow"
    shutil.copytree(BANKING, bundle)
    data = yaml.safe_load((bundle / "data.yaml").read_text())
    capabilities = data["capgate"]["capabilities"]
    capabilities[SEND_MONEY] = {**capabilities[SEND_MONEY], "enforcement": "shadow"}
    (bundle / "data.yaml").write_text(yaml.safe_dump(data))
    sent = [e for e in decisions(decision_log) if e["capability"] == SEND_MONEY]
    refused = {e["decision_id"] for e in sent if e["effect"] != "allow"}
    assert refused

    done = capgate(
        "replay", "--log", decision_log, "--bundle", bundle,
        "--json", "--examples", "100", "--max-loosened", "0",
    )  # fmt: skip
    assert done.returncode == 1
    impact = report(done)
    assert impact["loosened"] == impact["changed"] == len(refused)
    loosened = [
        e
        for key in ("deny->allow", "require_approval->allow")
        for e in impact["examples"].get(key, [])
    ]
    assert {e["decision_id"] for e in loosened} == refused
    assert all(e["after"]["shadow"] and not e["before"]["shadow"] for e in loosened)
    assert impact["crossed"] == [f"{len(refused)} loosened > --max-loosened 0"]


def test_bad_input_exits_2_naming_the_file_line_and_field(
    decision_log: Path, tmp_path: Path
) -> None:
    lines = decision_log.read_text().splitlines()
    number = next(
        i for i, line in enumerate(lines, 1) if json.loads(line)["event_type"] == "decision"
    )
    event = json.loads(lines[number - 1])
    event["effect"] = "permit"
    lines[number - 1] = json.dumps(event)
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines) + "\n")

    done = capgate("replay", "--log", broken, "--bundle", BANKING)
    assert done.returncode == 2
    assert f"{broken}:{number}: effect: " in done.stderr

    missing = capgate("replay", "--log", tmp_path / "none.jsonl", "--bundle", BANKING)
    assert missing.returncode == 2
    assert "none.jsonl: no such file" in missing.stderr
    no_bundle = capgate("replay", "--log", decision_log, "--bundle", tmp_path / "nothing")
    assert no_bundle.returncode == 2
    assert "not a directory or a .tar.gz" in no_bundle.stderr
