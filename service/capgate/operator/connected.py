"""The connection flags, declared once for every operator command.

:class:`ConnectionFlags` names them (typer ``Annotated`` aliases from
:mod:`capgate.operator.options`, with their defaults); :func:`connected` gives a command
those flags and hands it one :class:`ConnectionFlags` instead::

    @approvals.command("show")
    @connected
    def show_approval(connection: ConnectionFlags, approval_id: ApprovalId, ...) -> None:
        with connection.open(tenant) as operator:
            ...

The command line is unchanged: each command still takes ``--target``, ``--token-file``,
… after its own flags, in the ``Connection`` help panel.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer

from capgate.operator.calls import Operator, open_operator
from capgate.operator.connection import DEFAULT_TARGET, DEFAULT_TIMEOUT_SECONDS, load_connection
from capgate.operator.errors import OperatorError
from capgate.operator.options import (
    InsecurePrincipal,
    InsecureRoles,
    Target,
    Timeout,
    TlsCa,
    TlsCert,
    TlsKey,
    TokenFile,
)

TOKEN_ENV = "CAPGATE_TOKEN"
PARAMETER = "connection"
"""The name of the parameter :func:`connected` fills with a :class:`ConnectionFlags`."""


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionFlags:
    """The connection flags as given; each field is one flag (``--token-file`` …),
    its annotation the typer option and its default the flag's."""

    target: Target = DEFAULT_TARGET
    token_file: TokenFile = None
    tls_ca: TlsCa = None
    tls_cert: TlsCert = None
    tls_key: TlsKey = None
    timeout: Timeout = DEFAULT_TIMEOUT_SECONDS
    insecure_principal: InsecurePrincipal = ""
    insecure_roles: InsecureRoles = ""

    @contextmanager
    def open(self, tenant: str = "") -> Iterator[Operator]:
        """An Operator for these flags; an OperatorError raised while it is open is
        printed as ``capgate: <message>`` and exits with its code."""
        try:
            connection = load_connection(
                target=self.target,
                token_file=self.token_file,
                token_env=os.environ.get(TOKEN_ENV),
                tls_ca=self.tls_ca,
                tls_cert=self.tls_cert,
                tls_key=self.tls_key,
                timeout_seconds=self.timeout,
                insecure_principal=self.insecure_principal,
                insecure_roles=self.insecure_roles,
                tenant=tenant,
            )
            with open_operator(connection) as operator:
                yield operator
        except OperatorError as exc:
            typer.echo(f"capgate: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None


def _flag_parameters() -> tuple[inspect.Parameter, ...]:
    """:class:`ConnectionFlags`' fields as keyword-only parameters, their annotations
    resolved to the ``Annotated`` objects typer reads."""
    hints = typing.get_type_hints(ConnectionFlags, include_extras=True)
    return tuple(
        inspect.Parameter(
            field.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=field.default,
            annotation=hints[field.name],
        )
        for field in dataclasses.fields(ConnectionFlags)
    )


_FLAGS = _flag_parameters()


def connected(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` with the connection flags instead of its ``connection`` parameter.

    Typer sees ``command``'s other parameters, then the connection flags (keyword-only,
    so after them in ``--help``); the call gathers the flags into a
    :class:`ConnectionFlags` passed as ``connection``.
    """
    signature = inspect.signature(command, eval_str=True)
    if PARAMETER not in signature.parameters:
        raise TypeError(f"{command.__qualname__} takes no {PARAMETER!r} parameter")
    own = [p for p in signature.parameters.values() if p.name != PARAMETER]
    names = [p.name for p in _FLAGS]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        flags = ConnectionFlags(**{name: kwargs.pop(name) for name in names if name in kwargs})
        command(*args, **{PARAMETER: flags}, **kwargs)

    # Typer reads the signature, and typing.get_type_hints reads __annotations__: both
    # list the real annotations (no strings left to resolve), without ``connection``.
    parameters = [*own, *_FLAGS]
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    if signature.return_annotation is not inspect.Signature.empty:
        wrapper.__annotations__["return"] = signature.return_annotation
    return wrapper
