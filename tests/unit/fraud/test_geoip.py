"""Offline IP → country: the shipped database, and the addresses that have no country."""

from __future__ import annotations

import pytest

from server.adapters.geoip import IpCountryLookup


@pytest.fixture(scope="module")
def geo() -> IpCountryLookup:
    pytest.importorskip("iptocc")
    return IpCountryLookup()


@pytest.mark.parametrize(("ip", "country"), [
    ("49.36.1.1", "IN"),            # Reliance Jio, IPv4
    ("2409:4040::1", "IN"),         # Reliance Jio, IPv6
    ("8.8.8.8", "US"),
    ("81.2.69.160", "GB"),
    ("::ffff:49.36.1.1", "IN"),     # IPv4-mapped IPv6
])
def test_public_addresses_resolve_to_their_registered_country(geo: IpCountryLookup, ip: str,
                                                              country: str) -> None:
    assert geo.country_of(ip) == country


@pytest.mark.parametrize("ip", ["10.0.0.1", "192.168.1.10", "172.16.0.5", "127.0.0.1", "::1",
                                "fe80::1", "100.64.0.1", "192.0.2.1", "not-an-ip", ""])
def test_private_loopback_reserved_and_invalid_addresses_have_no_country(
        geo: IpCountryLookup, ip: str) -> None:
    assert geo.country_of(ip) is None


def test_a_custom_lookup_replaces_the_database_and_is_validated() -> None:
    assert IpCountryLookup(lambda ip: "np").country_of("8.8.8.8") == "NP"
    assert IpCountryLookup(lambda ip: "ZZZ").country_of("8.8.8.8") is None
    assert IpCountryLookup(lambda ip: None).country_of("8.8.8.8") is None
