"""Print a payment's state changes as they happen, until it reaches a final state.

    TRIVENI_API_KEY=... python clients/examples/watch_payment.py pay_...

TRIVENI_TARGET defaults to localhost:50051.
"""

from __future__ import annotations

import argparse
import os
import sys

import triveni

_status = triveni.PaymentStatus
FINAL = {
    _status.PAYMENT_STATUS_SUCCEEDED,
    _status.PAYMENT_STATUS_FAILED,
    _status.PAYMENT_STATUS_CANCELLED,
    _status.PAYMENT_STATUS_BLOCKED,
    _status.PAYMENT_STATUS_REFUNDED,
    _status.PAYMENT_STATUS_EXPIRED,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("payment_id", help="the payment to watch (pay_...)")
    parser.add_argument("--timeout", type=float, default=None, help="give up after N seconds")
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    args = parser.parse_args(argv)

    target = os.environ.get("TRIVENI_TARGET", "localhost:50051")
    api_key = os.environ.get("TRIVENI_API_KEY")
    if not api_key:
        parser.error("set TRIVENI_API_KEY to your merchant API key")

    with triveni.Client(target, api_key, tls=args.tls) as client:
        try:
            for payment in client.watch_payment(args.payment_id, timeout=args.timeout):
                status = triveni.PaymentStatus.Name(payment.status)
                print(f"v{payment.version} {status} {payment.failure.message}".rstrip(), flush=True)
                if payment.status in FINAL:
                    break
        except triveni.TriveniError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
