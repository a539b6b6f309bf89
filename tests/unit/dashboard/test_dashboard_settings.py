"""TRIVENI_DASHBOARD_SECRET: generated in development, required in production."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from server.config import Settings
from server.errors import ConfigurationError

PRODUCTION = dict(env="production", postgres_url="postgresql://db/triveni",
                  redis_url="redis://cache:6379/0", kafka_bootstrap="kafka:9092")


def test_development_generates_a_random_secret_when_unset() -> None:
    first, second = Settings(env="development"), Settings(env="development")
    assert len(first.dashboard_secret.get_secret_value()) >= 32
    assert first.dashboard_secret != second.dashboard_secret


def test_a_configured_secret_is_kept_and_never_printed() -> None:
    settings = Settings(env="development", dashboard_secret=SecretStr("k" * 40))
    assert settings.dashboard_secret.get_secret_value() == "k" * 40
    assert "k" * 40 not in repr(settings)


def test_production_refuses_to_start_without_a_dashboard_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIVENI_DASHBOARD_SECRET", raising=False)
    with pytest.raises(ConfigurationError, match="TRIVENI_DASHBOARD_SECRET"):
        Settings(**PRODUCTION).check_http()  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="TRIVENI_DASHBOARD_SECRET"):
        Settings(**PRODUCTION, dashboard_secret=SecretStr("short")).check_http()  # type: ignore[arg-type]


def test_commands_other_than_serve_start_without_a_dashboard_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIVENI_DASHBOARD_SECRET", raising=False)
    Settings(**PRODUCTION).check()  # type: ignore[arg-type]


def test_production_accepts_a_long_enough_secret() -> None:
    settings = Settings(**PRODUCTION, dashboard_secret=SecretStr("x" * 32))  # type: ignore[arg-type]
    settings.check()
    settings.check_http()
