"""Fixtures for the client tests: a real gRPC server running a scriptable fake Triveni."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import triveni
from triveni_client_fake import API_KEY, FakeTriveni, serve


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than ~20 s (e.g. builds a virtualenv)")


@pytest.fixture
def fake() -> FakeTriveni:
    return FakeTriveni()


@pytest.fixture
def target(fake: FakeTriveni) -> Iterator[str]:
    with serve(fake) as address:
        yield address


@pytest.fixture
def client(target: str) -> Iterator[triveni.Client]:
    with triveni.Client(target, API_KEY, initial_backoff=0.01, max_backoff=0.05) as client:
        yield client


@pytest.fixture
async def async_client(target: str) -> AsyncIterator[triveni.AsyncClient]:
    async with triveni.AsyncClient(
        target, API_KEY, initial_backoff=0.01, max_backoff=0.05
    ) as client:
        yield client
