"""CEF lines of every event type (ArcSight CEF rev. 25): header, severity, the
extension's keys, and escaping, checked by parsing the line back."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import capgate
from capgate.events.formats.cef import (
    cef_line,
    cef_severity,
    escape_extension,
    escape_header,
)

HOSTILE = 'a=b \\ c|d\ne\r\nf "g" ]h é 中文 😀'
COMMON = {
    "schema_version": "capgate.decision_event.v1",
    "event_id": "0190b7a0-0000-7000-8000-000000000001",
    "time": "2026-11-21T19:14:47.859988Z",
    "seq": 42,
    "prev_hash": "0" * 64,
    "hash": "f" * 64,
    "instance_id": "capgate-0",
}
RT = "1795288487859"  # 2026-11-21T19:14:47.859Z in ms since the epoch

_KEY = re.compile(r"(?:^| )(\w+)=")
_HEADER_SPLIT = re.compile(r"(?<!\\)\|")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m[1], m[1]), value, flags=re.S)


def parse(line: str) -> tuple[list[str], dict[str, str]]:
    """A CEF line back into its 7 header fields and its extension (unescaped)."""
    assert "\n" not in line and "\r" not in line
    # Split the header on pipes not escaped (an escaped backslash before a pipe is not
    # produced by the header fields tested here).
    parts = _HEADER_SPLIT.split(line, maxsplit=7)
    header, extension = parts[:7], parts[7]
    keys = list(_KEY.finditer(extension))
    fields = {}
    for match, following in zip(keys, [*keys[1:], None], strict=True):
        end = following.start() if following else len(extension)
        fields[match[1]] = _unescape(extension[match.end() : end])
    return [_unescape(h) for h in header], fields


def decision(effect: str, **extra: Any) -> dict[str, Any]:
    return (
        COMMON
        | {
            "event_type": "decision",
            "decision_id": "d-1",
            "tenant_id": "acme",
            "principal": {"id": "refund-agent", "on_behalf_of": "user:zoë", "roles": []},
            "capability": "issue_refund",
            "tool": "payments.create_refund",
            "run": {"run_id": "run-1", "workflow": "refund", "step": 1, "trace_id": "t-1"},
            "effect": effect,
            "reasons": [
                {"code": "BUDGET_EXCEEDED", "message": "over $100"},
                {"code": "NEEDS_HUMAN", "message": "second\nline"},
            ],
            "policy_revision": "r7",
            "dry_run": False,
            "latency_ms": {"total": 1.25, "policy": 0.5, "budget": 0.5},
            "input": {"parameters": {"amount_usd": 10}},
        }
        | extra
    )


SETTLEMENT = COMMON | {
    "event_type": "settlement",
    "decision_id": "d-1",
    "tenant_id": "acme",
    "principal": {"id": "refund-agent"},
    "capability": "issue_refund",
    "tool": "payments.create_refund",
    "run": {"run_id": "run-1", "workflow": "refund"},
    "outcome": "failed",
    "committed_cost": {"usd_micros": 1500, "tokens": 0},
    "overrun_usd_micros": 500,
}
APPROVAL = COMMON | {
    "event_type": "approval",
    "tenant_id": "acme",
    "approval_id": "a-1",
    "transition": {"from": "pending", "to": "approved"},
    "actor": {"principal_id": "alice", "roles": ["finance"], "method": "jwt"},
    "decision_id": "d-1",
    "approval": {
        "requester_principal_id": "refund-agent",
        "capability": "issue_refund",
        "tool": "payments.create_refund",
        "policy_revision": "r7",
    },
    "comment": "checked\nthe order",
}
CONTROL = COMMON | {
    "event_type": "control",
    "tenant_id": "acme",
    "action": "set_tenant_mode",
    "actor": {"principal_id": "ops", "roles": ["operator"], "method": "mtls"},
    "run_id": "",
    "mode": "read_only",
    "previous_mode": "normal",
    "reason": "incident 42",
}
GAP = COMMON | {
    "event_type": "gap",
    "dropped": {"from_seq": 10, "to_seq": 20, "count": 11, "last_hash": "a" * 64},
}
CHECKPOINT = COMMON | {
    "event_type": "checkpoint",
    "head": {"instance_id": "capgate-0", "seq": 41, "hash": "b" * 64},
    "key_id": "0123456789abcdef",
    "signature": "c2ln",
}


def test_header_escaping() -> None:
    assert escape_header("a|b\\c") == "a\\|b\\\\c"
    assert escape_header("two\nlines\r") == "two lines "
    assert escape_header("x=y") == "x=y"  # '=' needs no escape in the header


def test_extension_escaping() -> None:
    assert escape_extension("a=b") == "a\\=b"
    assert escape_extension("back\\slash") == "back\\\\slash"
    assert escape_extension("l1\nl2\r\n") == "l1\\nl2\\r\\n"
    assert escape_extension("pipe|stays") == "pipe|stays"


@given(st.text())
def test_extension_values_round_trip(value: str) -> None:
    line = cef_line(COMMON | {"event_type": "control", "tenant_id": "t", "reason": value})
    _, fields = parse(line)
    assert fields.get("reason", "") == value


def test_decision_deny() -> None:
    header, fields = parse(cef_line(decision("deny")))
    assert header == [
        "CEF:0",
        "capgate",
        "capgate",
        capgate.__version__,
        "decision:deny",
        "tool call denied",
        "6",
    ]
    assert fields == {
        "rt": RT,
        "externalId": COMMON["event_id"],
        "cat": "decision",
        "deviceExternalId": "capgate-0",
        "cn1": "42",
        "cn1Label": "seq",
        "cs1": "acme",
        "cs1Label": "tenant",
        "act": "deny",
        "suser": "refund-agent",
        "reason": "BUDGET_EXCEEDED,NEEDS_HUMAN",
        "msg": "over $100; second\nline",
        "cs2": "issue_refund",
        "cs2Label": "capability",
        "cs3": "payments.create_refund",
        "cs3Label": "tool",
        "cs4": "run-1",
        "cs4Label": "run_id",
        "cs5": "r7",
        "cs5Label": "policy_revision",
        "cs6": "d-1",
        "cs6Label": "decision_id",
        "cn2": "0",
        "cn2Label": "dry_run",
        "cfp1": "1.25",
        "cfp1Label": "latency_ms",
        "flexString1": "user:zoë",
        "flexString1Label": "on_behalf_of",
        "flexString2": "t-1",
        "flexString2Label": "trace_id",
    }


@pytest.mark.parametrize(
    ("effect", "class_id", "name", "severity"),
    [
        ("allow", "decision:allow", "tool call allowed", 3),
        ("require_approval", "decision:require_approval", "tool call requires approval", 5),
        ("deny", "decision:deny", "tool call denied", 6),
    ],
)
def test_decision_effects(effect: str, class_id: str, name: str, severity: int) -> None:
    header, fields = parse(cef_line(decision(effect)))
    assert header[4:7] == [class_id, name, str(severity)]
    assert fields["act"] == effect


def test_hostile_values_survive() -> None:
    event = decision(
        "deny",
        tenant_id=HOSTILE,
        capability=HOSTILE,
        principal={"id": HOSTILE},
        run={"run_id": "r=1"},
    )
    line = cef_line(event)
    _, fields = parse(line)
    assert fields["cs1"] == fields["cs2"] == fields["suser"] == HOSTILE
    assert fields["cs4"] == "r=1"
    assert "cs3Label" in fields and "flexString1" not in fields  # absent: left out


def test_settlement() -> None:
    header, fields = parse(cef_line(SETTLEMENT))
    assert header[4:7] == ["settlement:failed", "tool call settled: failed", "5"]
    assert {k: fields[k] for k in ("act", "outcome", "suser", "cs6", "cn2", "cn3")} == {
        "act": "failed",
        "outcome": "failed",
        "suser": "refund-agent",
        "cs6": "d-1",
        "cn2": "1500",
        "cn3": "500",
    }
    assert (fields["cn2Label"], fields["cn3Label"]) == (
        "committed_usd_micros",
        "overrun_usd_micros",
    )
    succeeded = parse(cef_line(SETTLEMENT | {"outcome": "succeeded"}))[0]
    assert succeeded[4:7] == ["settlement:succeeded", "tool call settled: succeeded", "3"]


def test_approval() -> None:
    header, fields = parse(cef_line(APPROVAL))
    assert header[4:7] == ["approval:approved", "approval approved", "4"]
    assert fields["act"] == "approved"
    assert fields["suser"] == "alice"
    assert fields["duser"] == "refund-agent"
    assert fields["msg"] == "checked\nthe order"
    assert (fields["flexString2"], fields["flexString2Label"]) == ("a-1", "approval_id")
    assert (fields["cs2"], fields["cs5"], fields["cs6"]) == ("issue_refund", "r7", "d-1")
    rejected = APPROVAL | {"transition": {"from": "pending", "to": "rejected"}}
    assert cef_severity(rejected) == 5
    expired = APPROVAL | {"actor": None, "approval": None, "comment": ""}
    _, fields = parse(cef_line(expired))
    assert "suser" not in fields and "duser" not in fields and "msg" not in fields


def test_control() -> None:
    header, fields = parse(cef_line(CONTROL))
    assert header[4:7] == ["control:set_tenant_mode", "operator action set_tenant_mode", "7"]
    assert fields["act"] == "set_tenant_mode"
    assert fields["suser"] == "ops"
    assert fields["reason"] == "incident 42"
    assert (fields["flexString1"], fields["flexString2"]) == ("normal", "read_only")
    assert "cs4" not in fields  # no run


def test_gap_carries_its_details() -> None:
    header, fields = parse(cef_line(GAP))
    assert header[4:7] == ["gap", "events dropped", "9"]
    assert (fields["cn2"], fields["cn2Label"]) == ("10", "dropped_from_seq")
    assert (fields["cn3"], fields["cn3Label"]) == ("20", "dropped_to_seq")
    assert json.loads(fields["msg"]) == {"dropped": GAP["dropped"]}
    assert "cs1" not in fields  # not a tenant's event


def test_checkpoint() -> None:
    header, fields = parse(cef_line(CHECKPOINT))
    assert header[4:7] == ["checkpoint", "chain checkpoint", "1"]
    assert (fields["cn2"], fields["cn2Label"]) == ("41", "head_seq")
    assert json.loads(fields["msg"]) == {k: CHECKPOINT[k] for k in ("head", "key_id", "signature")}


def test_unknown_event_type() -> None:
    header, _ = parse(cef_line({"event_type": "fu|ture", "x": 1}))
    assert header[4:7] == ["fu|ture", "capgate fu|ture", "5"]


def test_time_without_zone_or_unparseable_is_left_out() -> None:
    assert "rt" not in parse(cef_line(CONTROL | {"time": "2026-11-21T19:14:47"}))[1]
    assert "rt" not in parse(cef_line(CONTROL | {"time": "yesterday"}))[1]
