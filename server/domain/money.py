"""Money as an integer number of minor units (paise), formatted for each PSP exactly once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

__all__ = ["SUPPORTED_CURRENCIES", "Money", "parse_rupees"]

# Triveni takes INR today; the set exists so adding a currency is a one-line, tested change.
SUPPORTED_CURRENCIES = frozenset({"INR"})
_MINOR_DIGITS = {"INR": 2}
_RUPEE_STRING = re.compile(r"[0-9]{1,12}(\.[0-9]{1,2})?")


@dataclass(frozen=True, slots=True, order=True)
class Money:
    """An amount in minor units of `currency`."""

    amount_minor: int
    currency: str = "INR"

    def __post_init__(self) -> None:
        if not isinstance(self.amount_minor, int) or isinstance(self.amount_minor, bool):
            raise TypeError("amount_minor must be an int")

    @classmethod
    def inr(cls, rupees: int | str | Decimal) -> Money:
        """₹ amount → Money (exact; refuses fractions of a paisa)."""
        return cls(parse_rupees(str(rupees)), "INR")

    def to_major_string(self) -> str:
        """'1500.00' style string: what Instamojo, Cashfree and PayU expect."""
        digits = _MINOR_DIGITS.get(self.currency, 2)
        sign = "-" if self.amount_minor < 0 else ""
        whole, frac = divmod(abs(self.amount_minor), 10**digits)
        return f"{sign}{whole}.{frac:0{digits}d}"

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def _same_currency(self, other: Money) -> None:
        if self.currency != other.currency:
            raise ValueError(f"currency mismatch: {self.currency} vs {other.currency}")

    def __str__(self) -> str:
        return f"{self.currency} {self.to_major_string()}"


def parse_rupees(text: str) -> int:
    """'150000', '150000.5', '1.25' → paise. Raises ValueError on anything else."""
    text = text.strip()
    if not _RUPEE_STRING.fullmatch(text):
        raise ValueError(f"not a rupee amount: {text!r}")
    try:
        value = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - regex already guards
        raise ValueError(f"not a rupee amount: {text!r}") from exc
    return int(value * 100)
