"""capgate's settings: one nested model per component, read once at start.

Sources, highest priority first: command-line flags, ``CAPGATE_*`` environment
variables (nested keys joined by ``__``, e.g. ``CAPGATE_BUDGET__DEADLINE_MS=50``),
the YAML file given with ``--config``, then defaults. Unknown keys are errors.
Example YAML::

    server: {listen: "127.0.0.1:50051", metrics_listen: "127.0.0.1:9464"}
    policy: {bundle: bundles/default}
    budget: {redis_url: "redis://127.0.0.1:6379/0", deadline_ms: 20}
    decision_log: {path: /var/log/capgate/decisions.jsonl}
    events: {outbox: {path: /var/lib/capgate/outbox.db}, sinks: [...]}   # events/config.py
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from capgate.budget.connection import parse_redis_url
from capgate.errors import ConfigError
from capgate.events.config import EventsSettings

ENV_PREFIX = "CAPGATE_"


def parse_host_port(value: str) -> tuple[str, int]:
    """``"127.0.0.1:50051"`` -> ``("127.0.0.1", 50051)``; ``"[::1]:0"`` for IPv6."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    valid_port = port.isascii() and port.isdigit() and int(port) <= 65535
    if not sep or not host or not valid_port:
        raise ValueError(f"{value!r} is not HOST:PORT (port 0-65535)")
    return host, int(port)


def unix_socket_path(listen: str) -> Path:
    """``"unix:/run/capgate.sock"`` or ``"unix:///run/capgate.sock"`` -> the path;
    ``"unix:relative.sock"`` -> a relative path (gRPC's naming syntax,
    https://github.com/grpc/grpc/blob/master/doc/naming.md).

    Raises:
        ValueError: ``listen`` is not a ``unix:`` name, or names no path.
    """
    if not listen.startswith("unix:"):
        raise ValueError(f"{listen!r} is not a unix: address")
    rest = listen.removeprefix("unix:")
    path = "/" + rest.removeprefix("//").lstrip("/") if rest.startswith("/") else rest
    if path in ("", "/"):
        raise ValueError(f"{listen!r} names no socket path")
    return Path(path)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsSettings(_Section):
    """Server TLS. ``client_ca_file`` makes client certificates required (mTLS)."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None


class ServerSettings(_Section):
    """Where capgate listens.

    - ``listen``: ``HOST:PORT`` or ``unix:/path/to.sock`` (gRPC's name syntax,
      https://github.com/grpc/grpc/blob/master/doc/naming.md).
    - ``unix_socket_mode``: the permission bits set on that socket once bound, an
      octal string such as ``"0660"`` (connecting needs write permission: ``0660`` lets
      the socket's group in, e.g. a pod's ``fsGroup``). A YAML ``0660`` without quotes
      is read by YAML 1.1 as the octal number and accepted too.
    - ``health_listen``: ``HOST:PORT`` of a second, plaintext listener that serves only
      ``grpc.health.v1``, for the kubelet's native gRPC probes when ``listen`` is
      loopback, a Unix socket, or TLS (the kubelet probes the pod IP, without TLS).
    - ``min_time_left_ms``: an Authorize call that reaches capgate with less time than
      this left before its gRPC deadline (https://grpc.io/docs/guides/deadlines/) is
      refused at once with ``DEADLINE_EXCEEDED``, not decided: under overload, calls
      wait in gRPC's queue, and deciding those whose caller is about to give up spends
      the capacity the others need. ``0``: off. Calls without a deadline are decided.
    """

    listen: str = "127.0.0.1:50051"
    unix_socket_mode: int = 0o660
    health_listen: str | None = None
    metrics_listen: str = "127.0.0.1:9464"
    grace_period_seconds: float = Field(default=10.0, ge=0)
    max_receive_message_bytes: int = Field(default=4 << 20, ge=1 << 20)
    min_time_left_ms: int = Field(default=50, ge=0, le=60_000)
    tls: TlsSettings | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value.startswith("unix:"):
            unix_socket_path(value)
        else:
            parse_host_port(value)
        return value

    @field_validator("unix_socket_mode", mode="before")
    @classmethod
    def _mode(cls, value: object) -> object:
        if isinstance(value, str):
            if not re.fullmatch(r"0?[0-7]{3}", value):
                raise ValueError(f'{value!r} is not an octal mode such as "0660"')
            return int(value, 8)
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= 0o777:
            raise ValueError(f'{value!r} is not a mode 0-0777; write it as a string: "0660"')
        return value

    @field_validator("metrics_listen", "health_listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            parse_host_port(value)
        return value


class JwtSettings(_Section):
    """Bearer tokens (RFC 7519) verified against a JWKS (RFC 7517) file or URL."""

    jwks: str | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway_seconds: int = Field(default=30, ge=0, le=300)
    jwks_refresh_seconds: int = Field(default=300, ge=10)


class SpiffeSettings(_Section):
    """mTLS client certificates carrying one SPIFFE ID (a URI SAN).

    ``id_pattern`` is matched against the ID's path; its named groups ``tenant_id``
    and ``principal_id`` name the caller. ``roles`` maps a SPIFFE ID to its roles.
    """

    trust_domain: str | None = None
    id_pattern: str = r"^/tenant/(?P<tenant_id>[^/]+)/principal/(?P<principal_id>[^/]+)$"
    roles: dict[str, list[str]] = {}


class IdentitySettings(_Section):
    """``mode``: ``insecure`` (trust the request body; loopback or Unix socket only),
    ``jwt`` or ``mtls``."""

    mode: Literal["insecure", "jwt", "mtls"] = "insecure"
    jwt: JwtSettings = JwtSettings()
    spiffe: SpiffeSettings = SpiffeSettings()


# Bundle signature algorithms (RFC 7518 §3.1) capgate accepts: asymmetric only (OPA's
# --signing-alg also takes HS*: whoever can verify could then sign).
SIGNING_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"
)  # fmt: skip


class SigningSettings(_Section):
    """Bundle signature verification, as ``opa run``'s flags (OPA docs, "Bundle
    signing"): ``verification_key`` (``--verification-key``, a PEM public key),
    ``verification_key_id`` (``--verification-key-id``), ``signing_alg``
    (``--signing-alg``, asymmetric only), ``scope`` (``--scope``), ``exclude_files``
    (globs left out of verification, as OPA's ``exclude_files``)."""

    verification_key: Path | None = None
    verification_key_id: str = Field(default="default", min_length=1)
    signing_alg: Literal[SIGNING_ALGORITHMS] = "RS256"  # type: ignore[valid-type]
    scope: str | None = None
    exclude_files: list[str] = []


class BundleServerSettings(_Section):
    """An HTTP(S) bundle server (OPA's bundle service API: ``GET url`` returns the
    gzipped tarball, with ``ETag``; capgate sends ``If-None-Match`` and takes 304 as
    "unchanged"). Polled every ``min_delay_seconds``..``max_delay_seconds`` (a random
    point in between, as OPA); failures back off exponentially with full jitter up to
    ``max_backoff_seconds``. ``bearer_token_file``: sent as ``Authorization: Bearer``."""

    url: str = Field(pattern=r"^https?://")
    min_delay_seconds: float = Field(default=10.0, gt=0)
    max_delay_seconds: float = Field(default=20.0, gt=0)
    max_backoff_seconds: float = Field(default=60.0, gt=0)
    timeout_seconds: float = Field(default=10.0, gt=0)
    bearer_token_file: Path | None = None
    ca_file: Path | None = None

    @model_validator(mode="after")
    def _delays(self) -> BundleServerSettings:
        if self.max_delay_seconds < self.min_delay_seconds:
            raise ValueError("policy.bundle_server.max_delay_seconds must be >= min_delay_seconds")
        return self


class OpaEngineSettings(_Section):
    """``url``: a running OPA server, ``http(s)://HOST:PORT`` or ``unix:///path.sock``;
    ``timeout_ms``: the deadline of one evaluation."""

    url: str | None = None
    timeout_ms: int = Field(default=100, ge=1, le=10_000)


class PolicySettings(_Section):
    """Where the policy comes from and how it is checked (DESIGN §9).

    ``engine``: ``embedded`` (rego-cpp; capgate loads the bundle) or ``opa`` (a running
    OPA server loads its own bundles; ``opa.url``). For ``embedded``, exactly one
    source: ``bundle`` (a directory or ``.tar.gz``, watched for changes) or
    ``bundle_server``. ``persist_dir``: where the active bundle is stored, verified
    again at start. ``max_bundle_bytes``/``max_bundle_files``: caps on a bundle's
    uncompressed content.
    """

    engine: Literal["embedded", "opa"] = "embedded"
    bundle: Path | None = None
    bundle_server: BundleServerSettings | None = None
    signing: SigningSettings = SigningSettings()
    persist_dir: Path | None = None
    max_bundle_bytes: int = Field(default=64 << 20, ge=1 << 10)
    max_bundle_files: int = Field(default=10_000, ge=1)
    entrypoint: str = "data.capgate.authz.decision"
    opa: OpaEngineSettings = OpaEngineSettings()


class BudgetSettings(_Section):
    """``redis_url``: see :func:`capgate.budget.connection.parse_redis_url` for the
    standalone, Sentinel and Cluster forms."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    deadline_ms: int = Field(default=20, ge=1, le=10_000)
    run_ttl_seconds: int = Field(default=86_400, ge=60)
    reservation_ttl_seconds: int = Field(default=900, ge=1, le=86_400)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parse_redis_url(value)
        return value


class DecisionLogSettings(_Section):
    """``path``: the shortcut for a JSON Lines file sink named ``decision-log``
    (``--decision-log``); the full pipeline is configured under ``events``."""

    path: Path | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    profile: Literal["development", "production"] = "development"
    server: ServerSettings = ServerSettings()
    policy: PolicySettings = PolicySettings()
    budget: BudgetSettings = BudgetSettings()
    decision_log: DecisionLogSettings = DecisionLogSettings()
    identity: IdentitySettings = IdentitySettings()
    events: EventsSettings = EventsSettings()

    @model_validator(mode="after")
    def _identity_is_complete(self) -> Settings:
        from capgate.identity.insecure import listen_is_local  # it parses HOST:PORT here

        identity, server = self.identity, self.server
        missing: list[str] = []
        if identity.mode == "jwt":
            jwt = identity.jwt
            missing = [
                f"identity.jwt.{name}"
                for name in ("jwks", "issuer", "audience")
                if not getattr(jwt, name)
            ]
        elif identity.mode == "mtls":
            if server.tls is None or server.tls.client_ca_file is None:
                missing.append("server.tls.client_ca_file")
            if not identity.spiffe.trust_domain:
                missing.append("identity.spiffe.trust_domain")
        elif not listen_is_local(server.listen):
            raise ValueError(
                "identity.mode insecure trusts the request body: server.listen must be a "
                "loopback address or a unix: socket; use identity.mode jwt or mtls"
            )
        if missing:
            raise ValueError(f"identity.mode {identity.mode} needs {', '.join(missing)}")
        return self

    @model_validator(mode="after")
    def _one_policy_source(self) -> Settings:
        policy = self.policy
        if policy.engine == "opa":
            if not policy.opa.url:
                raise ValueError("policy.engine opa needs policy.opa.url (--opa-url)")
            return self
        sources = [policy.bundle is not None, policy.bundle_server is not None]
        if sources.count(True) != 1:
            raise ValueError(
                "policy.bundle (or CAPGATE_POLICY__BUNDLE, --bundle): Field required; "
                "give exactly one bundle source: policy.bundle (--bundle) or "
                "policy.bundle_server.url (--bundle-url)"
            )
        return self

    @model_validator(mode="after")
    def _production_is_signed(self) -> Settings:
        policy = self.policy
        if (
            self.profile == "production"
            and policy.engine == "embedded"
            and policy.signing.verification_key is None
        ):
            raise ValueError(
                "profile production refuses unsigned bundles: set "
                "policy.signing.verification_key (--verification-key)"
            )
        return self


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read settings from ``overrides`` (nested dicts, e.g. from flags), the environment
    and ``config_file``.

    Raises:
        ConfigError: naming every bad key, e.g. ``budget.deadline_ms: Input should be
            greater than or equal to 1``.
    """
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"--config {config_file}: no such file")

    class _FromFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
            if config_file is not None:
                sources += (YamlConfigSettingsSource(settings_cls, yaml_file=config_file),)
            return sources

    try:
        loaded = _FromFile(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
    except (ValueError, OSError, yaml.YAMLError) as exc:  # unreadable or malformed YAML
        raise ConfigError(f"--config {config_file}: {exc}") from exc
    return loaded


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        if not error["loc"]:  # a rule across keys; its message names them
            lines.append(str(error["msg"]).removeprefix("Value error, "))
            continue
        key = ".".join(str(part) for part in error["loc"])
        env = ENV_PREFIX + "__".join(str(part) for part in error["loc"]).upper()
        lines.append(f"{key} (or {env}): {error['msg']}")
    return "invalid settings:\n  " + "\n  ".join(lines)
