"""capgate events as OCSF API Activity events. Pure.

OCSF 1.1.0, class API Activity (``class_uid`` 6003, category Application Activity,
``category_uid`` 6): https://schema.ocsf.io/1.1.0/classes/api_activity. Every capgate
event type maps to this one class, so a SIEM needs one parser:

============  ===================  ====================  ============================
event_type    activity_id          status_id             severity_id
============  ===================  ====================  ============================
decision      99 Other "Authorize" allow 1 Success,      allow 1 Informational,
                                   deny 2 Failure,       require_approval 2 Low,
                                   require_approval      deny 3 Medium
                                   99 Other
settlement    99 Other "Settle"    succeeded 1, failed   succeeded 1, else 2 Low;
                                   2, else 99 Other      an overrun 3 Medium
approval      1 Create (opened),   1 Success             rejected 2 Low, else 1
              else 3 Update
control       3 Update             1 Success             3 Medium
gap           99 Other "Gap"       2 Failure             4 High (events were dropped)
checkpoint    99 Other "Checkpoint" 1 Success            1 Informational
============  ===================  ====================  ============================

An authorization decision is neither create, read, update nor delete, hence Other.
Common to all: ``time`` (ms since the epoch), ``metadata`` (``product`` capgate,
``version`` "1.1.0", ``uid`` = ``event_id``, ``correlation_uid`` = ``decision_id``,
``sequence`` = ``seq``, ``log_version`` = ``schema_version``), ``actor.user`` (the
principal, or the approver or operator; ``org.uid`` = tenant; ``groups`` = roles) or
``actor.app_name`` "capgate" for events capgate raises itself, ``api.operation`` (the
capability; ``approval.<state>`` for approvals; the action for control events),
``api.service.name`` "capgate", ``resources`` (the tool, the request's resource, the
approval, run or tenant acted on), ``src_endpoint.name`` (the principal: capgate knows
no network address), ``dst_endpoint.name`` (the capgate ``instance_id``). Everything
else (``input``, ``run``, ``budgets``, ``hash``, ``prev_hash``,
``principal.on_behalf_of``, a gap's ``dropped`` range, a checkpoint's ``head`` and
``signature``...) is kept as is under ``unmapped``, so nothing is lost.

Example::

    ocsf_api_activity(event)["type_uid"]  # 600399 for a decision
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from capgate import __version__

OCSF_VERSION = "1.1.0"
CATEGORY_UID, CLASS_UID = 6, 6003
CREATE, UPDATE, OTHER = 1, 3, 99
INFORMATIONAL, LOW, MEDIUM, HIGH = 1, 2, 3, 4
SUCCESS, FAILURE = 1, 2
_ACTIVITY_NAMES = {CREATE: "Create", UPDATE: "Update"}
_SEVERITY_NAMES = {0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High"}
_STATUS_NAMES = {0: "Unknown", SUCCESS: "Success", FAILURE: "Failure", OTHER: "Other"}
# Keys every mapper consumes (they land in metadata, time and the class fields).
_COMMON = ("schema_version", "event_id", "event_type", "time", "seq", "decision_id", "instance_id")

Mapped = dict[str, Any]


def ocsf_api_activity(event: dict[str, Any], *, product_version: str = __version__) -> Mapped:
    """``event`` (any capgate event type) as one OCSF 1.1.0 API Activity event."""
    mapper = _MAPPERS.get(event.get("event_type", ""), _system)
    fields, consumed = mapper(event)
    activity_id = fields.pop("activity_id")
    activity_name = fields.pop("activity_name", None) or _ACTIVITY_NAMES[activity_id]
    status_id = fields.pop("status_id")
    severity_id = fields.pop("severity_id")
    metadata: Mapped = {
        "product": {"name": "capgate", "vendor_name": "capgate", "version": product_version},
        "version": OCSF_VERSION,
        "uid": event.get("event_id", ""),
        "log_name": "capgate.events",
        "log_version": event.get("schema_version", ""),
    }
    if event.get("decision_id"):
        metadata["correlation_uid"] = event["decision_id"]
    if isinstance(event.get("seq"), int):
        metadata["sequence"] = event["seq"]
    ocsf: Mapped = {
        "category_uid": CATEGORY_UID,
        "category_name": "Application Activity",
        "class_uid": CLASS_UID,
        "class_name": "API Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": f"API Activity: {activity_name}",
        "time": _epoch_ms(event.get("time")),
        "severity_id": severity_id,
        "severity": _SEVERITY_NAMES[severity_id],
        "status_id": status_id,
        "status": fields.pop("status", None) or _STATUS_NAMES[status_id],
        "metadata": metadata,
        **fields,
    }
    if event.get("instance_id"):
        ocsf["dst_endpoint"] = {"name": event["instance_id"], "svc_name": "capgate"}
    ocsf["api"].setdefault("service", {"name": "capgate", "version": product_version})
    ocsf["api"].setdefault("request", {"uid": event.get("decision_id") or event.get("event_id")})
    skip = set(_COMMON) | consumed
    unmapped = {k: v for k, v in event.items() if k not in skip}
    unmapped.update(ocsf.pop("unmapped", {}))
    if unmapped:
        ocsf["unmapped"] = unmapped
    return ocsf


def _decision(event: dict[str, Any]) -> tuple[Mapped, set[str]]:
    effect = event.get("effect", "")
    reasons = event.get("reasons") or []
    principal = event.get("principal") or {}
    fields: Mapped = {
        "activity_id": OTHER,
        "activity_name": "Authorize",
        "severity_id": {"allow": INFORMATIONAL, "require_approval": LOW}.get(effect, MEDIUM),
        "status_id": {"allow": SUCCESS, "deny": FAILURE}.get(effect, OTHER),
        "status": "Require approval" if effect == "require_approval" else None,
        "actor": {
            "user": _user(principal.get("id", ""), principal.get("roles"), event),
            "authorizations": [
                {
                    "decision": effect,
                    "policy": {
                        "name": "capgate.authz",
                        "uid": event.get("policy_revision", ""),
                        "version": event.get("policy_revision", ""),
                    },
                }
            ],
        },
        "api": {"operation": event.get("capability", ""), "response": {"message": effect}},
        "resources": _resources(event),
        "src_endpoint": {"name": principal.get("id", "")},
        "message": f"{effect} {event.get('capability', '')} for {principal.get('id', '')}",
        "unmapped": {"principal": _without(principal, ("id", "roles"))},
    }
    if reasons:
        fields["status_code"] = reasons[0].get("code", "")
        fields["status_detail"] = "; ".join(r.get("message", "") for r in reasons)
        if effect != "allow":
            fields["api"]["response"]["error"] = reasons[0].get("code", "")
    consumed = {"tenant_id", "principal", "capability", "tool", "effect", "policy_revision"}
    return fields, consumed


def _settlement(event: dict[str, Any]) -> tuple[Mapped, set[str]]:
    outcome = event.get("outcome", "")
    principal_id = (event.get("principal") or {}).get("id", "")
    severity = INFORMATIONAL if outcome == "succeeded" else LOW
    if (event.get("overrun_usd_micros") or 0) > 0:
        severity = MEDIUM
    fields: Mapped = {
        "activity_id": OTHER,
        "activity_name": "Settle",
        "severity_id": severity,
        "status_id": {"succeeded": SUCCESS, "failed": FAILURE}.get(outcome, OTHER),
        "status": outcome.capitalize() if outcome not in ("succeeded", "failed") else None,
        "actor": {"user": _user(principal_id, None, event)},
        "api": {"operation": event.get("capability", ""), "response": {"message": outcome}},
        "resources": _resources(event),
        "src_endpoint": {"name": principal_id},
        "message": f"{event.get('capability', '')} {outcome}",
    }
    return fields, {"tenant_id", "principal", "capability", "tool", "outcome"}


def _approval(event: dict[str, Any]) -> tuple[Mapped, set[str]]:
    transition = event.get("transition") or {}
    before, after = transition.get("from"), transition.get("to", "")
    approval = event.get("approval") or {}
    resource: Mapped = {"type": "approval", "uid": event.get("approval_id", "")}
    if approval.get("capability"):
        resource["name"] = approval["capability"]
    fields: Mapped = {
        "activity_id": CREATE if before is None else UPDATE,
        "severity_id": LOW if after == "rejected" else INFORMATIONAL,
        "status_id": SUCCESS,
        "status_detail": f"{before or 'none'} -> {after}",
        "actor": _actor(event),
        "api": {"operation": f"approval.{after}"},
        "resources": [resource],
        "src_endpoint": {"name": _actor_name(event)},
        "message": f"approval {event.get('approval_id', '')} {before or 'none'} -> {after}",
        "unmapped": _actor_rest(event),
    }
    return fields, {"tenant_id", "actor"}


def _control(event: dict[str, Any]) -> tuple[Mapped, set[str]]:
    action = event.get("action", "")
    if event.get("run_id"):
        resource = {"type": "run", "uid": event["run_id"]}
    else:
        resource = {"type": "tenant", "uid": event.get("tenant_id", "")}
    fields: Mapped = {
        "activity_id": UPDATE,
        "severity_id": MEDIUM,
        "status_id": SUCCESS,
        "actor": _actor(event),
        "api": {"operation": action},
        "resources": [resource],
        "src_endpoint": {"name": _actor_name(event)},
        "message": f"{action}: {event.get('reason', '')}",
        "unmapped": _actor_rest(event),
    }
    return fields, {"tenant_id", "actor", "action"}


def _system(event: dict[str, Any]) -> tuple[Mapped, set[str]]:
    """Events capgate raises itself: gap, checkpoint, and any later type."""
    event_type = str(event.get("event_type", ""))
    severity, status = {
        "gap": (HIGH, FAILURE),
        "checkpoint": (INFORMATIONAL, SUCCESS),
    }.get(event_type, (0, 0))
    fields: Mapped = {
        "activity_id": OTHER,
        "activity_name": event_type.capitalize() or "Other",
        "severity_id": severity,
        "status_id": status,
        "actor": {"app_name": "capgate"},
        "api": {"operation": event_type},
        "src_endpoint": {"name": str(event.get("instance_id") or "capgate")},
        "message": _system_message(event),
    }
    return fields, set()


def _system_message(event: dict[str, Any]) -> str:
    dropped, head = event.get("dropped"), event.get("head")
    if event.get("event_type") == "gap" and isinstance(dropped, dict):
        return (
            f"{dropped.get('count')} events dropped at the outbox cap: "
            f"seq {dropped.get('from_seq')}-{dropped.get('to_seq')}"
        )
    if event.get("event_type") == "checkpoint" and isinstance(head, dict):
        return f"signed checkpoint of the chain at seq {head.get('seq')}"
    return f"capgate {event.get('event_type', '')}"


def _user(uid: str, roles: Iterable[str] | None, event: dict[str, Any]) -> Mapped:
    user: Mapped = {"uid": uid, "name": uid}
    if roles:
        user["groups"] = [{"name": role} for role in roles]
    if event.get("tenant_id"):
        user["org"] = {"uid": event["tenant_id"]}
    return user


def _actor(event: dict[str, Any]) -> Mapped:
    """The approver or operator; capgate itself for an expiry found by a sweep."""
    actor = event.get("actor")
    if not actor:
        return {"app_name": "capgate"}
    return {"user": _user(actor.get("principal_id", ""), actor.get("roles"), event)}


def _actor_rest(event: dict[str, Any]) -> Mapped:
    """What of the actor OCSF's User has no field for: how it was authenticated."""
    actor = event.get("actor") or {}
    return {"actor": {"method": actor["method"]}} if actor.get("method") else {}


def _actor_name(event: dict[str, Any]) -> str:
    return str((event.get("actor") or {}).get("principal_id") or "capgate")


def _resources(event: dict[str, Any]) -> list[Mapped]:
    resources: list[Mapped] = []
    if event.get("tool"):
        resources.append({"type": "tool", "name": event["tool"]})
    requested = (event.get("input") or {}).get("resource") or {}
    if requested.get("id") or requested.get("type"):
        resources.append({"type": requested.get("type", ""), "uid": requested.get("id", "")})
    return resources


def _without(record: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in keys}


def _epoch_ms(value: Any) -> int:
    """RFC 3339 → milliseconds since the epoch (OCSF ``timestamp_t``); 0 if absent."""
    if not isinstance(value, str) or not value:
        return 0
    return round(datetime.fromisoformat(value).timestamp() * 1000)


_MAPPERS: dict[str, Callable[[dict[str, Any]], tuple[Mapped, set[str]]]] = {
    "decision": _decision,
    "settlement": _settlement,
    "approval": _approval,
    "control": _control,
}
