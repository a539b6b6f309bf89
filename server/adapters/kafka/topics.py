"""Topic names, their intended shape, and `ensure_topics` which creates the missing ones.

All payment topics are keyed by payment id (one partition per payment, so per-payment order);
merchant webhook topics by merchant id. Retry topics hold a message until its delay has passed
(the consumer of `payments.retry.30s` waits until `timestamp + 30 s` before acting on it); a
message that exhausts its retries goes to the matching DLQ.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from kafka import KafkaAdminClient
from kafka import errors as kafka_errors
from kafka.admin import ConfigResource, ConfigResourceType

from server.adapters.kafka.kafka_python import security_config
from server.adapters.kafka.ports import KafkaSettings
from server.errors import DependencyUnavailable

__all__ = [
    "DEFAULT_TOPICS",
    "MERCHANT_WEBHOOKS_DLQ",
    "MERCHANT_WEBHOOKS_RETRY",
    "MERCHANT_WEBHOOKS_RETRY_1H",
    "MERCHANT_WEBHOOKS_RETRY_1M",
    "MERCHANT_WEBHOOKS_RETRY_6H",
    "MERCHANT_WEBHOOKS_RETRY_10M",
    "PAYMENTS_DLQ",
    "PAYMENTS_EVENTS",
    "PAYMENTS_RETRY",
    "PAYMENTS_RETRY_1H",
    "PAYMENTS_RETRY_5M",
    "PAYMENTS_RETRY_5S",
    "PAYMENTS_RETRY_30S",
    "TopicSpec",
    "TopicsReport",
    "ensure_topics",
]

log = logging.getLogger(__name__)

PAYMENTS_EVENTS: Final = "payments.events"
PAYMENTS_RETRY_5S: Final = "payments.retry.5s"
PAYMENTS_RETRY_30S: Final = "payments.retry.30s"
PAYMENTS_RETRY_5M: Final = "payments.retry.5m"
PAYMENTS_RETRY_1H: Final = "payments.retry.1h"
PAYMENTS_DLQ: Final = "payments.dlq"
MERCHANT_WEBHOOKS_RETRY_1M: Final = "merchant.webhooks.retry.1m"
MERCHANT_WEBHOOKS_RETRY_10M: Final = "merchant.webhooks.retry.10m"
MERCHANT_WEBHOOKS_RETRY_1H: Final = "merchant.webhooks.retry.1h"
MERCHANT_WEBHOOKS_RETRY_6H: Final = "merchant.webhooks.retry.6h"
MERCHANT_WEBHOOKS_DLQ: Final = "merchant.webhooks.dlq"

# Retry ladders: (delay in seconds, topic), shortest first.
PAYMENTS_RETRY: Final[tuple[tuple[int, str], ...]] = (
    (5, PAYMENTS_RETRY_5S), (30, PAYMENTS_RETRY_30S), (300, PAYMENTS_RETRY_5M),
    (3600, PAYMENTS_RETRY_1H),
)
MERCHANT_WEBHOOKS_RETRY: Final[tuple[tuple[int, str], ...]] = (
    (60, MERCHANT_WEBHOOKS_RETRY_1M), (600, MERCHANT_WEBHOOKS_RETRY_10M),
    (3600, MERCHANT_WEBHOOKS_RETRY_1H), (21600, MERCHANT_WEBHOOKS_RETRY_6H),
)

_DAY_MS: Final = 24 * 3600 * 1000
# CreateTopics error codes that mean "this config is not accepted here" (retry without it).
_CONFIG_REFUSED: Final = {
    kafka_errors.InvalidConfigurationError.errno,
    kafka_errors.PolicyViolationError.errno,
    kafka_errors.UnsupportedVersionError.errno,
}


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """How a topic should look when we create it (existing topics are never altered)."""

    name: str
    partitions: int
    retention_ms: int | None = None
    replication_factor: int = -1  # the broker's default.replication.factor
    configs: Mapping[str, str] = field(default_factory=dict)

    def wanted_configs(self) -> dict[str, str]:
        wanted = dict(self.configs)
        if self.retention_ms is not None:
            wanted["retention.ms"] = str(self.retention_ms)
        return wanted


DEFAULT_TOPICS: Final[tuple[TopicSpec, ...]] = (
    TopicSpec(PAYMENTS_EVENTS, partitions=12, retention_ms=7 * _DAY_MS),
    *(TopicSpec(topic, partitions=6, retention_ms=7 * _DAY_MS) for _, topic in PAYMENTS_RETRY),
    TopicSpec(PAYMENTS_DLQ, partitions=3, retention_ms=30 * _DAY_MS),
    *(TopicSpec(topic, partitions=6, retention_ms=7 * _DAY_MS)
      for _, topic in MERCHANT_WEBHOOKS_RETRY),
    TopicSpec(MERCHANT_WEBHOOKS_DLQ, partitions=3, retention_ms=30 * _DAY_MS),
)


@dataclass(slots=True)
class TopicsReport:
    """What `ensure_topics` did and what the broker reports back."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    # Per topic: the requested configs the broker reports with the requested value.
    applied_configs: dict[str, dict[str, str]] = field(default_factory=dict)
    # Per topic: requested configs the broker refused, dropped or reports differently.
    unapplied_configs: dict[str, dict[str, str]] = field(default_factory=dict)
    # Per topic: (wanted, actual) partition counts where the topic has fewer than wanted.
    too_few_partitions: dict[str, tuple[int, int]] = field(default_factory=dict)


def ensure_topics(bootstrap: str | KafkaSettings, specs: Sequence[TopicSpec] = DEFAULT_TOPICS,
                  *, timeout_ms: int = 10_000) -> TopicsReport:
    """Create the topics of `specs` that do not exist yet (idempotent; blocking: call it in a
    thread from async code). Configs a broker refuses are dropped with a warning rather than
    failing start-up. Raises DependencyUnavailable when the broker cannot be reached."""
    settings = bootstrap if isinstance(bootstrap, KafkaSettings) else KafkaSettings(bootstrap)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers(), client_id=settings.client_id,
            request_timeout_ms=timeout_ms, bootstrap_timeout_ms=settings.metadata_timeout_ms,
            **security_config(settings),
        )
    except kafka_errors.KafkaError as exc:
        raise DependencyUnavailable("kafka", f"{type(exc).__name__}: {exc}") from exc
    try:
        return _ensure(admin, list(specs), timeout_ms)
    except kafka_errors.KafkaError as exc:
        raise DependencyUnavailable("kafka", f"{type(exc).__name__}: {exc}") from exc
    finally:
        admin.close()


def _ensure(admin: Any, specs: list[TopicSpec], timeout_ms: int) -> TopicsReport:
    report = TopicsReport()
    present = set(admin.list_topics())
    missing = [spec for spec in specs if spec.name not in present]
    report.existing.extend(spec.name for spec in specs if spec.name in present)
    refused: dict[str, dict[str, str]] = {}
    if missing:
        errors = _create(admin, missing, timeout_ms, with_configs=True)
        retry = [spec for spec in missing if errors.get(spec.name) in _CONFIG_REFUSED]
        if retry:
            for spec in retry:
                refused[spec.name] = spec.wanted_configs()
            errors.update(_create(admin, retry, timeout_ms, with_configs=False))
        for spec in missing:
            code = errors.get(spec.name, 0)
            if code == 0:
                report.created.append(spec.name)
            elif code == kafka_errors.TopicAlreadyExistsError.errno:
                report.existing.append(spec.name)  # another process was faster
            else:
                error = kafka_errors.for_code(code).__name__
                raise DependencyUnavailable("kafka", f"creating topic {spec.name}: {error}")
    _compare_configs(admin, specs, report, refused)
    _compare_partitions(admin, specs, report)
    for topic, configs in report.unapplied_configs.items():
        log.warning("Kafka topic %s: the broker did not apply %s", topic, sorted(configs))
    for topic, (wanted, actual) in report.too_few_partitions.items():
        log.warning("Kafka topic %s has %d partitions, %d wanted", topic, actual, wanted)
    return report


def _create(admin: Any, specs: list[TopicSpec], timeout_ms: int,
            *, with_configs: bool) -> dict[str, int]:
    request = {
        spec.name: {
            "num_partitions": spec.partitions,
            "replication_factor": spec.replication_factor,
            "configs": spec.wanted_configs() if with_configs else {},
        }
        for spec in specs
    }
    response = admin.create_topics(request, timeout_ms=timeout_ms, raise_errors=False)
    return {topic["name"]: int(topic["error_code"]) for topic in response["topics"]}


def _compare_configs(admin: Any, specs: list[TopicSpec], report: TopicsReport,
                     refused: dict[str, dict[str, str]]) -> None:
    wanted = {spec.name: spec.wanted_configs() for spec in specs if spec.wanted_configs()}
    if not wanted:
        return
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in wanted]
    described = admin.describe_configs(resources, config_filter="all").get("topic", {})
    for name, configs in wanted.items():
        actual = {key: entry.get("value") for key, entry in described.get(name, {}).items()}
        applied = {key: value for key, value in configs.items() if actual.get(key) == value}
        unapplied = {key: value for key, value in configs.items() if key not in applied}
        unapplied.update({key: value for key, value in refused.get(name, {}).items()
                          if key not in applied})
        if applied:
            report.applied_configs[name] = applied
        if unapplied:
            report.unapplied_configs[name] = unapplied


def _compare_partitions(admin: Any, specs: list[TopicSpec], report: TopicsReport) -> None:
    described = {topic["name"]: len(topic["partitions"])
                 for topic in admin.describe_topics([spec.name for spec in specs])}
    for spec in specs:
        actual = described.get(spec.name, 0)
        if actual < spec.partitions:
            report.too_few_partitions[spec.name] = (spec.partitions, actual)
