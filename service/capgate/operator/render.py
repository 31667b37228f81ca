"""Responses → what an operator reads (rich tables and panels) or a script parses
(JSON). Pure: every function returns a string or a rich renderable.

Values from the server (parameters, comments, ids) are wrapped in ``rich.text.Text``
so that ``[bold]`` in a refund reason is printed, never interpreted as markup.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message
from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from capgate.clock import rfc3339
from capgate.v1 import approval_service_pb2 as approvals_api
from capgate.v1 import control_service_pb2 as control_api
from capgate.v1 import types_pb2 as types

STATE_STYLES = {
    "PENDING": "bold yellow",
    "APPROVED": "bold green",
    "REJECTED": "bold red",
    "EXPIRED": "dim",
    "CONSUMED": "cyan",
}


def to_json(message: Message, *, one_line: bool = False) -> str:
    """``message`` as proto3 JSON (json_format): proto field names (``approval_id``),
    every field even at its default, enums by name, timestamps RFC 3339."""
    return json_format.MessageToJson(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        indent=None if one_line else 2,
    )


def state_name(value: int) -> str:
    """``APPROVAL_STATE_PENDING`` → ``PENDING``; "-" for UNSPECIFIED."""
    return types.ApprovalState.Name(value).removeprefix("APPROVAL_STATE_") if value else "-"


def mode_name(value: int) -> str:
    """``TENANT_MODE_READ_ONLY`` → ``READ_ONLY``; "-" for UNSPECIFIED."""
    return control_api.TenantMode.Name(value).removeprefix("TENANT_MODE_") if value else "-"


def when(stamp: timestamp_pb2.Timestamp) -> str:
    """``2026-05-04 12:00:00 UTC``; "-" for an unset (zero) timestamp."""
    if not (stamp.seconds or stamp.nanos):
        return "-"
    return stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def relative(stamp: timestamp_pb2.Timestamp, now: datetime) -> str:
    """``stamp`` from ``now``: ``in 14m``, ``in 1h 05m``, ``40s ago``, ``2d 3h ago``."""
    if not (stamp.seconds or stamp.nanos):
        return "-"
    seconds = math.floor((stamp.ToDatetime(tzinfo=UTC) - now).total_seconds())
    size = abs(seconds)
    if size < 60:
        span = f"{size}s"
    elif size < 3600:
        span = f"{size // 60}m"
    elif size < 86400:
        span = f"{size // 3600}h {size % 3600 // 60:02d}m"
    else:
        span = f"{size // 86400}d {size % 86400 // 3600}h"
    return f"in {span}" if seconds >= 0 else f"{span} ago"


def parameters_json(approval: approvals_api.Approval) -> str:
    """The approved parameters as compact JSON, sorted, whole numbers without ``.0``."""
    parameters = _whole_numbers(json_format.MessageToDict(approval.parameters))
    return json.dumps(parameters, sort_keys=True, ensure_ascii=False)


def requester(approval: approvals_api.Approval) -> str:
    """``refund-agent`` or ``refund-agent for alice``."""
    principal = approval.requester_principal_id or "-"
    return f"{principal} for {approval.on_behalf_of}" if approval.on_behalf_of else principal


def votes(approval: approvals_api.Approval) -> str:
    """APPROVE votes over the quorum, e.g. ``1/2``; ``, 1 reject`` when rejected."""
    approves = sum(v.verdict == approvals_api.APPROVAL_VERDICT_APPROVE for v in approval.votes)
    rejects = sum(v.verdict == approvals_api.APPROVAL_VERDICT_REJECT for v in approval.votes)
    text = f"{approves}/{approval.min_approvals}"
    return f"{text}, {rejects} reject" if rejects else text


def approvals_table(
    approvals: Sequence[approvals_api.Approval], title: str, now: datetime
) -> Table:
    """One row per approval: the approval (id, then capability · tool, then
    parameters); its state, votes and expiry relative to ``now``; the requester; the
    approver roles. The first column is exactly as wide as the longest id (or
    capability · tool), so ids are never cut; parameters and the other columns wrap
    to fit (down to an 80-column terminal)."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, leading=1)
    width = max((len(line) for a in approvals for line in _head(a)), default=8)
    table.add_column("approval", overflow="fold", width=width)
    table.add_column("state")
    table.add_column("requester", overflow="fold")
    table.add_column("approver roles", overflow="fold")
    for approval in approvals:
        approval_id, action = _head(approval)
        cell = Text(approval_id, style="bold")
        cell.append(f"\n{action}\n{parameters_json(approval)}", style="not bold")
        state = _state(approval.state)
        state.append(f"\nvotes {votes(approval)}", style="not bold")
        expiry = relative(approval.expire_time, now)
        verb = "expired" if expiry.endswith(" ago") else "expires"
        state.append(f"\n{verb} {expiry}", style="not bold")
        table.add_row(
            cell,
            state,
            Text(requester(approval)),
            Text(", ".join(approval.approver_roles)),
        )
    return table


def approval_panel(approval: approvals_api.Approval, now: datetime) -> RenderableType:
    """Every field of one approval as key: value lines, then its votes."""
    fields = _key_values(
        ("approval id", Text(approval.approval_id)),
        ("tenant", Text(approval.tenant_id)),
        ("state", _state(approval.state)),
        ("requester", Text(requester(approval))),
        ("capability", Text(approval.capability)),
        ("tool", Text(approval.tool)),
        ("parameters", Text(parameters_json(approval))),
        ("approver roles", Text(", ".join(approval.approver_roles))),
        ("votes", Text(votes(approval))),
        ("run", Text(" / ".join(p for p in (approval.workflow, approval.run_id) if p) or "-")),
        ("reasons", Text("\n".join(f"{r.code}: {r.message}" for r in approval.reasons) or "-")),
        ("created", Text(when(approval.create_time))),
        ("expires", Text(f"{when(approval.expire_time)} ({relative(approval.expire_time, now)})")),
        ("updated", Text(when(approval.update_time))),
        ("policy revision", Text(approval.policy_revision or "-")),
        ("requested by", Text(approval.request_decision_id or "-")),
        ("consumed by", Text(approval.consumed_by_decision_id or "-")),
        ("action sha256", Text(approval.action_sha256)),
    )
    parts: list[RenderableType] = [fields]
    if approval.votes:
        table = Table(title="votes", title_justify="left")
        for column in ("approver", "roles", "verdict", "comment", "time"):
            table.add_column(column, overflow="fold")
        for vote in approval.votes:
            table.add_row(
                Text(vote.principal_id),
                Text(", ".join(vote.roles)),
                Text(
                    approvals_api.ApprovalVerdict.Name(vote.verdict).removeprefix(
                        "APPROVAL_VERDICT_"
                    )
                ),
                Text(vote.comment or "-"),
                Text(when(vote.decide_time)),
            )
        parts.append(table)
    return Panel(
        Group(*parts), title=f"approval {approval.approval_id}", title_align="left", expand=False
    )


def transition_line(event: approvals_api.WatchApprovalsResponse) -> Text:
    """``12:00:03 UTC  <id>  PENDING → APPROVED  by alice  issue_refund payments.create_refund
    {"amount_usd": 60}``; a new approval shows ``new → PENDING``."""
    approval = event.approval
    line = Text(when(approval.update_time) + "  ")
    line.append(approval.approval_id + "  ")
    previous = state_name(event.previous_state) if event.previous_state else "new"
    line.append(f"{previous} → ")
    line.append_text(_state(approval.state))
    line.append(f"  by {event.actor_principal_id or '-'}  ")
    line.append(f"{approval.capability} {approval.tool} {parameters_json(approval)}")
    return line


def _when(status: control_api.GetStatusResponse, field: str) -> str:
    """An optional Timestamp field as RFC 3339, or ``-`` when unset."""
    if not status.HasField(field):
        return "-"
    return rfc3339(getattr(status, field).ToDatetime(tzinfo=UTC))


def status_panel(status: control_api.GetStatusResponse, tenant_id: str) -> RenderableType:
    """The instance's policy revision, Redis reachability and log errors; the tenant's
    mode and pending approvals when one was asked for."""
    reachable = status.budget_store_reachable
    rows: list[tuple[str, Text]] = [
        ("instance", Text(status.instance_id or "-")),
        ("policy revision", Text(status.policy_revision or "none active")),
        ("policy engine", Text(status.policy_engine or "-")),
        ("bundle source", Text(status.bundle_source or "-")),
        ("bundle activated", Text(_when(status, "bundle_activation_time"))),
        (
            "budget store",
            Text(
                "reachable" if reachable else "UNREACHABLE", style="" if reachable else "bold red"
            ),
        ),
        ("decision log errors", Text(str(status.decision_log_errors))),
    ]
    if status.bundle_last_error:
        rows.append(
            (
                "bundle refused",
                Text(
                    f"{status.bundle_activation_failures} since start; last at "
                    f"{_when(status, 'bundle_last_error_time')}: {status.bundle_last_error}",
                    style="bold yellow",
                ),
            )
        )
    if status.tenant_mode:
        rows += [
            ("tenant", Text(tenant_id or "(the token's)")),
            ("tenant mode", Text(mode_name(status.tenant_mode))),
            ("pending approvals", Text(str(status.pending_approvals))),
        ]
    return Panel(_key_values(*rows), title="capgate status", title_align="left", expand=False)


def run_stopped(response: control_api.StopRunResponse) -> Text:
    """``run R of tenant T stopped by P at TIME``."""
    return Text(
        f"run {response.run_id} of tenant {response.tenant_id} stopped by "
        f"{response.stopped_by or '-'} at {when(response.stop_time)}: later Authorize "
        "calls of this run are denied with RUN_STOPPED"
    )


def mode_changed(response: control_api.SetTenantModeResponse) -> Text:
    """``tenant T: NORMAL → READ_ONLY by P at TIME``."""
    return Text(
        f"tenant {response.tenant_id}: {mode_name(response.previous_mode)} → "
        f"{mode_name(response.mode)} by {response.changed_by or '-'} at "
        f"{when(response.change_time)}"
    )


def _head(approval: approvals_api.Approval) -> tuple[str, str]:
    """The approval cell's unwrapped lines: the id, and ``capability · tool``."""
    return approval.approval_id, f"{approval.capability} · {approval.tool}"


def _state(value: int) -> Text:
    name = state_name(value)
    return Text(name, style=STATE_STYLES.get(name, ""))


def _key_values(*rows: tuple[str, Text]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in rows:
        grid.add_row(key, value)
    return grid


def _whole_numbers(value: Any) -> Any:
    """Struct numbers are doubles: 60.0 → 60, in nested dicts and lists too."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value
