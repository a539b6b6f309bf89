"""The JSON bodies Triveni sends: a merchant webhook per PaymentEvent, and the dead-letter record.

A webhook body is built once, when the event is fanned out, and stored: every attempt (and a
redelivery) sends exactly the same bytes, so the signature always covers what was stored.

    {"id": "evt_…", "object": "event", "api_version": "v1", "type": "payment.succeeded",
     "created_at": "2026-03-01T10:00:00.123Z", "merchant_id": "mer_…", "payment_id": "pay_…",
     "sequence": 3, "previous_status": "PAYMENT_STATUS_REQUIRES_ACTION",
     "data": {"payment": {…the triveni.v1.Payment after the change, proto JSON…}}}

The payment uses the protobuf JSON mapping with the proto field names (`amount_minor`, not
`amountMinor`), every field present (zero values included), enums as their names, timestamps
as RFC 3339 strings and int64 values as JSON numbers.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from google.protobuf import json_format
from triveni.v1 import common_pb2 as pb
from triveni.v1 import events_pb2

from server.domain.merchant_webhooks import WebhookDelivery

__all__ = ["API_VERSION", "dead_letter_record", "event_body"]

API_VERSION = "v1"


def _compact(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def event_body(event: events_pb2.PaymentEvent) -> bytes:
    """The webhook body for `event` (UTF-8 JSON, compact, stable key order)."""
    payment = json_format.MessageToDict(
        event.payment, always_print_fields_with_no_presence=True,
        preserving_proto_field_name=True, unquote_int64_if_possible=True)
    return _compact({
        "id": event.event_id,
        "object": "event",
        "api_version": API_VERSION,
        "type": event.type,
        "created_at": event.occurred_at.ToJsonString(),
        "merchant_id": event.merchant_id,
        "payment_id": event.payment.id,
        "sequence": event.sequence,
        "previous_status": pb.PaymentStatus.Name(event.previous_status),
        "data": {"payment": payment},
    })


def dead_letter_record(delivery: WebhookDelivery, url: str, body: bytes,
                       dead_at: datetime) -> bytes:
    """The value published to `merchant.webhooks.dlq` when a delivery gives up."""
    try:
        event: Any = json.loads(body)
    except ValueError:
        event = body.decode("utf-8", "replace")
    return _compact({
        "delivery_id": delivery.id,
        "endpoint_id": delivery.endpoint_id,
        "endpoint_url": url,
        "merchant_id": delivery.merchant_id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "payment_id": delivery.payment_id,
        "sequence": delivery.sequence,
        "attempts": delivery.attempt_count,
        "last_error": delivery.last_error,
        "dead_lettered_at": dead_at.isoformat(),
        "event": event,
    })
