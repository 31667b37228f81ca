"""What a policy answered for one input, from a log or from an evaluation. Pure.

An outcome is the policy's ``effect`` (``allow``, ``deny``, ``require_approval``, or
``error`` when evaluation failed: the sidecar denies ``POLICY_ERROR``), its reason
codes, and whether the effect was in ``shadow`` (not enforced: the caller got ALLOW).

From a recorded decision event (:func:`recorded_outcome`):
  - ``shadow`` set: the policy's effect is the shadow's; the caller got ALLOW. This
    holds even when the sidecar then refused the call (a budget, a stopped run): the
    shadow was recorded when the policy answered.
  - reason ``POLICY_ERROR``: the policy failed (or its result was malformed): ``error``.
  - another sidecar reason code (:data:`SIDECAR_CODES`: budgets, rate limits, run and
    tenant control, approvals, an unavailable store, log or bundle): the sidecar
    decided, and the event does not say what the policy answered (a budget refusal
    follows an ALLOW *or* a REQUIRE_APPROVAL; an invalid approval is refused before
    the policy runs). Not comparable: ``None``.
  - otherwise: the recorded effect and reasons are the policy's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from capgate.decision import reasons
from capgate.decision.model import Effect, PolicyResult
from capgate.impact.records import DecisionRecord

ERROR = "error"
ALLOW = Effect.ALLOW.value
# How much an effect holds back the caller: a change to a higher rank tightens.
# An error is enforced as DENY (fail closed).
RANK = {ALLOW: 0, Effect.REQUIRE_APPROVAL.value: 1, Effect.DENY.value: 2, ERROR: 2}
SIDECAR_CODES = frozenset(
    {
        reasons.POLICY_ERROR,
        reasons.POLICY_UNAVAILABLE,
        reasons.BUDGET_EXCEEDED,
        reasons.CALL_LIMIT_EXCEEDED,
        reasons.TOKEN_LIMIT_EXCEEDED,
        reasons.BUDGET_STORE_UNAVAILABLE,
        reasons.RATE_LIMITED,
        reasons.APPROVAL_INVALID,
        reasons.RUN_STOPPED,
        reasons.TENANT_READ_ONLY,
        reasons.TENANT_FROZEN,
        reasons.AUDIT_UNAVAILABLE,
    }
)


@dataclass(frozen=True, slots=True)
class PolicyOutcome:
    """``effect``: allow | deny | require_approval | error. ``shadow``: the effect was
    not enforced (never set for allow or error). ``error`` (not compared): why the
    evaluation failed."""

    effect: str
    reason_codes: tuple[str, ...] = ()
    shadow: bool = False
    error: str = field(default="", compare=False)

    @property
    def enforced(self) -> str:
        """The effect the policy step hands on: ALLOW in shadow mode."""
        return ALLOW if self.shadow else self.effect

    @property
    def label(self) -> str:
        """``deny``, ``allow (shadow deny)``, ``error``."""
        return f"{ALLOW} (shadow {self.effect})" if self.shadow else self.effect

    def same_as(self, other: PolicyOutcome) -> bool:
        """Same effect, shadow and set of reason codes (their order does not count)."""
        return (
            self.effect == other.effect
            and self.shadow == other.shadow
            and sorted(set(self.reason_codes)) == sorted(set(other.reason_codes))
        )


def error_outcome(problem: str) -> PolicyOutcome:
    return PolicyOutcome(ERROR, error=problem)


def result_outcome(result: PolicyResult) -> PolicyOutcome:
    """The outcome of an evaluation (capgate/decision/pipeline.py's shadow rule)."""
    shadow = result.enforcement == "shadow" and result.effect is not Effect.ALLOW
    return PolicyOutcome(result.effect.value, tuple(r.code for r in result.reasons), shadow)


def sidecar_code(record: DecisionRecord) -> str | None:
    """The first sidecar reason code of the recorded decision, if any."""
    return next((code for code in record.reason_codes if code in SIDECAR_CODES), None)


def recorded_outcome(record: DecisionRecord) -> PolicyOutcome | None:
    """What the policy answered, as the event records it; ``None`` when the sidecar
    decided and the event does not say (see the module docstring)."""
    if record.shadow_effect is not None:
        effect = record.shadow_effect
        return PolicyOutcome(effect, record.shadow_reason_codes, shadow=effect != ALLOW)
    code = sidecar_code(record)
    if code == reasons.POLICY_ERROR:
        return PolicyOutcome(ERROR)
    if code is not None:
        return None
    return PolicyOutcome(record.effect, record.reason_codes)
