"""Where bundles come from: a local path (watched) or an HTTP(S) bundle server (polled).

- :class:`LocalSource`: a directory or a ``.tar.gz``; re-read when the ``stat`` of any
  of its files (inode, size, mtime in ns) changes, checked every
  :data:`WATCH_POLL_SECONDS`. Polling by path follows a directory replaced by a
  rename and a Kubernetes ConfigMap's ``..data`` symlink swap, which an inotify
  watch on the old inode misses; ``watchfiles``' own polling mode compares whole
  seconds and missed a same-size rewrite within one. A bundle is a few dozen files:
  a scan costs microseconds.
- :class:`HttpSource`: OPA's bundle service API (OPA docs, "Bundles", "Bundle Service
  API"): ``GET url`` returns the gzipped tarball and an ``ETag``; the next poll sends
  ``If-None-Match`` and ``304 Not Modified`` means unchanged (RFC 9110 §13.1.2,
  §15.4.5). The download is capped at ``max_bytes`` while it streams.

Both raise :class:`capgate.errors.BundleError` for anything they cannot deliver; the
:class:`capgate.policy.activation.BundleManager` decides what that means.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from capgate.errors import BundleError
from capgate.observability.metrics import Metrics
from capgate.policy.bundle import BundleFiles, read_bundle_files, read_tarball
from capgate.settings import BundleServerSettings

WATCH_POLL_SECONDS = 0.25


@dataclass(frozen=True, slots=True)
class Fetched:
    """A bundle as delivered by a source, with the source's version tag (HTTP ETag)."""

    files: BundleFiles
    etag: str = ""


class LocalSource:
    """A bundle directory or tarball on this machine."""

    def __init__(self, path: Path, *, max_bytes: int, max_files: int) -> None:
        self.path = path
        self.name = str(path)
        self._max_bytes = max_bytes
        self._max_files = max_files
        self._stop = asyncio.Event()

    async def fetch(self) -> Fetched:
        """Read the bundle's files off the event loop. Raises BundleError."""
        files = await asyncio.to_thread(
            read_bundle_files, self.path, max_bytes=self._max_bytes, max_files=self._max_files
        )
        return Fetched(files)

    async def changes(self) -> AsyncIterator[None]:
        """Yields after each change of the bundle's files, until :meth:`close`."""
        seen = await asyncio.to_thread(self._fingerprint)
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), WATCH_POLL_SECONDS)
            current = await asyncio.to_thread(self._fingerprint)
            if current != seen:
                seen = current
                yield

    def _fingerprint(self) -> tuple[tuple[str, int, int, int], ...]:
        """(path, inode, size, mtime ns) of every entry; a missing path is ``()``."""
        try:
            if not self.path.is_dir():
                st = self.path.stat()
                return ((str(self.path), st.st_ino, st.st_size, st.st_mtime_ns),)
            entries = []
            for entry in sorted(self.path.rglob("*")):
                st = entry.lstat()
                entries.append((str(entry), st.st_ino, st.st_size, st.st_mtime_ns))
            return tuple(entries)
        except OSError:
            return ()

    def close(self) -> None:
        self._stop.set()


class HttpSource:
    """A bundle server, e.g. nginx or S3 serving ``opa build`` output."""

    def __init__(
        self,
        settings: BundleServerSettings,
        *,
        max_bytes: int,
        max_files: int,
        metrics: Metrics,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = settings.url
        self._url = settings.url
        self._max_bytes = max_bytes
        self._max_files = max_files
        self._metrics = metrics
        headers = {"Accept": "application/gzip"}
        if settings.bearer_token_file is not None:
            token = settings.bearer_token_file.read_text().strip()
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=settings.timeout_seconds,
            verify=str(settings.ca_file) if settings.ca_file else True,
            transport=transport,
            follow_redirects=True,
        )

    async def fetch(self, etag: str = "") -> Fetched | None:
        """The bundle, or ``None`` when the server answers 304 for ``etag``.

        Raises:
            BundleError: connection failure, timeout, a status other than 200/304, a
                body over ``max_bytes``, or not a bundle tarball.
        """
        headers = {"If-None-Match": etag} if etag else {}
        try:
            async with self._client.stream("GET", self._url, headers=headers) as response:
                if response.status_code == 304:
                    self._metrics.bundle_downloads.labels("not_modified").inc()
                    return None
                if response.status_code != 200:
                    raise BundleError(f"bundle server {self._url}: HTTP {response.status_code}")
                body = await self._read_capped(response)
                new_etag = response.headers.get("ETag", "")
        except httpx.HTTPError as exc:
            self._metrics.bundle_downloads.labels("error").inc()
            raise BundleError(f"bundle server {self._url}: {type(exc).__name__}: {exc}") from exc
        except BundleError:
            self._metrics.bundle_downloads.labels("error").inc()
            raise
        self._metrics.bundle_downloads.labels("ok").inc()
        files = await asyncio.to_thread(
            read_tarball, self._url, body, max_bytes=self._max_bytes, max_files=self._max_files
        )
        return Fetched(files, new_etag)

    async def _read_capped(self, response: httpx.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > self._max_bytes:
                raise BundleError(f"bundle server {self._url}: larger than {self._max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        await self._client.aclose()
