"""Unit tests for capgate.budget.connection: the Redis URL forms and their errors."""

from __future__ import annotations

import pytest

from capgate.budget.connection import parse_redis_url


@pytest.mark.parametrize(
    ("url", "mode", "nodes", "service", "db", "tls"),
    [
        ("redis://127.0.0.1:6379/0", "standalone", (), "", 0, False),
        ("rediss://user:pw@cache.internal/2", "standalone", (), "", 0, True),
        ("unix:///run/redis.sock?db=1", "standalone", (), "", 0, False),
        ("redis+cluster://a:7000,b:7001", "cluster", (("a", 7000), ("b", 7001)), "", 0, False),
        ("rediss+cluster://a", "cluster", (("a", 6379),), "", 0, True),
        (
            "redis+sentinel://s1,s2:5000/main/3",
            "sentinel",
            (("s1", 26379), ("s2", 5000)),
            "main",
            3,
            False,
        ),
        ("redis+sentinel://[::1]:26379/main", "sentinel", (("::1", 26379),), "main", 0, False),
    ],
)
def test_accepted_forms(
    url: str, mode: str, nodes: tuple[tuple[str, int], ...], service: str, db: int, tls: bool
) -> None:
    target = parse_redis_url(url)
    assert (target.mode, target.nodes, target.service_name, target.db, target.tls) == (
        mode,
        nodes,
        service,
        db,
        tls,
    )


def test_credentials_are_unquoted() -> None:
    target = parse_redis_url("redis+sentinel://app:p%40ss@s1/main")
    assert (target.username, target.password) == ("app", "p@ss")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:6379", "must be a URL"),
        ("http://h", "scheme must be"),
        ("redis://h:abc/0", "no valid port"),
        ("redis://h:99999/0", "no valid port"),
        ("redis:///0", "needs a host"),
        ("redis+cluster://", "at least one host:port"),
        ("redis+cluster://a:1/0", "takes no path"),
        ("redis+sentinel://a:1", "needs /service_name"),
        ("redis+sentinel://a:1/m/x", "db must be a number"),
        ("redis+sentinel://a:0/m", "no valid port"),
    ],
)
def test_malformed_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_redis_url(url)
