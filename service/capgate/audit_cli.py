"""``capgate audit``: check an exported decision log (``verify``) and make the Ed25519
key pair of signed checkpoints (``keygen``). See docs/siem/audit-verify.md.

Exit codes of ``verify``: 0 the log verifies, 1 it is broken (the first broken line is
named), 2 the log or the key cannot be read.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from capgate.errors import ConfigError
from capgate.events.checkpoint import key_id, load_public_key
from capgate.events.verify import verify_log

audit = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Verify exported decision logs; make checkpoint signing keys.",
)


@audit.command()
def verify(
    file: Annotated[Path, typer.Argument(help="the exported log: JSON Lines, .gz, or - for stdin")],
    public_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--public-key",
            help="Ed25519 public key of the checkpoints (PEM, or raw 32 bytes base64); "
            "repeat it for a log that spans a key rotation",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    allow_duplicates: Annotated[
        bool,
        typer.Option(
            "--allow-duplicates",
            help="skip identical copies of earlier events (at-least-once delivery)",
        ),
    ] = False,
) -> None:
    """Check the hash chain, gaps and checkpoint signatures of an exported log."""
    try:
        keys = [load_public_key(path) for path in public_key] if public_key else None
    except ConfigError as exc:
        typer.echo(f"capgate: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        with _open(file) as lines:
            report = verify_log(lines, keys, allow_duplicates=allow_duplicates)
    except (OSError, EOFError) as exc:  # EOFError: a truncated .gz
        typer.echo(f"capgate: {file}: cannot read the log: {exc}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        typer.echo(report.summary())
        multi = len(report.instances) > 1
        for problem in report.problems[1:10]:
            typer.echo(f"  then {problem.describe(with_instance=multi)}")
        if len(report.problems) > 10:
            typer.echo(f"  ... {len(report.problems) - 10} more problems (--json lists 100)")
    raise typer.Exit(0 if report.ok else 1)


@audit.command()
def keygen(
    private_key: Annotated[
        Path,
        typer.Option("--private-key", help="where to write the private key (PEM PKCS#8, 0600)"),
    ],
    public_key: Annotated[
        Path,
        typer.Option("--public-key", help="where to write the public key (PEM)"),
    ],
    force: Annotated[bool, typer.Option("--force", help="overwrite existing files")] = False,
) -> None:
    """Write a new Ed25519 key pair for signed checkpoints."""
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    existing = [str(p) for p in (private_key, public_key) if p.exists()]
    if existing and not force:
        typer.echo(f"capgate: {', '.join(existing)} exists (--force overwrites)", err=True)
        raise typer.Exit(2)
    try:
        _write(private_key, private_pem, 0o600, force)
        _write(public_key, public_pem, 0o644, force)
    except OSError as exc:
        typer.echo(f"capgate: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"private key: {private_key} (keep it on the capgate host only)")
    typer.echo(f"public key:  {public_key} (give it to the auditors)")
    typer.echo(f"key_id:      {key_id(key.public_key())}")


@contextmanager
def _open(file: Path) -> Iterator[Iterator[bytes]]:
    if str(file) == "-":
        yield iter(sys.stdin.buffer)
        return
    if file.suffix == ".gz":
        with gzip.open(file, "rb") as compressed:
            yield iter(compressed)
    else:
        with file.open("rb") as plain:
            yield iter(plain)


def _write(path: Path, data: bytes, mode: int, force: bool) -> None:
    """Write ``data`` to ``path`` with exactly ``mode`` (set again after creation, as the
    umask may have narrowed it); an existing file is an error unless ``force``."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
