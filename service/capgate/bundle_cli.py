"""``capgate bundle build|sign|test|verify``: OPA's own bundle tools, through capgate.

``build``, ``sign`` and ``test`` run the pinned ``opa`` binary (``opa build``, ``opa sign``,
``opa test``) with every argument given after the command, unchanged, and exit with
opa's exit code; ``capgate bundle build --help`` shows opa's own help. ``verify`` has no
opa equivalent: it checks a bundle the way ``capgate serve`` does before activating it
(signature, contents, compilation in the embedded engine) and prints what it found.

The opa binary, first found wins: ``--opa PATH``; ``$CAPGATE_OPA``; ``.tools/bin/opa``
in the working directory, then in this source checkout (``scripts/bootstrap.sh`` puts
the pinned version there); ``opa`` on ``PATH``. None found: exit 2.

    capgate bundle build -b bundles/default -o bundle.tar.gz \\
        --signing-key key.pem --signing-alg RS256
    capgate bundle verify bundle.tar.gz --verification-key public.pem
    capgate bundle test rego/

Exit codes of ``verify``: 0 the bundle verifies and compiles; 1 it is refused (a
signature that does not verify, a file it does not cover, a bundle that does not
assemble or compile); 2 bad flags (a key that cannot be read, no bundle at the path).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from capgate.errors import BundleError, ConfigError

OPA_ENV = "CAPGATE_OPA"
PINNED_OPA = Path(".tools") / "bin" / "opa"
# service/capgate/bundle_cli.py -> the checkout root, where bootstrap.sh puts the pin.
CHECKOUT = Path(__file__).resolve().parents[2]
PASS_THROUGH = {
    "allow_extra_args": True,
    "ignore_unknown_options": True,
    "help_option_names": [],  # --help goes to opa: the flags are opa's
}

bundle_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Build, sign, test (the pinned opa) and verify (capgate) OPA bundles.",
)

OpaOption = Annotated[
    Path | None,
    typer.Option(
        "--opa",
        envvar=OPA_ENV,
        help=f"the opa binary [${OPA_ENV}, else ./{PINNED_OPA}, else opa on PATH]",
    ),
]


class OpaNotFound(ConfigError):
    """No opa binary where :func:`find_opa` looks."""


def find_opa(explicit: Path | None, *, cwd: Path, checkout: Path = CHECKOUT) -> Path:
    """The opa binary to run: ``explicit`` (the ``--opa`` flag or ``$CAPGATE_OPA``) if
    given, else ``.tools/bin/opa`` under ``cwd`` or ``checkout``, else ``opa`` on PATH.

    Raises:
        OpaNotFound: ``explicit`` is not an executable file, or nothing was found.
    """
    if explicit is not None:
        if explicit.is_file():
            return explicit
        on_path = shutil.which(str(explicit))
        if on_path is None:
            raise OpaNotFound(f"opa binary {explicit} not found")
        return Path(on_path)
    for root in (cwd, checkout):
        pinned = root / PINNED_OPA
        if pinned.is_file():
            return pinned
    on_path = shutil.which("opa")
    if on_path is None:
        raise OpaNotFound(
            f"no opa binary: give --opa PATH or ${OPA_ENV}, or run scripts/bootstrap.sh "
            f"to install the pinned one in {PINNED_OPA}"
        )
    return Path(on_path)


def run_opa(opa: Path | None, command: str, args: list[str]) -> int:
    """``opa <command> <args...>`` with this process's stdio (no shell); its exit code.
    Raises :class:`OpaNotFound`, and :class:`ConfigError` when it cannot be started."""
    binary = find_opa(opa, cwd=Path.cwd())
    try:
        return subprocess.run([str(binary), command, *args], check=False).returncode
    except OSError as exc:  # not executable, wrong architecture
        raise ConfigError(f"cannot run {binary}: {exc}") from exc


def _pass_through(command: str, ctx: typer.Context, opa: Path | None) -> None:
    try:
        code = run_opa(opa, command, list(ctx.args))
    except ConfigError as exc:
        typer.echo(f"capgate: {exc}", err=True)
        raise typer.Exit(2) from exc
    raise typer.Exit(code)


@bundle_app.command(context_settings=PASS_THROUGH)
def build(ctx: typer.Context, opa: OpaOption = None) -> None:
    """opa build: e.g. -b bundles/default -o bundle.tar.gz --signing-key key.pem."""
    _pass_through("build", ctx, opa)


@bundle_app.command(context_settings=PASS_THROUGH)
def sign(ctx: typer.Context, opa: OpaOption = None) -> None:
    """opa sign: e.g. --signing-key key.pem --bundle bundles/default."""
    _pass_through("sign", ctx, opa)


@bundle_app.command(context_settings=PASS_THROUGH)
def test(ctx: typer.Context, opa: OpaOption = None) -> None:
    """opa test: e.g. rego/ -v."""
    _pass_through("test", ctx, opa)


@bundle_app.command()
def verify(
    bundle: Annotated[Path, typer.Argument(help="the bundle: a directory or a .tar.gz")],
    verification_key: Annotated[
        Path,
        typer.Option(
            "--verification-key", help="public key (PEM) the bundle's signature must verify with"
        ),
    ],
    verification_key_id: Annotated[
        str, typer.Option("--verification-key-id", help="the key's id (the JWT's kid/keyid)")
    ] = "default",
    scope: Annotated[
        str | None, typer.Option("--scope", help="the scope the signature must carry")
    ] = None,
    signing_alg: Annotated[
        str, typer.Option("--signing-alg", help="the key's algorithm (RS256, ES256, ...)")
    ] = "RS256",
    exclude_files_verify: Annotated[
        list[str] | None,
        typer.Option("--exclude-files-verify", help="a glob of files the signature need not cover"),
    ] = None,
    entrypoint: Annotated[
        str, typer.Option(help="the rule the compilation check builds")
    ] = "data.capgate.authz.decision",
) -> None:
    """Check a signed bundle as capgate serve would: signature, contents, compilation."""
    from capgate.policy.activation import bundle_compiler
    from capgate.policy.bundle import read_bundle_files
    from capgate.policy.embedded import entrypoint_path
    from capgate.policy.signing import bundle_verifier

    if not bundle.exists():
        typer.echo(f"capgate: {bundle}: no such bundle", err=True)
        raise typer.Exit(2)
    try:
        entrypoint_path(entrypoint)
    except BundleError as exc:
        typer.echo(f"capgate: --entrypoint: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        verifier = bundle_verifier(
            verification_key,
            key_id=verification_key_id,
            algorithm=signing_alg,
            scope=scope,
            exclude_files=exclude_files_verify or (),
        )
    except ConfigError as exc:
        typer.echo(f"capgate: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        files = read_bundle_files(bundle)
        # What serve runs on each bundle: signature, then assemble, then compile.
        engine = bundle_compiler(entrypoint, verifier)(files)
    except BundleError as exc:  # ActivationFailed (with its stage) is one
        typer.echo(f"capgate: refused: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"verified: {bundle}")
    typer.echo(f"  revision: {engine.revision or '(none)'}")
    # One key is configured, and a token naming another is refused: it verified.
    typer.echo(f"  key id:   {verification_key_id}")
    typer.echo(f"  files:    {len(files.files)}")
    for name in sorted(files.files):
        typer.echo(f"    {name}")
    typer.echo(f"  compiles: {entrypoint}")
