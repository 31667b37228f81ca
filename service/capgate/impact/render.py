"""Show an :class:`ImpactReport`: rich tables for people, JSON for machines.

The JSON document is the report's ``to_dict()`` plus ``"ok"`` and ``"crossed"`` (the
thresholds crossed, as :func:`capgate.impact.gate.crossed` words them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from capgate.impact.compare import REASONS, SHADOW, Example, ImpactReport, direction
from capgate.impact.outcome import PolicyOutcome

KIND_LABELS = {
    SHADOW: "shadow verdict only",
    REASONS: "reason codes only",
}


def report_json(report: ImpactReport, crossed: Sequence[str]) -> str:
    return json.dumps(
        {"ok": not crossed, "crossed": list(crossed), **report.to_dict()},
        indent=2,
        ensure_ascii=False,
    )


def print_report(console: Console, report: ImpactReport) -> None:
    """The summary; then, if anything changed, the changes by capability and examples."""
    for line in _summary(report):
        console.print(Text(line))
    if not report.changed:
        return
    console.print(_changes(report))
    if report.examples:
        console.print(Text("Examples:"))
    for key, examples in report.examples.items():
        console.print(Text(f"  {transition_label(key)}"))
        for example in examples:
            console.print(Text(f"    {example.decision_id}  {example.capability}"))
            console.print(Text(f"      {_example_change(example)}"))
            console.print(Text(f"      at {example.where}"))


def transition_label(key: str) -> str:
    """``allow->deny`` as ``allow → deny``; ``reasons`` as ``reason codes only``."""
    return KIND_LABELS.get(key) or key.replace("->", " → ")


def _summary(report: ImpactReport) -> list[str]:
    revisions = ", ".join(f"{rev or '(none)'}: {n}" for rev, n in report.recorded_revisions.items())
    before = (
        f"the baseline bundle {report.baseline_revision or '(no revision)'}"
        if report.baseline_revision is not None
        else f"the recorded decisions ({revisions or 'none'})"
    )
    lines = [
        f"candidate:      {report.candidate_revision or '(no revision)'}",
        f"compared with:  {before}",
        f"decisions:      {report.decisions} "
        f"(and {report.idempotent_replays} idempotent replays, skipped)",
        f"compared:       {report.compared}: unchanged {report.unchanged}, "
        f"changed {report.changed} (tightened {report.tightened}, loosened {report.loosened})",
    ]
    if report.not_comparable:
        codes = ", ".join(f"{code} {n}" for code, n in report.not_comparable.items())
        lines.append(f"not comparable: {codes} (the sidecar decided; --baseline compares them)")
    lines += [
        f"errors:         {report.errors} (inputs the candidate fails on)",
        f"masked inputs:  {report.masked} ({report.masked_changed} changed); "
        f"dry runs: {report.dry_run}",
    ]
    if report.baseline_disagrees:
        lines.append(
            f"warning: the baseline answers {report.baseline_disagrees} recorded decisions "
            "differently (another revision, masked values, or sidecar refusals)"
        )
    return lines


def _changes(report: ImpactReport) -> Table:
    table = Table(title="Changes by capability")
    table.add_column("capability (compared)", no_wrap=True)
    table.add_column("transition", no_wrap=True)
    table.add_column("decisions", justify="right")
    table.add_column("direction")
    for name, impact in report.capabilities.items():
        for i, (key, count) in enumerate(impact.transitions.items()):
            table.add_row(
                f"{name} ({impact.compared})" if i == 0 else "",
                transition_label(key),
                str(count),
                direction(key) or "",
            )
    unchanged = sum(1 for c in report.capabilities.values() if not c.changed)
    table.caption = f"{unchanged} other capabilities compared, unchanged"
    return table


def _example_change(example: Example) -> str:
    notes = [n for n, on in (("masked input", example.masked), ("dry run", example.dry_run)) if on]
    if example.after.error:
        notes.append(f"error: {example.after.error}")
    change = f"{_outcome(example.before)} → {_outcome(example.after)}"
    return change + "".join(f"  ({note})" for note in notes)


def _outcome(outcome: PolicyOutcome) -> str:
    codes = ",".join(outcome.reason_codes)
    return outcome.label + (f" [{codes}]" if codes else "")
