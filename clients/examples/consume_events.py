"""Consume Triveni's payment events from Kafka, each applied once (dedupe by event id).

    pip install ./clients kafka-python
    KAFKA_BOOTSTRAP=localhost:59092 python clients/examples/consume_events.py --group ledger

Reads `payments.events` (key = payment id, value = a serialized triveni.v1.PaymentEvent) as a
member of consumer group `--group`. Delivery is at least once, so every event id is recorded in
a SQLite database (`--db`) in the same transaction as the work, and the Kafka offsets are
committed only after that transaction: a crash anywhere means events come again and are
skipped as duplicates. Per payment, an event whose sequence is not newer than the last one
applied is recorded but not applied (a late duplicate). Prints one line per applied event.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time

from kafka import KafkaConsumer
from triveni.v1 import common_pb2, events_pb2

TOPIC = "payments.events"

SCHEMA = """
CREATE TABLE IF NOT EXISTS processed_events (event_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS payment_versions (payment_id TEXT PRIMARY KEY, sequence INTEGER);
"""


def apply_once(db: sqlite3.Connection, event: events_pb2.PaymentEvent) -> bool:
    """Record the event; True when it was new and newer than what we applied for its payment."""
    with db:  # one transaction: the dedupe record and the work commit together
        inserted = db.execute("INSERT OR IGNORE INTO processed_events (event_id) VALUES (?)",
                              (event.event_id,)).rowcount == 1
        if not inserted:
            return False
        row = db.execute("SELECT sequence FROM payment_versions WHERE payment_id = ?",
                         (event.payment.id,)).fetchone()
        if row is not None and row[0] >= event.sequence:
            return False
        db.execute("INSERT INTO payment_versions (payment_id, sequence) VALUES (?, ?)"
                   " ON CONFLICT (payment_id) DO UPDATE SET sequence = excluded.sequence",
                   (event.payment.id, event.sequence))
        # Your work goes here, in this same transaction (ledger rows, notifications…).
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP",
                                                              "localhost:59092"))
    parser.add_argument("--group", default="example-consumer", help="consumer group id")
    parser.add_argument("--db", default="processed_events.sqlite3",
                        help="SQLite file recording processed event ids")
    parser.add_argument("--merchant", default="", help="only this merchant's events")
    parser.add_argument("--max-events", type=int, default=0,
                        help="stop after applying this many events (0 = run forever)")
    parser.add_argument("--timeout", type=float, default=0,
                        help="stop after this many seconds (0 = no limit)")
    parser.add_argument("--session-timeout-ms", type=int, default=10_000)
    args = parser.parse_args(argv)

    db = sqlite3.connect(args.db)
    db.executescript(SCHEMA)
    consumer = KafkaConsumer(
        TOPIC, bootstrap_servers=args.bootstrap.split(","), group_id=args.group,
        enable_auto_commit=False,          # commit only after the work is durable
        auto_offset_reset="earliest",
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=max(args.session_timeout_ms // 6, 500),
        max_poll_interval_ms=max(args.session_timeout_ms, 60_000),
    )
    applied = 0
    deadline = time.monotonic() + args.timeout if args.timeout else None
    try:
        while deadline is None or time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    event = events_pb2.PaymentEvent.FromString(record.value)
                    if args.merchant and event.merchant_id != args.merchant:
                        continue
                    if apply_once(db, event):
                        applied += 1
                        status = common_pb2.PaymentStatus.Name(event.payment.status)
                        print(f"{event.payment.id} #{event.sequence} {event.type} {status} "
                              f"{event.event_id}", flush=True)
            if batches:
                consumer.commit()          # after the SQLite transactions committed
            if args.max_events and applied >= args.max_events:
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close(autocommit=False)
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
