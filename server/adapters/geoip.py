"""IP address → ISO 3166-1 alpha-2 country, offline.

The data comes from the `iptocc` package (MIT OR Apache-2.0), whose wheel embeds the five
Regional Internet Registries' delegation files for IPv4 and IPv6: no network, no file I/O at
lookup time, ~100 ns per lookup. RIR data says where a block is *registered*, which agrees with
commercial geo-IP databases for roughly 95% of IPv4 addresses: good enough for "is this payment
coming from India?", not for city-level claims. Refresh it by upgrading the package.

Addresses that are not globally routable (private, loopback, link-local, CGNAT 100.64/10,
documentation ranges…) have no country and yield None.
"""

from __future__ import annotations

import importlib
import ipaddress
import re
from collections.abc import Callable

from server.errors import ConfigurationError

__all__ = ["REQUIREMENT", "IpCountryLookup"]

REQUIREMENT = "iptocc>=3.3,<4"
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def _load_iptocc() -> Callable[[str], object]:
    try:
        module = importlib.import_module("iptocc")
    except ImportError as exc:
        raise ConfigurationError(
            f"IP geolocation needs the iptocc package: pip install '{REQUIREMENT}'") from exc
    lookup: Callable[[str], object] = module.country_code
    return lookup


class IpCountryLookup:
    """`country_of(ip)` → "IN", "US"… or None (unknown, private, or not an IP address)."""

    def __init__(self, lookup: Callable[[str], object] | None = None) -> None:
        # A custom `lookup` (ip text → country code or None) replaces iptocc, e.g. in tests.
        self._lookup = lookup if lookup is not None else _load_iptocc()

    def country_of(self, ip: str) -> str | None:
        try:
            address = ipaddress.ip_address(ip.strip())
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global:
            return None
        country = self._lookup(str(address))
        if isinstance(country, str) and _COUNTRY.match(country.upper()):
            return country.upper()
        return None
