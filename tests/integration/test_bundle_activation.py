"""Bundle activation through a real capgate: a watched local bundle, a real nginx bundle
server answering ETag/304, the store read at a cold start, and failures that leave
the active revision serving."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health_pb2

from capgate.local.nginx import NginxBundleServer
from capgate.local.redis_server import RedisServer
from tests.bundle_serving import (
    decide,
    eventually,
    failures,
    health_status,
    made_by,
    opa_build,
    revision_policy,
    served_revision,
    until_serving,
)
from tests.conftest import OPA, start_capgate, write_bundle

pytestmark = pytest.mark.opa


def replace_dir(target: Path, policy: str, revision: str) -> None:
    """Swap the bundle directory ``target`` for a new one in one rename."""
    staging = target.with_name(target.name + f".{uuid.uuid4().hex}")
    write_bundle(staging, policy, revision)
    backup = target.with_name(target.name + ".old")
    os.rename(target, backup)
    os.rename(staging, target)
    shutil.rmtree(backup)


async def test_a_changed_local_bundle_is_activated_and_a_broken_one_is_not(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    tarball = tmp_path / "bundles" / "policy.tar.gz"
    tarball.parent.mkdir()
    source = write_bundle(tmp_path / "src", revision_policy("r1"), "r1")
    opa_build(OPA, source, tarball)
    async with start_capgate(
        bundle=tarball, redis_url=redis_server.url, decision_log=None
    ) as capgate:
        assert made_by(await decide(capgate)) == "r1"

        replace_dir(source, revision_policy("r2"), "r2")
        opa_build(OPA, source, tarball)

        await until_serving(capgate, "r2")

        # A revision that does not compile: r2 keeps serving, the failure is counted.
        # (opa build would refuse it: tar it ourselves.)
        replace_dir(source, "decision := {\n", "r3-broken")
        before = failures(capgate, "compile")
        broken = tarball.with_name("broken.tar.gz")
        _tar_directory(source, broken)
        os.replace(broken, tarball)

        async def refused() -> bool:
            return failures(capgate, "compile") == before + 1

        await eventually(refused)
        result = await decide(capgate)
        assert (result.policy_revision, made_by(result)) == ("r2", "r2")
        status = capgate.app.bundles.status  # type: ignore[union-attr]
        assert status.revision == "r2"
        assert "does not compile" in status.last_error


def _tar_directory(source: Path, out: Path) -> None:
    """A tarball of ``source`` without OPA (``opa build`` refuses a module that does
    not parse, and this test needs one)."""
    subprocess.run(["tar", "-czf", str(out), "-C", str(source), "."], check=True)


async def test_a_watched_directory_swapped_by_rename_is_activated(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    bundles = tmp_path / "watched"
    bundles.mkdir()
    write_bundle(bundles / "b", revision_policy("d1"), "d1")
    async with start_capgate(
        bundle=bundles / "b", redis_url=redis_server.url, decision_log=None
    ) as capgate:
        assert made_by(await decide(capgate)) == "d1"
        # Edited in place, file by file: the manifest first, then the policy.
        (bundles / "b" / ".manifest").write_text(json.dumps({"revision": "d2"}))
        (bundles / "b" / "policy.rego").write_text(
            "package capgate.authz\n\n" + revision_policy("d2")
        )

        await until_serving(capgate, "d2")
        # Replaced whole by a rename (how a deploy tool swaps a directory).
        replace_dir(bundles / "b", revision_policy("d3"), "d3")

        await until_serving(capgate, "d3")


async def test_a_bundle_server_revision_is_live_after_one_poll_and_304s_are_counted(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    source, served = served_revision(tmp_path, "h1")
    with NginxBundleServer(served) as nginx:
        policy = {
            "bundle": None,
            "bundle_server": {
                "url": nginx.url("bundle.tar.gz"),
                "min_delay_seconds": 0.3,
                "max_delay_seconds": 0.3,
            },
        }
        async with start_capgate(
            bundle=source, redis_url=redis_server.url, decision_log=None, policy=policy
        ) as capgate:
            assert made_by(await decide(capgate)) == "h1"
            registry = capgate.app.metrics.registry

            def downloads(result: str) -> float:
                value = registry.get_sample_value(
                    "capgate_bundle_downloads_total", {"result": result}
                )
                return value or 0.0

            async def some_304s() -> bool:
                return downloads("not_modified") >= 2

            await eventually(some_304s)
            assert nginx.statuses().count(304) == downloads("not_modified")

            replace_dir(source, revision_policy("h2"), "h2")
            requests_before = len(nginx.statuses())
            opa_build(OPA, source, served / "bundle.tar.gz")

            await until_serving(capgate, "h2")
            # Live after the first poll that saw the change: one 200 after the swap.
            after = nginx.statuses()[requests_before:]
            assert after.index(200) <= 1, after
            assert downloads("ok") == nginx.statuses().count(200)


async def test_a_cold_start_with_the_bundle_server_down_serves_the_stored_revision(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    source, served = served_revision(tmp_path, "s1")
    persist = tmp_path / "persist"
    policy: dict[str, Any] = {"bundle": None, "persist_dir": persist}
    with NginxBundleServer(served) as nginx:
        policy["bundle_server"] = {"url": nginx.url("bundle.tar.gz")}
        async with start_capgate(
            bundle=source, redis_url=redis_server.url, decision_log=None, policy=policy
        ) as capgate:
            assert made_by(await decide(capgate)) == "s1"
        assert (persist / "bundle.tar.gz").is_file()
    # nginx is gone: nothing answers on its port.
    async with start_capgate(
        bundle=source, redis_url=redis_server.url, decision_log=None, policy=policy
    ) as capgate:
        result = await decide(capgate)
        assert (result.policy_revision, made_by(result)) == ("s1", "s1")
        status = capgate.app.bundles.status  # type: ignore[union-attr]
        assert status.origin == "store"
        assert failures(capgate, "fetch") >= 1


async def test_with_nothing_stored_and_the_server_down_health_is_not_serving(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    policy = {
        "bundle": None,
        "persist_dir": tmp_path / "empty",
        "bundle_server": {"url": "http://127.0.0.1:9/bundle.tar.gz", "timeout_seconds": 1},
    }
    async with start_capgate(
        bundle=tmp_path, redis_url=redis_server.url, decision_log=None, policy=policy
    ) as capgate:
        result = await decide(capgate)
        assert result.effect == "DENY"
        assert result.reason_codes == ("POLICY_UNAVAILABLE",)
        status = await health_status(capgate.target)
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_a_tampered_stored_bundle_is_refused_at_start(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    persist = tmp_path / "persist"
    first = write_bundle(tmp_path / "b1", revision_policy("t1"), "t1")
    async with start_capgate(
        bundle=first, redis_url=redis_server.url, decision_log=None, policy={"persist_dir": persist}
    ):
        pass
    stored = persist / "bundle.tar.gz"
    content = bytearray(stored.read_bytes())
    content[-20] ^= 0xFF
    stored.write_bytes(bytes(content))
    second = write_bundle(tmp_path / "b2", revision_policy("t2"), "t2")
    async with start_capgate(
        bundle=second,
        redis_url=redis_server.url,
        decision_log=None,
        policy={"persist_dir": persist},
    ) as capgate:
        assert made_by(await decide(capgate)) == "t2"
        assert failures(capgate, "store") == 1


def _unsafe_tarball(kind: str) -> bytes:
    """A gzipped tarball with one hostile entry beside a valid policy."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        policy = ("package capgate.authz\n\n" + revision_policy("evil")).encode()
        entries = {"policy.rego": policy, ".manifest": b'{"revision": "evil"}'}
        for name, content in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        if kind == "dot-dot-path":
            info = tarfile.TarInfo("../outside.rego")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
        elif kind == "symlink":
            info = tarfile.TarInfo("data.json")
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
        elif kind == "tar-bomb":  # 64 MiB of zeros: a few KiB compressed
            info = tarfile.TarInfo("bomb.bin")
            info.size = 64 << 20
            tar.addfile(info, io.BytesIO(bytes(info.size)))
        elif kind == "over-the-size-cap":
            info = tarfile.TarInfo("data.json")
            content = b'{"pad": "' + b"x" * (2 << 20) + b'"}'
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["dot-dot-path", "symlink", "tar-bomb", "over-the-size-cap"])
async def test_an_unsafe_bundle_is_refused_and_the_good_revision_keeps_serving(
    tmp_path: Path, redis_server: RedisServer, kind: str
) -> None:
    live = tmp_path / "live" / "bundle.tar.gz"
    live.parent.mkdir()
    opa_build(OPA, write_bundle(tmp_path / "src", revision_policy("good"), "good"), live)
    async with start_capgate(
        bundle=live,
        redis_url=redis_server.url,
        decision_log=None,
        policy={"max_bundle_bytes": 1 << 20},
    ) as capgate:
        assert made_by(await decide(capgate)) == "good"
        staged = live.with_name("staged.tar.gz")
        staged.write_bytes(_unsafe_tarball(kind))
        assert staged.stat().st_size < 1 << 20  # the cap is on what it expands to
        os.replace(staged, live)

        async def refused() -> bool:
            return failures(capgate, "fetch") == 1

        await eventually(refused)
        result = await decide(capgate)
        assert (result.policy_revision, made_by(result)) == ("good", "good")
        why = {
            "dot-dot-path": "escapes the bundle",
            "symlink": "is not a regular file",
            "tar-bomb": "larger than 1048576 bytes",
            "over-the-size-cap": "larger than 1048576 bytes",
        }
        assert why[kind] in capgate.app.bundles.status.last_error  # type: ignore[union-attr]
