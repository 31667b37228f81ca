"""Redis key building. Pure.

Every key of a tenant is ``capgate:{<tenant>}:...``: the ``{...}`` hash tag puts all
of a tenant's keys in one Redis Cluster slot, so one Lua script can touch them
(Redis Cluster spec, "Hash tags": https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/).

Identifiers are escaped so no id can break the tag or collide with another:
``escape_id`` percent-encodes every byte outside ``[A-Za-z0-9_.-]`` (so ``{``, ``}``,
``:`` and newlines never appear raw), and ids whose escaped form exceeds 64 bytes
become ``h:`` + SHA-256 hex. An escaped id never contains ``:``, so the two forms
cannot collide.

Layout (``T`` = ``capgate:{<tenant>}``)::

    T:reservations                    zset: open reservation records, score = expiry (ms)
    T:res:<decision_id>               hash: one allowed decision's reservation
    T:idem:<idempotency_key>          hash: a recorded Authorize (fingerprint, decision)
    T:b:tenant:<window>               hash: usage of the tenant budget in one window
    T:b:principal:<id>:<window>       ... of one principal
    T:b:capability:<name>:<window>    ... of one capability
    T:b:run:<run_id>:run              ... of one run (its lifetime)
    T:rl:<dims>:<values>:<limit>:<period_seconds>    GCRA bucket of one rate limit
    T:control                         hash: the tenant's mode (field ``mode``), no TTL
    T:stop:<run_id>                   string: JSON of who stopped the run, and why
    T:appr:r:<approval_id>            hash: one approval (see approvals/scripts)
    T:appr:pending:<action_sha256>    string: the record key of the action's pending
                                      approval
    T:appr:index / :expiry / :log     the tenant's approvals by creation time, those
                                      that can still expire, and the transition log

The Lua script appends ``<window>`` (``1d:1795219200``, ``30d:2026-11``, ``run``) to
the budget prefixes built here, from Redis ``TIME``.
"""

from __future__ import annotations

import functools
import hashlib
from urllib.parse import quote

MAX_ESCAPED_LENGTH = 64
PREFIX = "capgate"
# Rate-limit bucket dimensions (DESIGN §5 ``rate_limits[].key``), joined by "+".
RATE_LIMIT_DIMENSIONS = ("tenant", "principal", "capability", "tool", "run")


@functools.lru_cache(maxsize=65_536)  # pure; a decision escapes the same ids ~18 times
def escape_id(identifier: str) -> str:
    """Escape ``identifier`` for use inside a key: tag-safe, collision-free, bounded."""
    escaped = quote(identifier, safe="")
    escaped = escaped.replace("~", "%7E")  # quote() keeps "~"; keep the alphabet minimal
    if len(escaped) > MAX_ESCAPED_LENGTH:
        return "h:" + hashlib.sha256(identifier.encode("utf-8")).hexdigest()
    return escaped


@functools.lru_cache(maxsize=16_384)
def tenant_tag(tenant_id: str) -> str:
    """``capgate:{<escaped tenant>}``: the prefix of every key of this tenant."""
    return f"{PREFIX}:{{{escape_id(tenant_id)}}}"


def reservations_key(tenant_id: str) -> str:
    """The tenant's zset of open reservations (member: record key, score: expiry ms)."""
    return f"{tenant_tag(tenant_id)}:reservations"


def reservation_key(tenant_id: str, decision_id: str) -> str:
    """The reservation record of one allowed decision."""
    return f"{tenant_tag(tenant_id)}:res:{escape_id(decision_id)}"


def idempotency_key(tenant_id: str, key: str) -> str:
    """The record of an Authorize made with ``idempotency_key`` ``key`` (per tenant)."""
    return f"{tenant_tag(tenant_id)}:idem:{escape_id(key)}"


def budget_prefix(tenant_id: str, scope: str, subject: str = "") -> str:
    """Usage key of a budget without its window; ``subject`` is the principal id, the
    capability or the run id (ignored for scope ``tenant``).

    Raises:
        ValueError: ``scope`` is not tenant, principal, capability or run.
    """
    tag = tenant_tag(tenant_id)
    if scope == "tenant":
        return f"{tag}:b:tenant"
    if scope in ("principal", "capability", "run"):
        return f"{tag}:b:{scope}:{escape_id(subject)}"
    raise ValueError(f"unknown budget scope {scope!r}")


def run_usage_key(tenant_id: str, run_id: str) -> str:
    """The usage hash of a run (scope ``run``, window ``run``)."""
    return budget_prefix(tenant_id, "run", run_id) + ":run"


def rate_limit_key(
    tenant_id: str, dimensions: str, values: dict[str, str], limit: int, period_seconds: int
) -> str:
    """GCRA bucket of a rate limit over ``dimensions`` (``"principal+capability"``),
    whose values come from ``values`` (dimension -> id).

    Raises:
        ValueError: a dimension is not one of :data:`RATE_LIMIT_DIMENSIONS`.
    """
    names = dimensions.split("+")
    unknown = [name for name in names if name not in RATE_LIMIT_DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown rate-limit dimension {unknown[0]!r}")
    subject = ":".join(escape_id(values[name]) for name in names)
    return f"{tenant_tag(tenant_id)}:rl:{dimensions}:{subject}:{limit}:{period_seconds}"


def control_key(tenant_id: str) -> str:
    """The tenant's control hash (``mode``: ``read_only`` | ``frozen``; absent: normal)."""
    return f"{tenant_tag(tenant_id)}:control"


def run_stop_key(tenant_id: str, run_id: str) -> str:
    """Exists once the run is stopped (``run_id`` "" names no run and is never set)."""
    return f"{tenant_tag(tenant_id)}:stop:{escape_id(run_id)}"


def approval_key(tenant_id: str, approval_id: str) -> str:
    return f"{tenant_tag(tenant_id)}:appr:r:{escape_id(approval_id)}"


def approval_pending_key(tenant_id: str, action_sha256: str) -> str:
    return f"{tenant_tag(tenant_id)}:appr:pending:{action_sha256}"


def approval_index_key(tenant_id: str) -> str:
    return f"{tenant_tag(tenant_id)}:appr:index"


def approval_log_key(tenant_id: str) -> str:
    return f"{tenant_tag(tenant_id)}:appr:log"


def approval_expiry_key(tenant_id: str) -> str:
    return f"{tenant_tag(tenant_id)}:appr:expiry"
