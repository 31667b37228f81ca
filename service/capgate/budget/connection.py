"""Redis connection URLs: standalone, Sentinel and Cluster, and the client for each.

Accepted forms (``s`` after ``redis`` means TLS)::

    redis[s]://[[user]:password@]host[:port][/db]          one server (redis-py URL syntax,
    unix://[[user]:password@]/path/to/redis.sock[?db=N]     https://www.iana.org/assignments/uri-schemes/prov/redis)
    redis[s]+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]
    redis[s]+cluster://[[user]:password@]host:port[,host:port...]

Sentinel: the hosts are sentinels; the credentials are the data nodes' (the common
``redis+sentinel`` convention of Celery/Kombu and Spring). The client asks the sentinels
for the current primary of ``service_name`` on every new connection, and
:func:`follow_sentinel_primary` closes old connections within a second of a failover.
Cluster: the hosts are startup
nodes; the slot map is discovered from them and refreshed on ``MOVED``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import structlog
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import RedisError

log = structlog.get_logger("capgate")

DEFAULT_PORT = {"cluster": 6379, "sentinel": 26379}


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A parsed ``budget.redis_url``. ``mode``: ``standalone``, ``sentinel`` or ``cluster``."""

    url: str
    mode: str
    tls: bool = False
    nodes: tuple[tuple[str, int], ...] = ()
    service_name: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_redis_url(url: str) -> RedisTarget:
    """Parse ``url`` (forms in the module docstring).

    Raises:
        ValueError: naming what is wrong, e.g. ``redis+sentinel URL needs /service_name``.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("must be a URL such as redis://host:6379/0")
    if scheme in ("redis", "rediss", "unix"):
        if scheme != "unix":
            parts = urlsplit(url)
            try:
                parts.port  # noqa: B018 - raises ValueError for a bad port
            except ValueError as exc:
                raise ValueError(f"{parts.netloc!r} has no valid port (1-65535)") from exc
            if not parts.hostname:
                raise ValueError("needs a host, e.g. redis://127.0.0.1:6379/0")
        return RedisTarget(url=url, mode="standalone", tls=scheme == "rediss")
    base, plus, mode = scheme.partition("+")
    if base not in ("redis", "rediss") or not plus or mode not in ("sentinel", "cluster"):
        raise ValueError(
            "scheme must be redis, rediss, unix, redis+sentinel, rediss+sentinel, "
            "redis+cluster or rediss+cluster"
        )
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username, password = _credentials(userinfo) if at else (None, None)
    nodes = tuple(_host_port(item, DEFAULT_PORT[mode]) for item in hosts.split(",") if item)
    if not nodes:
        raise ValueError(f"{scheme} URL needs at least one host:port")
    parts = [unquote(p) for p in path.split("/") if p]
    if mode == "cluster":
        if parts:
            raise ValueError("redis+cluster URL takes no path (Cluster has only db 0)")
        return RedisTarget(url, "cluster", base == "rediss", nodes, "", 0, username, password)
    if not parts or len(parts) > 2:
        raise ValueError("redis+sentinel URL needs /service_name and optionally /db")
    db = parts[1] if len(parts) == 2 else "0"
    if not db.isdigit():
        raise ValueError(f"redis+sentinel db must be a number, not {db!r}")
    return RedisTarget(
        url, "sentinel", base == "rediss", nodes, parts[0], int(db), username, password
    )


def redis_client(target: RedisTarget, **connection: Any) -> Redis | RedisCluster:
    """A redis-py asyncio client for ``target``; ``connection`` holds socket options
    (``socket_timeout``, ``socket_connect_timeout``, ``retry``, ...). Connects lazily."""
    if target.mode == "standalone":
        return Redis.from_url(target.url, **connection)
    auth = {"username": target.username, "password": target.password}
    if target.mode == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            ssl=target.tls,
            **auth,
            **connection,
        )
    sentinel = Sentinel(
        list(target.nodes),
        sentinel_kwargs={key: connection[key] for key in connection if key.startswith("socket_")},
        ssl=target.tls,
        db=target.db,
        **auth,
        **connection,
    )
    return sentinel.master_for(target.service_name)


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    user, colon, password = userinfo.partition(":")
    return (unquote(user) or None, unquote(password) if colon else None)


def _host_port(item: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port``."""
    if item.startswith("["):
        host, _, port = item[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = item.partition(":")
    if not host or ":" in port:
        raise ValueError(f"{item!r} is not host:port")
    if not port:
        return host, default_port
    if not (port.isdigit() and 0 < int(port) <= 65535):
        raise ValueError(f"{item!r} has no valid port (1-65535)")
    return host, int(port)


async def follow_sentinel_primary(client: Redis, interval_seconds: float = 1.0) -> None:
    """Run forever: every ``interval_seconds``, ask the sentinels for the primary; when it
    moved, close every connection of ``client`` (idle and in use) so the next command
    reconnects to the new primary.

    redis-py asks the sentinels only when it opens a connection, so after a planned
    failover its pooled connections keep writing to the old primary until Sentinel
    demotes it (about 10 s with Redis 7.0) — writes the new primary never sees. This
    bounds that window to ``interval_seconds``. Errors are logged and retried.
    """
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    known: tuple[str, int] | None = None
    while True:
        try:
            current = await pool.sentinel_manager.discover_master(pool.service_name)
        except (RedisError, OSError) as exc:
            log.warning("sentinel_unreachable", error=str(exc))
        else:
            if known is not None and tuple(current) != known:
                log.warning("redis_primary_moved", old=list(known), new=list(current))
                await pool.disconnect(inuse_connections=True)
            known = tuple(current)
        await asyncio.sleep(interval_seconds)
