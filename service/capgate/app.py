"""The one place where capgate's components are built from :class:`Settings`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

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
from capgate.errors import BundleError
from capgate.events.file_sink import JsonlFileSink
from capgate.events.sink import EventSink, NopSink
from capgate.identity.insecure import InsecureAuthenticator
from capgate.identity.jwks import JwksSource
from capgate.identity.jwt import JwtAuthenticator
from capgate.identity.model import Authenticator
from capgate.identity.mtls import MtlsAuthenticator
from capgate.observability.metrics import Metrics
from capgate.policy.active import ActivePolicy
from capgate.policy.bundle import load_bundle
from capgate.policy.embedded import EmbeddedEngine
from capgate.settings import IdentitySettings, Settings

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

    async def activate_bundle(self) -> None:
        """Load and compile the configured bundle off the event loop, then activate it.

        Raises:
            BundleError: the bundle cannot be read or compiled; nothing is activated.
        """
        policy = self.settings.policy
        if policy.bundle is None:
            raise BundleError("no bundle configured (policy.bundle)")
        path = policy.bundle
        try:
            engine = await asyncio.to_thread(
                lambda: EmbeddedEngine(load_bundle(path), policy.entrypoint)
            )
        except BundleError:
            self.metrics.bundle_activation_failures.inc()
            raise
        self.policy.activate(engine)
        log.info("bundle_activated", revision=engine.revision, source=str(policy.bundle))

    async def aclose(self) -> None:
        await self.events.aclose()
        await self.budget_store.aclose()


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


def build_app(settings: Settings, *, clock: Clock | None = None) -> App:
    """Build every component; nothing connects or compiles until used or activated
    (a JWKS is loaded: a server that cannot verify tokens must not start).

    Raises:
        ConfigError: the identity settings cannot be used (see build_authenticator).
        OSError: the decision log cannot be opened.
    """
    metrics = Metrics(CollectorRegistry(auto_describe=True))
    policy = ActivePolicy(metrics)
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
    log_path = settings.decision_log.path
    events: EventSink = JsonlFileSink(log_path) if log_path is not None else NopSink()
    clock = clock or SystemClock()
    authenticator, jwks = build_authenticator(settings.identity, clock)
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
    )
