"""Prefixed, URL-safe, sortable random ids (pay_…, att_…, evt_…)."""

from __future__ import annotations

import secrets
import threading
import time

__all__ = ["new_id"]

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(number: int, width: int) -> str:
    out = []
    for _ in range(width):
        number, rem = divmod(number, 36)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))


_RANDOM_BITS = 82  # 36**16 > 2**82, so the random part plus increments fits in 16 chars
_lock = threading.Lock()
_last = (0, 0)  # (millis, random part) of the newest id made by this process


def new_id(prefix: str) -> str:
    """`prefix_` + 24 chars: 8 of millisecond time + 16 random, increasing within a process.

    Ids made in the same millisecond by one process reuse the millisecond and add one to the
    previous random part (monotonic, as ULIDs do), so rows written in one transaction — whose
    created_at is equal — still list in creation order by id.
    """
    global _last
    with _lock:
        millis, randomness = int(time.time() * 1000), secrets.randbits(_RANDOM_BITS)
        last_millis, last_randomness = _last
        if millis <= last_millis:
            millis, randomness = last_millis, last_randomness + 1
        _last = (millis, randomness)
    return f"{prefix}_{_base36(millis, 8)}{_base36(randomness, 16)}"
