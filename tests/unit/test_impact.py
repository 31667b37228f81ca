"""capgate.impact's pure parts: log lines to records, recorded outcomes, transitions,
the report and its thresholds. Table-driven."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from rich.console import Console

from capgate.decision import reasons
from capgate.impact import (
    DecisionRecord,
    LogError,
    PolicyOutcome,
    Replayed,
    Thresholds,
    compare,
    crossed,
    direction,
    parse_log,
    recorded_outcome,
    transition,
)
from capgate.impact.outcome import SIDECAR_CODES
from capgate.impact.records import parse_line
from capgate.impact.render import print_report, report_json


def event(**fields: Any) -> dict[str, Any]:
    """A decision event as capgate/events/event.py writes it (the fields replay reads)."""
    base: dict[str, Any] = {
        "schema_version": "capgate.decision_event.v1",
        "event_type": "decision",
        "decision_id": "d1",
        "tenant_id": "acme",
        "capability": "issue_refund",
        "tool": "payments.create_refund",
        "effect": "allow",
        "reasons": [],
        "policy_revision": "r1",
        "dry_run": False,
        "idempotent_replay": False,
        "shadow": None,
        "input": {"capability": "issue_refund", "parameters": {"amount_usd": 10}},
        "masked": [],
    }
    return {**base, **fields}


def record(**fields: Any) -> DecisionRecord:
    parsed = parse_line(json.dumps(event(**fields)), source="t.jsonl", line=7)
    assert parsed is not None
    return parsed


def reasons_of(*codes: str) -> list[dict[str, str]]:
    return [{"code": code, "message": "m"} for code in codes]


A = PolicyOutcome("allow")
D = PolicyOutcome("deny", ("NO",))
R = PolicyOutcome("require_approval", ("ASK",))
E = PolicyOutcome("error", error="undefined")
SHADOW_D = PolicyOutcome("deny", ("NO",), shadow=True)
SHADOW_R = PolicyOutcome("require_approval", ("ASK",), shadow=True)


@pytest.mark.parametrize(
    ("before", "after", "key", "way"),
    [
        (A, A, None, None),
        (D, PolicyOutcome("deny", ("NO", "NO")), None, None),  # the set of codes counts
        (PolicyOutcome("deny", ("A", "B")), PolicyOutcome("deny", ("B", "A")), None, None),
        (A, D, "allow->deny", "tightened"),
        (A, R, "allow->require_approval", "tightened"),
        (R, D, "require_approval->deny", "tightened"),
        (D, A, "deny->allow", "loosened"),
        (R, A, "require_approval->allow", "loosened"),
        (D, R, "deny->require_approval", "loosened"),
        (A, E, "allow->error", "tightened"),
        (E, A, "error->allow", "loosened"),
        (D, E, "deny->error", None),
        (E, D, "error->deny", None),
        (E, PolicyOutcome("error", error="another message"), None, None),
        (D, PolicyOutcome("deny", ("OTHER",)), "reasons", None),
        (SHADOW_D, A, "shadow", None),  # the caller got ALLOW both times
        (A, SHADOW_D, "shadow", None),
        (SHADOW_D, SHADOW_R, "shadow", None),
        (SHADOW_D, D, "allow->deny", "tightened"),  # shadow -> enforce
        (D, SHADOW_D, "deny->allow", "loosened"),
    ],
)
def test_transitions(
    before: PolicyOutcome, after: PolicyOutcome, key: str | None, way: str | None
) -> None:
    assert transition(before, after) == key
    if key is not None:
        assert direction(key) == way


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, A),
        ({"effect": "deny", "reasons": reasons_of("NO")}, D),
        ({"effect": "require_approval", "reasons": reasons_of("ASK")}, R),
        # shadow: the caller got ALLOW; the policy said what the shadow holds
        (
            {"effect": "allow", "shadow": {"effect": "deny", "reasons": reasons_of("NO")}},
            SHADOW_D,
        ),
        # ... even when budgets then refused the call
        (
            {
                "effect": "deny",
                "reasons": reasons_of("BUDGET_EXCEEDED"),
                "shadow": {"effect": "require_approval", "reasons": reasons_of("ASK")},
            },
            SHADOW_R,
        ),
        ({"effect": "deny", "reasons": reasons_of("POLICY_ERROR")}, PolicyOutcome("error")),
        # the sidecar decided: the policy's answer is not in the event
        ({"effect": "deny", "reasons": reasons_of("BUDGET_EXCEEDED")}, None),
        ({"effect": "deny", "reasons": reasons_of("RATE_LIMITED")}, None),
        ({"effect": "deny", "reasons": reasons_of("RUN_STOPPED")}, None),
        ({"effect": "deny", "reasons": reasons_of("APPROVAL_INVALID")}, None),
        ({"effect": "deny", "reasons": reasons_of("POLICY_UNAVAILABLE")}, None),
        ({"effect": "deny", "reasons": reasons_of("AUDIT_UNAVAILABLE")}, None),
    ],
)
def test_recorded_outcome(fields: dict[str, Any], expected: PolicyOutcome | None) -> None:
    assert recorded_outcome(record(**fields)) == expected


def test_sidecar_codes_are_every_code_the_sidecar_emits() -> None:
    emitted = {
        value
        for name, value in vars(reasons).items()
        if name.isupper() and isinstance(value, str) and not name.startswith("_")
    }
    assert emitted == SIDECAR_CODES


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "t.jsonl:3: not JSON"),
        ("[1, 2]", "t.jsonl:3: not a JSON object"),
        ('{"effect": "allow"}', "t.jsonl:3: event_type: missing"),
        (
            json.dumps(event(schema_version="capgate.decision_event.v2")),
            "t.jsonl:3: schema_version: 'capgate.decision_event.v2' is not",
        ),
        (json.dumps({k: v for k, v in event().items() if k != "effect"}), "t.jsonl:3: effect:"),
        (json.dumps(event(effect="maybe")), "t.jsonl:3: effect: Input should be"),
        (json.dumps(event(reasons=[{"message": "m"}])), "t.jsonl:3: reasons.0.code:"),
        (json.dumps(event(input="x")), "t.jsonl:3: input:"),
        (json.dumps(event(dry_run="false")), "t.jsonl:3: dry_run:"),
        (json.dumps(event(shadow={"effect": "deny"})), "t.jsonl:3: shadow.reasons:"),
    ],
)
def test_malformed_lines_name_the_line_and_field(line: str, message: str) -> None:
    lines = [json.dumps(event()), "", line]
    with pytest.raises(LogError) as raised:
        list(parse_log(lines, source="t.jsonl"))
    assert str(raised.value).startswith(message)
    assert raised.value.line == 3


def test_only_decision_events_are_read() -> None:
    lines = [
        json.dumps({"event_type": "approval", "approval_id": "a"}),
        json.dumps(event(decision_id="d1")),
        "   ",
        json.dumps({"event_type": "settlement"}),
        json.dumps(event(decision_id="d2", masked=["parameters.password"])),
    ]
    records = list(parse_log(lines, source="log.jsonl"))
    assert [(r.decision_id, r.where, r.masked) for r in records] == [
        ("d1", "log.jsonl:2", ()),
        ("d2", "log.jsonl:5", ("parameters.password",)),
    ]


def test_report_counts_transitions_capabilities_and_examples() -> None:
    deny_no = {"effect": "deny", "reasons": reasons_of("NO")}
    replayed = [
        Replayed(record(decision_id="a1"), D),  # allow -> deny
        Replayed(record(decision_id="a2", masked=["parameters.secret"]), D),
        Replayed(record(decision_id="a3", dry_run=True), D),
        Replayed(record(decision_id="a4", capability="read"), A),  # unchanged
        Replayed(record(decision_id="d1", capability="read", **deny_no), A),  # deny -> allow
        Replayed(record(decision_id="d2", **deny_no), PolicyOutcome("deny", ("OTHER",))),
        Replayed(record(decision_id="e1"), E),  # allow -> error
        Replayed(record(decision_id="b1", effect="deny", reasons=reasons_of("RATE_LIMITED")), E),
        Replayed(record(decision_id="a1", idempotent_replay=True), D),  # a copy of a1
    ]
    report = compare(replayed, candidate_revision="r2", examples=2)

    assert (report.decisions, report.idempotent_replays, report.compared) == (8, 1, 7)
    assert report.not_comparable == {"RATE_LIMITED": 1}
    assert (report.changed, report.unchanged) == (6, 1)
    assert (report.tightened, report.loosened) == (4, 1)
    assert report.transitions == {
        "allow->deny": 3,
        "allow->error": 1,
        "deny->allow": 1,
        "reasons": 1,
    }
    assert report.errors == 2  # the sidecar-decided input failed too
    assert (report.masked, report.masked_changed, report.dry_run) == (1, 1, 1)
    assert report.recorded_revisions == {"r1": 8}
    assert report.baseline_disagrees is None
    assert [e.decision_id for e in report.examples["allow->deny"]] == ["a1", "a2"]
    assert report.examples["allow->deny"][1].masked
    read = report.capabilities["read"]
    assert (read.compared, read.changed, read.loosened, read.transitions) == (
        2,
        1,
        1,
        {"deny->allow": 1},
    )
    document = report.to_dict()
    assert document["examples"]["allow->error"][0]["after"] == {
        "effect": "error",
        "shadow": False,
        "reason_codes": [],
        "error": "undefined",
    }
    assert document["examples"]["allow->deny"][0]["where"] == "t.jsonl:7"


def test_with_a_baseline_every_decision_is_compared_against_it() -> None:
    replayed = [
        # the sidecar decided; the baseline says what the policy would have
        Replayed(record(effect="deny", reasons=reasons_of("BUDGET_EXCEEDED")), D, baseline=A),
        Replayed(record(decision_id="x"), A, baseline=A),
        # the baseline does not reproduce the recorded deny
        Replayed(record(effect="deny", reasons=reasons_of("NO")), A, baseline=A),
    ]
    report = compare(replayed, candidate_revision="r2", baseline_revision="r1")
    assert (report.compared, report.not_comparable, report.changed) == (3, {}, 1)
    assert report.transitions == {"allow->deny": 1}
    assert report.baseline_disagrees == 1
    with pytest.raises(ValueError, match="no baseline outcome"):
        compare([Replayed(record(), A)], candidate_revision="r2", baseline_revision="r1")


@pytest.mark.parametrize(
    ("thresholds", "expected"),
    [
        (Thresholds(fail_on_error=False), []),
        (Thresholds(max_changes=6, max_loosened=1, max_tightened=4, fail_on_error=False), []),
        (Thresholds(max_changes=5, fail_on_error=False), ["6 changed > --max-changes 5"]),
        (Thresholds(max_loosened=0, fail_on_error=False), ["1 loosened > --max-loosened 0"]),
        (Thresholds(max_tightened=3, fail_on_error=False), ["4 tightened > --max-tightened 3"]),
        (Thresholds(), ["2 evaluation errors (--fail-on-error)"]),
    ],
)
def test_thresholds(thresholds: Thresholds, expected: list[str]) -> None:
    deny_no = {"effect": "deny", "reasons": reasons_of("NO")}
    report = compare(
        [
            *(Replayed(record(), D) for _ in range(3)),
            Replayed(record(), E),
            Replayed(record(**deny_no), A),
            Replayed(record(**deny_no), PolicyOutcome("deny", ("OTHER",))),
            Replayed(record(effect="deny", reasons=reasons_of("RUN_STOPPED")), E),
        ],
        candidate_revision="r2",
    )
    assert (report.changed, report.loosened, report.tightened, report.errors) == (6, 1, 4, 2)
    assert crossed(report, thresholds) == expected


def test_the_table_and_json_show_what_changed() -> None:
    report = compare(
        [
            Replayed(record(decision_id="a1", masked=["parameters.secret"], dry_run=True), D),
            Replayed(record(decision_id="a2", capability="read"), E),
            Replayed(record(decision_id="b1", effect="deny", reasons=reasons_of("RUN_STOPPED")), A),
        ],
        candidate_revision="r2",
    )
    out = io.StringIO()
    print_report(Console(file=out, width=120), report)
    text = out.getvalue()
    assert "compared:       2: unchanged 0, changed 2 (tightened 2, loosened 0)" in text
    assert "not comparable: RUN_STOPPED 1" in text
    assert "issue_refund (1)" in text and "allow → deny" in text
    assert "allow → deny [NO]  (masked input)  (dry run)" in text
    assert "allow → error  (error: undefined)" in text
    assert "at t.jsonl:7" in text

    document = json.loads(report_json(report, ["2 tightened > --max-tightened 0"]))
    assert (document["ok"], document["changed"]) == (False, 2)
    assert document["not_comparable"] == {"RUN_STOPPED": 1}
