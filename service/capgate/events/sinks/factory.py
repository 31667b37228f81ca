"""A sink for each configured ``events.sinks`` entry. Sinks whose library is heavy
(Kafka) are imported only when configured.

Raises ``ConfigError`` (from the sink's constructor) when a sink cannot be set up,
e.g. a HEC token file that cannot be read.
"""

from __future__ import annotations

from capgate.events.config import (
    FileSinkSettings,
    HecSinkSettings,
    HttpSinkSettings,
    KafkaSinkSettings,
    SinkSettings,
    SyslogSinkSettings,
)
from capgate.events.sinks.base import Sink


def build_sink(settings: SinkSettings, *, hostname: str, instance_id: str) -> Sink:
    if isinstance(settings, FileSinkSettings):
        from capgate.events.sinks.file import FileSink

        return FileSink(settings)
    if isinstance(settings, SyslogSinkSettings):
        from capgate.events.sinks.syslog import SyslogSink

        return SyslogSink(settings, hostname=hostname)
    if isinstance(settings, HecSinkSettings):
        from capgate.events.sinks.hec import HecSink

        return HecSink(settings, host=hostname)
    if isinstance(settings, HttpSinkSettings):
        from capgate.events.sinks.http_opa import HttpOpaSink

        return HttpOpaSink(settings, instance_id=instance_id)
    if isinstance(settings, KafkaSinkSettings):
        from capgate.events.sinks.kafka import KafkaSink

        return KafkaSink(settings, instance_id=instance_id)
    raise TypeError(f"unknown sink settings {type(settings).__name__}")
