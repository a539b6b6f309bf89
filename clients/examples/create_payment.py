"""Create a ₹15,000 UPI intent payment and print it as JSON.

    TRIVENI_API_KEY=... python clients/examples/create_payment.py [--amount 15000] [--tls]

TRIVENI_TARGET defaults to localhost:50051.
"""

from __future__ import annotations

import argparse
import os
import sys

import triveni
from google.protobuf.json_format import MessageToJson


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amount", default="15000", help="amount in rupees (default 15000)")
    parser.add_argument("--vpa", default="", help="customer VPA (optional for the intent flow)")
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--idempotency-key", default=None, help="default: a fresh UUID4")
    args = parser.parse_args(argv)

    target = os.environ.get("TRIVENI_TARGET", "localhost:50051")
    api_key = os.environ.get("TRIVENI_API_KEY")
    if not api_key:
        parser.error("set TRIVENI_API_KEY to your merchant API key")

    with triveni.Client(target, api_key, tls=args.tls) as client:
        try:
            payment = client.create_payment(
                amount=triveni.inr(args.amount),
                method=triveni.upi(args.vpa),  # intent flow: a upi://pay link in redirect_url
                customer=triveni.Customer(id="cust_42", name="Ravi Kumar", phone="+919876543210"),
                ip_address="203.0.113.7",
                country="IN",
                description="Order #1001",
                idempotency_key=args.idempotency_key,
            )
        except triveni.TriveniError as exc:
            # Unavailable after retries: retrying later with exc.idempotency_key is safe.
            print(f"error: {exc} (idempotency key {exc.idempotency_key})", file=sys.stderr)
            return 1
    print(MessageToJson(payment, preserving_proto_field_name=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
