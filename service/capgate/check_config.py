"""``capgate serve --check-config``: everything ``serve`` checks before it listens, and
nothing it does after (as ``nginx -t``, ``opa run --check``-style dry checks).

Checked: the settings (every key, the cross-key rules), the identity setup (a JWKS is
loaded), the verification key, each sink's settings and files, the outbox path, and
a local bundle (read, signature, parse, compile). Not checked: anything reached over
the network at run time (Redis, a bundle server, an OPA server, the sinks' servers).
The outbox is opened in a temporary directory, so a check never takes the lock of a
running server's outbox.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from pathlib import Path

from capgate.app import build_app, build_verifier
from capgate.policy.activation import bundle_compiler
from capgate.policy.bundle import read_bundle_files
from capgate.settings import Settings


def check_config(settings: Settings) -> list[str]:
    """What the configuration sets up, one line each.

    Raises:
        ConfigError: a setting, the JWKS, a key or a sink cannot be used.
        BundleError: the local bundle cannot be read, verified or compiled.
        OSError: a file the configuration names cannot be opened.
    """
    with tempfile.TemporaryDirectory(prefix="capgate-check-") as scratch:
        outbox = settings.events.outbox.model_copy(update={"path": Path(scratch) / "outbox.db"})
        events = settings.events.model_copy(update={"outbox": outbox})
        app = build_app(settings.model_copy(update={"events": events}))
        asyncio.run(app.aclose())
    policy = settings.policy
    lines = [
        f"profile: {settings.profile}",
        f"listen: {settings.server.listen} (tls: {'on' if settings.server.tls else 'off'}), "
        f"health: {settings.server.health_listen or 'on the gRPC listener'}, "
        f"metrics: {settings.server.metrics_listen}",
        f"identity: {settings.identity.mode}",
        f"redis: {re.sub(r'//[^@/]*@', '//***@', settings.budget.redis_url)} (not contacted)",
        f"policy engine: {policy.engine}",
    ]
    if policy.engine == "opa":
        lines.append(f"opa: {policy.opa.url}")
    elif policy.bundle is not None:
        files = read_bundle_files(
            policy.bundle, max_bytes=policy.max_bundle_bytes, max_files=policy.max_bundle_files
        )
        engine = bundle_compiler(policy.entrypoint, build_verifier(policy.signing))(files)
        signed = "signed" if policy.signing.verification_key else "unsigned"
        lines.append(f"bundle: {policy.bundle} revision {engine.revision!r} ({signed}, compiles)")
    else:
        assert policy.bundle_server is not None  # checked by Settings
        lines.append(f"bundle server: {policy.bundle_server.url} (not contacted)")
    sinks = [sink.name for sink in settings.events.sinks]
    if settings.decision_log.path is not None:
        sinks.append("decision-log")
    lines.append(f"event sinks: {', '.join(sinks) or 'none'}")
    return lines
