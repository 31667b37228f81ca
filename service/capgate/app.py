"""The one place where capgate's components are built from :class:`Settings`."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
import uuid6
from prometheus_client import CollectorRegistry
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from capgate.approvals.desk import ApprovalDesk
from capgate.approvals.store import RedisApprovalStore
from capgate.budget.connection import parse_redis_url, redis_client
from capgate.budget.redis_store import RedisBudgetStore
from capgate.clock import Clock, SystemClock
from capgate.control.desk import ControlDesk
from capgate.control.store import RedisControlStore
from capgate.decision.pipeline import Pipeline
from capgate.decision.settle import Settler
from capgate.errors import ConfigError
from capgate.events.config import EventsSettings, FileSinkSettings
from capgate.events.outbox import Checkpointer, Outbox
from capgate.events.sink import EventSink, NopSink
from capgate.identity.insecure import InsecureAuthenticator
from capgate.identity.jwks import JwksSource
from capgate.identity.jwt import JwtAuthenticator
from capgate.identity.model import Authenticator
from capgate.identity.mtls import MtlsAuthenticator
from capgate.observability.metrics import Metrics
from capgate.policy.activation import BundleManager, BundleStatus, bundle_compiler
from capgate.policy.active import ActivePolicy
from capgate.policy.bundle import BundleFiles
from capgate.policy.sources import HttpSource, LocalSource
from capgate.policy.store import BundleStore
from capgate.settings import IdentitySettings, PolicySettings, Settings, SigningSettings

if TYPE_CHECKING:
    from capgate.policy.opa import OpaEngine

log = structlog.get_logger("capgate")

# Socket-level backstop; the per-call deadline (budget.deadline_ms) is what bounds a decision.
REDIS_SOCKET_TIMEOUT_SECONDS = 1.0
# Operator calls (ApprovalService, ControlService) are not on an agent's hot path.
OPERATOR_DEADLINE_SECONDS = 0.5


def new_id() -> str:
    """A UUIDv7 (RFC 9562) string: time-ordered, unique."""
    return str(uuid6.uuid7())


@dataclass(frozen=True, slots=True)
class App:
    settings: Settings
    metrics: Metrics
    policy: ActivePolicy
    budget_store: RedisBudgetStore
    events: EventSink
    pipeline: Pipeline
    settler: Settler
    authenticator: Authenticator
    approval_desk: ApprovalDesk
    control_desk: ControlDesk
    jwks: JwksSource | None
    bundles: BundleManager | None
    opa_engine: OpaEngine | None

    async def start_policy(self) -> None:
        """Start the policy: the bundle manager (stored bundle, then the source, then
        watching it) or the OPA engine's client.

        Raises:
            BundleError: a local bundle cannot be activated and nothing stored could be.
        """
        if self.bundles is not None:
            await self.bundles.start()
            return
        engine = self.opa_engine
        assert engine is not None
        await engine.start()
        self.policy.activate(engine)

    async def policy_ready(self) -> bool:
        """Whether decisions can come from a policy now (health SERVING): a bundle is
        active, or the OPA server reports its bundles activated."""
        if self.opa_engine is not None:
            return await self.opa_engine.ready()
        return self.policy.engine is not None

    async def aclose(self) -> None:
        if self.bundles is not None:
            await self.bundles.aclose()
        if self.opa_engine is not None:
            await self.opa_engine.aclose()
        await self.events.aclose()
        await self.budget_store.aclose()


def build_policy(
    settings: PolicySettings, *, policy: ActivePolicy, metrics: Metrics, clock: Clock
) -> tuple[BundleManager | None, OpaEngine | None]:
    """The bundle manager of the embedded engine, or the OPA engine.

    Raises:
        ConfigError: a verification key or the bundle server settings cannot be used.
    """
    if settings.engine == "opa":
        from capgate.policy.opa import OpaEngine

        assert settings.opa.url  # checked by Settings
        engine = OpaEngine(
            settings.opa.url,
            entrypoint=settings.entrypoint,
            timeout_seconds=settings.opa.timeout_ms / 1000,
        )
        return None, engine
    caps = {"max_bytes": settings.max_bundle_bytes, "max_files": settings.max_bundle_files}
    source: LocalSource | HttpSource
    if settings.bundle is not None:
        source = LocalSource(settings.bundle, **caps)
    else:
        assert settings.bundle_server is not None  # checked by Settings
        try:
            source = HttpSource(settings.bundle_server, metrics=metrics, **caps)
        except OSError as exc:
            raise ConfigError(f"policy.bundle_server: {exc}") from exc
    store = BundleStore(settings.persist_dir, **caps) if settings.persist_dir else None
    manager = BundleManager(
        source=source,
        policy=policy,
        compiler=bundle_compiler(settings.entrypoint, build_verifier(settings.signing)),
        store=store,
        metrics=metrics,
        clock=clock,
        polling=settings.bundle_server,
    )
    return manager, None


def build_verifier(signing: SigningSettings) -> Callable[[BundleFiles], object] | None:
    """The signature check of ``policy.signing``, or ``None`` when no key is configured.

    Raises:
        ConfigError: the verification key cannot be read or does not fit the algorithm.
    """
    if signing.verification_key is None:
        return None
    from capgate.policy.signing import bundle_verifier

    return bundle_verifier(
        signing.verification_key,
        key_id=signing.verification_key_id,
        algorithm=signing.signing_alg,
        scope=signing.scope,
        exclude_files=signing.exclude_files,
    )


def build_authenticator(
    settings: IdentitySettings, clock: Clock
) -> tuple[Authenticator, JwksSource | None]:
    """The authenticator of ``settings.mode``, and the JWKS it verifies with (jwt mode).

    Raises:
        ConfigError: the JWKS cannot be loaded, or the SPIFFE settings are invalid.
    """
    if settings.mode == "jwt":
        jwt = settings.jwt
        assert jwt.jwks and jwt.issuer and jwt.audience  # checked by Settings
        jwks = JwksSource(jwt.jwks)
        jwks.load()
        authenticator = JwtAuthenticator(
            jwks,
            issuer=jwt.issuer,
            audience=jwt.audience,
            leeway_seconds=jwt.leeway_seconds,
            clock=clock,
        )
        return authenticator, jwks
    if settings.mode == "mtls":
        spiffe = settings.spiffe
        assert spiffe.trust_domain  # checked by Settings
        return (
            MtlsAuthenticator(
                trust_domain=spiffe.trust_domain, id_pattern=spiffe.id_pattern, roles=spiffe.roles
            ),
            None,
        )
    return InsecureAuthenticator(), None


def sink_settings(settings: Settings) -> EventsSettings:
    """``events`` with ``decision_log.path`` (``--decision-log``) added as a JSON Lines
    file sink named ``decision-log``."""
    events = settings.events
    path = settings.decision_log.path
    if path is None:
        return events
    shortcut = FileSinkSettings(type="file", name="decision-log", path=path)
    return events.model_copy(update={"sinks": [*events.sinks, shortcut]})


def instance_id(events: EventsSettings) -> str:
    """``events.instance_id``, else the host name plus a hash of the outbox path: stable
    across restarts of this process on this outbox, distinct between processes."""
    if events.instance_id:
        return events.instance_id
    outbox = str(events.outbox.path.resolve())
    return f"{socket.gethostname()}-{hashlib.sha256(outbox.encode()).hexdigest()[:8]}"


def build_events(settings: Settings, *, clock: Clock, metrics: Metrics) -> EventSink:
    """The event pipeline (outbox + one exporter per sink), or a NopSink when no sink
    is configured.

    Raises:
        ConfigError: a sink or the checkpoint key cannot be set up.
        OSError: the outbox cannot be opened.
    """
    events = sink_settings(settings)
    if not events.sinks:
        return NopSink()
    from capgate.events.checkpoint import Checkpointer, load_signing_key
    from capgate.events.exporter import Exporter
    from capgate.events.pipeline import EventPipeline
    from capgate.events.sinks.factory import build_sink

    instance = instance_id(events)
    checkpoint = events.checkpoint
    checkpointer = None
    if checkpoint.signing_key_file is not None:
        checkpointer = Checkpointer(
            load_signing_key(checkpoint.signing_key_file),
            every_events=checkpoint.every_events,
            every_seconds=checkpoint.every_seconds,
            instance_id=instance,
        )
    try:
        outbox = _open_outbox(events, instance, checkpointer, clock=clock, metrics=metrics)
    except ValueError as exc:  # the outbox belongs to another instance_id
        raise ConfigError(f"events.outbox.path {events.outbox.path}: {exc}") from exc
    hostname = socket.gethostname()
    exporters = [
        Exporter(
            outbox,
            build_sink(sink, hostname=hostname, instance_id=instance),
            batch_size=sink.batch_size,
            retry=events.retry,
            metrics=metrics,
            clock=clock,
            linger_seconds=events.export_linger_ms / 1000,
        )
        for sink in events.sinks
    ]
    return EventPipeline(
        outbox, exporters, fsync_interval_seconds=events.outbox.fsync_interval_ms / 1000
    )


def _open_outbox(
    events: EventsSettings,
    instance: str,
    checkpointer: Checkpointer | None,
    *,
    clock: Clock,
    metrics: Metrics,
) -> Outbox:
    return Outbox.open(
        events.outbox.path,
        instance_id=instance,
        max_bytes=events.outbox.max_bytes,
        sink_names=[sink.name for sink in events.sinks],
        clock=clock,
        metrics=metrics,
        checkpointer=checkpointer,
        new_id=new_id,
    )


def build_app(settings: Settings, *, clock: Clock | None = None) -> App:
    """Build every component; nothing connects or compiles until used or activated
    (a JWKS is loaded: a server that cannot verify tokens must not start).

    Raises:
        ConfigError: the identity settings, a sink or the checkpoint key cannot be used.
        OSError: the outbox cannot be opened.
    """
    metrics = Metrics(CollectorRegistry(auto_describe=True))
    policy = ActivePolicy(metrics, kind=settings.policy.engine)
    clock = clock or SystemClock()
    bundles, opa_engine = build_policy(settings.policy, policy=policy, metrics=metrics, clock=clock)
    budget = settings.budget
    redis = redis_client(
        parse_redis_url(budget.redis_url),
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
    )
    budget_store = RedisBudgetStore(
        redis,
        deadline_seconds=budget.deadline_ms / 1000,
        run_ttl_seconds=budget.run_ttl_seconds,
    )
    authenticator, jwks = build_authenticator(settings.identity, clock)
    events = build_events(settings, clock=clock, metrics=metrics)
    approvals = RedisApprovalStore(redis, deadline_seconds=budget.deadline_ms / 1000)
    operator_approvals = RedisApprovalStore(
        redis, deadline_seconds=max(OPERATOR_DEADLINE_SECONDS, budget.deadline_ms / 1000)
    )
    pipeline = Pipeline(
        policy=policy,
        budgets=budget_store,
        approvals=approvals,
        events=events,
        authenticator=authenticator,
        metrics=metrics,
        clock=clock,
        new_id=new_id,
        reservation_ttl_seconds=budget.reservation_ttl_seconds,
        masked_names=tuple(settings.events.masked_parameter_names),
    )
    settler = Settler(budgets=budget_store, events=events, metrics=metrics, new_id=new_id)
    approval_desk = ApprovalDesk(operator_approvals, events, metrics, clock, new_id)
    control_desk = ControlDesk(
        RedisControlStore(
            redis,
            deadline_seconds=max(OPERATOR_DEADLINE_SECONDS, budget.deadline_ms / 1000),
            run_ttl_seconds=budget.run_ttl_seconds,
        ),
        operator_approvals,
        policy,
        bundles.status if bundles else BundleStatus(source=settings.policy.opa.url or ""),
        events,
        metrics,
        clock,
        new_id,
    )
    return App(
        settings,
        metrics,
        policy,
        budget_store,
        events,
        pipeline,
        settler,
        authenticator,
        approval_desk,
        control_desk,
        jwks,
        bundles,
        opa_engine,
    )
