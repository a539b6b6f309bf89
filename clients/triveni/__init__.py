"""Typed Python client for Triveni, the payment orchestration gRPC API.

    import triveni

    with triveni.Client("localhost:50051", api_key) as client:
        payment = client.create_payment(amount=triveni.inr(15_000), method=triveni.upi())

`triveni.aio.AsyncClient` has the same surface for asyncio; `triveni.webhooks` verifies the
deliveries Triveni signs to merchant endpoints; `triveni.v1` holds the generated stubs.
"""

from triveni._common import VERSION, card, inr, netbanking, new_idempotency_key, paise, upi, wallet
from triveni.aio import AsyncClient
from triveni.client import Client
from triveni.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RateLimited,
    SignatureVerificationError,
    TriveniError,
    Unauthenticated,
    Unavailable,
)
from triveni.v1.common_pb2 import (
    CardMethod,
    Customer,
    FraudAssessment,
    FraudDecision,
    Money,
    NetbankingMethod,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundStatus,
    UpiFlow,
    UpiMethod,
    WalletMethod,
)
from triveni.v1.fraud_service_pb2 import (
    BlocklistEntry,
    BlocklistKind,
    FraudKind,
    FraudSettings,
    ReviewAction,
    VelocityFailMode,
)

__version__ = VERSION

__all__ = [
    "AlreadyExists",
    "AsyncClient",
    "BlocklistEntry",
    "BlocklistKind",
    "CardMethod",
    "Client",
    "Customer",
    "FailedPrecondition",
    "FraudAssessment",
    "FraudDecision",
    "FraudKind",
    "FraudSettings",
    "InvalidArgument",
    "Money",
    "NetbankingMethod",
    "NotFound",
    "Payment",
    "PaymentMethod",
    "PaymentStatus",
    "PermissionDenied",
    "RateLimited",
    "Refund",
    "RefundStatus",
    "ReviewAction",
    "SignatureVerificationError",
    "TriveniError",
    "Unauthenticated",
    "Unavailable",
    "UpiFlow",
    "UpiMethod",
    "VelocityFailMode",
    "WalletMethod",
    "__version__",
    "card",
    "inr",
    "netbanking",
    "new_idempotency_key",
    "paise",
    "upi",
    "wallet",
]
