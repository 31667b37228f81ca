"""Redis key building. Pure.

Every key of a tenant is ``capgate:{<tenant>}:...``: the ``{...}`` hash tag puts all
of a tenant's keys in one Redis Cluster slot, so one Lua script can touch them
(Redis Cluster spec, "Hash tags": https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/).

Identifiers are escaped so no id can break the tag or collide with another:
``escape_id`` percent-encodes every byte outside ``[A-Za-z0-9_.-]`` (so ``{``, ``}``,
``:`` and newlines never appear raw), and ids whose escaped form exceeds 64 bytes
become ``h:`` + SHA-256 hex. An escaped id never contains ``:``, so the two forms
cannot collide.
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote

MAX_ESCAPED_LENGTH = 64
PREFIX = "capgate"


def escape_id(identifier: str) -> str:
    """Escape ``identifier`` for use inside a key: tag-safe, collision-free, bounded."""
    escaped = quote(identifier, safe="")
    escaped = escaped.replace("~", "%7E")  # quote() keeps "~"; keep the alphabet minimal
    if len(escaped) > MAX_ESCAPED_LENGTH:
        return "h:" + hashlib.sha256(identifier.encode("utf-8")).hexdigest()
    return escaped


def tenant_tag(tenant_id: str) -> str:
    """``capgate:{<escaped tenant>}``: the prefix of every key of this tenant."""
    return f"{PREFIX}:{{{escape_id(tenant_id)}}}"


def run_usage_key(tenant_id: str, run_id: str) -> str:
    """Hash of a run's usage: fields ``calls``, ``usd_micros``, ``tokens``."""
    return f"{tenant_tag(tenant_id)}:run:{escape_id(run_id)}"
