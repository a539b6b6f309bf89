"""The error taxonomy file and its fallback classification."""

from __future__ import annotations

from importlib import resources

import pytest

from server.domain.routing.retry import ErrorCategory
from server.domain.routing.taxonomy import default_taxonomy, parse_taxonomy
from server.errors import ConfigurationError


def test_the_shipped_file_is_versioned_and_parses() -> None:
    text = (resources.files("server.domain.routing") / "error_taxonomy.csv").read_text()
    assert text.splitlines()[0] == "# version: 1"
    taxonomy = default_taxonomy()
    assert taxonomy.version == 1
    assert len(taxonomy.entries) > 50


def test_every_entry_has_a_valid_category_and_a_description() -> None:
    for entry in default_taxonomy().entries:
        assert entry.category in set(ErrorCategory)
        assert entry.description


def test_every_psp_is_covered() -> None:
    psps = {entry.psp for entry in default_taxonomy().entries}
    assert {"instamojo", "razorpay", "cashfree", "payu", "simulator", "upi", "*"} <= psps


@pytest.mark.parametrize(
    ("psp", "codes", "error_class", "category"),
    [
        ("razorpay", ["insufficient_funds", "GATEWAY_ERROR"], "Declined",
         ErrorCategory.DO_NOT_RETRY),
        ("razorpay", ["payment_timed_out"], "Declined", ErrorCategory.DO_NOT_RETRY),
        ("razorpay", ["GATEWAY_ERROR"], "Declined", ErrorCategory.RETRY_OTHER),
        ("razorpay", ["SERVER_ERROR"], "TransientError", ErrorCategory.RETRY_OTHER),
        ("razorpay", ["BAD_REQUEST_ERROR"], "Declined", ErrorCategory.DO_NOT_RETRY),
        ("razorpay", ["gateway_technical_error"], "Declined", ErrorCategory.RETRY_OTHER),
        ("cashfree", ["USER_DROPPED"], "Declined", ErrorCategory.DO_NOT_RETRY),
        ("cashfree", ["PENDING"], "", ErrorCategory.UNKNOWN_OUTCOME),
        ("cashfree", ["rate_limit_error"], "RateLimited", ErrorCategory.RETRY_OTHER),
        ("payu", ["userCancelled"], "Declined", ErrorCategory.DO_NOT_RETRY),
        ("payu", ["pending"], "", ErrorCategory.UNKNOWN_OUTCOME),
        ("instamojo", ["Failed"], "Declined", ErrorCategory.DO_NOT_RETRY),
        ("simulator", ["timeout"], "", ErrorCategory.UNKNOWN_OUTCOME),
        ("simulator", ["unavailable"], "Declined", ErrorCategory.RETRY_OTHER),
        ("simulator", ["rate_limited"], "Declined", ErrorCategory.RETRY_OTHER),
        ("simulator", ["reference_conflict"], "UnknownOutcome", ErrorCategory.UNKNOWN_OUTCOME),
        # NPCI codes passed through any PSP
        ("razorpay", ["U30"], "Declined", ErrorCategory.DO_NOT_RETRY),
        ("cashfree", ["U69"], "Declined", ErrorCategory.DO_NOT_RETRY),
        ("payu", ["ZA"], "Declined", ErrorCategory.DO_NOT_RETRY),
        ("razorpay", ["ZM"], "Declined", ErrorCategory.DO_NOT_RETRY),
        ("razorpay", ["Z9"], "Declined", ErrorCategory.DO_NOT_RETRY),
        ("razorpay", ["U16"], "Declined", ErrorCategory.DO_NOT_RETRY),
        ("razorpay", ["RB"], "Declined", ErrorCategory.UNKNOWN_OUTCOME),
    ],
)
def test_known_codes_map_as_expected(
    psp: str, codes: list[str], error_class: str, category: ErrorCategory,
) -> None:
    assert default_taxonomy().classify(psp, codes, error_class=error_class).category is category


def test_codes_match_case_insensitively() -> None:
    result = default_taxonomy().classify("RAZORPAY", "Insufficient_Funds")
    assert result.matched == "razorpay:insufficient_funds"


def test_unknown_code_falls_back_to_the_error_class_default() -> None:
    taxonomy = default_taxonomy()
    assert taxonomy.classify("razorpay", "brand_new_reason", error_class="Declined").matched == (
        "*:*:Declined"
    )
    assert taxonomy.classify("payu", "E999", error_class="TransientError").category is (
        ErrorCategory.RETRY_OTHER
    )
    assert taxonomy.classify("payu", "E999", error_class="Misconfigured").category is (
        ErrorCategory.RETRY_OTHER
    )


def test_http_status_is_a_code_too() -> None:
    result = default_taxonomy().classify("instamojo", [], error_class="Declined", http_status=400)
    assert result.matched == "instamojo:HTTP_400"
    gateway_timeout = default_taxonomy().classify("razorpay", [], http_status=504)
    assert gateway_timeout.category is ErrorCategory.UNKNOWN_OUTCOME


def test_nothing_known_means_sync_first() -> None:
    result = default_taxonomy().classify("newpsp", "???")
    assert result.category is ErrorCategory.UNKNOWN_OUTCOME


def test_an_unknown_outcome_error_is_never_turned_into_a_retry_by_its_code() -> None:
    result = default_taxonomy().classify("razorpay", ["insufficient_funds"],
                                         error_class="UnknownOutcome")
    assert result.category is ErrorCategory.UNKNOWN_OUTCOME


def test_psp_default_applies_before_the_global_default() -> None:
    text = (
        "# version: 3\npsp,code,category,description,note\n"
        "acme,*,retry_other,Acme,\nacme,*:RateLimited,retry_same_later,Acme throttles,\n"
    )
    taxonomy = parse_taxonomy(text)
    assert taxonomy.version == 3
    assert taxonomy.classify("acme", "x", error_class="Declined").matched == "acme:*"
    assert taxonomy.classify("acme", "x", error_class="RateLimited").category is (
        ErrorCategory.RETRY_SAME_LATER
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("psp,code,category,description,note\n", "line 1: expected '# version: N'"),
        ("# version: one\npsp,code,category,description,note\n", "version must be an integer"),
        ("# version: 1\npsp,code,description\n", "header must be"),
        ("# version: 1\npsp,code,category,description,note\nx,y,maybe,d,\n",
         "line 3: unknown category 'maybe'"),
        ("# version: 1\npsp,code,category,description,note\nx,y,do_not_retry,,\n",
         "description is required"),
        ("# version: 1\npsp,code,category,description,note\nx,,do_not_retry,d,\n",
         "psp and code are required"),
        ("# version: 1\npsp,code,category,description,note\nx,y,do_not_retry,d\n",
         "expected 5 columns"),
        ("# version: 1\npsp,code,category,description,note\nx,*:Oops,do_not_retry,d,\n",
         "unknown error class 'Oops'"),
        ("# version: 1\npsp,code,category,description,note\nx,Y,do_not_retry,d,\n"
         "x,y,retry_other,d,\n", "line 4: duplicate entry"),
    ],
)
def test_invalid_files_are_refused_with_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_taxonomy(text)
