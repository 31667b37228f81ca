"""Approvals in Redis: read, decide and watch them (creation and consumption happen in
the Authorize script, atomically with the budgets; see budget/scripts/authorize.lua).

Every call is one Lua script (approvals/scripts/*.lua) bounded by a deadline, except
:meth:`RedisApprovalStore.watch`, which blocks on the tenant's transition log (a Redis
stream, https://redis.io/docs/latest/develop/data-types/streams/). Each read first
expires the tenant's due approvals, so nobody sees a stale PENDING, and the EXPIRED
transition is logged once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from capgate.approvals.binding import canonical_json
from capgate.approvals.model import (
    Approval,
    ApprovalPage,
    ApprovalState,
    Transition,
    Verdict,
    Vote,
)
from capgate.budget import keys
from capgate.budget.scripting import Script, decode_ids, from_ms, run_script, text
from capgate.decision.model import Reason
from capgate.errors import (
    BudgetStoreUnavailable,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
)
from capgate.identity.model import Identity

_PRELUDE = (("capgate.budget", "common.lua"), ("capgate.approvals", "approvals.lua"))
READ_SCRIPT = Script(*_PRELUDE, ("capgate.approvals", "read.lua"))
DECIDE_SCRIPT = Script(*_PRELUDE, ("capgate.approvals", "decide.lua"))
SNAPSHOT_VALUES = 16  # 8 (name, value) pairs: see SNAPSHOT_FIELDS in approvals.lua
# Below the Redis client's socket timeout, so a quiet stream never looks like a dead one.
WATCH_BLOCK_MS = 500


@dataclass(frozen=True, slots=True)
class Decided:
    """The approval after a verdict; ``changed``: its state changed (APPROVED or
    REJECTED); ``repeated``: this approver had voted before, and nothing changed."""

    approval: Approval
    changed: bool
    repeated: bool
    expired: tuple[str, ...]


class RedisApprovalStore:
    def __init__(self, client: Redis | RedisCluster, *, deadline_seconds: float) -> None:
        self._client = client
        self._deadline = deadline_seconds

    async def get(self, tenant_id: str, approval_id: str) -> tuple[Approval, tuple[str, ...]]:
        """The approval and the ids of approvals found expired on the way.

        Raises:
            NotFound: no such approval in this tenant (or kept past its retention).
            BudgetStoreUnavailable: Redis did not answer in time.
        """
        reply = await self._read(tenant_id, ["get"], approval_id)
        if text(reply[0]) == "missing":
            raise NotFound(f"approval {approval_id} does not exist in this tenant")
        return decode_snapshot(tenant_id, reply[2:]), decode_ids(reply[1])

    async def list(
        self, tenant_id: str, *, state: ApprovalState | None, page_size: int, cursor: str
    ) -> tuple[ApprovalPage, tuple[str, ...]]:
        """A page of the tenant's approvals, newest first.

        ``cursor``: ``next_cursor`` of the previous page, or "". A page may hold fewer
        than ``page_size`` approvals and still have a next page.

        Raises:
            BudgetStoreUnavailable: Redis did not answer in time.
        """
        args = ["list", state.value if state else "", page_size, cursor]
        reply = await self._read(tenant_id, args, "")
        count = int(reply[4])
        approvals = tuple(
            decode_snapshot(
                tenant_id, reply[5 + n * SNAPSHOT_VALUES : 5 + (n + 1) * SNAPSHOT_VALUES]
            )
            for n in range(count)
        )
        page = ApprovalPage(approvals, next_cursor=text(reply[2]), watch_cursor=text(reply[3]))
        return page, decode_ids(reply[1])

    async def decide(
        self, tenant_id: str, approval_id: str, approver: Identity, verdict: Verdict, comment: str
    ) -> Decided:
        """Record ``approver``'s verdict (rules in approvals/scripts/decide.lua).

        Raises:
            NotFound: no such approval in this tenant.
            FailedPrecondition: it is no longer pending (approved, rejected, expired
                or consumed).
            PermissionDenied: the approver is the requester or the user it acts for,
                or holds none of the approver roles.
            BudgetStoreUnavailable: Redis did not answer in time.
        """
        key_list = [
            keys.approval_key(tenant_id, approval_id),
            keys.approval_log_key(tenant_id),
            keys.approval_expiry_key(tenant_id),
        ]
        args = [approver.principal_id, json.dumps(list(approver.roles)), verdict.value, comment]
        reply = await run_script(
            self._client, DECIDE_SCRIPT, key_list, args, deadline_seconds=self._deadline
        )
        kind = text(reply[0])
        if kind == "missing":
            raise NotFound(f"approval {approval_id} does not exist in this tenant")
        if kind == "state":
            raise FailedPrecondition(f"approval {approval_id} is {text(reply[1])}, not pending")
        if kind == "self":
            raise PermissionDenied(
                "the requesting principal, and the user it acts for, may not approve its own action"
            )
        if kind == "role":
            raise PermissionDenied("the caller holds none of the approval's approver roles")
        changed = text(reply[1])
        approval = decode_snapshot(tenant_id, reply[3:])
        return Decided(approval, changed == "1", changed == "repeat", decode_ids(reply[2]))

    async def head(self, tenant_id: str) -> str:
        """The cursor of the tenant's latest transition ("0-0" when there is none).

        Raises:
            BudgetStoreUnavailable: Redis did not answer in time.
        """
        page, _ = await self.list(tenant_id, state=None, page_size=0, cursor="")
        return page.watch_cursor

    async def watch(
        self,
        tenant_id: str,
        cursor: str,
        on_expired: Callable[[tuple[str, ...]], None] = lambda ids: None,
    ) -> AsyncIterator[Transition]:
        """Every transition after ``cursor`` ("" = from now on), in order, until the
        caller stops iterating. Expires due approvals between reads, so EXPIRED
        transitions appear while someone watches; ``on_expired`` gets the ids of the
        approvals this watch expired (to log them once).

        Raises:
            BudgetStoreUnavailable: Redis failed (the stream ends; resume from the last
                cursor received).
            ValueError: ``cursor`` is not a stream id.
        """
        if cursor and not _is_stream_id(cursor):
            raise ValueError("resume_token is not a token WatchApprovals or ListApprovals gave")
        position = cursor or await self.head(tenant_id)
        log = keys.approval_log_key(tenant_id)
        while True:
            try:
                batches = await self._client.xread({log: position}, count=100, block=WATCH_BLOCK_MS)
            except (RedisError, OSError) as exc:
                raise BudgetStoreUnavailable(f"approval log: {type(exc).__name__}: {exc}") from exc
            if not batches:
                _, expired = await self.list(tenant_id, state=None, page_size=0, cursor="")
                if expired:
                    on_expired(expired)
                continue
            for _stream, entries in batches:
                for entry_id, fields in entries:
                    position = text(entry_id)
                    yield _transition(tenant_id, position, fields)

    async def _read(self, tenant_id: str, args: Sequence[Any], approval_id: str) -> Any:
        key_list = [
            keys.approval_log_key(tenant_id),
            keys.approval_expiry_key(tenant_id),
            keys.approval_index_key(tenant_id),
            keys.approval_key(tenant_id, approval_id),
        ]
        return await run_script(
            self._client, READ_SCRIPT, key_list, args, deadline_seconds=self._deadline
        )


def encode_record(approval: Approval) -> str:
    """The immutable fields of a new approval, as the record's ``j`` JSON."""
    return json.dumps(
        {
            "tenant_id": approval.tenant_id,
            "requester_principal_id": approval.requester_principal_id,
            "on_behalf_of": approval.on_behalf_of,
            "capability": approval.capability,
            "tool": approval.tool,
            # the exact bytes the hash covers: RFC 8785 canonical JSON, as text
            "parameters_jcs": canonical_json(approval.parameters).decode("utf-8"),
            "parameters_sha256": approval.parameters_sha256,
            "action_sha256": approval.action_sha256,
            "policy_revision": approval.policy_revision,
            "approver_roles": list(approval.approver_roles),
            "min_approvals": approval.min_approvals,
            "request_decision_id": approval.request_decision_id,
            "run_id": approval.run_id,
            "workflow": approval.workflow,
            "reasons": [{"code": r.code, "message": r.message} for r in approval.reasons],
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def decode_snapshot(tenant_id: str, flat: Sequence[Any]) -> Approval:
    """An approval from a script's snapshot: (name, value) pairs of the record's
    fields i, j, s, v, c, t, e, u (approvals.lua)."""
    fields = {text(flat[n]): text(flat[n + 1]) for n in range(0, SNAPSHOT_VALUES, 2)}
    record = json.loads(fields["j"])
    votes = json.loads(fields["v"]) if fields["v"] else []
    return Approval(
        approval_id=fields["i"],
        tenant_id=tenant_id,
        state=ApprovalState(fields["s"]),
        requester_principal_id=record["requester_principal_id"],
        on_behalf_of=record["on_behalf_of"],
        capability=record["capability"],
        tool=record["tool"],
        parameters=json.loads(record["parameters_jcs"]),
        parameters_sha256=record["parameters_sha256"],
        action_sha256=record["action_sha256"],
        policy_revision=record["policy_revision"],
        approver_roles=tuple(record["approver_roles"]),
        min_approvals=record["min_approvals"],
        votes=tuple(
            Vote(
                principal_id=v["principal_id"],
                roles=tuple(v["roles"]) if isinstance(v["roles"], list) else (),
                verdict=Verdict(v["verdict"]),
                comment=v["comment"],
                decided_at=from_ms(v["time_ms"]),
            )
            for v in (votes if isinstance(votes, list) else [])
        ),
        request_decision_id=record["request_decision_id"],
        consumed_by_decision_id=fields["c"],
        run_id=record["run_id"],
        workflow=record["workflow"],
        reasons=tuple(Reason(r["code"], r["message"]) for r in record["reasons"]),
        created_at=from_ms(fields["t"]),
        expires_at=from_ms(fields["e"]),
        updated_at=from_ms(fields["u"]),
    )


def _transition(tenant_id: str, cursor: str, fields: dict[Any, Any]) -> Transition:
    values = {text(k): text(v) for k, v in fields.items()}
    flat: list[str] = []
    for name in ("i", "j", "s", "v", "c", "t", "e", "u"):
        flat += [name, values[name]]
    previous = values["prev"]
    return Transition(
        cursor=cursor,
        approval=decode_snapshot(tenant_id, flat),
        previous_state=ApprovalState(previous) if previous else None,
        actor=values["actor"],
    )


def _is_stream_id(cursor: str) -> bool:
    ms, sep, seq = cursor.partition("-")
    return bool(sep) and ms.isdigit() and seq.isdigit()
