"""``capgate replay``: what a candidate bundle would change in recorded decisions.

Exit codes: 0 within every threshold; 1 a threshold crossed (each is printed on
stderr); 2 bad input (a log that cannot be read or has a malformed line, named
``file:line: field``; a bundle that does not load or compile). See
docs/security-teams/replay.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from capgate.errors import BundleError
from capgate.impact.compare import Replayed, compare
from capgate.impact.evaluate import DEFAULT_ENTRYPOINT, Evaluator
from capgate.impact.gate import Thresholds, crossed
from capgate.impact.logs import read_records
from capgate.impact.records import LogError
from capgate.impact.render import print_report, report_json


def replay(
    log: Annotated[
        list[Path],
        typer.Option(
            "--log", help="decision log (JSON Lines, .gz) or a directory of *.jsonl; repeatable"
        ),
    ],
    bundle: Annotated[
        Path, typer.Option("--bundle", help="the candidate bundle: directory or .tar.gz")
    ],
    baseline: Annotated[
        Path | None,
        typer.Option(
            help="compare against this bundle's answers to the same inputs, not the log's"
        ),
    ] = None,
    entrypoint: Annotated[str, typer.Option(help="the policy rule")] = DEFAULT_ENTRYPOINT,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    examples: Annotated[
        int, typer.Option("--examples", min=0, help="examples shown per transition")
    ] = 5,
    max_changes: Annotated[
        int | None, typer.Option(min=0, help="fail (exit 1) above this many changed decisions")
    ] = None,
    max_loosened: Annotated[
        int | None,
        typer.Option(min=0, help="fail above this many loosened (deny→allow, ...) decisions"),
    ] = None,
    max_tightened: Annotated[
        int | None,
        typer.Option(min=0, help="fail above this many tightened (allow→deny, ...) decisions"),
    ] = None,
    fail_on_error: Annotated[
        bool, typer.Option(help="fail when the candidate cannot evaluate a recorded input")
    ] = True,
) -> None:
    """Replay recorded decisions against a candidate bundle; report what would change."""
    try:
        candidate = Evaluator.load(bundle, entrypoint)
        reference = Evaluator.load(baseline, entrypoint) if baseline is not None else None
    except BundleError as exc:
        typer.echo(f"capgate: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        report = compare(
            _replayed(log, candidate, reference),
            candidate_revision=candidate.revision,
            baseline_revision=reference.revision if reference is not None else None,
            examples=examples,
        )
    except LogError as exc:
        typer.echo(f"capgate: {exc}", err=True)
        raise typer.Exit(2) from exc
    problems = crossed(
        report,
        Thresholds(
            max_changes=max_changes,
            max_loosened=max_loosened,
            max_tightened=max_tightened,
            fail_on_error=fail_on_error,
        ),
    )
    if as_json:
        typer.echo(report_json(report, problems))
    else:
        print_report(Console(), report)
    for problem in problems:
        typer.echo(f"capgate: threshold crossed: {problem}", err=True)
    raise typer.Exit(1 if problems else 0)


def _replayed(
    logs: Sequence[Path], candidate: Evaluator, baseline: Evaluator | None
) -> Iterator[Replayed]:
    for record in read_records(logs):
        yield Replayed(
            record,
            candidate.outcome(record.input),
            baseline.outcome(record.input) if baseline is not None else None,
        )
