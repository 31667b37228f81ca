"""The active bundle, stored on disk so a restart serves it before any source answers.

Layout under ``policy.persist_dir`` (OPA's ``persistence_directory`` does the same job)::

    bundle.tar.gz     the active bundle's files, exactly as verified (bundle.to_tarball)
    bundle.json       {"revision", "source", "etag", "sha256" (of bundle.tar.gz),
                       "stored_at" (RFC 3339)}

Both are written to a temporary file, fsynced and renamed, tarball first, so a crash
leaves the previous pair or the new pair. What is read back is verified again like a
download (signature, caps, compile): the disk is not trusted more than the network.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from capgate.clock import rfc3339
from capgate.errors import BundleError
from capgate.policy.bundle import BundleFiles, read_tarball, to_tarball

TARBALL = "bundle.tar.gz"
METADATA = "bundle.json"


@dataclass(frozen=True, slots=True)
class Stored:
    """A stored bundle: its files, the source it came from and that source's ETag."""

    files: BundleFiles
    source: str
    etag: str


class BundleStore:
    """Saves and loads the one active bundle under ``directory`` (created if missing)."""

    def __init__(self, directory: Path, *, max_bytes: int, max_files: int) -> None:
        self._directory = directory
        self._max_bytes = max_bytes
        self._max_files = max_files

    def save(
        self, files: BundleFiles, *, revision: str, source: str, etag: str, now: datetime
    ) -> None:
        """Store ``files`` as the active bundle. Raises OSError (the caller logs it:
        the activation itself stands)."""
        self._directory.mkdir(parents=True, exist_ok=True)
        tarball = to_tarball(files)
        metadata = {
            "revision": revision,
            "source": source,
            "etag": etag,
            "sha256": hashlib.sha256(tarball).hexdigest(),
            "stored_at": rfc3339(now),
        }
        _write_atomically(self._directory / TARBALL, tarball)
        _write_atomically(self._directory / METADATA, json.dumps(metadata).encode())

    def load(self) -> Stored | None:
        """The stored bundle, or ``None`` when nothing is stored.

        Raises:
            BundleError: the stored pair is unreadable, torn (hash mismatch) or not a
                bundle tarball.
        """
        tarball_path = self._directory / TARBALL
        metadata_path = self._directory / METADATA
        if not tarball_path.exists() and not metadata_path.exists():
            return None
        where = f"stored bundle in {self._directory}"
        try:
            tarball = tarball_path.read_bytes()
            metadata = json.loads(metadata_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise BundleError(f"{where}: unreadable: {exc}") from exc
        if not isinstance(metadata, dict) or hashlib.sha256(tarball).hexdigest() != metadata.get(
            "sha256"
        ):
            raise BundleError(f"{where}: {METADATA} does not match {TARBALL}")
        files = read_tarball(
            f"{where} (from {metadata.get('source', '?')})",
            tarball,
            max_bytes=self._max_bytes,
            max_files=self._max_files,
        )
        return Stored(files, str(metadata.get("source", "")), str(metadata.get("etag", "")))


def _write_atomically(path: Path, content: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
