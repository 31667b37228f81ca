"""Lua scripts on Redis: one atomic round trip each, bounded by a deadline.

Scripts run with ``EVALSHA``; after ``NOSCRIPT`` (a ``SCRIPT FLUSH``, a restart or a
failover to a node that never saw the script) the call is repeated once with ``EVAL``,
which also caches the script again (https://redis.io/docs/latest/develop/interactive/programmability/eval-intro/).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisError

from capgate.errors import BudgetStoreUnavailable


class Script:
    """A Lua script run by ``EVALSHA``, falling back to ``EVAL`` on ``NOSCRIPT``.

    ``parts``: ``(package, file name)`` pairs, concatenated in order (shared preludes
    first), e.g. ``("capgate.budget", "common.lua")``; files live in the package's
    ``scripts/`` directory.
    """

    def __init__(self, *parts: tuple[str, str]) -> None:
        self.source = "".join(
            files(package).joinpath("scripts", name).read_text("utf-8") for package, name in parts
        )
        self.sha = hashlib.sha1(self.source.encode("utf-8")).hexdigest()

    async def __call__(
        self, client: Redis | RedisCluster, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)


async def run_script(
    client: Redis | RedisCluster,
    script: Script,
    keys: Sequence[str],
    args: Sequence[Any],
    *,
    deadline_seconds: float,
) -> Any:
    """``script(keys, args)`` within ``deadline_seconds``.

    Raises:
        BudgetStoreUnavailable: a timeout, a connection error or a Redis error.
    """
    async with bounded(deadline_seconds):
        return await script(client, keys, args)


@contextlib.asynccontextmanager
async def bounded(deadline_seconds: float) -> AsyncIterator[None]:
    """The Redis calls in the block, within ``deadline_seconds``.

    Raises:
        BudgetStoreUnavailable: a timeout, a connection error or a Redis error.
    """
    try:
        async with asyncio.timeout(deadline_seconds):
            yield
    except (TimeoutError, RedisError, OSError) as exc:
        raise BudgetStoreUnavailable(f"budget store: {type(exc).__name__}: {exc}") from exc


def text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def decode_ids(value: bytes | str) -> tuple[str, ...]:
    """A script's JSON list of ids (Lua's cjson writes an empty list as ``{}``)."""
    decoded = json.loads(text(value))
    return tuple(decoded) if isinstance(decoded, list) else ()


def from_ms(value: bytes | str | int) -> datetime:
    """Milliseconds since the epoch (Redis TIME, as scripts report it) as UTC time."""
    return datetime.fromtimestamp(int(value) / 1000, UTC)
