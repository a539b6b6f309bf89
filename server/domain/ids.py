"""Prefixed, URL-safe, sortable-enough random ids (pay_…, att_…, evt_…)."""

from __future__ import annotations

import secrets
import time

__all__ = ["new_id"]

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(number: int, width: int) -> str:
    out = []
    for _ in range(width):
        number, rem = divmod(number, 36)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """`prefix_` + 24 chars: 8 of millisecond time (so ids sort by creation) + 16 random."""
    millis = int(time.time() * 1000)
    return f"{prefix}_{_base36(millis, 8)}{_base36(secrets.randbits(83), 16)}"
