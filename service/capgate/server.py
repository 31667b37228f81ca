"""The gRPC server: AuthorizationService, ApprovalService, ControlService,
grpc.health.v1, reflection, /metrics, drain; TLS (and mTLS) when ``server.tls`` is set.

Health (https://github.com/grpc/grpc/blob/master/doc/health-checking.md):

- ``""``, ``readiness`` and ``capgate.v1.AuthorizationService`` are NOT_SERVING until a
  policy can decide (a bundle is active; with ``--engine opa``, OPA's
  ``/health?bundles=true``), whenever it no longer can, and while draining;
- ``liveness`` is SERVING from start until the drain ends: it answers as long as the
  event loop does, and a missing bundle does not make it fail (a restart would not
  bring one).

With ``server.health_listen``, a second plaintext listener serves only that health
service, for the kubelet's gRPC probes (Kubernetes docs, "Configure Liveness,
Readiness and Startup Probes": gRPC probes reach the pod IP and do not do TLS).
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from capgate.api.approvals import ApprovalServicer
from capgate.api.authorization import AuthorizationServicer
from capgate.api.control import ControlServicer
from capgate.app import App, new_id
from capgate.errors import BundleError
from capgate.settings import TlsSettings, parse_host_port, unix_socket_path
from capgate.v1 import (
    approval_service_pb2,
    approval_service_pb2_grpc,
    authorization_service_pb2,
    authorization_service_pb2_grpc,
    control_service_pb2,
    control_service_pb2_grpc,
)

log = structlog.get_logger("capgate")

# How often health re-checks that a policy can decide (a bundle arrived, OPA went away).
HEALTH_POLL_SECONDS = 0.5

AUTHORIZATION_SERVICE = authorization_service_pb2.DESCRIPTOR.services_by_name[
    "AuthorizationService"
].full_name
READINESS = "readiness"
LIVENESS = "liveness"
HEALTH_NAMES = ("", AUTHORIZATION_SERVICE, READINESS)
OTHER_SERVICES = (
    approval_service_pb2.DESCRIPTOR.services_by_name["ApprovalService"].full_name,
    control_service_pb2.DESCRIPTOR.services_by_name["ControlService"].full_name,
)


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials:
    """TLS credentials; with ``client_ca_file``, client certificates are required and
    verified against it (mTLS).

    Raises:
        OSError: a certificate or key file cannot be read.
    """
    root = tls.client_ca_file.read_bytes() if tls.client_ca_file else None
    return grpc.ssl_server_credentials(
        [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
        root_certificates=root,
        require_client_auth=root is not None,
    )


class CapgateServer:
    """Lifecycle: :meth:`start` (bind, NOT_SERVING) → :meth:`activate` (SERVING) → :meth:`stop`."""

    def __init__(self, app: App) -> None:
        self._app = app
        settings = app.settings.server
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", settings.max_receive_message_bytes),
                # A port already in use is an error, not a silent share with another process.
                ("grpc.so_reuseport", 0),
            ]
        )
        self._health = health.aio.HealthServicer()
        authorization_service_pb2_grpc.add_AuthorizationServiceServicer_to_server(
            AuthorizationServicer(
                app.pipeline,
                app.settler,
                app.authenticator,
                app.metrics,
                min_time_left_seconds=settings.min_time_left_ms / 1000,
            ),
            self._server,
        )
        approval_service_pb2_grpc.add_ApprovalServiceServicer_to_server(
            ApprovalServicer(app.approval_desk, app.authenticator, app.metrics), self._server
        )
        control_service_pb2_grpc.add_ControlServiceServicer_to_server(
            ControlServicer(app.control_desk, app.authenticator, app.metrics, new_id()),
            self._server,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (AUTHORIZATION_SERVICE, *OTHER_SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME),
            self._server,
        )
        self._health_server: grpc.aio.Server | None = None
        if settings.health_listen is not None:
            self._health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            health_pb2_grpc.add_HealthServicer_to_server(self._health, self._health_server)
        self._metrics_httpd: object | None = None
        self._jwks_refresh: asyncio.Task[None] | None = None
        self._health_follower: asyncio.Task[None] | None = None
        self._serving: bool | None = None
        self.grpc_port = 0
        self.health_port = 0
        self.metrics_port = 0

    async def start(self) -> int:
        """Bind and start serving (NOT_SERVING). Returns the bound gRPC port.

        Raises:
            OSError: the gRPC, health or metrics address cannot be bound, or the Unix
                socket's mode cannot be set.
        """
        settings = self._app.settings.server
        try:
            if settings.tls is not None:
                credentials = server_credentials(settings.tls)
                self.grpc_port = self._server.add_secure_port(settings.listen, credentials)
            else:
                self.grpc_port = self._server.add_insecure_port(settings.listen)
        except RuntimeError as exc:  # grpc's way of saying bind() failed
            raise OSError(f"cannot listen on {settings.listen}: address in use or invalid") from exc
        if settings.listen.startswith("unix:"):
            # Bound (grpc binds in add_*_port); set the mode before anyone is served.
            os.chmod(unix_socket_path(settings.listen), settings.unix_socket_mode)
        if self._health_server is not None and settings.health_listen is not None:
            try:
                self.health_port = self._health_server.add_insecure_port(settings.health_listen)
            except RuntimeError as exc:
                raise OSError(
                    f"cannot listen on server.health_listen {settings.health_listen}: "
                    "address in use or invalid"
                ) from exc
        identity = self._app.settings.identity
        if identity.mode == "insecure":
            log.warning(
                "insecure_identity",
                detail="request bodies are trusted as the caller's identity; "
                "loopback or unix socket only, never in production",
                listen=settings.listen,
            )
        jwks = self._app.jwks
        if jwks is not None:
            self._jwks_refresh = asyncio.create_task(
                jwks.refresh_forever(identity.jwt.jwks_refresh_seconds)
            )
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        self._app.events.start()
        await self._server.start()
        if self._health_server is not None:
            await self._health_server.start()
        host, port = parse_host_port(settings.metrics_listen)
        httpd, _thread = start_http_server(port, host, registry=self._app.metrics.registry)
        self._metrics_httpd = httpd
        self.metrics_port = httpd.server_port
        log.info(
            "listening",
            grpc=settings.listen,
            grpc_port=self.grpc_port,
            health_port=self.health_port or None,
            metrics_port=self.metrics_port,
        )
        return self.grpc_port

    async def activate(self) -> None:
        """Start the policy (stored bundle, source, or OPA engine); health follows
        whether a policy can decide: SERVING once one can, NOT_SERVING while none can.

        Raises:
            BundleError: a local bundle cannot be activated and nothing stored could be.
        """
        await self._app.budget_store.connect()
        await self._app.start_policy()
        await self._follow_policy_once()
        self._health_follower = asyncio.create_task(self._follow_policy(), name="health")

    async def _follow_policy_once(self) -> None:
        ready = await self._app.policy_ready()
        if ready != self._serving:
            self._serving = ready
            serving = health_pb2.HealthCheckResponse.SERVING
            await self._set_health(serving if ready else health_pb2.HealthCheckResponse.NOT_SERVING)

    async def _follow_policy(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_POLL_SECONDS)
            await self._follow_policy_once()

    async def stop(self, grace_seconds: float) -> None:
        """Drain: NOT_SERVING; stop taking calls and finish in-flight ones; deliver the
        decision events to every sink in what is left of the grace period (undelivered
        ones stay in the outbox, sent after the next start); close."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        if self._health_follower is not None:
            self._health_follower.cancel()
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._jwks_refresh is not None:
            self._jwks_refresh.cancel()
        await self._server.stop(grace_seconds)
        drained = await self._app.events.drain(max(deadline - loop.time(), 0.0))
        log.info("events_drained" if drained else "events_left_in_outbox")
        await self._app.aclose()
        await self._health.set(LIVENESS, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._health_server is not None:
            await self._health_server.stop(0)
        if self._metrics_httpd is not None:
            httpd = self._metrics_httpd
            await asyncio.to_thread(httpd.shutdown)  # type: ignore[attr-defined]
            httpd.server_close()  # type: ignore[attr-defined]
        log.info("stopped")

    async def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus) -> None:
        for name in HEALTH_NAMES:
            await self._health.set(name, status)


def freeze_start_up_heap() -> int:
    """Collect, then move every object alive (modules, the app, the first bundle when
    one is active: ~80,000 in ``capgate serve``) to the collector's permanent
    generation, which later collections skip (``gc.freeze``,
    https://docs.python.org/3/library/gc.html#gc.freeze). A full collection then scans
    only what serving allocated since, instead of pausing the event loop, and every
    decision in flight, ~50 ms on 2 CPUs. Objects frozen are still freed when their
    reference count drops to zero; only start-up cycles that become garbage later stay.
    Returns the number of objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


async def serve_until_signalled(app: App) -> int:
    """Run until SIGTERM or SIGINT, then drain. Returns the process exit code. Once
    start-up is done (the policy started: a bundle active, or a bundle server being
    polled), the start-up heap is frozen (:func:`freeze_start_up_heap`)."""
    server = CapgateServer(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    failure = "listen_failed"
    try:
        await server.start()
        failure = "bundle_activation_failed"
        await server.activate()
    except (OSError, BundleError) as exc:
        log.error(failure, error=str(exc))
        await server.stop(0)
        return 2
    log.info("heap_frozen", objects=freeze_start_up_heap())
    await stop.wait()
    log.info("draining", grace_period_seconds=app.settings.server.grace_period_seconds)
    await server.stop(app.settings.server.grace_period_seconds)
    return 0
