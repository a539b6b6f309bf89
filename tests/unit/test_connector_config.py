"""Connector accounts from TOML: validated at start-up, secrets from env:/file:, strict in prod."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from server.connector_config import (
    REQUIRED_CREDENTIALS,
    dev_simulator_accounts,
    load_accounts,
    parse_accounts,
)
from server.connectors.base import AccountCapabilities, ConnectorAccount
from server.errors import ConfigurationError

CREDENTIALS = {
    "simulator": {},
    "instamojo": {"client_id": "im_id", "client_secret": "im_secret"},
    "razorpay": {"key_id": "rzp_test_1", "key_secret": "rzp_secret"},
    "cashfree": {"client_id": "cf_id", "client_secret": "cf_secret"},
    "payu": {"key": "payu_key", "salt": "payu_salt"},
}


def account(psp: str = "razorpay", **changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"psp": psp, "base_url": "https://api.example.com",
                           "credentials": dict(CREDENTIALS[psp]), "webhook_secret": "whsec_1"}
    raw.update(changes)
    return raw


def parse_one(raw: dict[str, Any], *, name: str = "main", production: bool = False
              ) -> ConnectorAccount:
    [parsed] = parse_accounts({"accounts": {name: raw}}, production=production)
    return parsed


def config_error(raw: dict[str, Any], *, name: str = "main", production: bool = False) -> str:
    with pytest.raises(ConfigurationError) as caught:
        parse_one(raw, name=name, production=production)
    return str(caught.value)


# ---- valid accounts ---------------------------------------------------------------------------

def test_every_psp_has_a_credentials_fixture() -> None:
    assert set(CREDENTIALS) == set(REQUIRED_CREDENTIALS)


@pytest.mark.parametrize("psp", sorted(REQUIRED_CREDENTIALS))
def test_account_with_its_psps_credentials_parses(psp: str) -> None:
    parsed = parse_one(account(psp))
    assert (parsed.name, parsed.psp) == ("main", psp)
    assert dict(parsed.credentials) == CREDENTIALS[psp]
    assert parsed.webhook_secret == "whsec_1"


def test_defaults_for_optional_settings() -> None:
    parsed = parse_one(account())
    assert (parsed.tier, parsed.priority, parsed.timeout_seconds) == ("standard", 100, 10.0)
    assert parsed.capabilities == AccountCapabilities()
    assert parsed.options == {}


def test_all_settings_are_read() -> None:
    parsed = parse_one(account(
        "instamojo", tier="premium", priority=10, timeout_seconds=7, methods=["upi", "card"],
        min_amount_minor=900, max_amount_minor=20_000_000, currencies=["INR"],
        options={"api_version": "v2", "retries": 3}))
    assert (parsed.tier, parsed.priority, parsed.timeout_seconds) == ("premium", 10, 7.0)
    assert parsed.capabilities == AccountCapabilities(
        methods=frozenset({"upi", "card"}), currencies=frozenset({"INR"}),
        min_amount_minor=900, max_amount_minor=20_000_000)
    assert parsed.options == {"api_version": "v2", "retries": "3"}


def test_trailing_slash_is_removed_from_the_base_url() -> None:
    assert parse_one(account(base_url="https://api.example.com/v1/")).base_url == (
        "https://api.example.com/v1")


def test_accounts_keep_their_file_order() -> None:
    parsed = parse_accounts({"accounts": {"b_first": account("payu"),
                                          "a_second": account("cashfree")}}, production=False)
    assert [a.name for a in parsed] == ["b_first", "a_second"]


def test_secrets_do_not_appear_in_the_account_repr() -> None:
    text = repr(parse_one(account()))
    assert "rzp_secret" not in text and "whsec_1" not in text


def test_min_equal_to_max_amount_is_allowed() -> None:
    parsed = parse_one(account(min_amount_minor=500, max_amount_minor=500))
    assert parsed.capabilities.min_amount_minor == parsed.capabilities.max_amount_minor


# ---- credentials ------------------------------------------------------------------------------

@pytest.mark.parametrize(("psp", "missing"), [
    ("instamojo", "client_secret"), ("razorpay", "key_secret"), ("razorpay", "key_id"),
    ("cashfree", "client_id"), ("payu", "salt"),
])
def test_missing_credential_is_named(psp: str, missing: str) -> None:
    raw = account(psp)
    del raw["credentials"][missing]
    message = config_error(raw, name="acct_1")
    assert f"accounts.acct_1: missing credentials {missing}" in message


def test_every_missing_credential_is_named() -> None:
    assert "missing credentials key_id, key_secret" in config_error(account(credentials={}))


def test_empty_credential_counts_as_missing() -> None:
    raw = account(credentials={"key_id": "rzp_test_1", "key_secret": ""})
    assert "missing credentials key_secret" in config_error(raw)


def test_instamojo_v1_1_needs_an_api_key_and_auth_token() -> None:
    raw = account("instamojo", options={"api_version": "v1.1"})
    assert "missing credentials api_key, auth_token" in config_error(raw)


def test_instamojo_v1_1_with_its_credentials_parses() -> None:
    raw = account("instamojo", options={"api_version": "v1.1"},
                  credentials={"api_key": "k", "auth_token": "t"})
    assert parse_one(raw).credentials == {"api_key": "k", "auth_token": "t"}


def test_simulator_needs_no_credentials() -> None:
    assert parse_one(account("simulator", credentials={})).credentials == {}


def test_missing_webhook_secret_is_refused() -> None:
    raw = account()
    del raw["webhook_secret"]
    assert "webhook_secret is required" in config_error(raw)


def test_non_string_credential_is_refused_naming_it() -> None:
    raw = account(credentials={"key_id": 123, "key_secret": "s"})
    assert "credentials.key_id must be a string" in config_error(raw)


# ---- env: and file: secrets -------------------------------------------------------------------

def test_env_secret_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIVENI_TEST_RZP_SECRET", "from-env")
    raw = account(credentials={"key_id": "rzp_test_1", "key_secret": "env:TRIVENI_TEST_RZP_SECRET"})
    assert parse_one(raw).credentials["key_secret"] == "from-env"


def test_unset_env_secret_is_refused_naming_field_and_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIVENI_TEST_UNSET", raising=False)
    raw = account(webhook_secret="env:TRIVENI_TEST_UNSET")
    message = config_error(raw)
    assert "webhook_secret" in message and "TRIVENI_TEST_UNSET is not set" in message


def test_empty_env_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIVENI_TEST_EMPTY", "")
    raw = account(credentials={"key_id": "env:TRIVENI_TEST_EMPTY", "key_secret": "s"})
    assert "credentials.key_id: environment variable TRIVENI_TEST_EMPTY" in config_error(raw)


def test_file_secret_is_read_and_stripped(tmp_path: Path) -> None:
    secret = tmp_path / "rzp_secret"
    secret.write_text("from-file\n", encoding="utf-8")
    raw = account(credentials={"key_id": "rzp_test_1", "key_secret": f"file:{secret}"})
    assert parse_one(raw).credentials["key_secret"] == "from-file"


def test_missing_secret_file_is_refused_naming_the_field(tmp_path: Path) -> None:
    raw = account(webhook_secret=f"file:{tmp_path / 'absent'}")
    message = config_error(raw)
    assert "webhook_secret: cannot read secret file" in message


def test_empty_secret_file_counts_as_a_missing_credential(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    raw = account(credentials={"key_id": "rzp_test_1", "key_secret": f"file:{empty}"})
    assert "missing credentials key_secret" in config_error(raw)


def test_env_and_file_secrets_are_accepted_in_production(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.setenv("TRIVENI_TEST_KEY_ID", "rzp_live_1")
    (tmp_path / "secret").write_text("live-secret", encoding="utf-8")
    (tmp_path / "whsec").write_text("live-whsec", encoding="utf-8")
    raw = account(credentials={"key_id": "env:TRIVENI_TEST_KEY_ID",
                               "key_secret": f"file:{tmp_path / 'secret'}"},
                  webhook_secret=f"file:{tmp_path / 'whsec'}")
    parsed = parse_one(raw, production=True)
    assert dict(parsed.credentials) == {"key_id": "rzp_live_1", "key_secret": "live-secret"}
    assert parsed.webhook_secret == "live-whsec"


# ---- production rules -------------------------------------------------------------------------

def test_plain_credential_is_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIVENI_TEST_WHSEC", "w")
    raw = account(webhook_secret="env:TRIVENI_TEST_WHSEC")
    message = config_error(raw, production=True)
    assert "credentials.key_id: use env:NAME or file:PATH" in message


def test_plain_webhook_secret_is_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIVENI_TEST_KEY_ID", "k")
    monkeypatch.setenv("TRIVENI_TEST_KEY_SECRET", "s")
    raw = account(credentials={"key_id": "env:TRIVENI_TEST_KEY_ID",
                               "key_secret": "env:TRIVENI_TEST_KEY_SECRET"})
    assert "webhook_secret: use env:NAME or file:PATH" in config_error(raw, production=True)


def test_plain_secrets_are_accepted_outside_production() -> None:
    assert parse_one(account(), production=False).credentials["key_secret"] == "rzp_secret"


def test_http_base_url_is_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIVENI_TEST_WHSEC", "w")
    raw = account("simulator", base_url="http://simulator:9001",
                  webhook_secret="env:TRIVENI_TEST_WHSEC")
    assert "base_url must use https in production" in config_error(raw, production=True)


def test_http_base_url_is_accepted_outside_production() -> None:
    assert parse_one(account(base_url="http://127.0.0.1:9001")).base_url == (
        "http://127.0.0.1:9001")


@pytest.mark.parametrize("base_url", ["", "api.example.com", "ftp://api.example.com", 42])
def test_base_url_must_be_an_http_url(base_url: Any) -> None:
    assert "base_url must be an http(s) URL" in config_error(account(base_url=base_url))


# ---- bad settings -----------------------------------------------------------------------------

@pytest.mark.parametrize("psp", ["stripe", "", "Razorpay"])
def test_unknown_psp_is_refused_listing_the_known_ones(psp: str) -> None:
    message = config_error(account(psp="razorpay") | {"psp": psp})
    assert "psp must be one of ['cashfree', 'instamojo', 'payu', 'razorpay', 'simulator']" in (
        message)


def test_missing_psp_is_refused() -> None:
    raw = account()
    del raw["psp"]
    assert "psp must be one of" in config_error(raw)


@pytest.mark.parametrize("tier", ["gold", "Premium", ""])
def test_unknown_tier_is_refused(tier: str) -> None:
    assert "tier must be 'premium' or 'standard'" in config_error(account(tier=tier))


@pytest.mark.parametrize("methods", [[], ["upi", "crypto"], ["UPI"], "upi"])
def test_methods_outside_the_known_four_are_refused(methods: Any) -> None:
    assert "methods must be a subset of" in config_error(account(methods=methods))


def test_min_amount_above_max_amount_is_refused() -> None:
    raw = account(min_amount_minor=1000, max_amount_minor=999)
    assert "min_amount_minor is above max_amount_minor" in config_error(raw)


@pytest.mark.parametrize("name", ["bad-name", "with space", "dot.ted"])
def test_account_name_with_other_than_letters_digits_underscore_is_refused(name: str) -> None:
    assert "name may contain only letters, digits and _" in config_error(account(), name=name)


def test_account_that_is_not_a_table_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"accounts\.main must be a table"):
        parse_accounts({"accounts": {"main": "razorpay"}}, production=False)


@pytest.mark.parametrize("data", [{}, {"accounts": {}}, {"accounts": []}, {"account": {}}])
def test_config_without_accounts_is_refused(data: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match=r"at least one \[accounts.<name>\] table"):
        parse_accounts(data, production=False)


def test_errors_name_the_source_and_the_account() -> None:
    with pytest.raises(ConfigurationError, match=r"^/etc/triveni.toml: accounts\.rzp_main"):
        parse_accounts({"accounts": {"rzp_main": account(tier="gold")}}, production=False,
                       source="/etc/triveni.toml")


@pytest.mark.parametrize("changes", [
    {"credentials": "key_id=rzp"},
    {"priority": "high"},
    {"min_amount_minor": "ten"},
    {"timeout_seconds": "soon"},
    {"methods": 5},
])
def test_wrongly_typed_setting_is_a_configuration_error(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match=r"accounts\.main"):
        parse_one(account(**changes))


# ---- load_accounts ----------------------------------------------------------------------------

def test_load_accounts_reads_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "connectors.toml"
    path.write_text(
        '[accounts.payu_standard]\npsp = "payu"\nbase_url = "https://test.payu.in"\n'
        'credentials = { key = "k", salt = "s" }\nwebhook_secret = "w"\n'
        'methods = ["upi", "card"]\n', encoding="utf-8")
    [parsed] = load_accounts(path, production=False)
    assert (parsed.name, parsed.psp) == ("payu_standard", "payu")
    assert parsed.capabilities.methods == {"upi", "card"}


def test_load_accounts_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_accounts(tmp_path / "absent.toml", production=False)


def test_load_accounts_refuses_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[accounts.x\npsp = ", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="invalid TOML"):
        load_accounts(path, production=False)


# ---- dev_simulator_accounts -------------------------------------------------------------------

def test_dev_simulator_accounts_are_a_premium_and_a_standard_simulator() -> None:
    accounts = dev_simulator_accounts("http://127.0.0.1:9001")
    assert [(a.name, a.psp, a.tier) for a in accounts] == [
        ("simulator_premium", "simulator", "premium"),
        ("simulator_standard", "simulator", "standard")]


def test_dev_simulator_accounts_use_the_given_base_url() -> None:
    accounts = dev_simulator_accounts("http://127.0.0.1:9001")
    assert {a.base_url for a in accounts} == {"http://127.0.0.1:9001"}


def test_dev_standard_simulator_comes_first_in_static_order() -> None:
    premium, standard = dev_simulator_accounts("http://sim")
    assert standard.priority < premium.priority


def test_dev_simulator_accounts_have_distinct_webhook_secrets_and_all_methods() -> None:
    premium, standard = dev_simulator_accounts("http://sim")
    assert premium.webhook_secret and standard.webhook_secret
    assert premium.webhook_secret != standard.webhook_secret
    assert premium.capabilities.methods == {"upi", "card", "netbanking", "wallet"}
