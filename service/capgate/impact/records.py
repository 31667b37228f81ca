"""Decision events of a decision log (JSON Lines), as :class:`DecisionRecord`. Pure.

Each non-blank line is one event (capgate/events/event.py). Lines whose
``event_type`` is not ``"decision"`` (settlement, approval, control, gap,
checkpoint) are skipped. A decision event must carry these fields, of these types
(other fields are ignored)::

    {"event_type": "decision", "decision_id": str, "tenant_id": str,
     "capability": str, "tool": str,
     "effect": "allow" | "deny" | "require_approval", "reasons": [{"code": str, ...}],
     "policy_revision": str, "dry_run": bool, "idempotent_replay": bool,
     "shadow": {"effect": ..., "reasons": [...]} | null,
     "input": {...}, "masked": [str]}

Anything else raises :class:`LogError` naming the line and the field:

    records = list(parse_log(lines, source="banking.jsonl"))
    records[0].where    # "banking.jsonl:1"
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA_PREFIX = "capgate.decision_event.v1"
EffectName = Literal["allow", "deny", "require_approval"]


class LogError(ValueError):
    """A log that cannot be read: ``<source>[:<line>]: [<field>: ]<problem>``.

    ``line`` is 1-based, ``None`` when the file as a whole is at fault (unreadable,
    missing); ``field`` is the offending field (``reasons.0.code``), ``None`` when the
    line as a whole is (not JSON, not an object).
    """

    def __init__(self, source: str, line: int | None, field: str | None, problem: str) -> None:
        where = source + (f":{line}" if line is not None else "")
        super().__init__(f"{where}: " + (f"{field}: " if field else "") + problem)
        self.source = source
        self.line = line
        self.field = field


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One recorded decision. ``shadow_effect`` is the policy's effect a shadow ALLOW
    hid (``None``: no shadow); ``input`` is the policy input as logged, with the
    ``masked`` paths erased."""

    source: str
    line: int
    decision_id: str
    tenant_id: str
    capability: str
    tool: str
    effect: str
    reason_codes: tuple[str, ...]
    policy_revision: str
    dry_run: bool
    idempotent_replay: bool
    shadow_effect: str | None
    shadow_reason_codes: tuple[str, ...]
    input: Mapping[str, Any]
    masked: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class _Reason(_Model):
    code: Annotated[str, Field(min_length=1)]


class _Shadow(_Model):
    effect: EffectName
    reasons: list[_Reason]


class _DecisionEvent(_Model):
    decision_id: Annotated[str, Field(min_length=1)]
    tenant_id: str
    capability: str
    tool: str
    effect: EffectName
    reasons: list[_Reason]
    policy_revision: str
    dry_run: bool
    idempotent_replay: bool
    shadow: _Shadow | None
    input: dict[str, Any]
    masked: list[str]


def parse_log(lines: Iterable[str], *, source: str) -> Iterator[DecisionRecord]:
    """The decision events of ``lines`` (a log's lines, in order), as records.

    Raises:
        LogError: a line that is not a JSON object, has no string ``event_type``, a
            ``schema_version`` other than v1, or a decision event missing a field or
            holding one of the wrong type.
    """
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        record = parse_line(text, source=source, line=number)
        if record is not None:
            yield record


def parse_line(text: str, *, source: str, line: int) -> DecisionRecord | None:
    """The record of one log line; ``None`` for an event that is not a decision."""
    try:
        event = json.loads(text)
    except ValueError as exc:
        raise LogError(source, line, None, f"not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise LogError(source, line, None, "not a JSON object")
    event_type = event.get("event_type")
    if not isinstance(event_type, str):
        raise LogError(source, line, "event_type", "missing, or not a string")
    version = event.get("schema_version", SCHEMA_PREFIX)
    if not isinstance(version, str) or not version.startswith(SCHEMA_PREFIX):
        raise LogError(source, line, "schema_version", f"{version!r} is not {SCHEMA_PREFIX}")
    if event_type != "decision":
        return None
    try:
        parsed = _DecisionEvent.model_validate(event)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        raise LogError(source, line, field, first["msg"]) from exc
    shadow = parsed.shadow
    return DecisionRecord(
        source=source,
        line=line,
        decision_id=parsed.decision_id,
        tenant_id=parsed.tenant_id,
        capability=parsed.capability,
        tool=parsed.tool,
        effect=parsed.effect,
        reason_codes=tuple(r.code for r in parsed.reasons),
        policy_revision=parsed.policy_revision,
        dry_run=parsed.dry_run,
        idempotent_replay=parsed.idempotent_replay,
        shadow_effect=shadow.effect if shadow else None,
        shadow_reason_codes=tuple(r.code for r in shadow.reasons) if shadow else (),
        input=parsed.input,
        masked=tuple(parsed.masked),
    )
