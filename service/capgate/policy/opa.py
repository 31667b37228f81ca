"""The OPA engine: decisions from a running OPA server, over its REST API.

Wire format (OPA REST API, "Get a Document (with Input)",
https://www.openpolicyagent.org/docs/rest-api#get-a-document-with-input)::

    POST /v1/data/capgate/authz/decision?provenance=true
    {"input": {...the input document...}}

    200 {"result": {...the decision, see capgate.policy.result...},
         "provenance": {"version": "1.22.2", "build_commit": "...",
                        "bundles": {"<bundle name>": {"revision": "..."}}}}

``result`` is absent when the entrypoint is undefined for the input; errors are 4xx/5xx
with ``{"code": str, "message": str}``. Readiness is ``GET /health?bundles=true``: 200
once every bundle OPA is configured with has been activated ("Health API", same page).

Revision: one bundle gives its revision as is, so a decision reports the same
``policy_revision`` as the embedded engine on the same bundle (the bundle's *name* is
OPA's local detail: a path or a config key). Several bundles give ``name=revision``
pairs sorted by name and joined with ``,``: deterministic, and any bundle's change
changes it. No bundle (policies pushed through the Policy API) gives ``""``.

Transport: opa-python-client's ``AsyncOpaClient`` (aiohttp), with its retries off
(a decision has a deadline; the pipeline fails closed instead) and each call bounded
by ``timeout_seconds``. ``unix:///path`` (``opa run --server --addr unix:///path``)
swaps the session's ``TCPConnector`` for an ``aiohttp.UnixConnector``.

Errors: a bad URL, entrypoint or timeout is a :class:`ConfigError` at construction.
:meth:`OpaEngine.decide` converts, where they enter, into :class:`PolicyError`::

    TimeoutError (asyncio.timeout, aiohttp)        "did not answer within N ms"
    aiohttp.ContentTypeError                       "answered non-JSON"
    aiohttp.ClientResponseError (4xx/5xx)          "answered HTTP 500 Internal Server Error"
    aiohttp.ClientError (refused, reset, no file)  "unreachable: ..."
    ValueError (a body that is not JSON)           "answered malformed JSON"
    no "result" in the answer                      "... is undefined for this input"
    a malformed decision                           parse_policy_result's message

Example::

    engine = OpaEngine("http://127.0.0.1:8181", timeout_seconds=0.1)
    await engine.start()
    evaluation = await engine.decide(input_document)   # Evaluation(result, revision)
    await engine.aclose()
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from opa_client.opa_async import AsyncOpaClient

from capgate.errors import ConfigError, PolicyError
from capgate.policy.embedded import ENTRYPOINT_PATTERN
from capgate.policy.engine import Evaluation
from capgate.policy.result import parse_policy_result

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class OpaTarget:
    """Where OPA listens: ``host:port`` over TCP (TLS when ``tls``), or ``socket_path``."""

    host: str = "localhost"
    port: int = 80
    tls: bool = False
    socket_path: str | None = None


def parse_opa_url(url: str) -> OpaTarget:
    """``http://HOST[:PORT]``, ``https://HOST[:PORT]`` or ``unix:///abs/path.sock``.

    Raises :class:`ConfigError` naming ``policy.opa.url``.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"policy.opa.url {url!r}: {exc}") from exc
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"policy.opa.url {url!r}: no query, fragment or credentials allowed")
    if parts.scheme == "unix":
        if parts.netloc or not parts.path.startswith("/"):
            raise ConfigError(f"policy.opa.url {url!r}: write unix:///absolute/path/to/opa.sock")
        return OpaTarget(socket_path=parts.path)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(
            f"policy.opa.url {url!r}: expected http://HOST:PORT, https://HOST:PORT "
            "or unix:///path/to/opa.sock"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return OpaTarget(host, port or DEFAULT_PORTS[parts.scheme], parts.scheme == "https")


def provenance_revision(provenance: Any) -> str:
    """The revision string of a ``provenance`` object (see the module docstring)."""
    bundles = provenance.get("bundles") if isinstance(provenance, dict) else None
    if not isinstance(bundles, dict) or not bundles:
        return ""
    revisions = {
        name: str(info.get("revision", "")) if isinstance(info, dict) else ""
        for name, info in bundles.items()
    }
    if len(revisions) == 1:
        return next(iter(revisions.values()))
    return ",".join(f"{name}={revision}" for name, revision in sorted(revisions.items()))


class _Client(AsyncOpaClient):  # type: ignore[misc]
    """``AsyncOpaClient`` whose session can dial a Unix socket (the library builds only
    a ``TCPConnector``). Requests still go to ``http://localhost:80/...``; the Unix
    connector ignores the host and port."""

    def __init__(self, socket_path: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._socket_path = socket_path

    @property
    def started(self) -> bool:
        return self._session is not None

    async def _init_session(self) -> None:
        if self._socket_path is None:
            await super()._init_session()
            return
        self._connector = aiohttp.UnixConnector(path=self._socket_path)
        self._session = aiohttp.ClientSession(
            headers=self.headers,
            connector=self._connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )


class OpaEngine:
    """A :class:`~capgate.policy.engine.PolicyEngine` backed by a running OPA server."""

    def __init__(
        self,
        url: str,
        *,
        entrypoint: str = "data.capgate.authz.decision",
        timeout_seconds: float,
    ) -> None:
        target = parse_opa_url(url)
        if ENTRYPOINT_PATTERN.fullmatch(entrypoint) is None:
            raise ConfigError(f"policy.entrypoint {entrypoint!r} must look like data.pkg.rule")
        if not timeout_seconds > 0:
            raise ConfigError(f"policy.opa.timeout_ms must be positive, got {timeout_seconds} s")
        self.url = url
        self._entrypoint = entrypoint
        self._path = entrypoint.removeprefix("data.").replace(".", "/")
        self._timeout = timeout_seconds
        self._revision = ""
        self._client = _Client(
            target.socket_path,
            host=target.host,
            port=target.port,
            ssl=target.tls,
            retries=0,
            timeout=timeout_seconds,
        )

    @property
    def revision(self) -> str:
        """The revision OPA reported with its last answer ("" before the first)."""
        return self._revision

    async def start(self) -> None:
        """Open the HTTP session. Makes no request: OPA may come up later."""
        if not self._client.started:
            await self._client._init_session()

    async def aclose(self) -> None:
        await self._client.close_connection()

    async def ready(self) -> bool:
        """Whether OPA answers ``GET /health?bundles=true`` with 200 (bundles active)."""
        if not self._client.started:
            return False
        try:
            async with asyncio.timeout(self._timeout):
                return bool(await self._client.check_health(query={"bundles": "true"}))
        except TimeoutError:
            return False

    async def query(self, input_document: dict[str, Any]) -> Any:
        """The entrypoint's raw value (as :meth:`EmbeddedEngine.query`). Raises PolicyError."""
        return (await self._evaluate(input_document))[0]

    async def decide(self, input_document: dict[str, Any]) -> Evaluation:
        value, revision = await self._evaluate(input_document)
        return Evaluation(parse_policy_result(value), revision)

    async def _evaluate(self, input_document: dict[str, Any]) -> tuple[Any, str]:
        if not self._client.started:
            raise PolicyError("OPA engine not started")
        body = await self._post(input_document)
        if not isinstance(body, dict):
            raise PolicyError(f"OPA at {self.url} answered {type(body).__name__}, not an object")
        self._revision = provenance_revision(body.get("provenance"))
        if "result" not in body:
            raise PolicyError(f"entrypoint {self._entrypoint} is undefined for this input")
        return body["result"], self._revision

    async def _post(self, input_document: dict[str, Any]) -> Any:
        """One ``POST /v1/data/...?provenance=true``; aiohttp errors become PolicyError."""
        try:
            async with asyncio.timeout(self._timeout):
                return await self._client.query_rule(
                    input_document, self._path, query_params={"provenance": "true"}
                )
        except TimeoutError as exc:
            ms = round(self._timeout * 1000)
            raise PolicyError(f"OPA at {self.url} did not answer within {ms} ms") from exc
        except aiohttp.ContentTypeError as exc:
            raise PolicyError(f"OPA at {self.url} answered non-JSON ({exc.message})") from exc
        except aiohttp.ClientResponseError as exc:
            raise PolicyError(
                f"OPA at {self.url} answered HTTP {exc.status} {exc.message}"
            ) from exc
        except aiohttp.ClientError as exc:
            raise PolicyError(f"OPA at {self.url} unreachable: {exc}") from exc
        except ValueError as exc:
            raise PolicyError(f"OPA at {self.url} answered malformed JSON: {exc}") from exc
