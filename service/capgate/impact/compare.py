"""Compare two outcomes of each recorded decision into an :class:`ImpactReport`. Pure.

*Before* is what the log records the policy answered
(:func:`~capgate.impact.outcome.recorded_outcome`), or, given a baseline bundle, the
baseline's answer to the same recorded input. *After* is the candidate bundle's.

A compared decision is unchanged when both outcomes have the same effect, shadow mark
and set of reason codes. Otherwise its change is one of (the keys of
``ImpactReport.transitions``):
  - ``"<before>-><after>"``: the enforced effect changed (``allow->deny``,
    ``require_approval->allow``, ``deny->error``, ...);
  - ``"shadow"``: the same enforced effect (ALLOW), but the shadowed verdict changed
    (``allow (shadow deny)`` to ``allow``, say);
  - ``"reasons"``: the same effect, other reason codes.
A change *loosens* when the enforced effect ranks lower after than before and
*tightens* when it ranks higher (allow < require_approval < deny = error; an error is
enforced as DENY). ``deny->error`` and ``error->deny`` do neither.

Not compared: idempotent replays (copies of an earlier decision, answered from its
idempotency key) and, without a baseline, decisions the sidecar made
(``not_comparable``, by reason code). Every decision counts towards ``errors`` when the
candidate fails on its input.

    report = compare(replayed, candidate_revision="r2", examples=5)
    report.transitions    # {"allow->require_approval": 4, "reasons": 1}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from capgate.impact.outcome import (
    ERROR,
    RANK,
    PolicyOutcome,
    recorded_outcome,
    sidecar_code,
)
from capgate.impact.records import DecisionRecord

SHADOW = "shadow"
REASONS = "reasons"
LOOSENED = "loosened"
TIGHTENED = "tightened"


@dataclass(frozen=True, slots=True)
class Replayed:
    """One recorded decision with the candidate's outcome (and the baseline's, if any)."""

    record: DecisionRecord
    candidate: PolicyOutcome
    baseline: PolicyOutcome | None = None


def transition(before: PolicyOutcome, after: PolicyOutcome) -> str | None:
    """The change from ``before`` to ``after`` (see the module docstring); ``None`` if
    unchanged."""
    if before.same_as(after):
        return None
    if before.enforced != after.enforced:
        return f"{before.enforced}->{after.enforced}"
    if before.effect != after.effect or before.shadow != after.shadow:
        return SHADOW
    return REASONS


def direction(change: str) -> str | None:
    """``"loosened"`` or ``"tightened"`` for a :func:`transition` key; ``None`` when the
    enforced effect keeps its rank (``shadow``, ``reasons``, ``deny->error``)."""
    if "->" not in change:
        return None
    before, after = change.split("->")
    if RANK[after] < RANK[before]:
        return LOOSENED
    if RANK[after] > RANK[before]:
        return TIGHTENED
    return None


@dataclass(frozen=True, slots=True)
class Example:
    """A changed decision, as the report shows it; ``where`` is ``file:line``."""

    decision_id: str
    tenant_id: str
    capability: str
    tool: str
    before: PolicyOutcome
    after: PolicyOutcome
    masked: bool
    dry_run: bool
    where: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "tenant_id": self.tenant_id,
            "capability": self.capability,
            "tool": self.tool,
            "before": _outcome_dict(self.before),
            "after": _outcome_dict(self.after),
            "masked": self.masked,
            "dry_run": self.dry_run,
            "where": self.where,
        }


@dataclass(frozen=True, slots=True)
class CapabilityImpact:
    """One capability's compared decisions and their changes (by transition)."""

    compared: int
    changed: int
    loosened: int
    tightened: int
    transitions: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "changed": self.changed,
            "loosened": self.loosened,
            "tightened": self.tightened,
            "transitions": dict(self.transitions),
        }


@dataclass(frozen=True, slots=True)
class ImpactReport:
    """What the candidate changes. Counts are of decisions. ``decisions``: decision
    events read, idempotent replays excluded; ``not_comparable``: of those, the ones
    the sidecar decided, by reason code (none with a baseline); ``compared``: the rest.
    ``errors``: decisions whose input the candidate failed on. ``masked``/``dry_run``:
    decisions with masked inputs / marked dry run; ``masked_changed``: changed ones
    with masked inputs (a masked value may be why). ``baseline_disagrees``: decisions
    whose recorded outcome the baseline does not reproduce (``None`` without one).
    ``examples``: up to N per transition, in log order."""

    candidate_revision: str
    baseline_revision: str | None
    decisions: int
    idempotent_replays: int
    not_comparable: dict[str, int]
    compared: int
    changed: int
    loosened: int
    tightened: int
    transitions: dict[str, int]
    capabilities: dict[str, CapabilityImpact]
    examples: dict[str, tuple[Example, ...]]
    errors: int
    masked: int
    masked_changed: int
    dry_run: int
    recorded_revisions: dict[str, int]
    baseline_disagrees: int | None

    @property
    def unchanged(self) -> int:
        return self.compared - self.changed

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate_revision": self.candidate_revision,
            "baseline_revision": self.baseline_revision,
            "recorded_revisions": dict(self.recorded_revisions),
            "decisions": self.decisions,
            "idempotent_replays": self.idempotent_replays,
            "not_comparable": dict(self.not_comparable),
            "compared": self.compared,
            "unchanged": self.unchanged,
            "changed": self.changed,
            "loosened": self.loosened,
            "tightened": self.tightened,
            "errors": self.errors,
            "masked": self.masked,
            "masked_changed": self.masked_changed,
            "dry_run": self.dry_run,
            "baseline_disagrees": self.baseline_disagrees,
            "transitions": dict(self.transitions),
            "capabilities": {name: c.to_dict() for name, c in self.capabilities.items()},
            "examples": {k: [e.to_dict() for e in v] for k, v in self.examples.items()},
        }


def compare(
    replayed: Iterable[Replayed],
    *,
    candidate_revision: str,
    baseline_revision: str | None = None,
    examples: int = 5,
) -> ImpactReport:
    """The report over ``replayed`` (consumed once, in log order). With
    ``baseline_revision``, every item must carry the baseline's outcome.

    Raises:
        ValueError: a baseline revision is given and an item has no baseline outcome.
    """
    tally = _Tally(examples, with_baseline=baseline_revision is not None)
    for item in replayed:
        tally.add(item)
    return tally.report(candidate_revision, baseline_revision)


@dataclass(slots=True)
class _Capability:
    compared: int = 0
    changed: int = 0
    loosened: int = 0
    tightened: int = 0
    transitions: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class _Tally:
    max_examples: int
    with_baseline: bool
    decisions: int = 0
    idempotent_replays: int = 0
    errors: int = 0
    masked: int = 0
    masked_changed: int = 0
    dry_run: int = 0
    baseline_disagrees: int = 0
    not_comparable: Counter[str] = field(default_factory=Counter)
    revisions: Counter[str] = field(default_factory=Counter)
    transitions: Counter[str] = field(default_factory=Counter)
    directions: Counter[str] = field(default_factory=Counter)
    capabilities: dict[str, _Capability] = field(default_factory=dict)
    examples: dict[str, list[Example]] = field(default_factory=dict)

    def add(self, item: Replayed) -> None:
        record = item.record
        if record.idempotent_replay:
            self.idempotent_replays += 1
            return
        self.decisions += 1
        self.revisions[record.policy_revision] += 1
        self.errors += item.candidate.effect == ERROR
        self.masked += bool(record.masked)
        self.dry_run += record.dry_run
        recorded = recorded_outcome(record)
        if self.with_baseline:
            if item.baseline is None:
                raise ValueError(f"{record.where}: no baseline outcome")
            before = item.baseline
            self.baseline_disagrees += recorded is not None and not recorded.same_as(before)
        elif recorded is None:
            self.not_comparable[sidecar_code(record) or "?"] += 1
            return
        else:
            before = recorded
        self._compared(record, before, item.candidate)

    def _compared(
        self, record: DecisionRecord, before: PolicyOutcome, after: PolicyOutcome
    ) -> None:
        capability = self.capabilities.setdefault(record.capability, _Capability())
        capability.compared += 1
        change = transition(before, after)
        if change is None:
            return
        way = direction(change)
        capability.changed += 1
        capability.transitions[change] += 1
        self.transitions[change] += 1
        self.masked_changed += bool(record.masked)
        if way is not None:
            self.directions[way] += 1
            if way == LOOSENED:
                capability.loosened += 1
            else:
                capability.tightened += 1
        shown = self.examples.setdefault(change, [])
        if len(shown) < self.max_examples:
            shown.append(
                Example(
                    decision_id=record.decision_id,
                    tenant_id=record.tenant_id,
                    capability=record.capability,
                    tool=record.tool,
                    before=before,
                    after=after,
                    masked=bool(record.masked),
                    dry_run=record.dry_run,
                    where=record.where,
                )
            )

    def report(self, candidate_revision: str, baseline_revision: str | None) -> ImpactReport:
        not_comparable = dict(sorted(self.not_comparable.items()))
        changed = sum(self.transitions.values())
        return ImpactReport(
            candidate_revision=candidate_revision,
            baseline_revision=baseline_revision,
            decisions=self.decisions,
            idempotent_replays=self.idempotent_replays,
            not_comparable=not_comparable,
            compared=self.decisions - sum(not_comparable.values()),
            changed=changed,
            loosened=self.directions[LOOSENED],
            tightened=self.directions[TIGHTENED],
            transitions=dict(sorted(self.transitions.items())),
            capabilities={
                name: CapabilityImpact(
                    c.compared,
                    c.changed,
                    c.loosened,
                    c.tightened,
                    dict(sorted(c.transitions.items())),
                )
                for name, c in sorted(self.capabilities.items())
            },
            examples={k: tuple(v) for k, v in sorted(self.examples.items()) if v},
            errors=self.errors,
            masked=self.masked,
            masked_changed=self.masked_changed,
            dry_run=self.dry_run,
            recorded_revisions=dict(sorted(self.revisions.items())),
            baseline_disagrees=self.baseline_disagrees if self.with_baseline else None,
        )


def _outcome_dict(outcome: PolicyOutcome) -> dict[str, Any]:
    out: dict[str, Any] = {
        "effect": outcome.effect,
        "shadow": outcome.shadow,
        "reason_codes": list(outcome.reason_codes),
    }
    if outcome.error:
        out["error"] = outcome.error
    return out
