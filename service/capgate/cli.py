"""The ``capgate`` command line (typer): ``serve``, ``demo`` and ``costs``; the
operator commands ``approvals``, ``runs``, ``tenants`` and ``status`` over the gRPC
API (capgate/operator/commands.py); ``audit`` (audit_cli.py); ``bundle`` (the pinned
opa's build/sign/test, and verify; bundle_cli.py); ``replay`` (a candidate bundle's
impact on recorded decisions; impact/cli.py)."""

from __future__ import annotations

import asyncio
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import uvloop

from capgate.errors import ConfigError
from capgate.operator import commands as operator_commands

if TYPE_CHECKING:
    from capgate.settings import Settings


class IdentityMode(StrEnum):
    INSECURE = "insecure"
    JWT = "jwt"
    MTLS = "mtls"


class PolicyEngineName(StrEnum):
    EMBEDDED = "embedded"
    OPA = "opa"


class Profile(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


app = typer.Typer(add_completion=False, no_args_is_help=True, help="capgate: a PDP for AI agents.")


def _print_version(value: bool) -> None:
    if value:
        from capgate import __version__

        typer.echo(f"capgate {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """capgate: a PDP for AI agents."""


def _overrides(**flags: Any) -> dict[str, dict[str, Any]]:
    """Flags given on the command line as nested settings ({"server": {"listen": ...}})."""
    sections = {
        "bundle": ("policy", "bundle"),
        "redis_url": ("budget", "redis_url"),
        "listen": ("server", "listen"),
        "metrics_listen": ("server", "metrics_listen"),
        "health_listen": ("server", "health_listen"),
        "decision_log": ("decision_log", "path"),
        "identity": ("identity", "mode"),
        "jwks": ("identity", "jwt", "jwks"),
        "jwt_issuer": ("identity", "jwt", "issuer"),
        "jwt_audience": ("identity", "jwt", "audience"),
        "outbox": ("events", "outbox", "path"),
        "bundle_url": ("policy", "bundle_server", "url"),
        "persist_dir": ("policy", "persist_dir"),
        "verification_key": ("policy", "signing", "verification_key"),
        "verification_key_id": ("policy", "signing", "verification_key_id"),
        "scope": ("policy", "signing", "scope"),
        "signing_alg": ("policy", "signing", "signing_alg"),
        "engine": ("policy", "engine"),
        "opa_url": ("policy", "opa", "url"),
        "profile": ("profile",),
    }
    nested: dict[str, Any] = {}
    for flag, value in flags.items():
        if value is not None:
            *path, key = sections[flag]
            node = nested
            for part in path:
                node = node.setdefault(part, {})
            node[key] = value
    return nested


@app.command()
def serve(
    bundle: Annotated[
        Path | None, typer.Option(help="OPA bundle: directory or .tar.gz, watched for changes")
    ] = None,
    bundle_url: Annotated[
        str | None, typer.Option(help="bundle server URL (polled with If-None-Match)")
    ] = None,
    persist_dir: Annotated[
        Path | None, typer.Option(help="store the active bundle here; served at start")
    ] = None,
    verification_key: Annotated[
        Path | None, typer.Option(help="PEM public key verifying .signatures.json (as opa run)")
    ] = None,
    verification_key_id: Annotated[
        str | None, typer.Option(help="id of --verification-key [default]")
    ] = None,
    scope: Annotated[str | None, typer.Option(help="required signature scope")] = None,
    signing_alg: Annotated[
        str | None, typer.Option(help="RS256|RS384|RS512|PS256|…|ES512 [RS256]")
    ] = None,
    engine: Annotated[
        PolicyEngineName | None, typer.Option(help="embedded (rego-cpp) or opa [embedded]")
    ] = None,
    opa_url: Annotated[
        str | None, typer.Option(help="OPA server for --engine opa: http://… or unix:///…")
    ] = None,
    profile: Annotated[
        Profile | None, typer.Option(help="production refuses unsigned bundles [development]")
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(help="redis://HOST:PORT/DB, redis+sentinel://…/SERVICE, redis+cluster://…"),
    ] = None,
    listen: Annotated[str | None, typer.Option(help="gRPC HOST:PORT [127.0.0.1:50051]")] = None,
    metrics_listen: Annotated[
        str | None, typer.Option(help="Prometheus HOST:PORT [127.0.0.1:9464]")
    ] = None,
    health_listen: Annotated[
        str | None,
        typer.Option(help="plaintext HOST:PORT serving only grpc.health.v1, for probes [off]"),
    ] = None,
    decision_log: Annotated[Path | None, typer.Option(help="JSONL decision log file")] = None,
    outbox: Annotated[
        Path | None,
        typer.Option(help="the durable event outbox, SQLite [./capgate-outbox.db]"),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML settings file")] = None,
    identity: Annotated[
        IdentityMode | None,
        typer.Option(help="how callers are identified [insecure: loopback/unix socket only]"),
    ] = None,
    jwks: Annotated[
        str | None, typer.Option(help="JWKS (RFC 7517) file or https URL, for --identity jwt")
    ] = None,
    jwt_issuer: Annotated[str | None, typer.Option(help="required token iss")] = None,
    jwt_audience: Annotated[str | None, typer.Option(help="required token aud")] = None,
    log_level: Annotated[LogLevel, typer.Option(help="log verbosity")] = LogLevel.INFO,
    check_config: Annotated[
        bool,
        typer.Option(
            "--check-config",
            help="check the configuration (settings, keys, sinks, local bundle) and exit",
        ),
    ] = False,
) -> None:
    """Serve Authorize, approvals and run control over gRPC until SIGTERM."""
    from capgate.app import build_app
    from capgate.observability.logging import configure_logging
    from capgate.server import serve_until_signalled
    from capgate.settings import load_settings

    configure_logging(log_level.value)
    try:
        settings = load_settings(
            config,
            **_overrides(
                bundle=bundle,
                redis_url=redis_url,
                listen=listen,
                metrics_listen=metrics_listen,
                health_listen=health_listen,
                decision_log=decision_log,
                outbox=outbox,
                identity=identity.value if identity else None,
                jwks=jwks,
                jwt_issuer=jwt_issuer,
                jwt_audience=jwt_audience,
                bundle_url=bundle_url,
                persist_dir=persist_dir,
                verification_key=verification_key,
                verification_key_id=verification_key_id,
                scope=scope,
                signing_alg=signing_alg,
                engine=engine.value if engine else None,
                opa_url=opa_url,
                profile=profile.value if profile else None,
            ),
        )
    except ConfigError as exc:
        typer.echo(f"capgate: {exc}", err=True)
        raise typer.Exit(2) from exc
    if check_config:
        _check_config(settings)
    try:
        components = build_app(settings)
    except (OSError, ConfigError) as exc:  # the decision log cannot be opened, a bad JWKS
        typer.echo(f"capgate: {exc}", err=True)
        raise typer.Exit(2) from exc
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        code = runner.run(serve_until_signalled(components))
    raise typer.Exit(code)


def _check_config(settings: Settings) -> None:
    """``--check-config``: print what the configuration sets up; exit 0, or 2 naming
    what is wrong."""
    from capgate.check_config import check_config
    from capgate.errors import BundleError

    try:
        lines = check_config(settings)
    except (ConfigError, BundleError, OSError) as exc:
        typer.echo(f"capgate: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo("capgate: configuration OK")
    for line in lines:
        typer.echo(f"  {line}")
    raise typer.Exit(0)


@app.command()
def demo(
    workload: Annotated[
        Path, typer.Option(help="AgentDojo workload (JSONL, one tool call a line)")
    ] = Path("workloads/agentdojo-v1.2.jsonl"),
    bundles_dir: Annotated[
        Path, typer.Option(help="directory holding agentdojo-<suite>/ bundles")
    ] = Path("bundles"),
    redis_url: Annotated[
        str | None,
        typer.Option(help="redis://HOST:PORT/DB; run ids repeat, so use an empty database"),
    ] = None,
    decision_log_dir: Annotated[
        Path, typer.Option(help="where <suite>.jsonl decision logs go (truncated)")
    ] = Path("agentdojo-decisions"),
    results: Annotated[Path, typer.Option(help="results JSON to write")] = Path(
        "bench/results/agentdojo.json"
    ),
) -> None:
    """Replay AgentDojo's ground-truth tool calls through one capgate sidecar per suite."""
    from capgate.demo import DemoOptions, run_demo

    options = DemoOptions(
        workload=workload,
        bundles_dir=bundles_dir,
        redis_url=redis_url,
        decision_log_dir=decision_log_dir,
        results=results,
    )
    raise typer.Exit(run_demo(options))


@app.command()
def costs(
    decision_log: Annotated[
        list[Path], typer.Argument(help="JSONL decision logs (settlement events are read)")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Cost per completed outcome and rollback rate, per tenant and workflow."""
    import json

    from rich.console import Console
    from rich.table import Table

    from capgate.report.outcomes import OUTCOMES, outcome_costs

    def events() -> Any:
        for path in decision_log:
            with path.open(encoding="utf-8") as lines:
                for number, line in enumerate(lines, 1):
                    try:
                        yield json.loads(line)
                    except ValueError as exc:
                        raise typer.BadParameter(f"{path}:{number}: not JSON: {exc}") from exc

    try:
        rows = outcome_costs(events())
    except (KeyError, TypeError) as exc:
        raise typer.BadParameter(f"a settlement event lacks a field: {exc}") from exc
    if as_json:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
        return
    table = Table(title="Cost per completed outcome (USD)")
    for column in ("tenant", "workflow", *OUTCOMES, "cost", "per succeeded", "rollback rate"):
        table.add_column(column, justify="left" if column in ("tenant", "workflow") else "right")
    for row in rows:
        per = row.cost_per_succeeded_usd_micros
        rate = row.rollback_rate
        table.add_row(
            row.tenant_id,
            row.workflow or "-",
            *(str(row.settled[o]) for o in OUTCOMES),
            f"{row.cost_usd_micros / 1e6:.6f}",
            "-" if per is None else f"{per / 1e6:.6f}",
            "-" if rate is None else f"{rate:.1%}",
        )
    Console().print(table)


# The operator commands, over the gRPC API (capgate/operator/).
app.add_typer(operator_commands.approvals, name="approvals")
app.add_typer(operator_commands.runs, name="runs")
app.add_typer(operator_commands.tenants, name="tenants")
app.command("status")(operator_commands.status)


from capgate.audit_cli import audit  # noqa: E402  (mounted after the commands above)

app.add_typer(audit, name="audit", help="Verify exported decision logs; make checkpoint keys.")

from capgate.bundle_cli import bundle_app  # noqa: E402
from capgate.impact.cli import replay  # noqa: E402

app.add_typer(bundle_app, name="bundle", help="opa build, sign, test through capgate; verify.")
app.command("replay")(replay)


def main() -> None:
    app(prog_name="capgate")


if __name__ == "__main__":
    sys.exit(main())
