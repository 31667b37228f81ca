"""Replay recorded decisions against a candidate bundle: what would change (DESIGN §1).

One job per module:
  - ``records``: a decision log's lines → :class:`DecisionRecord` (pure);
  - ``logs``: the files and directories named on the command line → records;
  - ``outcome``: what the policy answered, from a record or an evaluation (pure);
  - ``evaluate``: a bundle compiled once, evaluating recorded inputs;
  - ``compare``: outcomes before and after → :class:`ImpactReport` (pure);
  - ``gate``: the thresholds a report must stay within (pure);
  - ``render``: the report as tables or JSON; ``cli``: ``capgate replay``.

    report = compare(
        (Replayed(r, candidate.outcome(r.input)) for r in read_records(paths)),
        candidate_revision=candidate.revision,
    )
"""

from capgate.impact.compare import (
    CapabilityImpact,
    Example,
    ImpactReport,
    Replayed,
    compare,
    direction,
    transition,
)
from capgate.impact.evaluate import Evaluator
from capgate.impact.gate import Thresholds, crossed
from capgate.impact.logs import read_records
from capgate.impact.outcome import PolicyOutcome, recorded_outcome
from capgate.impact.records import DecisionRecord, LogError, parse_log

__all__ = [
    "CapabilityImpact",
    "DecisionRecord",
    "Evaluator",
    "Example",
    "ImpactReport",
    "LogError",
    "PolicyOutcome",
    "Replayed",
    "Thresholds",
    "compare",
    "crossed",
    "direction",
    "parse_log",
    "read_records",
    "recorded_outcome",
    "transition",
]
