"""Settings of the event pipeline (DESIGN §8): the outbox, checkpoints, masking and one
section per sink. Read by capgate.settings (``events:``); every sink has a unique
``name`` (its cursor in the outbox and its metrics label).

Example::

    events:
      instance_id: capgate-0
      outbox: {path: /var/lib/capgate/outbox.db, max_bytes: 1073741824, fsync_interval_ms: 500}
      checkpoint: {signing_key_file: /etc/capgate/audit-ed25519.pem, every_events: 1000,
                   every_seconds: 60}
      sinks:
        - {type: file, name: local, path: /var/log/capgate/decisions.jsonl}
        - {type: syslog, name: siem, host: siem.example, port: 6514, format: cef,
           tls: {ca_file: /etc/ssl/siem-ca.pem}}
        - {type: hec, name: splunk, url: "https://splunk:8088", token_file: /run/secrets/hec,
           ack: true}
        - {type: http, name: opa-compatible, url: "https://logs.example/decisions"}
        - {type: kafka, name: bus, bootstrap_servers: ["kafka-0:9092"], topic: capgate.decisions}
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

GIB = 1 << 30
# Parameter names masked in every event (case-insensitive substring match on the key),
# before any event leaves the process; the policy result's log.mask adds paths.
DEFAULT_MASKED_PARAMETER_NAMES = ("password", "secret", "token", "api_key", "apikey", "card")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OutboxSettings(_Section):
    """``path``: the SQLite database (WAL mode); ``max_bytes``: the cap on stored event
    bytes; ``fsync_interval_ms``: at most this long between fsyncs (events are written
    to the OS before each Authorize response, fsynced in batches)."""

    path: Path = Path("capgate-outbox.db")
    max_bytes: int = Field(default=GIB, ge=1 << 16)
    fsync_interval_ms: int = Field(default=500, ge=1, le=60_000)


class CheckpointSettings(_Section):
    """Signed checkpoints over the chain head: Ed25519 (RFC 8032), private key in PEM
    (PKCS#8). None: no checkpoints."""

    signing_key_file: Path | None = None
    every_events: int = Field(default=1000, ge=1)
    every_seconds: float = Field(default=60.0, gt=0)


class RetrySettings(_Section):
    """Exporter backoff: exponential from ``initial_backoff_ms`` to ``max_backoff_ms``,
    full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter")."""

    initial_backoff_ms: int = Field(default=200, ge=1)
    max_backoff_ms: int = Field(default=30_000, ge=1)


class TlsClientSettings(_Section):
    """``ca_file``: trust anchors for the server (None: the system's); ``cert_file`` and
    ``key_file``: a client certificate; ``server_name``: SNI and the name checked."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None


class _Sink(_Section):
    name: str = Field(pattern=r"^[a-z0-9_.-]{1,64}$")
    batch_size: int = Field(default=500, ge=1, le=100_000)


class FileSinkSettings(_Sink):
    """JSON Lines, rotated at ``max_bytes`` keeping ``backups`` old files."""

    type: Literal["file"]
    path: Path
    max_bytes: int = Field(default=100 << 20, ge=1 << 10)
    backups: int = Field(default=5, ge=0)


class SyslogSinkSettings(_Sink):
    """RFC 5424 messages over TCP (RFC 6587) or TLS (RFC 5425), octet-counting framing;
    payload the event as JSON, or CEF."""

    type: Literal["syslog"]
    host: str
    port: int = Field(ge=1, le=65535)
    tls: TlsClientSettings | None = None
    format: Literal["json", "cef"] = "json"
    app_name: str = "capgate"
    facility: int = Field(default=13, ge=0, le=23)  # log audit


class HecSinkSettings(_Sink):
    """Splunk HTTP Event Collector: ``/services/collector/event``; the token from
    ``token_file`` or the environment variable ``token_env``; ``ack``: wait for indexer
    acknowledgement (``/services/collector/ack``)."""

    type: Literal["hec"]
    url: str
    token_file: Path | None = None
    token_env: str | None = None
    ack: bool = False
    ack_timeout_seconds: float = Field(default=60.0, gt=0)
    index: str | None = None
    sourcetype: str = "capgate:decision"
    format: Literal["json", "ocsf"] = "json"
    tls: TlsClientSettings | None = None

    @model_validator(mode="after")
    def _one_token_source(self) -> HecSinkSettings:
        if (self.token_file is None) == (self.token_env is None):
            raise ValueError("give exactly one of token_file and token_env")
        return self


class HttpSinkSettings(_Sink):
    """HTTP POST of gzip JSON arrays: OPA's decision-log format (``opa``), so pipelines
    built for OPA accept it, or OCSF API Activity events (``ocsf``)."""

    type: Literal["http"]
    url: str
    format: Literal["opa", "ocsf"] = "opa"
    headers: dict[str, str] = {}
    tls: TlsClientSettings | None = None


class KafkaSinkSettings(_Sink):
    """Kafka with aiokafka: ``acks=all``, idempotent producer; key = tenant id."""

    type: Literal["kafka"]
    bootstrap_servers: list[str] = Field(min_length=1)
    topic: str
    format: Literal["json", "ocsf"] = "json"
    tls: TlsClientSettings | None = None


SinkSettings = Annotated[
    FileSinkSettings | SyslogSinkSettings | HecSinkSettings | HttpSinkSettings | KafkaSinkSettings,
    Field(discriminator="type"),
]


class EventsSettings(_Section):
    """``instance_id`` names this process's chain (stable across restarts; default: the
    host name plus 8 hex digits of the SHA-256 of the outbox's path, see
    ``capgate.app.instance_id``); ``masked_parameter_names``: parameter names erased
    from every event (substring match, case-insensitive: ``token`` also erases
    ``max_tokens``)."""

    instance_id: str | None = None
    outbox: OutboxSettings = OutboxSettings()
    checkpoint: CheckpointSettings = CheckpointSettings()
    retry: RetrySettings = RetrySettings()
    masked_parameter_names: tuple[str, ...] = DEFAULT_MASKED_PARAMETER_NAMES
    # After an idle exporter wakes up, it waits this long so one read and one send carry
    # what arrived meanwhile (at 100 decisions/s: 5 events a batch, not 1).
    export_linger_ms: int = Field(default=50, ge=0, le=10_000)
    sinks: list[SinkSettings] = []

    @model_validator(mode="after")
    def _unique_sink_names(self) -> EventsSettings:
        names = [sink.name for sink in self.sinks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"sink names must be unique: {', '.join(duplicates)}")
        return self
