"""Read an OPA bundle from a directory or a ``.tar.gz``.

Format (OPA docs, "Bundles" — https://www.openpolicyagent.org/docs/management-bundles):
  - ``.manifest``: JSON ``{"revision": str, "roots": [str], "metadata": {...}}``, optional;
  - ``data.json`` / ``data.yaml`` / ``data.yml``: a document placed at the path of its
    directory (``a/b/data.json`` becomes ``data.a.b``);
  - ``*.rego``: policy modules (Rego v1). ``*_test.rego`` files are skipped: tests
    are for ``opa test``, not for the decision path.
Other files are ignored, as OPA does. Refused with :class:`BundleError`: symlinks and
other non-regular entries, absolute or ``..`` paths, more than ``max_bytes`` of
content, data documents that collide, and modules that call a builtin reaching the
network (``http.send``, ``net.lookup_ip_addr``) or one the embedded engine lacks
(:mod:`capgate.policy.builtins`).
"""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from capgate.errors import BundleError
from capgate.policy import builtins

DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_MAX_FILES = 10_000
DATA_FILES = ("data.json", "data.yaml", "data.yml")


@dataclass(frozen=True, slots=True)
class Bundle:
    """A bundle's contents. ``modules`` maps the bundle-relative path to Rego source."""

    source: str
    revision: str
    roots: tuple[str, ...]
    data: dict[str, Any]
    modules: dict[str, str]


@dataclass(frozen=True, slots=True)
class BundleFiles:
    """Every regular file of a bundle as read, before any check of its contents.

    ``files`` maps the bundle-relative POSIX path (``.manifest``, ``a/b/data.json``,
    ``.signatures.json``) to its bytes. Signatures are verified over this map
    (:mod:`capgate.policy.signing`); :func:`assemble` then parses it.
    """

    source: str
    files: dict[str, bytes]


def load_bundle(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Bundle:
    """Load the bundle at ``path`` (a directory, or a file ending in ``.tar.gz``/``.tgz``),
    without signature verification. Raises :class:`BundleError`."""
    return assemble(read_bundle_files(path, max_bytes=max_bytes))


def read_bundle_files(
    path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, max_files: int = DEFAULT_MAX_FILES
) -> BundleFiles:
    """Every regular file of the bundle at ``path`` (a directory or a ``.tar.gz``).

    Raises:
        BundleError: not a directory or tarball, unreadable, a symlink or other
            non-regular entry, a path that escapes the bundle, more than ``max_bytes``
            of content or ``max_files`` files.
    """
    if path.is_dir():
        try:
            files = _read_directory(path, max_bytes, max_files)
        except OSError as exc:
            raise BundleError(f"bundle {path}: unreadable: {exc}") from exc
        return BundleFiles(str(path), files)
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise BundleError(f"bundle {path}: unreadable: {exc}") from exc
        return read_tarball(str(path), content, max_bytes=max_bytes, max_files=max_files)
    raise BundleError(f"bundle {path}: not a directory or a .tar.gz file")


def _read_directory(root: Path, max_bytes: int, max_files: int) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    total = 0
    for entry in sorted(root.rglob("*")):
        rel = entry.relative_to(root).as_posix()
        if entry.is_symlink():
            raise BundleError(f"bundle {root}: {rel} is a symlink; refused")
        if entry.is_dir():
            continue
        if not entry.is_file():
            raise BundleError(f"bundle {root}: {rel} is not a regular file; refused")
        content = entry.read_bytes()
        total += len(content)
        if total > max_bytes:
            raise BundleError(f"bundle {root}: larger than {max_bytes} bytes")
        files[rel] = content
        if len(files) > max_files:
            raise BundleError(f"bundle {root}: more than {max_files} files")
    return files


def read_tarball(
    source: str,
    content: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
) -> BundleFiles:
    """Every regular file of a gzipped tarball (``opa build`` output) held in memory.

    The uncompressed total is capped at ``max_bytes`` while reading, so a tar bomb is
    refused before it is expanded.

    Raises:
        BundleError: not a gzipped tarball, a non-regular entry (symlink, device), an
            absolute or ``..`` path, a duplicate path, or a cap exceeded.
    """
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tar:
            for member in tar:
                rel = _safe_member_path(source, member.name)
                if member.isdir():
                    continue
                if not member.isfile():
                    raise BundleError(f"bundle {source}: {member.name} is not a regular file")
                total += member.size
                if total > max_bytes:
                    raise BundleError(f"bundle {source}: larger than {max_bytes} bytes")
                if rel in files:
                    raise BundleError(f"bundle {source}: {rel} appears twice")
                extracted = tar.extractfile(member)
                if extracted is None:
                    raise BundleError(f"bundle {source}: cannot read {member.name}")
                files[rel] = extracted.read(max_bytes + 1)
                if len(files) > max_files:
                    raise BundleError(f"bundle {source}: more than {max_files} files")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BundleError(f"bundle {source}: unreadable tarball: {exc}") from exc
    return BundleFiles(source, files)


def to_tarball(bundle: BundleFiles) -> bytes:
    """``bundle`` as a gzipped tarball with fixed metadata (same files, same bytes):
    how an activated bundle is stored on disk and read back by :func:`read_tarball`."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for rel, content in sorted(bundle.files.items()):
            info = tarfile.TarInfo("/" + rel)
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _safe_member_path(source: str, name: str) -> str:
    """``name`` relative to the bundle root. ``opa build`` writes ``/data.json``: a
    leading ``/`` is the root; ``..`` is refused."""
    pure = PurePosixPath(name.lstrip("/"))
    if ".." in pure.parts or "\\" in name:
        raise BundleError(f"bundle {source}: entry {name!r} escapes the bundle")
    return pure.as_posix().removeprefix("./")


def _wanted(rel: str) -> bool:
    name = PurePosixPath(rel).name
    if rel == ".manifest" or name in DATA_FILES:
        return True
    return name.endswith(".rego") and not name.endswith("_test.rego")


def assemble(bundle: BundleFiles) -> Bundle:
    """Parse the manifest, data documents and modules of ``bundle`` (files the OPA
    bundle format does not define are ignored, as OPA does). Raises :class:`BundleError`."""
    source = bundle.source
    files = {rel: content for rel, content in bundle.files.items() if _wanted(rel)}
    manifest = _parse_manifest(source, files.pop(".manifest", None))
    data: dict[str, Any] = {}
    modules: dict[str, str] = {}
    for rel, content in sorted(files.items()):
        pure = PurePosixPath(rel)
        text = _decode(source, rel, content)
        if pure.name in DATA_FILES:
            document = _parse_data(source, rel, text)
            _place(data, [p for p in pure.parent.parts if p != "."], document, source, rel)
        else:
            _refuse_builtins(source, rel, text)
            modules[rel] = text
    if not modules:
        raise BundleError(f"bundle {source}: contains no .rego modules")
    return Bundle(
        source=source,
        revision=manifest.get("revision", ""),
        roots=tuple(manifest.get("roots", [""])),
        data=data,
        modules=modules,
    )


def _parse_manifest(source: str, content: bytes | None) -> dict[str, Any]:
    if content is None:
        return {}
    try:
        manifest = json.loads(content)
    except ValueError as exc:
        raise BundleError(f"bundle {source}: .manifest is not JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"bundle {source}: .manifest must be a JSON object")
    if not isinstance(manifest.get("revision", ""), str):
        raise BundleError(f"bundle {source}: .manifest revision must be a string")
    roots = manifest.get("roots", [""])
    if not isinstance(roots, list) or not all(isinstance(r, str) for r in roots):
        raise BundleError(f"bundle {source}: .manifest roots must be a list of strings")
    return manifest


def _decode(source: str, rel: str, content: bytes) -> str:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"bundle {source}: {rel} is not UTF-8") from exc


def _parse_data(source: str, rel: str, text: str) -> Any:
    try:
        return json.loads(text) if rel.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise BundleError(f"bundle {source}: {rel} does not parse: {exc}") from exc


def _place(data: dict[str, Any], path: list[str], doc: Any, source: str, rel: str) -> None:
    """Merge ``doc`` into ``data`` at ``path``; overlapping leaves are an error, as in OPA."""
    if not path:
        if not isinstance(doc, dict):
            raise BundleError(f"bundle {source}: {rel} at the bundle root must be an object")
        _merge(data, doc, source, rel)
        return
    _merge(data, _nest(path, doc), source, rel)


def _nest(path: list[str], doc: Any) -> dict[str, Any]:
    for key in reversed(path):
        doc = {key: doc}
    return doc


def _merge(into: dict[str, Any], new: dict[str, Any], source: str, rel: str) -> None:
    for key, value in new.items():
        if key not in into:
            into[key] = value
        elif isinstance(into[key], dict) and isinstance(value, dict):
            _merge(into[key], value, source, rel)
        else:
            raise BundleError(f"bundle {source}: {rel} redefines data key {key!r}")


def _call_pattern(builtin: str) -> str:
    """A call of ``builtin`` as Rego can spell it: ``a.b(``, ``a . b (``, ``a["b"](``;
    not ``x.a.b(`` (a rule of another package) nor ``a.bc(``."""
    first, *rest = builtin.split(".")
    pattern = rf"(?<![\w.]){first}"
    for part in rest:
        quoted = rf'"{part}"|`{part}`'
        pattern += rf"\s*(?:\.\s*{part}\b|\[\s*(?:{quoted})\s*\])"
    return pattern + (r"\s*\(" if not rest else r"(?=\s*\()")


# Tokens scanned left to right: string literals and comments are consumed whole, so a
# builtin's name inside them is not a call; a call may span lines.
_SCAN = re.compile(
    r'(?P<string>"(?:\\.|[^"\\\n])*"|`[^`]*`)|(?P<comment>#[^\n]*)|'
    + "|".join(
        f"(?P<b{n}>{_call_pattern(name)})" for n, name in enumerate(sorted(builtins.REFUSED))
    )
)
_BY_GROUP = {f"b{n}": name for n, name in enumerate(sorted(builtins.REFUSED))}


def _refuse_builtins(source: str, rel: str, text: str) -> None:
    """Refuse a module calling a builtin of :data:`capgate.policy.builtins.REFUSED`."""
    for match in _SCAN.finditer(text):
        group = match.lastgroup
        if group in _BY_GROUP:
            line_no = text.count("\n", 0, match.start()) + 1
            builtin = _BY_GROUP[group]
            raise BundleError(
                f"bundle {source}: {rel}:{line_no} calls {builtin}, "
                f"{builtins.why_refused(builtin)}; refused"
            )
