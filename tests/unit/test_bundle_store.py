"""The bundle store: what is saved is read back byte for byte; a torn or altered pair
is refused; an empty directory holds nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from capgate.errors import BundleError
from capgate.policy.bundle import BundleFiles
from capgate.policy.store import METADATA, TARBALL, BundleStore

FILES = BundleFiles(
    "https://bundles.example/b.tar.gz",
    {
        ".manifest": b'{"revision":"r7"}',
        "capgate/authz.rego": b"package capgate.authz\n",
        "data.json": b'{"a":1}',
        ".signatures.json": b'{"signatures":["x.y.z"]}',
    },
)
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def store(directory: Path) -> BundleStore:
    return BundleStore(directory, max_bytes=1 << 20, max_files=100)


def test_nothing_stored_is_none(tmp_path: Path) -> None:
    assert store(tmp_path / "missing").load() is None
    assert store(tmp_path).load() is None


def test_saved_files_come_back_with_source_and_etag(tmp_path: Path) -> None:
    store(tmp_path).save(FILES, revision="r7", source=FILES.source, etag='"abc"', now=NOW)
    stored = store(tmp_path).load()
    assert stored is not None
    assert stored.files.files == FILES.files
    assert (stored.source, stored.etag) == (FILES.source, '"abc"')
    metadata = json.loads((tmp_path / METADATA).read_text())
    assert metadata["revision"] == "r7"
    assert metadata["stored_at"] == "2026-11-21T12:00:00.000000Z"
    assert not list(tmp_path.glob("*.tmp"))


def test_a_second_save_replaces_the_first(tmp_path: Path) -> None:
    store(tmp_path).save(FILES, revision="r7", source="a", etag="", now=NOW)
    newer = BundleFiles("b", {**FILES.files, ".manifest": b'{"revision":"r8"}'})
    store(tmp_path).save(newer, revision="r8", source="b", etag="", now=NOW)
    stored = store(tmp_path).load()
    assert stored is not None and stored.files.files[".manifest"] == b'{"revision":"r8"}'


@pytest.mark.parametrize("damage", ["tarball", "metadata", "torn"])
def test_an_altered_or_torn_pair_is_refused(tmp_path: Path, damage: str) -> None:
    store(tmp_path).save(FILES, revision="r7", source="a", etag="", now=NOW)
    if damage == "tarball":
        content = bytearray((tmp_path / TARBALL).read_bytes())
        content[len(content) // 2] ^= 0xFF
        (tmp_path / TARBALL).write_bytes(bytes(content))
    elif damage == "metadata":
        (tmp_path / METADATA).write_text("{not json")
    else:
        (tmp_path / METADATA).unlink()
    with pytest.raises(BundleError, match="stored bundle"):
        store(tmp_path).load()


def test_the_caps_apply_to_what_is_read_back(tmp_path: Path) -> None:
    store(tmp_path).save(FILES, revision="r7", source="a", etag="", now=NOW)
    with pytest.raises(BundleError, match="larger than"):
        BundleStore(tmp_path, max_bytes=10, max_files=100).load()
