"""Events as ArcSight CEF lines (Micro Focus "Implementing ArcSight Common Event Format
(CEF)", version 25/26). Pure.

``CEF:0|capgate|capgate|<version>|<class id>|<name>|<severity>|<extension>``::

    >>> cef_line(event)   # a decision event that denied a refund
    'CEF:0|capgate|capgate|0.1.0|decision:deny|tool call denied|6|rt=1795288487859
    externalId=0190... cat=decision cs1=acme cs1Label=tenant act=deny suser=refund-agent ...'

The class id is ``event_type:what`` (``decision:deny``, ``settlement:failed``,
``approval:approved``, ``control:stop_run``, ``gap``, ``checkpoint``). Severity (0-10)
follows :data:`SEVERITY`. CEF is a summary for SIEM correlation; the whole event (input,
budgets, obligations, hashes) is only in the JSON format. Field mapping:
docs/siem/syslog.md.

Escaping (CEF standard, "Character encoding"): in the header, ``\\`` and ``|`` get a
backslash (CR and LF, not allowed there, become spaces); in extension values,
``\\`` and ``=`` get a backslash, and CR and LF are written ``\\r`` and ``\\n``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import capgate

VENDOR = "capgate"
PRODUCT = "capgate"

# (event_type, what) -> CEF severity 0-10 (0-3 low, 4-6 medium, 7-8 high, 9-10 very high);
# ``what`` None is the default for the event type; unknown types get 5.
SEVERITY: dict[tuple[str, str | None], int] = {
    ("decision", "allow"): 3,
    ("decision", "require_approval"): 5,
    ("decision", "deny"): 6,
    ("decision", None): 6,
    ("settlement", "succeeded"): 3,
    ("settlement", None): 5,  # failed, reverted, abandoned
    ("approval", "rejected"): 5,
    ("approval", None): 4,
    ("control", None): 7,  # an operator stopped a run or changed a tenant's mode
    ("gap", None): 9,  # events were dropped: the audit trail has a hole
    ("checkpoint", None): 1,
}
UNKNOWN_SEVERITY = 5
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Fields of every event (or mapped to their own keys), left out of the ``msg`` of gap,
# checkpoint and unknown events.
_COMMON = {
    "schema_version",
    "event_id",
    "event_type",
    "time",
    "seq",
    "prev_hash",
    "hash",
    "instance_id",
    "tenant_id",
}


def cef_line(event: dict[str, Any]) -> str:
    """The CEF line of ``event`` (a capgate.decision_event.v1 of any type), no newline."""
    event_type = str(event.get("event_type", ""))
    what = event_what(event)
    class_id = f"{event_type}:{what}" if what else event_type
    header = [
        "CEF:0",
        _header(VENDOR),
        _header(PRODUCT),
        _header(str(getattr(capgate, "__version__", ""))),
        _header(class_id),
        _header(_name(event_type, what)),
        str(cef_severity(event)),
    ]
    extension = " ".join(f"{key}={_value(value)}" for key, value in _extension(event))
    return "|".join(header) + "|" + extension


def event_what(event: dict[str, Any]) -> str:
    """What happened, by event type: the effect of a decision, the outcome of a
    settlement, the state an approval moved to, a control event's action; "" else."""
    match event.get("event_type"):
        case "decision":
            return str(event.get("effect") or "")
        case "settlement":
            return str(event.get("outcome") or "")
        case "approval":
            return str((event.get("transition") or {}).get("to") or "")
        case "control":
            return str(event.get("action") or "")
    return ""


def cef_severity(event: dict[str, Any]) -> int:
    """:data:`SEVERITY` of ``event``."""
    event_type = str(event.get("event_type", ""))
    key = (event_type, event_what(event))
    if key in SEVERITY:
        return SEVERITY[key]
    return SEVERITY.get((event_type, None), UNKNOWN_SEVERITY)


def escape_header(value: str) -> str:
    """A CEF header field: backslash before ``\\`` and ``|``; CR/LF become spaces."""
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def escape_extension(value: str) -> str:
    """A CEF extension value: backslash before ``\\`` and ``=``; CR, LF as ``\\r``, ``\\n``."""
    return value.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")


_header = escape_header


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape_extension(str(value))


def _name(event_type: str, what: str) -> str:
    match event_type:
        case "decision":
            return {
                "allow": "tool call allowed",
                "deny": "tool call denied",
                "require_approval": "tool call requires approval",
            }.get(what, f"tool call {what}")
        case "settlement":
            return f"tool call settled: {what}"
        case "approval":
            return f"approval {what}"
        case "control":
            return f"operator action {what}"
        case "gap":
            return "events dropped"
        case "checkpoint":
            return "chain checkpoint"
    return f"capgate {event_type}"


def _epoch_ms(time: Any) -> int | None:
    if not isinstance(time, str):
        return None
    try:
        moment = datetime.fromisoformat(time)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _labelled(key: str, label: str, value: Any) -> Iterator[tuple[str, Any]]:
    if value is not None and value != "":
        yield key, value
        yield key + "Label", label


def _extension(event: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(key, value) pairs; keys from the CEF dictionary, values not yet escaped. Empty
    and null values are left out."""
    event_type = event.get("event_type")
    yield from _present(
        ("rt", _epoch_ms(event.get("time"))),
        ("externalId", event.get("event_id")),
        ("cat", event_type),
        ("deviceExternalId", event.get("instance_id")),
    )
    yield from _labelled("cn1", "seq", event.get("seq"))
    yield from _labelled("cs1", "tenant", event.get("tenant_id"))
    match event_type:
        case "decision":
            yield from _decision(event)
        case "settlement":
            yield from _settlement(event)
        case "approval":
            yield from _approval(event)
        case "control":
            yield from _control(event)
        case "gap":
            dropped = event.get("dropped") or {}
            yield from _labelled("cn2", "dropped_from_seq", dropped.get("from_seq"))
            yield from _labelled("cn3", "dropped_to_seq", dropped.get("to_seq"))
            yield from _rest(event)
        case "checkpoint":
            yield from _labelled("cn2", "head_seq", (event.get("head") or {}).get("seq"))
            yield from _rest(event)
        case _:
            yield from _rest(event)


def _rest(event: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """``msg``: the event's own fields as compact JSON (gap, checkpoint, unknown)."""
    rest = {k: v for k, v in event.items() if k not in _COMMON}
    if rest:
        yield "msg", json.dumps(rest, separators=(",", ":"), ensure_ascii=False)


def _present(*pairs: tuple[str, Any]) -> Iterator[tuple[str, Any]]:
    for key, value in pairs:
        if value is not None and value != "":
            yield key, value


def _decision(event: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    principal = event.get("principal") or {}
    run = event.get("run") or {}
    reasons = event.get("reasons") or []
    yield from _present(
        ("act", event.get("effect")),
        ("suser", principal.get("id")),
        ("reason", ",".join(str(r.get("code", "")) for r in reasons)),
        ("msg", "; ".join(str(r.get("message", "")) for r in reasons)),
    )
    yield from _labelled("cs2", "capability", event.get("capability"))
    yield from _labelled("cs3", "tool", event.get("tool"))
    yield from _labelled("cs4", "run_id", run.get("run_id"))
    yield from _labelled("cs5", "policy_revision", event.get("policy_revision"))
    yield from _labelled("cs6", "decision_id", event.get("decision_id"))
    yield from _labelled("cn2", "dry_run", int(bool(event.get("dry_run"))))
    yield from _labelled("cfp1", "latency_ms", (event.get("latency_ms") or {}).get("total"))
    yield from _labelled("flexString1", "on_behalf_of", principal.get("on_behalf_of"))
    yield from _labelled("flexString2", "trace_id", run.get("trace_id"))


def _settlement(event: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    principal = event.get("principal") or {}
    run = event.get("run") or {}
    yield from _present(
        ("act", event.get("outcome")),
        ("outcome", event.get("outcome")),
        ("suser", principal.get("id")),
    )
    yield from _labelled("cs2", "capability", event.get("capability"))
    yield from _labelled("cs3", "tool", event.get("tool"))
    yield from _labelled("cs4", "run_id", run.get("run_id"))
    yield from _labelled("cs6", "decision_id", event.get("decision_id"))
    committed = (event.get("committed_cost") or {}).get("usd_micros")
    yield from _labelled("cn2", "committed_usd_micros", committed)
    yield from _labelled("cn3", "overrun_usd_micros", event.get("overrun_usd_micros"))


def _approval(event: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    actor = event.get("actor") or {}
    approval = event.get("approval") or {}
    yield from _present(
        ("act", (event.get("transition") or {}).get("to")),
        ("suser", actor.get("principal_id")),
        ("duser", approval.get("requester_principal_id")),
        ("msg", event.get("comment")),
    )
    yield from _labelled("cs2", "capability", approval.get("capability"))
    yield from _labelled("cs3", "tool", approval.get("tool"))
    yield from _labelled("cs5", "policy_revision", approval.get("policy_revision"))
    yield from _labelled("cs6", "decision_id", event.get("decision_id"))
    yield from _labelled("flexString2", "approval_id", event.get("approval_id"))


def _control(event: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    actor = event.get("actor") or {}
    yield from _present(
        ("act", event.get("action")),
        ("suser", actor.get("principal_id")),
        ("reason", event.get("reason")),
    )
    yield from _labelled("cs4", "run_id", event.get("run_id"))
    yield from _labelled("flexString1", "previous_mode", event.get("previous_mode"))
    yield from _labelled("flexString2", "mode", event.get("mode"))
