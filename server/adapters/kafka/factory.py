"""Build the configured Kafka client, and read `KafkaSettings` from the environment.

    KAFKA_BOOTSTRAP            host:port[,host:port…]          (required)
    KAFKA_CLIENT               kafka-python (default) | confluent  (or TRIVENI_KAFKA_CLIENT)
    KAFKA_CLIENT_ID            triveni
    KAFKA_LINGER_MS            5
    KAFKA_BATCH_SIZE           131072 (bytes)
    KAFKA_COMPRESSION          none | gzip | snappy | lz4 | zstd
    KAFKA_IDEMPOTENCE          true | false
    KAFKA_REQUEST_TIMEOUT_MS   5000
    KAFKA_DELIVERY_TIMEOUT_MS  10000
    KAFKA_METADATA_TIMEOUT_MS  5000
    KAFKA_SESSION_TIMEOUT_MS / KAFKA_HEARTBEAT_INTERVAL_MS / KAFKA_MAX_POLL_INTERVAL_MS
    KAFKA_SECURITY_PROTOCOL    PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    KAFKA_SASL_MECHANISM       PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD
    KAFKA_SSL_CAFILE / KAFKA_SSL_CERTFILE / KAFKA_SSL_KEYFILE
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, get_args

from server.adapters.kafka.ports import (
    ClientName,
    Compression,
    EventConsumer,
    EventProducer,
    KafkaSecurity,
    KafkaSettings,
    SaslMechanism,
    SecurityProtocol,
)
from server.errors import ConfigurationError

__all__ = ["build_consumer", "build_producer", "settings_from_env"]


def build_producer(settings: KafkaSettings) -> EventProducer:
    """The producer for `settings.client`; connects lazily, so the broker may still be down."""
    if settings.client == "kafka-python":
        from server.adapters.kafka.kafka_python import KafkaPythonProducer

        return KafkaPythonProducer(settings)
    if settings.client == "confluent":
        from server.adapters.kafka.confluent import ConfluentProducer

        return ConfluentProducer(settings)
    raise ConfigurationError(f"unknown Kafka client {settings.client!r}")


def build_consumer(settings: KafkaSettings, group: str, topics: Sequence[str]) -> EventConsumer:
    """A consumer-group member of `group` subscribed to `topics`, with manual commits."""
    if not topics:
        raise ConfigurationError("a Kafka consumer needs at least one topic")
    if settings.client == "kafka-python":
        from server.adapters.kafka.kafka_python import KafkaPythonConsumer

        return KafkaPythonConsumer(settings, group, topics)
    if settings.client == "confluent":
        from server.adapters.kafka.confluent import ConfluentConsumer

        return ConfluentConsumer(settings, group, topics)
    raise ConfigurationError(f"unknown Kafka client {settings.client!r}")


def _choice(environ: Mapping[str, str], name: str, allowed: Any, default: str) -> Any:
    value = environ.get(name, "").strip() or default
    choices = get_args(allowed)
    if value not in choices:
        raise ConfigurationError(f"{name}={value!r}: expected one of {', '.join(choices)}")
    return value


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r}: expected an integer") from None
    if value < 0:
        raise ConfigurationError(f"{name}={raw!r}: must not be negative")
    return value


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"{name}={raw!r}: expected true or false")


def _optional(environ: Mapping[str, str], name: str) -> str | None:
    return environ.get(name, "").strip() or None


def settings_from_env(environ: Mapping[str, str], *, bootstrap: str | None = None) -> KafkaSettings:
    """`KafkaSettings` from `KAFKA_*` variables (see the module docstring); `bootstrap` wins."""
    bootstrap = bootstrap or environ.get("KAFKA_BOOTSTRAP", "").strip()
    if not bootstrap:
        raise ConfigurationError("KAFKA_BOOTSTRAP is not set")
    defaults = KafkaSettings(bootstrap=bootstrap)
    sasl_mechanism: SaslMechanism | None = None
    if _optional(environ, "KAFKA_SASL_MECHANISM"):
        sasl_mechanism = _choice(environ, "KAFKA_SASL_MECHANISM", SaslMechanism, "PLAIN")
    security = KafkaSecurity(
        protocol=_choice(environ, "KAFKA_SECURITY_PROTOCOL", SecurityProtocol, "PLAINTEXT"),
        sasl_mechanism=sasl_mechanism,
        sasl_username=_optional(environ, "KAFKA_SASL_USERNAME"),
        sasl_password=_optional(environ, "KAFKA_SASL_PASSWORD"),
        ssl_cafile=_optional(environ, "KAFKA_SSL_CAFILE"),
        ssl_certfile=_optional(environ, "KAFKA_SSL_CERTFILE"),
        ssl_keyfile=_optional(environ, "KAFKA_SSL_KEYFILE"),
    )
    return KafkaSettings(
        bootstrap=bootstrap,
        client=_choice(environ, "KAFKA_CLIENT", ClientName,
                       environ.get("TRIVENI_KAFKA_CLIENT", "").strip() or defaults.client),
        client_id=environ.get("KAFKA_CLIENT_ID", "").strip() or defaults.client_id,
        linger_ms=_int(environ, "KAFKA_LINGER_MS", defaults.linger_ms),
        batch_size=_int(environ, "KAFKA_BATCH_SIZE", defaults.batch_size),
        compression=_choice(environ, "KAFKA_COMPRESSION", Compression, defaults.compression),
        idempotence=_bool(environ, "KAFKA_IDEMPOTENCE", defaults.idempotence),
        request_timeout_ms=_int(environ, "KAFKA_REQUEST_TIMEOUT_MS", defaults.request_timeout_ms),
        delivery_timeout_ms=_int(
            environ, "KAFKA_DELIVERY_TIMEOUT_MS", defaults.delivery_timeout_ms
        ),
        metadata_timeout_ms=_int(
            environ, "KAFKA_METADATA_TIMEOUT_MS", defaults.metadata_timeout_ms
        ),
        session_timeout_ms=_int(environ, "KAFKA_SESSION_TIMEOUT_MS", defaults.session_timeout_ms),
        heartbeat_interval_ms=_int(
            environ, "KAFKA_HEARTBEAT_INTERVAL_MS", defaults.heartbeat_interval_ms
        ),
        max_poll_interval_ms=_int(
            environ, "KAFKA_MAX_POLL_INTERVAL_MS", defaults.max_poll_interval_ms
        ),
        security=security,
    )
