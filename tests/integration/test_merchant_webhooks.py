"""Merchant webhooks over real gRPC, PostgreSQL, Kafka and a real local HTTP receiver.

The session's server runs without the notifier (tests/fixtures/stack.py); this module runs it
itself — fan-out consumer in a fresh consumer group, delivery loop — with a compressed retry
schedule, so that tests can stop and restart its parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import grpc
import pytest
import pytest_asyncio
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition
from prometheus_client import REGISTRY
from triveni import webhooks
from triveni.v1 import common_pb2 as pb
from triveni.v1 import webhook_service_pb2 as ws

from server.adapters.kafka.factory import build_consumer
from server.adapters.kafka.ports import IncomingMessage, KafkaSettings
from server.adapters.kafka.topics import MERCHANT_WEBHOOKS_DLQ, PAYMENTS_EVENTS
from server.adapters.postgres.merchant_webhooks import PostgresMerchantWebhooks
from server.adapters.webhook_payload import dead_letter_record
from server.adapters.webhook_sender import WebhookSender
from server.devstack import FAST_CONSUMER_GROUP_SETTINGS
from server.domain.merchant_webhooks import RetrySchedule
from server.entrypoints.workers.merchant_notifier import (
    event_from_message,
    run_dispatcher,
    run_fanout,
)
from server.service_layer.merchant_notifications import (
    DeliveryDispatcher,
    FanOut,
    PublishedEvent,
)
from tests.fakes.merchant_receiver import Receiver
from tests.fakes.server import serve_app
from tests.fixtures.stack import Stack, running_server
from tests.integration.merchant_webhook_support import eventually, eventually_async, new_merchant

pytestmark = pytest.mark.integration

# Nine attempts within ~3 s instead of ten over ~3.9 days.
SCHEDULE = RetrySchedule((0.2, 0.2, 0.3, 0.3, 0.3, 0.4, 0.4, 0.5))
LIFECYCLE = ["payment.created", "payment.requires_action", "payment.succeeded"]


@dataclass
class Notifier:
    """The notifier's two loops, run by this module; either can be killed and restarted."""

    stack: Stack
    group: str = field(default_factory=lambda: f"test-notifier-{secrets.token_hex(4)}")
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    fanout_task: asyncio.Task[None] | None = None
    dispatch_task: asyncio.Task[None] | None = None
    sender: WebhookSender = field(default_factory=lambda: WebhookSender(
        allow_private=True, timeout_seconds=3.0))

    @property
    def store(self) -> PostgresMerchantWebhooks:
        return PostgresMerchantWebhooks(self.stack.app.pool)

    def start_fanout(self) -> None:
        kafka = KafkaSettings(bootstrap=self.stack.settings.kafka_bootstrap,
                              **FAST_CONSUMER_GROUP_SETTINGS)
        consumer = build_consumer(kafka, self.group, [PAYMENTS_EVENTS])

        async def run() -> None:
            try:
                await run_fanout(FanOut(self.store), consumer, self.stop, wake=self.wake,
                                 group=self.group)
            finally:
                # Leaving the group can wait for a join in progress; do not hold teardown.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(consumer.close(), timeout=1)

        self.fanout_task = asyncio.create_task(run(), name="test-fanout")

    def start_dispatcher(self) -> None:
        dispatcher = DeliveryDispatcher(
            self.store, self.sender, owner=f"test-{secrets.token_hex(3)}", schedule=SCHEDULE,
            dead_letter_record=dead_letter_record, lease=timedelta(seconds=3.5),
            observe=lambda result: None)
        self.dispatch_task = asyncio.create_task(
            run_dispatcher(dispatcher, self.stop, wake=self.wake, poll_interval=0.1),
            name="test-dispatcher")

    async def kill(self, task: asyncio.Task[None] | None) -> None:
        """Cancel a loop mid-flight, as a crash would: nothing is finished or released."""
        assert task is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def close(self) -> None:
        self.stop.set()
        for task in (self.fanout_task, self.dispatch_task):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, timeout=2)
        await self.sender.aclose()


@pytest_asyncio.fixture(scope="module")
async def notifier(stack: Stack) -> AsyncIterator[Notifier]:
    running = Notifier(stack)
    running.start_fanout()
    running.start_dispatcher()
    # Wait until the fan-out consumer owns its partitions: a probe event must come through.
    probe = await new_merchant(stack)
    receiver = Receiver()
    with serve_app(receiver.app()) as url:
        await probe.create_endpoint(f"{url}/probe", ["payment.created"])
        await probe.payment()
        await eventually(lambda: bool(receiver.accepted()), within=30,
                         message="the notifier to start")
    yield running
    await running.close()


@contextlib.contextmanager
def receiving(receiver: Receiver) -> Iterator[str]:
    with serve_app(receiver.app()) as url:
        yield url


# --- endpoints ----------------------------------------------------------------------------------
async def test_endpoint_crud_shows_the_secret_only_on_create(stack: Stack) -> None:
    merchant = await new_merchant(stack)
    key = secrets.token_hex(8)
    created = await merchant.create_endpoint("http://127.0.0.1:9/hooks",
                                             ["payment.succeeded", "payment.failed"],
                                             "orders service", key=key)
    assert created.secret.startswith("whsec_") and len(created.secret) > 40
    endpoint = created.endpoint
    assert endpoint.id.startswith("we_")
    assert list(endpoint.event_types) == ["payment.failed", "payment.succeeded"]
    assert endpoint.enabled and endpoint.description == "orders service"
    assert not endpoint.HasField("previous_secret_expires_at")
    again = await merchant.create_endpoint("http://127.0.0.1:9/hooks",
                                           ["payment.succeeded", "payment.failed"],
                                           "orders service", key=key)
    assert again.endpoint.id == endpoint.id and again.secret == created.secret
    async with stack.channel() as channel:
        stub = merchant.webhooks(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.CreateWebhookEndpoint(ws.CreateWebhookEndpointRequest(
                idempotency_key=key, url="http://127.0.0.1:9/other"),
                metadata=merchant.metadata())
        assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
        listed = await stub.ListWebhookEndpoints(ws.ListWebhookEndpointsRequest(),
                                                 metadata=merchant.metadata())
        assert [e.id for e in listed.endpoints] == [endpoint.id]
        assert created.secret not in str(listed)
        deleted = await stub.DeleteWebhookEndpoint(ws.DeleteWebhookEndpointRequest(
            id=endpoint.id), metadata=merchant.metadata())
        assert deleted.id == endpoint.id and not deleted.enabled
        listed = await stub.ListWebhookEndpoints(ws.ListWebhookEndpointsRequest(),
                                                 metadata=merchant.metadata())
        assert not listed.endpoints
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.DeleteWebhookEndpoint(ws.DeleteWebhookEndpointRequest(id=endpoint.id),
                                             metadata=merchant.metadata())
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(("request_fields", "field_name"), [
    ({"url": ""}, "url"),
    ({"url": "ftp://example.com/hooks"}, "url"),
    ({"url": "http://user:pw@127.0.0.1/hooks"}, "url"),
    ({"url": "http://127.0.0.1:9/h", "event_types": ["payment.succeeded", "payment.paid"]},
     "event_types[1]"),
    ({"url": "http://127.0.0.1:9/h", "description": "x" * 501}, "description"),
    ({"url": "http://127.0.0.1:9/h", "idempotency_key": ""}, "idempotency_key"),
])
async def test_invalid_endpoint_is_refused_naming_the_field(
        stack: Stack, request_fields: dict[str, object], field_name: str) -> None:
    merchant = await new_merchant(stack)
    request = ws.CreateWebhookEndpointRequest(idempotency_key=secrets.token_hex(8))
    for name, value in request_fields.items():
        if isinstance(value, list):
            getattr(request, name).extend(value)
        else:
            setattr(request, name, value)
    async with stack.channel() as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await merchant.webhooks(channel).CreateWebhookEndpoint(
                request, metadata=merchant.metadata())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(info.value.trailing_metadata() or ())["triveni-field"] == field_name


async def test_private_and_insecure_urls_are_refused_without_the_dev_flag(stack: Stack) -> None:
    settings = stack.settings_with(allow_private_webhook_urls=False, run_workers=False)
    async with running_server(settings) as server:
        merchant = await new_merchant(stack)
        merchant.target = server.grpc_target
        for url in ("http://example.com/hooks", "https://127.0.0.1/hooks",
                    "https://10.1.2.3/hooks", "https://192.168.0.10/hooks",
                    "https://169.254.169.254/latest/meta-data", "https://100.64.0.1/hooks",
                    "https://[::1]/hooks", "https://[::ffff:127.0.0.1]/hooks",
                    "https://[fd00::1]/hooks", "https://0.0.0.0/hooks",
                    "https://224.0.0.1/hooks", "https://localhost/hooks"):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await merchant.create_endpoint(url)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, url
            assert dict(info.value.trailing_metadata() or ())["triveni-field"] == "url"


async def test_another_merchants_endpoint_and_deliveries_are_out_of_reach(stack: Stack) -> None:
    owner, stranger = await new_merchant(stack), await new_merchant(stack)
    created = await owner.create_endpoint("http://127.0.0.1:9/hooks")
    endpoint_id = created.endpoint.id
    async with stack.channel() as channel:
        stub = stranger.webhooks(channel)
        listed = await stub.ListWebhookEndpoints(ws.ListWebhookEndpointsRequest(),
                                                 metadata=stranger.metadata())
        assert endpoint_id not in [e.id for e in listed.endpoints]
        for call in (
            stub.DeleteWebhookEndpoint(ws.DeleteWebhookEndpointRequest(id=endpoint_id),
                                       metadata=stranger.metadata()),
            stub.RotateWebhookSecret(ws.RotateWebhookSecretRequest(id=endpoint_id),
                                     metadata=stranger.metadata()),
            stub.ListWebhookDeliveries(ws.ListWebhookDeliveriesRequest(endpoint_id=endpoint_id),
                                       metadata=stranger.metadata()),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.DeleteWebhookEndpoint(ws.DeleteWebhookEndpointRequest(id="we_missing"),
                                             metadata=stranger.metadata())
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_merchant_can_have_at_most_sixteen_endpoints(stack: Stack) -> None:
    merchant = await new_merchant(stack)
    created = [await merchant.create_endpoint(f"http://127.0.0.1:9/hooks/{n}")
               for n in range(16)]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await merchant.create_endpoint("http://127.0.0.1:9/hooks/17")
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    async with stack.channel() as channel:
        await merchant.webhooks(channel).DeleteWebhookEndpoint(
            ws.DeleteWebhookEndpointRequest(id=created[0].endpoint.id),
            metadata=merchant.metadata())
    await merchant.create_endpoint("http://127.0.0.1:9/hooks/17")


async def test_rotation_ttl_is_validated(stack: Stack) -> None:
    merchant = await new_merchant(stack)
    endpoint_id = (await merchant.create_endpoint("http://127.0.0.1:9/hooks")).endpoint.id
    async with stack.channel() as channel:
        for ttl in (-1, 8 * 86400):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await merchant.webhooks(channel).RotateWebhookSecret(
                    ws.RotateWebhookSecretRequest(id=endpoint_id,
                                                  previous_secret_ttl_seconds=ttl),
                    metadata=merchant.metadata())
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- deliveries ---------------------------------------------------------------------------------
async def test_every_state_change_reaches_each_endpoint_once_signed_and_filtered(
        stack: Stack, notifier: Notifier) -> None:
    merchant = await new_merchant(stack)
    receiver = Receiver()
    with receiving(receiver) as url:
        everything = await merchant.create_endpoint(f"{url}/all")
        succeeded_only = await merchant.create_endpoint(f"{url}/succeeded",
                                                        ["payment.succeeded"])
        payment = await merchant.payment()
        await merchant.pay(payment)
        await eventually(lambda: len(receiver.accepted("/all")) >= 3
                         and len(receiver.accepted("/succeeded")) >= 1,
                         message="three deliveries")
        await asyncio.sleep(0.5)  # anything extra (a duplicate) would arrive by now
    all_events = receiver.accepted("/all")
    assert [r.event_type for r in all_events] == LIFECYCLE
    assert [r.sequence for r in all_events] == [1, 2, 3]
    assert len({r.event_id for r in all_events}) == 3
    assert [r.event_type for r in receiver.accepted("/succeeded")] == ["payment.succeeded"]
    assert receiver.accepted("/succeeded")[0].event_id == all_events[2].event_id
    assert len(receiver.all()) == 4  # no retries, no duplicates
    for receipt in all_events:
        webhooks.verify_signature(receipt.body, receipt.signature, everything.secret)
        with pytest.raises(webhooks.SignatureVerificationError):
            webhooks.verify_signature(receipt.body, receipt.signature, succeeded_only.secret)
        event = webhooks.parse_event(receipt.body)
        assert event["id"] == receipt.event_id and event["sequence"] == receipt.sequence
        assert event["merchant_id"] == merchant.merchant_id
        assert event["data"]["payment"]["id"] == payment.id
        assert event["data"]["payment"]["amount"]["amount_minor"] == 100_000
        assert receipt.headers["content-type"] == "application/json"
    listed = await merchant.deliveries(endpoint_id=everything.endpoint.id)
    assert [d.sequence for d in listed.deliveries] == [3, 2, 1]  # newest first
    for delivery in listed.deliveries:
        assert delivery.status == ws.DELIVERY_STATUS_DELIVERED
        assert delivery.payment_id == payment.id
        assert [(a.number, a.http_status) for a in delivery.attempts] == [(1, 200)]
        assert not delivery.HasField("next_attempt_at")
    by_payment = await merchant.deliveries(payment_id=payment.id)
    assert len(by_payment.deliveries) == 4
    first_page = await merchant.deliveries(payment_id=payment.id, page_size=3)
    second_page = await merchant.deliveries(payment_id=payment.id, page_size=3,
                                            page_token=first_page.next_page_token)
    assert len(first_page.deliveries) == 3 and len(second_page.deliveries) == 1
    assert not second_page.next_page_token


async def test_a_deleted_endpoint_receives_nothing_more(stack: Stack, notifier: Notifier) -> None:
    merchant = await new_merchant(stack)
    receiver = Receiver()
    with receiving(receiver) as url:
        kept = await merchant.create_endpoint(f"{url}/kept", ["payment.created"])
        gone = await merchant.create_endpoint(f"{url}/gone", ["payment.created"])
        async with stack.channel() as channel:
            await merchant.webhooks(channel).DeleteWebhookEndpoint(
                ws.DeleteWebhookEndpointRequest(id=gone.endpoint.id),
                metadata=merchant.metadata())
        await merchant.payment()
        await eventually(lambda: len(receiver.accepted("/kept")) == 1, message="a delivery")
        await asyncio.sleep(0.5)
    assert receiver.all("/gone") == []
    assert not (await merchant.deliveries(endpoint_id=gone.endpoint.id)).deliveries
    assert len((await merchant.deliveries(endpoint_id=kept.endpoint.id)).deliveries) == 1


async def test_receiver_failing_five_times_then_succeeding_gets_it_on_the_sixth_attempt(
        stack: Stack, notifier: Notifier) -> None:
    merchant = await new_merchant(stack)
    receiver = Receiver(fail_first=5)
    with receiving(receiver) as url:
        endpoint = await merchant.create_endpoint(f"{url}/hooks", ["payment.created"])
        await merchant.payment()
        await eventually(lambda: bool(receiver.accepted()), message="the sixth attempt")
    assert [r.status for r in receiver.all()] == [500] * 5 + [200]
    assert len({r.event_id for r in receiver.all()}) == 1
    for earlier, later in zip(receiver.all(), receiver.all()[1:], strict=False):
        assert later.at - earlier.at >= 0.15  # waited for the schedule between attempts
    [delivery] = (await merchant.deliveries(endpoint_id=endpoint.endpoint.id)).deliveries
    assert delivery.status == ws.DELIVERY_STATUS_DELIVERED
    assert [a.number for a in delivery.attempts] == [1, 2, 3, 4, 5, 6]
    assert [a.http_status for a in delivery.attempts] == [500] * 5 + [200]
    assert [a.error for a in delivery.attempts] == ["HTTP 500"] * 5 + [""]
    times = [a.at.ToDatetime() for a in delivery.attempts]
    assert times == sorted(times)


async def test_receiver_that_never_succeeds_is_dead_lettered_after_the_schedule(
        stack: Stack, notifier: Notifier) -> None:
    merchant = await new_merchant(stack)
    receiver = Receiver(always_fail=True, fail_status=503)
    with receiving(receiver) as url:
        endpoint = await merchant.create_endpoint(f"{url}/hooks", ["payment.created"])
        await merchant.payment()

        async def dead() -> bool:
            listed = await merchant.deliveries(endpoint_id=endpoint.endpoint.id)
            return bool(listed.deliveries) and \
                listed.deliveries[0].status == ws.DELIVERY_STATUS_DEAD_LETTERED

        await eventually_async(dead, within=20, message="the dead letter")
    [delivery] = (await merchant.deliveries(endpoint_id=endpoint.endpoint.id)).deliveries
    assert len(delivery.attempts) == SCHEDULE.max_attempts == len(receiver.all()) == 9
    assert all(a.http_status == 503 for a in delivery.attempts)
    assert not delivery.HasField("next_attempt_at")
    # The dead letter goes to Kafka through the outbox, keyed by merchant.
    record = await asyncio.to_thread(_find_dead_letter, stack.settings.kafka_bootstrap,
                                     delivery.id)
    assert record["merchant_id"] == merchant.merchant_id
    assert record["endpoint_id"] == endpoint.endpoint.id
    assert record["attempts"] == 9 and record["last_error"] == "HTTP 503"
    assert record["event"]["id"] == delivery.event_id


def _find_dead_letter(bootstrap: str, delivery_id: str) -> dict[str, object]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(MERCHANT_WEBHOOKS_DLQ)
        consumer.assign([KafkaTopicPartition(MERCHANT_WEBHOOKS_DLQ, p) for p in partitions])
        consumer.seek_to_beginning()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=300).values():
                for record in records:
                    value = json.loads(record.value)
                    if value["delivery_id"] == delivery_id:
                        return dict(value)
    finally:
        consumer.close()
    raise AssertionError(f"no dead letter for {delivery_id} on {MERCHANT_WEBHOOKS_DLQ}")


async def test_a_payments_later_event_waits_until_the_earlier_one_is_delivered(
        stack: Stack, notifier: Notifier) -> None:
    merchant = await new_merchant(stack)
    receiver = Receiver(fail_first=3)
    with receiving(receiver) as url:
        await merchant.create_endpoint(f"{url}/hooks")
        payment = await merchant.payment()
        await merchant.pay(payment)
        await eventually(lambda: len(receiver.accepted()) >= 3, message="three deliveries")
    requests = receiver.all()
    assert [r.sequence for r in requests[:4]] == [1, 1, 1, 1]  # 2 and 3 waited for 1
    assert [r.sequence for r in receiver.accepted()] == [1, 2, 3]
    assert [r.status for r in requests] == [500, 500, 500, 200, 200, 200]


async def test_rotated_secret_signs_alongside_the_previous_one_until_it_expires(
        stack: Stack, notifier: Notifier) -> None:
    merchant = await new_merchant(stack)
    receiver = Receiver()
    with receiving(receiver) as url:
        created = await merchant.create_endpoint(f"{url}/hooks", ["payment.created"])
        async with stack.channel() as channel:
            stub = merchant.webhooks(channel)
            rotated = await stub.RotateWebhookSecret(ws.RotateWebhookSecretRequest(
                id=created.endpoint.id), metadata=merchant.metadata())
            assert rotated.secret != created.secret and rotated.secret.startswith("whsec_")
            assert rotated.endpoint.HasField("previous_secret_expires_at")
            await merchant.payment()
            await eventually(lambda: len(receiver.accepted()) == 1, message="a delivery")
            both = receiver.accepted()[0]
            assert both.signature.count("v1=") == 2
            webhooks.verify_signature(both.body, both.signature, created.secret)
            webhooks.verify_signature(both.body, both.signature, rotated.secret)
            # Rotate again with a 1 s overlap: once it passes, only the newest secret signs.
            newest = await stub.RotateWebhookSecret(ws.RotateWebhookSecretRequest(
                id=created.endpoint.id, previous_secret_ttl_seconds=1),
                metadata=merchant.metadata())
            await asyncio.sleep(1.1)
            await merchant.payment()
            await eventually(lambda: len(receiver.accepted()) == 2, message="a delivery")
    one = receiver.accepted()[1]
    assert one.signature.count("v1=") == 1
    webhooks.verify_signature(one.body, one.signature, newest.secret)
    with pytest.raises(webhooks.SignatureVerificationError):
        webhooks.verify_signature(one.body, one.signature, [created.secret, rotated.secret])


async def test_redeliver_sends_the_same_event_again_as_a_new_delivery(
        stack: Stack, notifier: Notifier) -> None:
    merchant = await new_merchant(stack)
    receiver = Receiver()
    with receiving(receiver) as url:
        endpoint = await merchant.create_endpoint(f"{url}/hooks", ["payment.created"])
        await merchant.payment()
        await eventually(lambda: len(receiver.accepted()) == 1, message="a delivery")
        [original] = (await merchant.deliveries(endpoint_id=endpoint.endpoint.id)).deliveries
        key = secrets.token_hex(8)
        async with stack.channel() as channel:
            stub = merchant.webhooks(channel)
            again = await stub.RedeliverWebhook(ws.RedeliverWebhookRequest(
                delivery_id=original.id, idempotency_key=key), metadata=merchant.metadata())
            assert again.id != original.id and again.event_id == original.event_id
            assert again.status in (ws.DELIVERY_STATUS_PENDING, ws.DELIVERY_STATUS_DELIVERED)
            repeated = await stub.RedeliverWebhook(ws.RedeliverWebhookRequest(
                delivery_id=original.id, idempotency_key=key), metadata=merchant.metadata())
            assert repeated.id == again.id
            await eventually(lambda: len(receiver.accepted()) == 2, message="the redelivery")
            for request, code in (
                (ws.RedeliverWebhookRequest(delivery_id=original.id), "INVALID_ARGUMENT"),
                (ws.RedeliverWebhookRequest(delivery_id="whd_missing",
                                            idempotency_key=secrets.token_hex(4)), "NOT_FOUND"),
                (ws.RedeliverWebhookRequest(delivery_id=again.id, idempotency_key=key),
                 "ALREADY_EXISTS"),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.RedeliverWebhook(request, metadata=merchant.metadata())
                assert info.value.code().name == code
    first, second = receiver.accepted()
    assert first.event_id == second.event_id and first.body == second.body
    assert second.headers["triveni-delivery-id"] == again.id
    listed = (await merchant.deliveries(endpoint_id=endpoint.endpoint.id)).deliveries
    assert {d.id: d.status for d in listed} == {
        original.id: ws.DELIVERY_STATUS_DELIVERED, again.id: ws.DELIVERY_STATUS_DELIVERED}


async def test_killing_the_delivery_loop_mid_send_loses_nothing(
        stack: Stack, notifier: Notifier) -> None:
    merchant = await new_merchant(stack)
    receiver = Receiver(hang_first=1, hang_seconds=2.0)
    with receiving(receiver) as url:
        endpoint = await merchant.create_endpoint(f"{url}/hooks")
        payment = await merchant.payment()
        await merchant.pay(payment)
        await eventually(lambda: receiver._seen >= 1, message="the first request")
        await notifier.kill(notifier.dispatch_task)  # mid-request: nothing recorded
        notifier.start_dispatcher()  # a new worker: waits for the dead one's lease
        await eventually(lambda: len({r.event_id for r in receiver.accepted()}) == 3,
                         within=20, message="every event after the restart")
        await asyncio.sleep(0.3)
    first_seen: dict[str, int] = {}
    for receipt in receiver.accepted():
        first_seen.setdefault(receipt.event_id, receipt.sequence)
    assert sorted(first_seen.values()) == [1, 2, 3]
    arrival = sorted(receiver.accepted(), key=lambda r: r.at)
    assert [r.sequence for r in arrival if r.status == 200][-3:] == [1, 2, 3]
    listed = (await merchant.deliveries(endpoint_id=endpoint.endpoint.id)).deliveries
    assert all(d.status == ws.DELIVERY_STATUS_DELIVERED for d in listed) and len(listed) == 3


async def test_fan_out_of_a_redelivered_kafka_batch_adds_no_delivery(
        stack: Stack, notifier: Notifier) -> None:
    merchant = await new_merchant(stack)
    receiver = Receiver()
    with receiving(receiver) as url:
        endpoint = await merchant.create_endpoint(f"{url}/hooks")
        await merchant.payment()
        await eventually(lambda: len(receiver.accepted()) == 2, message="two deliveries")
    # Read the same records again, as a consumer restarted before committing would.
    events = await asyncio.to_thread(_events_of, stack.settings.kafka_bootstrap,
                                     merchant.merchant_id, 2)
    assert await FanOut(notifier.store).handle(events) == 0
    listed = (await merchant.deliveries(endpoint_id=endpoint.endpoint.id)).deliveries
    assert len(listed) == 2


def _events_of(bootstrap: str, merchant_id: str, count: int) -> list[PublishedEvent]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    found: list[PublishedEvent] = []
    try:
        partitions = consumer.partitions_for_topic(PAYMENTS_EVENTS)
        consumer.assign([KafkaTopicPartition(PAYMENTS_EVENTS, p) for p in partitions])
        consumer.seek_to_beginning()
        deadline = time.monotonic() + 15
        while len(found) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=300).values():
                for record in records:
                    event = event_from_message(IncomingMessage(
                        topic=record.topic, partition=record.partition, offset=record.offset,
                        key=record.key.decode(), value=record.value))
                    if event is not None and event.merchant_id == merchant_id:
                        found.append(event)
    finally:
        consumer.close()
    return found


def _deliveries_metric(result: str) -> float:
    return REGISTRY.get_sample_value("triveni_merchant_webhook_deliveries_total",
                                     {"result": result}) or 0.0


async def test_a_server_running_the_notifier_resumes_after_a_restart_without_loss(
        stack: Stack, notifier: Notifier, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAST_CONSUMER_GROUP_SETTINGS.items():
        monkeypatch.setenv(f"KAFKA_{name.upper()}", str(value))
    # The module's own loops step aside: only the servers' notifier (its consumer group
    # resuming from its committed offsets) can deliver here.
    await notifier.kill(notifier.dispatch_task)
    await notifier.kill(notifier.fanout_task)
    # A group of its own: other tests' worker processes may have left members in the default.
    settings = stack.settings_with(run_merchant_notifier=True,
                                   merchant_notifier_group=f"test-{secrets.token_hex(4)}",
                                   webhook_retry_schedule="0.2,0.2,0.2")
    merchant = await new_merchant(stack)
    receiver = Receiver()
    delivered_before = _deliveries_metric("delivered")
    try:
        with receiving(receiver) as url:
            async with running_server(settings):
                await merchant.create_endpoint(f"{url}/hooks")
                payment = await merchant.payment()
                await eventually(lambda: len(receiver.accepted()) == 2, within=30,
                                 message="the first two events")
            # The server is gone; the payment changes on (the stack's server handles it).
            await merchant.pay(payment)
            await eventually_async(
                lambda: merchant.has_status(payment.id, pb.PAYMENT_STATUS_SUCCEEDED),
                message="the payment to succeed")
            await asyncio.sleep(0.5)
            assert len(receiver.accepted()) == 2
            async with running_server(settings):
                await eventually(lambda: len(receiver.accepted()) == 3, within=30,
                                 message="the event made while no notifier ran")
    finally:
        notifier.start_fanout()
        notifier.start_dispatcher()
    assert [r.sequence for r in receiver.accepted()] == [1, 2, 3]
    assert len({r.event_id for r in receiver.accepted()}) == 3
    assert _deliveries_metric("delivered") >= delivered_before + 3
