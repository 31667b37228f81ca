"""The operator commands' flags, declared once (typer ``Annotated`` aliases): the
connection flags every command takes, and the shared ones. Help text says units and
environment variables; ``--help`` groups the connection flags in their own panel.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class State(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CONSUMED = "consumed"


class Mode(StrEnum):
    NORMAL = "normal"
    READ_ONLY = "read-only"
    FROZEN = "frozen"


_CONNECTION = "Connection"
Target = Annotated[
    str,
    typer.Option(
        envvar="CAPGATE_TARGET", help="capgate's gRPC HOST:PORT", rich_help_panel=_CONNECTION
    ),
]
TokenFile = Annotated[
    Path | None,
    typer.Option(
        envvar="CAPGATE_TOKEN_FILE",
        help="file holding the bearer JWT (else $CAPGATE_TOKEN holds the token itself)",
        rich_help_panel=_CONNECTION,
    ),
]
TlsCa = Annotated[
    Path | None,
    typer.Option(
        help="PEM CA bundle to verify capgate's certificate: use TLS", rich_help_panel=_CONNECTION
    ),
]
TlsCert = Annotated[
    Path | None,
    typer.Option(help="PEM client certificate (mTLS), with --tls-key", rich_help_panel=_CONNECTION),
]
TlsKey = Annotated[
    Path | None,
    typer.Option(help="PEM private key of --tls-cert", rich_help_panel=_CONNECTION),
]
Timeout = Annotated[
    float, typer.Option(help="seconds to wait for each call", rich_help_panel=_CONNECTION)
]
InsecurePrincipal = Annotated[
    str,
    typer.Option(
        envvar="CAPGATE_INSECURE_PRINCIPAL",
        help="who you are, for a server in --identity insecure mode only (unverified)",
        rich_help_panel=_CONNECTION,
    ),
]
InsecureRoles = Annotated[
    str,
    typer.Option(
        envvar="CAPGATE_INSECURE_ROLES",
        help="your roles, comma-separated, for --identity insecure mode only (unverified)",
        rich_help_panel=_CONNECTION,
    ),
]
Tenant = Annotated[str, typer.Option(help="the tenant; omit it when your token names one")]
Json = Annotated[
    bool, typer.Option("--json", help="print the response message as JSON (proto field names)")
]
ApprovalId = Annotated[str, typer.Argument(help="the approval's id")]
Comment = Annotated[str, typer.Option(help="why; recorded with your vote and in the decision log")]
Reason = Annotated[str, typer.Option(help="why; recorded in the decision log")]
