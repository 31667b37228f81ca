"""capgate events in OPA's decision-log format, so pipelines built for OPA accept them.
Pure.

OPA's format (https://www.openpolicyagent.org/docs/management-decision-logs/,
"Decision Log Service API"): each uploaded event is an object with ``labels``,
``decision_id``, ``path``, ``input``, ``result``, ``requested_by``, ``timestamp``,
``metrics``, ``bundles`` and ``erased`` (JSON pointers of masked fields). A decision
event maps to::

    {"labels": {"id": <instance id>, "version": <capgate version>, "app": "capgate"},
     "decision_id": <decision_id>, "path": "capgate/authz/decision",
     "input": <the event's (masked) input>,
     "result": <the event without input and masked: effect, reasons, obligations,
                approval, budgets, shadow, dry_run, event_id, seq, hash, ...>,
     "requested_by": <principal.id>, "timestamp": <time, RFC 3339>,
     "trace_id": <run.trace_id, when set>,
     "metrics": {"timer_server_handler_ns", "timer_rego_query_eval_ns",
                 "timer_capgate_budget_ns"},
     "bundles": {"capgate": {"revision": <policy_revision>}},
     "erased": ["/input/parameters/card_number", ...]}

Every other event type (settlement, approval, control, gap, checkpoint) goes in the
same envelope with ``path: "capgate/events/<event_type>"``, the whole event as
``result``, no ``input``, and ``decision_id`` = the event's ``event_id`` (OPA consumers
expect it unique; a settlement's own ``decision_id`` stays in ``result``). Nothing is
lost: a decision event is ``result`` plus ``input`` plus ``masked``.

Example::

    opa_decision_log(event, instance_id="capgate-0")["path"]  # "capgate/authz/decision"
"""

from __future__ import annotations

from typing import Any

from capgate import __version__

DECISION_PATH = "capgate/authz/decision"
OTHER_EVENTS_PATH = "capgate/events/"
# latency_ms keys → OPA metric names (OPA's own names where one exists).
_TIMERS = {
    "total": "timer_server_handler_ns",
    "policy": "timer_rego_query_eval_ns",
    "budget": "timer_capgate_budget_ns",
}


def opa_decision_log(
    event: dict[str, Any], *, instance_id: str, version: str = __version__
) -> dict[str, Any]:
    """``event`` (any capgate event type) as one OPA decision-log event.

    ``instance_id`` is used when the event carries none of its own.
    """
    labels = {
        "id": str(event.get("instance_id") or instance_id),
        "version": version,
        "app": "capgate",
    }
    event_type = event.get("event_type", "")
    if event_type != "decision":
        return {
            "labels": labels,
            "decision_id": event.get("event_id", ""),
            "path": OTHER_EVENTS_PATH + str(event_type),
            "result": event,
            "requested_by": _requested_by(event),
            "timestamp": event.get("time", ""),
        }
    result = {k: v for k, v in event.items() if k not in ("input", "masked")}
    entry: dict[str, Any] = {
        "labels": labels,
        "decision_id": event["decision_id"],
        "path": DECISION_PATH,
        "input": event.get("input", {}),
        "result": result,
        "requested_by": _requested_by(event),
        "timestamp": event["time"],
        "metrics": {
            _TIMERS[name]: round(ms * 1_000_000)
            for name, ms in (event.get("latency_ms") or {}).items()
            if name in _TIMERS
        },
        "bundles": {"capgate": {"revision": event.get("policy_revision", "")}},
        "erased": [input_pointer(path) for path in event.get("masked", [])],
    }
    trace_id = (event.get("run") or {}).get("trace_id")
    if trace_id:
        entry["trace_id"] = trace_id
    return entry


def input_pointer(dotted: str) -> str:
    """``parameters.card_number`` → ``/input/parameters/card_number``: a masked input
    path as the JSON pointer (RFC 6901) OPA lists in ``erased``."""
    escaped = (part.replace("~", "~0").replace("/", "~1") for part in dotted.split("."))
    return "/input/" + "/".join(escaped)


def _requested_by(event: dict[str, Any]) -> str:
    """Who caused the event: the principal, the approver or operator, or capgate."""
    principal = event.get("principal")
    if isinstance(principal, dict) and principal.get("id"):
        return str(principal["id"])
    actor = event.get("actor")
    if isinstance(actor, dict) and actor.get("principal_id"):
        return str(actor["principal_id"])
    return "capgate"
