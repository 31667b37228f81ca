"""The operator commands (typer): ``approvals``, ``runs``, ``tenants`` and ``status``,
mounted by ``capgate.cli``. Each parses its flags, calls :class:`Operator` and prints
through :mod:`capgate.operator.render`; nothing else.

Exit codes: 0 done; 1 the server answered with an error status (``capgate:
STATUS: details`` on stderr); 2 a flag or file that cannot be used; 130 a watch
stopped with Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from google.protobuf.message import Message
from rich.console import Console, RenderableType

from capgate.operator import render
from capgate.operator.connected import ConnectionFlags, connected
from capgate.operator.options import (
    ApprovalId,
    Comment,
    Json,
    Mode,
    Reason,
    State,
    Tenant,
)
from capgate.v1 import approval_service_pb2 as approvals_api
from capgate.v1 import control_service_pb2 as control_api
from capgate.v1 import types_pb2 as types

M = TypeVar("M", bound=Message)
INTERRUPTED_EXIT_CODE = 130
STATES = {state: types.ApprovalState.Value(f"APPROVAL_STATE_{state.name}") for state in State}
MODES = {mode: control_api.TenantMode.Value(f"TENANT_MODE_{mode.name}") for mode in Mode}

approvals = typer.Typer(
    no_args_is_help=True, help="List, inspect, approve, reject and watch approvals."
)
runs = typer.Typer(no_args_is_help=True, help="Stop an agent run.")
tenants = typer.Typer(
    no_args_is_help=True, help="Put a tenant in normal, read-only or frozen mode."
)


@approvals.command("list")
@connected
def list_approvals(
    connection: ConnectionFlags,
    tenant: Tenant = "",
    state: Annotated[State | None, typer.Option(help="only approvals in this state")] = None,
    page_size: Annotated[int, typer.Option(help="approvals per page (server default 50)")] = 0,
    all_pages: Annotated[bool, typer.Option("--all-pages", help="fetch every page")] = False,
    as_json: Json = False,
) -> None:
    """A tenant's approvals, newest first."""
    with connection.open(tenant) as operator:
        state_value = STATES[state] if state else types.APPROVAL_STATE_UNSPECIFIED
        if all_pages:
            page = operator.list_all_approvals(tenant, state=state_value, page_size=page_size)
        else:
            page = operator.list_approvals(tenant, state=state_value, page_size=page_size)
    if as_json:
        typer.echo(render.to_json(page))
        return
    title = f"{state.value if state else 'all'} approvals" + (f" of {tenant}" if tenant else "")
    console = Console()
    if not page.approvals:
        console.print(f"no {title}")
        return
    console.print(render.approvals_table(page.approvals, title, datetime.now(UTC)))
    if page.next_page_token:
        console.print("more: --all-pages, or raise --page-size", style="dim")


@approvals.command("show")
@connected
def show_approval(
    connection: ConnectionFlags,
    approval_id: ApprovalId,
    tenant: Tenant = "",
    as_json: Json = False,
) -> None:
    """One approval: the exact action, its votes and its lifecycle."""
    with connection.open(tenant) as operator:
        response = operator.get_approval(tenant, approval_id)
    _print_approval(response, as_json)


@approvals.command("approve")
@connected
def approve(
    connection: ConnectionFlags,
    approval_id: ApprovalId,
    tenant: Tenant = "",
    comment: Comment = "",
    as_json: Json = False,
) -> None:
    """Approve: once the quorum approves, the agent's retry with this approval is allowed."""
    _decide(
        connection, tenant, approval_id, approvals_api.APPROVAL_VERDICT_APPROVE, comment, as_json
    )


@approvals.command("reject")
@connected
def reject(
    connection: ConnectionFlags,
    approval_id: ApprovalId,
    tenant: Tenant = "",
    comment: Comment = "",
    as_json: Json = False,
) -> None:
    """Reject: one rejection ends the approval; the agent's retry stays unapproved."""
    _decide(
        connection, tenant, approval_id, approvals_api.APPROVAL_VERDICT_REJECT, comment, as_json
    )


def _decide(
    connection: ConnectionFlags,
    tenant: str,
    approval_id: str,
    verdict: approvals_api.ApprovalVerdict.ValueType,
    comment: str,
    as_json: bool,
) -> None:
    with connection.open(tenant) as operator:
        response = operator.decide_approval(tenant, approval_id, verdict, comment)
    _print_approval(response, as_json)


@approvals.command("watch")
@connected
def watch(
    connection: ConnectionFlags,
    tenant: Tenant = "",
    resume_token: Annotated[
        str, typer.Option(help="continue after this transition (a resume_token printed before)")
    ] = "",
    as_json: Annotated[
        bool, typer.Option("--json", help="one WatchApprovalsResponse JSON object per line")
    ] = False,
) -> None:
    """Print every approval transition as it happens, until Ctrl-C."""
    console = Console(highlight=False, soft_wrap=True)  # one transition, one line
    # Ctrl-C ends the process at once, with 130. A KeyboardInterrupt raised inside the
    # gRPC stream's wait can leave the call's lock held, and closing the channel then
    # hangs (seen once in CI: a watcher still running 20 s after SIGINT). A watch holds
    # nothing to clean up; every line printed was flushed. (Only the main thread can set
    # a handler: an embedding caller running the command in a thread keeps its own.)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _exit_interrupted)
    with connection.open(tenant) as operator:
        for event in operator.watch_approvals(tenant, resume_token):
            if as_json:
                typer.echo(render.to_json(event, one_line=True))
            else:
                console.print(render.transition_line(event))
                sys.stdout.flush()


def _exit_interrupted(_signum: int, _frame: object) -> None:
    os._exit(INTERRUPTED_EXIT_CODE)


@runs.command("stop")
@connected
def stop_run(
    connection: ConnectionFlags,
    run_id: Annotated[str, typer.Argument(help="the run to stop")],
    reason: Reason,
    tenant: Tenant = "",
    as_json: Json = False,
) -> None:
    """Deny every later Authorize of the run with RUN_STOPPED (needs capgate-admin)."""
    with connection.open(tenant) as operator:
        response = operator.stop_run(tenant, run_id, reason)
    _print(response, render.run_stopped, as_json)


@tenants.command("mode")
@connected
def set_mode(
    connection: ConnectionFlags,
    tenant: Annotated[str, typer.Argument(help="the tenant")],
    mode: Annotated[Mode, typer.Argument(help="what the tenant's agents may still do")],
    reason: Reason,
    as_json: Json = False,
) -> None:
    """normal; read-only (write capabilities denied with TENANT_READ_ONLY); frozen
    (everything denied with TENANT_FROZEN). Needs capgate-admin."""
    with connection.open(tenant) as operator:
        response = operator.set_tenant_mode(tenant, MODES[mode], reason)
    _print(response, render.mode_changed, as_json)


@connected
def status(
    connection: ConnectionFlags,
    tenant: Annotated[
        str, typer.Option(help="also report this tenant's mode and pending approvals")
    ] = "",
    as_json: Json = False,
) -> None:
    """Policy revision, Redis reachability, a tenant's mode (needs capgate-admin)."""
    with connection.open(tenant) as operator:
        response = operator.status(tenant)
    _print(response, lambda r: render.status_panel(r, tenant), as_json)


def _print_approval(
    response: approvals_api.GetApprovalResponse | approvals_api.DecideApprovalResponse,
    as_json: bool,
) -> None:
    _print(response, lambda r: render.approval_panel(r.approval, datetime.now(UTC)), as_json)


def _print(response: M, human: Callable[[M], RenderableType], as_json: bool) -> None:
    """``response`` as JSON, or as ``human`` renders it."""
    if as_json:
        typer.echo(render.to_json(response))
    else:
        Console().print(human(response))
