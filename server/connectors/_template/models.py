"""<PSP> wire types, constants and the status map. TODO: replace every <PSP> placeholder.

Keep here everything that describes the PSP's wire format, so connector.py reads as the flow:
- constants: API version, paths, webhook tolerance, each as one named constant;
- every fact the reference marks [P] (unconfirmed) in its own constant with a `# [P]` comment,
  so correcting it is a one-line change;
- the status maps, documented in this docstring as a table, e.g.

      PSP status   → PspStatus
      captured     → SUCCEEDED
      failed       → FAILED
      anything else → PENDING   (never guess success or failure)

- small frozen dataclasses (or TypedDicts) for the PSP's entities, with `from_json`
  constructors that tolerate missing fields;
- amount parsing: the PSP's unit (paise? rupee string? JSON number?) → Money, exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

from server.connectors.base import PspStatus

__all__ = ["API_VERSION", "PAYMENT_STATUS_MAP", "REFUND_STATUS_MAP", "payment_status"]

API_VERSION = "TODO"

# TODO: the PSP's payment statuses. Only explicit success/failure words map to SUCCEEDED/FAILED.
PAYMENT_STATUS_MAP: Mapping[str, PspStatus] = {}

# TODO: the PSP's refund statuses.
REFUND_STATUS_MAP: Mapping[str, PspStatus] = {}


def payment_status(raw: str) -> PspStatus:
    """The PSP's status word → PspStatus; anything unknown stays PENDING."""
    return PAYMENT_STATUS_MAP.get(raw, PspStatus.PENDING)
