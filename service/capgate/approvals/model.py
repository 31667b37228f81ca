"""Approvals (DESIGN §7): a human sign-off bound to one exact action. Pure types.

Lifecycle::

    PENDING ──quorum of APPROVE──▶ APPROVED ──used by an ALLOW──▶ CONSUMED
       │  └──any REJECT──▶ REJECTED          │
       └──past expires_at──▶ EXPIRED ◀───────┘ (unused past expires_at)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from capgate.decision.model import Reason


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CONSUMED = "consumed"


class Verdict(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Vote:
    """One approver's verdict; ``principal_id`` and ``roles`` come from its credentials."""

    principal_id: str
    roles: tuple[str, ...]
    verdict: Verdict
    comment: str
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class Approval:
    """One approval. ``parameters`` are the action's parameters exactly as approved;
    ``parameters_sha256`` hashes their RFC 8785 canonical JSON; ``action_sha256``
    binds tenant, principal, on_behalf_of, capability, tool and parameters (see
    :mod:`capgate.approvals.binding`)."""

    approval_id: str
    tenant_id: str
    state: ApprovalState
    requester_principal_id: str
    on_behalf_of: str
    capability: str
    tool: str
    parameters: dict[str, Any]
    parameters_sha256: str
    action_sha256: str
    policy_revision: str
    approver_roles: tuple[str, ...]
    min_approvals: int
    votes: tuple[Vote, ...]
    request_decision_id: str
    consumed_by_decision_id: str
    run_id: str
    workflow: str
    reasons: tuple[Reason, ...]
    created_at: datetime
    expires_at: datetime
    updated_at: datetime

    def approvers(self) -> tuple[Vote, ...]:
        """The APPROVE votes, one per approver."""
        return tuple(v for v in self.votes if v.verdict is Verdict.APPROVE)


@dataclass(frozen=True, slots=True)
class Transition:
    """One entry of a tenant's approval log, as WatchApprovals streams it.

    ``cursor`` resumes after this entry; ``previous_state`` is None on creation;
    ``actor`` is the approver, the agent's principal (creation, consumption), or ""
    (expiry)."""

    cursor: str
    approval: Approval
    previous_state: ApprovalState | None
    actor: str


@dataclass(frozen=True, slots=True)
class ApprovalPage:
    """A page of ListApprovals: ``next_cursor`` "" on the last page; ``watch_cursor``
    is where a watcher resumes to see every transition after this page was read."""

    approvals: tuple[Approval, ...]
    next_cursor: str
    watch_cursor: str
