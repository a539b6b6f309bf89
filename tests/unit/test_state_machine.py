"""The payment state machine: explicit transitions, recorded changes, PSP reports and refunds."""

from __future__ import annotations

from datetime import UTC

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from server.domain.money import Money
from server.domain.payment import (
    Failure,
    MethodSummary,
    Payment,
    Refund,
    apply_psp_status,
    event_type_for,
)
from server.domain.status import (
    CANCELLABLE,
    TERMINAL,
    TRANSITIONS,
    PaymentStatus,
    RefundStatus,
    can_transition,
)
from server.errors import IllegalTransition

S = PaymentStatus
PSP_REPORTS = ["REQUIRES_ACTION", "PENDING", "SUCCEEDED", "FAILED", "EXPIRED"]
ALLOWED = sorted((before, after) for before, targets in TRANSITIONS.items() for after in targets)
DISALLOWED = sorted((before, after) for before in S for after in S
                    if after not in TRANSITIONS[before])


def new_payment(amount_minor: int = 100_000) -> Payment:
    return Payment.create(merchant_id="mer_test", idempotency_key="key-1",
                          amount=Money(amount_minor), method=MethodSummary(type="upi"),
                          actor="api")


def payment_in(status: PaymentStatus, amount_minor: int = 100_000) -> Payment:
    """A payment already in `status`, as loaded from storage (no pending changes)."""
    payment = new_payment(amount_minor)
    payment.status = status
    payment.version = 7
    payment.changes.clear()
    return payment


def succeeded_refund(payment: Payment, amount_minor: int, refund_id: str = "rfnd_1") -> Refund:
    refund = Refund(id=refund_id, payment_id=payment.id, merchant_id=payment.merchant_id,
                    amount=Money(amount_minor), status=RefundStatus.SUCCEEDED,
                    connector="simulator_standard")
    payment.add_refund(refund)
    return refund


def refund_of(payment: Payment, amount_minor: int, status: RefundStatus) -> Refund:
    refund = Refund(id=f"rfnd_{len(payment.refunds)}", payment_id=payment.id,
                    merchant_id=payment.merchant_id, amount=Money(amount_minor), status=status,
                    connector="simulator_standard")
    payment.add_refund(refund)
    return refund


# ---- creation ---------------------------------------------------------------------------------

def test_created_payment_starts_in_created_at_version_one() -> None:
    payment = new_payment()
    assert payment.status == S.CREATED
    assert payment.version == 1


def test_created_payment_records_exactly_one_payment_created_change() -> None:
    payment = new_payment()
    [change] = payment.changes
    assert change.event_type == "payment.created"
    assert (change.before, change.after, change.version) == (None, S.CREATED, 1)
    assert (change.payment_id, change.merchant_id, change.actor) == (payment.id, "mer_test",
                                                                     "api")
    assert change.event_id.startswith("evt_")


def test_created_payment_has_a_pay_id_and_nothing_refunded() -> None:
    payment = new_payment()
    assert payment.id.startswith("pay_") and len(payment.id) == len("pay_") + 24
    assert payment.amount_refunded == Money(0)


def test_created_payment_timestamps_are_utc_and_equal() -> None:
    payment = new_payment()
    assert payment.created_at.tzinfo == UTC
    assert payment.created_at == payment.updated_at == payment.changes[0].occurred_at


def test_two_created_payments_get_different_ids() -> None:
    assert new_payment().id != new_payment().id


# ---- the transition table ---------------------------------------------------------------------

def test_every_status_has_a_row_in_the_transition_table() -> None:
    assert set(TRANSITIONS) == set(S)


@pytest.mark.parametrize(("before", "after"), ALLOWED)
def test_allowed_transition_moves_the_payment(before: S, after: S) -> None:
    payment = payment_in(before)
    payment.transition(after, actor="test")
    assert payment.status == after
    assert payment.version == 8


@pytest.mark.parametrize(("before", "after"), ALLOWED)
def test_allowed_transition_records_exactly_one_state_change(before: S, after: S) -> None:
    payment = payment_in(before)
    payment.transition(after, actor="worker", details={"why": "test"})
    [change] = payment.changes
    assert (change.before, change.after, change.version) == (before, after, 8)
    assert change.event_type == event_type_for(after) == f"payment.{after.value.lower()}"
    assert change.actor == "worker"
    assert change.details == {"why": "test"}
    assert change.occurred_at == payment.updated_at


@pytest.mark.parametrize(("before", "after"), DISALLOWED)
def test_disallowed_transition_raises_and_changes_nothing(before: S, after: S) -> None:
    payment = payment_in(before)
    payment.failure = Failure("PSP_DECLINED", "declined")
    updated_at = payment.updated_at
    with pytest.raises(IllegalTransition, match=f"from {before.value} to {after.value}"):
        payment.transition(after, actor="test", failure=Failure("X", "y"))
    assert payment.status == before
    assert payment.version == 7
    assert payment.changes == []
    assert payment.failure == Failure("PSP_DECLINED", "declined")
    assert payment.updated_at == updated_at


@pytest.mark.parametrize(("before", "after"), ALLOWED + DISALLOWED)
def test_can_transition_agrees_with_the_table(before: S, after: S) -> None:
    assert can_transition(before, after) == (after in TRANSITIONS[before])


def test_a_status_never_transitions_to_itself_except_partial_refund() -> None:
    assert [s for s in S if s in TRANSITIONS[s]] == [S.PARTIALLY_REFUNDED]


def test_nothing_goes_back_to_created_except_a_released_review() -> None:
    assert [s for s in S if S.CREATED in TRANSITIONS[s]] == [S.IN_REVIEW]


# ---- terminal statuses and late success --------------------------------------------------------

def test_terminal_statuses() -> None:
    assert {S.SUCCEEDED, S.FAILED, S.CANCELLED, S.BLOCKED, S.PARTIALLY_REFUNDED, S.REFUNDED,
            S.EXPIRED} == TERMINAL


def test_in_flight_statuses_are_not_terminal() -> None:
    assert set(S) - TERMINAL == {S.CREATED, S.REQUIRES_ACTION, S.PROCESSING, S.IN_REVIEW}


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_terminal_statuses_only_exit_to_late_success_or_refunds(status: S) -> None:
    assert TRANSITIONS[status] <= {S.SUCCEEDED, S.PARTIALLY_REFUNDED, S.REFUNDED}


@pytest.mark.parametrize("status", [S.FAILED, S.EXPIRED, S.CANCELLED])
def test_late_success_is_allowed_and_clears_the_failure(status: S) -> None:
    payment = payment_in(status)
    payment.failure = Failure("PSP_TIMEOUT", "gave up")
    payment.transition(S.SUCCEEDED, actor="webhook")
    assert payment.status == S.SUCCEEDED
    assert payment.failure is None


@pytest.mark.parametrize("status", [S.FAILED, S.EXPIRED, S.CANCELLED])
def test_late_success_is_the_only_way_out_of_a_failed_payment(status: S) -> None:
    assert TRANSITIONS[status] == {S.SUCCEEDED}


@pytest.mark.parametrize("status", [S.BLOCKED, S.REFUNDED])
def test_blocked_and_refunded_have_no_exits(status: S) -> None:
    assert TRANSITIONS[status] == frozenset()


def test_cancellable_statuses_are_in_flight_and_may_be_cancelled() -> None:
    assert {S.CREATED, S.REQUIRES_ACTION, S.IN_REVIEW} == CANCELLABLE
    assert all(can_transition(s, S.CANCELLED) and s not in TERMINAL for s in CANCELLABLE)


def test_processing_payment_cannot_be_cancelled() -> None:
    with pytest.raises(IllegalTransition):
        payment_in(S.PROCESSING).transition(S.CANCELLED, actor="api")


# ---- failure bookkeeping ----------------------------------------------------------------------

def test_transition_with_a_failure_stores_it() -> None:
    payment = payment_in(S.CREATED)
    payment.transition(S.BLOCKED, actor="fraud",
                       failure=Failure("FRAUD_HIGH_AMOUNT", "Fraud detected: High amount"))
    assert payment.failure == Failure("FRAUD_HIGH_AMOUNT", "Fraud detected: High amount")


def test_released_review_goes_back_to_created_without_a_failure() -> None:
    payment = payment_in(S.IN_REVIEW)
    payment.failure = Failure("FRAUD_REVIEW", "held for review")
    payment.transition(S.CREATED, actor="reviewer")
    assert payment.failure is None


def test_failure_is_kept_when_moving_to_another_unsuccessful_status_without_one() -> None:
    payment = payment_in(S.PROCESSING)
    payment.failure = Failure("PSP_DECLINED", "declined")
    payment.transition(S.FAILED, actor="worker")
    assert payment.failure == Failure("PSP_DECLINED", "declined")


# ---- notes ------------------------------------------------------------------------------------

def test_a_note_is_recorded_without_bumping_the_version_or_status() -> None:
    payment = payment_in(S.SUCCEEDED)
    payment.record_note("webhook.duplicate", actor="webhook", details={"delivery": "d1"})
    [note] = payment.changes
    assert (note.event_type, note.before, note.after) == ("webhook.duplicate", S.SUCCEEDED,
                                                           S.SUCCEEDED)
    assert note.version == payment.version == 7
    assert note.details == {"delivery": "d1"}


# ---- apply_psp_status -------------------------------------------------------------------------

@pytest.mark.parametrize(("report", "expected"), [
    ("REQUIRES_ACTION", S.REQUIRES_ACTION),
    ("PENDING", S.PROCESSING),
    ("SUCCEEDED", S.SUCCEEDED),
    ("FAILED", S.FAILED),
])
def test_psp_report_moves_a_created_payment(report: str, expected: S) -> None:
    payment = payment_in(S.CREATED)
    assert apply_psp_status(payment, report, actor="psp") is True
    assert payment.status == expected
    assert payment.version == 8


def test_psp_expiry_moves_a_payment_awaiting_the_customer_to_expired() -> None:
    payment = payment_in(S.REQUIRES_ACTION)
    assert apply_psp_status(payment, "EXPIRED", actor="psp") is True
    assert payment.status == S.EXPIRED


def test_psp_failure_carries_its_failure() -> None:
    payment = payment_in(S.PROCESSING)
    apply_psp_status(payment, "FAILED", actor="psp", failure=Failure("PSP_DECLINED", "no funds"))
    assert payment.failure == Failure("PSP_DECLINED", "no funds")


def test_psp_report_of_the_current_status_changes_nothing() -> None:
    payment = payment_in(S.SUCCEEDED)
    assert apply_psp_status(payment, "SUCCEEDED", actor="psp") is False
    assert payment.version == 7
    assert payment.changes == []


def test_backwards_psp_report_is_ignored() -> None:
    payment = payment_in(S.SUCCEEDED)
    assert apply_psp_status(payment, "FAILED", actor="webhook") is False
    assert payment.status == S.SUCCEEDED
    assert payment.version == 7


def test_backwards_psp_report_is_recorded_as_an_ignored_note() -> None:
    payment = payment_in(S.SUCCEEDED)
    apply_psp_status(payment, "FAILED", actor="webhook", details={"delivery": "d9"})
    [note] = payment.changes
    assert note.event_type == "psp_status.ignored"
    assert (note.before, note.after, note.version) == (S.SUCCEEDED, S.SUCCEEDED, 7)
    assert note.details == {"reported": "FAILED", "current": "SUCCEEDED", "delivery": "d9"}


@pytest.mark.parametrize("status", [S.BLOCKED, S.REFUNDED, S.PARTIALLY_REFUNDED])
def test_psp_success_for_a_blocked_or_refunded_payment_is_ignored(status: S) -> None:
    payment = payment_in(status)
    assert apply_psp_status(payment, "SUCCEEDED", actor="webhook") is False
    assert payment.status == status
    assert [c.event_type for c in payment.changes] == ["psp_status.ignored"]


def test_still_pending_while_the_customer_is_on_the_psp_page_changes_nothing() -> None:
    payment = payment_in(S.REQUIRES_ACTION)
    assert apply_psp_status(payment, "PENDING", actor="sync") is False
    assert payment.status == S.REQUIRES_ACTION
    assert payment.changes == []


@pytest.mark.parametrize("status", [S.FAILED, S.EXPIRED])
def test_late_psp_success_is_applied(status: S) -> None:
    payment = payment_in(status)
    assert apply_psp_status(payment, "SUCCEEDED", actor="webhook") is True
    assert payment.status == S.SUCCEEDED


def test_unknown_psp_status_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        apply_psp_status(payment_in(S.CREATED), "AUTHORIZED", actor="psp")


# ---- refunds ----------------------------------------------------------------------------------

def test_refundable_is_the_whole_amount_before_any_refund() -> None:
    assert payment_in(S.SUCCEEDED).refundable() == Money(100_000)


def test_refundable_subtracts_refunded_and_pending_but_not_failed_refunds() -> None:
    payment = payment_in(S.SUCCEEDED)
    payment.amount_refunded = Money(10_000)
    refund_of(payment, 20_000, RefundStatus.PENDING)
    refund_of(payment, 30_000, RefundStatus.FAILED)
    assert payment.refundable() == Money(70_000)


def test_refunded_is_zero_when_never_set() -> None:
    payment = payment_in(S.SUCCEEDED)
    payment.amount_refunded = None
    assert payment.refunded == Money(0)


def test_partial_refund_moves_to_partially_refunded() -> None:
    payment = payment_in(S.SUCCEEDED)
    payment.apply_refund_success(succeeded_refund(payment, 40_000), actor="worker")
    assert payment.status == S.PARTIALLY_REFUNDED
    assert payment.amount_refunded == Money(40_000)
    assert payment.refundable() == Money(60_000)


def test_partial_then_remaining_refund_moves_to_refunded() -> None:
    payment = payment_in(S.SUCCEEDED)
    payment.apply_refund_success(succeeded_refund(payment, 40_000, "rfnd_a"), actor="worker")
    payment.apply_refund_success(succeeded_refund(payment, 60_000, "rfnd_b"), actor="worker")
    assert payment.status == S.REFUNDED
    assert payment.amount_refunded == Money(100_000)
    assert payment.refundable() == Money(0)
    assert [(c.before, c.after) for c in payment.changes] == [
        (S.SUCCEEDED, S.PARTIALLY_REFUNDED), (S.PARTIALLY_REFUNDED, S.REFUNDED)]


def test_second_partial_refund_stays_partially_refunded_and_bumps_the_version() -> None:
    payment = payment_in(S.SUCCEEDED)
    payment.apply_refund_success(succeeded_refund(payment, 10_000, "rfnd_a"), actor="worker")
    payment.apply_refund_success(succeeded_refund(payment, 10_000, "rfnd_b"), actor="worker")
    assert payment.status == S.PARTIALLY_REFUNDED
    assert payment.version == 9
    assert payment.amount_refunded == Money(20_000)


def test_full_refund_at_once_moves_straight_to_refunded() -> None:
    payment = payment_in(S.SUCCEEDED)
    payment.apply_refund_success(succeeded_refund(payment, 100_000), actor="worker")
    assert payment.status == S.REFUNDED


def test_refund_change_names_the_refund_and_its_amount() -> None:
    payment = payment_in(S.SUCCEEDED)
    payment.apply_refund_success(succeeded_refund(payment, 40_000, "rfnd_x"), actor="worker")
    [change] = payment.changes
    assert change.event_type == "payment.partially_refunded"
    assert change.details == {"refund_id": "rfnd_x", "refund_amount_minor": 40_000}


def test_refund_success_for_a_fully_refunded_payment_is_illegal() -> None:
    payment = payment_in(S.REFUNDED)
    with pytest.raises(IllegalTransition):
        payment.apply_refund_success(succeeded_refund(payment, 1), actor="worker")


@pytest.mark.parametrize("status", [S.FAILED, S.REFUNDED])
def test_illegal_refund_success_leaves_the_refunded_amount_unchanged(status: S) -> None:
    payment = payment_in(status)
    with pytest.raises(IllegalTransition):
        payment.apply_refund_success(succeeded_refund(payment, 100), actor="worker")
    assert payment.amount_refunded == Money(0)


# ---- attempts and snapshots -------------------------------------------------------------------

def test_attempts_are_numbered_from_one_and_set_the_connector() -> None:
    payment = new_payment()
    first = payment.new_attempt("simulator_premium")
    payment.connector_payment_id = "psp_1"
    second = payment.new_attempt("simulator_standard")
    assert (first.number, second.number) == (1, 2)
    assert payment.current_attempt is second
    assert payment.connector == "simulator_standard"
    assert payment.connector_payment_id == ""


def test_snapshot_has_no_pending_changes_and_its_own_lists() -> None:
    payment = new_payment()
    payment.new_attempt("simulator_premium")
    snapshot = payment.snapshot()
    assert snapshot.changes == []
    assert len(payment.changes) == 1
    payment.new_attempt("simulator_standard")
    assert len(snapshot.attempts) == 1


# ---- properties -------------------------------------------------------------------------------

def real_transitions(payment: Payment) -> list[tuple[S | None, S]]:
    return [(c.before, c.after) for c in payment.changes
            if c.event_type.startswith("payment.") and c.before is not None]


@given(st.lists(st.sampled_from(PSP_REPORTS), max_size=30))
def test_version_counts_real_transitions_under_any_psp_reports(reports: list[str]) -> None:
    payment = new_payment()
    applied = sum(apply_psp_status(payment, report, actor="psp") for report in reports)
    assert payment.version == 1 + applied == 1 + len(real_transitions(payment))


@given(st.lists(st.sampled_from(PSP_REPORTS), max_size=30))
def test_psp_reports_only_move_along_edges_in_the_table(reports: list[str]) -> None:
    payment = new_payment()
    for report in reports:
        before = payment.status
        apply_psp_status(payment, report, actor="psp")
        assert payment.status == before or payment.status in TRANSITIONS[before]


class PaymentLifecycle(RuleBasedStateMachine):
    """PSP reports, cancels, reviews and refunds in any order never break the state machine."""

    def __init__(self) -> None:
        super().__init__()
        self.payment = new_payment(amount_minor=10_000)
        self.applied = 0
        self.path: list[S] = [S.CREATED]

    def _moved(self) -> None:
        self.applied += 1
        self.path.append(self.payment.status)

    @rule(report=st.sampled_from(PSP_REPORTS))
    def psp_reports(self, report: str) -> None:
        if apply_psp_status(self.payment, report, actor="psp"):
            self._moved()

    @rule(status=st.sampled_from(list(S)))
    def someone_forces_a_status(self, status: S) -> None:
        before = (self.payment.status, self.payment.version, len(self.payment.changes))
        try:
            self.payment.transition(status, actor="ops")
        except IllegalTransition:
            assert (self.payment.status, self.payment.version,
                    len(self.payment.changes)) == before
        else:
            self._moved()

    @rule(amount=st.integers(min_value=1, max_value=10_000))
    def refund_succeeds(self, amount: int) -> None:
        if self.payment.status not in (S.SUCCEEDED, S.PARTIALLY_REFUNDED):
            return
        amount = min(amount, self.payment.refundable().amount_minor)
        if amount == 0:
            return
        self.payment.apply_refund_success(succeeded_refund(self.payment, amount), actor="w")
        self._moved()

    @invariant()
    def version_is_one_plus_real_transitions(self) -> None:
        assert self.payment.version == 1 + self.applied
        assert self.payment.version == 1 + len(real_transitions(self.payment))

    @invariant()
    def every_step_is_an_edge_of_the_table(self) -> None:
        for before, after in zip(self.path, self.path[1:], strict=False):
            assert after in TRANSITIONS[before]
        for recorded_before, recorded_after in real_transitions(self.payment):
            assert recorded_before is not None
            assert recorded_after in TRANSITIONS[recorded_before]

    @invariant()
    def changes_are_versioned_in_order(self) -> None:
        versions = [c.version for c in self.payment.changes]
        assert versions == sorted(versions)
        assert self.payment.changes[-1].version == self.payment.version

    @invariant()
    def never_refunds_more_than_captured(self) -> None:
        assert 0 <= self.payment.refunded.amount_minor <= self.payment.amount.amount_minor


TestPaymentLifecycle = PaymentLifecycle.TestCase
TestPaymentLifecycle.settings = settings(max_examples=200, stateful_step_count=30,
                                         deadline=None)
