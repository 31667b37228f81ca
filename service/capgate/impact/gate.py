"""Thresholds a replay must stay within (a CI gate on a policy change). Pure.

crossed(report, Thresholds(max_loosened=0))
# ["3 loosened > --max-loosened 0"], or [] within every threshold
"""

from __future__ import annotations

from dataclasses import dataclass

from capgate.impact.compare import ImpactReport


@dataclass(frozen=True, slots=True)
class Thresholds:
    """``None``: no limit. ``fail_on_error``: any decision whose input the candidate
    fails on crosses the gate."""

    max_changes: int | None = None
    max_loosened: int | None = None
    max_tightened: int | None = None
    fail_on_error: bool = True


def crossed(report: ImpactReport, thresholds: Thresholds) -> list[str]:
    """Each threshold ``report`` crosses, as a line naming the count and the flag."""
    problems = [
        f"{count} {what} > --{flag} {limit}"
        for count, what, flag, limit in (
            (report.changed, "changed", "max-changes", thresholds.max_changes),
            (report.loosened, "loosened", "max-loosened", thresholds.max_loosened),
            (report.tightened, "tightened", "max-tightened", thresholds.max_tightened),
        )
        if limit is not None and count > limit
    ]
    if thresholds.fail_on_error and report.errors:
        problems.append(f"{report.errors} evaluation errors (--fail-on-error)")
    return problems
