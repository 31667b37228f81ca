"""Open decision logs named on the command line and read their records, in order.

A path is a log file (JSON Lines; ``.gz`` is gunzipped) or a directory, of which the
``*.jsonl`` and ``*.jsonl.gz`` files are read in name order. Errors are
:class:`~capgate.impact.records.LogError`, naming the file (and the line, for a bad
line).

    for record in read_records([Path("agentdojo-decisions")]):
        ...
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from capgate.impact.records import DecisionRecord, LogError, parse_log

LOG_PATTERNS = ("*.jsonl", "*.jsonl.gz")


def log_files(paths: Sequence[Path]) -> list[Path]:
    """The files ``paths`` name: each file as given, each directory's logs in name order.

    Raises:
        LogError: a path that does not exist, or a directory holding no log.
    """
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted({f for pattern in LOG_PATTERNS for f in path.glob(pattern)})
            if not found:
                raise LogError(str(path), None, None, "a directory with no *.jsonl files")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise LogError(str(path), None, None, "no such file or directory")
    return files


def read_records(paths: Sequence[Path]) -> Iterator[DecisionRecord]:
    """The decision records of every log ``paths`` name, file by file, line by line.

    Raises:
        LogError: as :func:`log_files`; a file that cannot be read (permissions, not
            UTF-8, a truncated ``.gz``); a malformed line (see
            :func:`~capgate.impact.records.parse_log`).
    """
    for path in log_files(paths):
        try:
            with _open(path) as lines:
                yield from parse_log(lines, source=str(path))
        except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
            raise LogError(str(path), None, None, f"cannot read: {exc}") from exc


def _open(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")
