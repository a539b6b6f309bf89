"""Keeps `triveni_connector_health` current from Redis, so a dashboard sees an account's
circuit (and a manual FORCE_DOWN) even while no payment is routed to it."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from server.errors import TriveniError
from server.service_layer.routing import PolicyRouter

__all__ = ["run_connector_health_export"]

log = logging.getLogger(__name__)


async def run_connector_health_export(router: PolicyRouter, stop: asyncio.Event, *,
                                      interval: float = 5.0) -> None:
    """Refresh the gauge every `interval` seconds until `stop` is set (never raises)."""
    while not stop.is_set():
        try:
            await router.account_statuses()  # sets CONNECTOR_HEALTH per account
        except TriveniError as exc:
            log.debug("connector health export skipped", extra={"error": str(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
