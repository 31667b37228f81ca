"""Bundle activation: fetch → verify → parse → compile (off the event loop) → swap.

::

    source (LocalSource watched | HttpSource polled) ─┐
    store  (persist_dir, read once at start)  ────────┼─► BundleManager.offer(fetched)
                                                      │     1. same bytes as active? skip
                                                      │     2. in a worker thread:
                                                      │        verify .signatures.json,
                                                      │        assemble, compile
                                                      │     3. ActivePolicy.activate (one
                                                      │        assignment on the loop)
                                                      └──   4. store it (persist_dir)

Any failure at any step leaves the active revision serving, counts
``capgate_bundle_activation_failures_total{stage}`` and is kept in :class:`BundleStatus`
(``GetStatus``). A decision reads the active engine once, so it is made wholly by one
revision. Start-up order (OPA's bundle plugin with persistence does the same): the
stored bundle first, then the source; a local source that cannot be loaded at start
with nothing stored stops the server, a bundle server that is down does not (health
stays NOT_SERVING and Authorize answers DENY ``POLICY_UNAVAILABLE`` until one arrives).
"""

from __future__ import annotations

import asyncio
import hashlib
import random as _random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from capgate.backoff import full_jitter
from capgate.clock import Clock
from capgate.errors import BundleError
from capgate.observability.metrics import Metrics
from capgate.policy.active import ActivePolicy
from capgate.policy.bundle import BundleFiles, assemble
from capgate.policy.embedded import EmbeddedEngine
from capgate.policy.engine import PolicyEngine
from capgate.policy.sources import Fetched, HttpSource, LocalSource
from capgate.policy.store import BundleStore
from capgate.settings import BundleServerSettings

log = structlog.get_logger("capgate")

Compiler = Callable[[BundleFiles], PolicyEngine]


class ActivationFailed(BundleError):
    """A bundle was refused at ``stage``: ``signature``, ``format`` or ``compile``."""

    def __init__(self, stage: str, cause: BundleError) -> None:
        super().__init__(str(cause))
        self.stage = stage


def bundle_compiler(entrypoint: str, verify: Callable[[BundleFiles], object] | None) -> Compiler:
    """Files → a compiled :class:`EmbeddedEngine`; ``verify`` (signature check) first.

    The returned function raises :class:`ActivationFailed`. It runs in a worker thread:
    it builds its own rego-cpp interpreter and touches nothing shared.
    """

    def compile_files(files: BundleFiles) -> PolicyEngine:
        stage = "signature"
        try:
            if verify is not None:
                verify(files)
            stage = "format"
            bundle = assemble(files)
            stage = "compile"
            return EmbeddedEngine(bundle, entrypoint)
        except BundleError as exc:
            raise ActivationFailed(stage, exc) from exc

    return compile_files


@dataclass(slots=True)
class BundleStatus:
    """What ``GetStatus`` and the logs say about bundles. Times are UTC."""

    source: str
    revision: str = ""
    activated_at: datetime | None = None
    last_error: str = ""
    last_error_at: datetime | None = None
    activations: int = 0
    failures: int = 0
    origin: str = ""  # "source" or "store"
    content_sha256: str = field(default="", repr=False)


class BundleManager:
    """Keeps the best bundle active from one source, and the store if configured."""

    def __init__(
        self,
        *,
        source: LocalSource | HttpSource,
        policy: ActivePolicy,
        compiler: Compiler,
        store: BundleStore | None,
        metrics: Metrics,
        clock: Clock,
        polling: BundleServerSettings | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self._source = source
        self._policy = policy
        self._compile = compiler
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._polling = polling
        self._sleep = sleep
        self._random = random
        self._etag = ""
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.status = BundleStatus(source=source.name)

    async def start(self) -> None:
        """Activate the stored bundle (if any), then the source's; then keep watching.

        Raises:
            BundleError: the source is local, it cannot be activated, and nothing
                stored could be either.
        """
        await self._activate_stored()
        try:
            await self._poll_once()
        except BundleError:
            if isinstance(self._source, LocalSource) and self._policy.engine is None:
                raise
        loop = self._watch_local if isinstance(self._source, LocalSource) else self._poll_forever
        self._task = asyncio.create_task(loop(), name="bundle-source")

    async def aclose(self) -> None:
        if isinstance(self._source, LocalSource):
            self._source.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if isinstance(self._source, HttpSource):
            await self._source.aclose()

    async def offer(self, fetched: Fetched, *, origin: str = "source") -> bool:
        """Verify, compile and activate ``fetched``. Returns whether it was activated
        (False: identical to the active bundle). Raises BundleError; the active
        revision is untouched then."""
        async with self._lock:
            digest = _content_sha256(fetched.files)
            if digest == self.status.content_sha256:
                return False
            started = self._clock.monotonic()
            try:
                engine = await asyncio.to_thread(self._compile, fetched.files)
            except ActivationFailed as exc:
                self._failed(exc.stage, exc)
                raise
            self._policy.activate(engine)
            self._activated(engine.revision, digest, origin, started)
            if self._store is not None and origin == "source":
                await self._save(fetched, engine.revision)
            return True

    async def _poll_once(self) -> None:
        try:
            if isinstance(self._source, LocalSource):
                fetched: Fetched | None = await self._source.fetch()
            else:
                fetched = await self._source.fetch(self._etag)
        except BundleError as exc:
            self._failed("fetch", exc)
            raise
        if fetched is not None:
            await self.offer(fetched)
            self._etag = fetched.etag

    async def _activate_stored(self) -> None:
        if self._store is None:
            return
        try:
            stored = await asyncio.to_thread(self._store.load)
        except BundleError as exc:
            self._failed("store", exc)
            log.error("stored_bundle_refused", error=str(exc))
            return
        if stored is None:
            return
        try:
            await self.offer(Fetched(stored.files, stored.etag), origin="store")
        except BundleError as exc:
            log.error("stored_bundle_refused", error=str(exc))
            return
        if stored.source == self._source.name:
            self._etag = stored.etag  # a 304 from the server then means "still this one"

    async def _watch_local(self) -> None:
        assert isinstance(self._source, LocalSource)
        async for _ in self._source.changes():
            await self._attempt()

    async def _poll_forever(self) -> None:
        polling = self._polling
        assert polling is not None
        failures = 0
        while True:
            if failures:
                delay = full_jitter(
                    failures,
                    initial_seconds=polling.min_delay_seconds,
                    max_seconds=polling.max_backoff_seconds,
                    random=self._random,
                )
            else:
                spread = polling.max_delay_seconds - polling.min_delay_seconds
                delay = polling.min_delay_seconds + self._random() * spread
            await self._sleep(delay)
            failures = 0 if await self._attempt() else failures + 1

    async def _attempt(self) -> bool:
        """One poll or re-read; failures are logged and counted, never raised."""
        try:
            await self._poll_once()
        except BundleError as exc:  # counted where it happened
            log.warning("bundle_not_activated", source=self._source.name, error=str(exc))
            return False
        return True

    def _failed(self, stage: str, exc: BundleError) -> None:
        self._metrics.bundle_activation_failures.labels(stage).inc()
        self.status.failures += 1
        self.status.last_error = str(exc)
        self.status.last_error_at = self._clock.now()

    def _activated(self, revision: str, digest: str, origin: str, started: float) -> None:
        now = self._clock.now()
        self.status.revision = revision
        self.status.content_sha256 = digest
        self.status.activated_at = now
        self.status.activations += 1
        self.status.origin = origin
        self._metrics.bundle_activations.inc()
        self._metrics.bundle_activation_duration.observe(self._clock.monotonic() - started)
        self._metrics.bundle_last_activation.set(now.timestamp())
        log.info("bundle_activated", revision=revision, source=self._source.name, origin=origin)

    async def _save(self, fetched: Fetched, revision: str) -> None:
        assert self._store is not None
        try:
            await asyncio.to_thread(
                self._store.save,
                fetched.files,
                revision=revision,
                source=self._source.name,
                etag=fetched.etag,
                now=self._clock.now(),
            )
        except OSError as exc:
            log.error("bundle_not_stored", error=str(exc))


def _content_sha256(files: BundleFiles) -> str:
    digest = hashlib.sha256()
    for name, content in sorted(files.files.items()):
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()
