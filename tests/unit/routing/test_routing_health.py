"""Circuit breaker transitions: open, cool-down, half-open probes, recovery, overrides."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from server.domain.routing.health import (
    Availability,
    CircuitState,
    HealthConfig,
    HealthState,
    Outcome,
    Override,
    admit,
    availability,
    record_outcome,
    set_override,
)

CONFIG = HealthConfig(
    failure_threshold=3, error_rate_threshold=0.5, error_rate_min_volume=10,
    error_window_seconds=60, cooldown_seconds=30, half_open_probes=2, probe_timeout_seconds=20,
)


def run(outcomes: list[Outcome], start: float = 0.0) -> HealthState:
    state = HealthState()
    for i, outcome in enumerate(outcomes):
        state = record_outcome(state, outcome, start + i, CONFIG)
    return state


def opened(at: float = 100.0) -> HealthState:
    return run([Outcome.FAILURE] * 3, start=at - 2)


def test_consecutive_failures_open_the_circuit() -> None:
    state = run([Outcome.FAILURE, Outcome.TIMEOUT, Outcome.FAILURE])
    assert state.state is CircuitState.OPEN
    assert state.reason == "3 consecutive failures"


def test_a_success_resets_the_consecutive_count() -> None:
    state = run([Outcome.FAILURE, Outcome.FAILURE, Outcome.SUCCESS, Outcome.FAILURE])
    assert state.state is CircuitState.CLOSED
    assert state.consecutive_failures == 1


def test_declines_do_not_count_against_the_account() -> None:
    state = run([Outcome.DECLINED] * 50)
    assert state.state is CircuitState.CLOSED
    assert state.window_failures == 0


def test_error_rate_above_threshold_over_minimum_volume_opens() -> None:
    pattern = [Outcome.FAILURE, Outcome.FAILURE, Outcome.SUCCESS] * 4
    state = run(pattern)
    assert state.state is CircuitState.OPEN
    assert state.reason.startswith("error rate")


def test_error_rate_below_minimum_volume_does_not_open() -> None:
    state = run([Outcome.FAILURE, Outcome.FAILURE, Outcome.SUCCESS] * 3)
    assert state.state is CircuitState.CLOSED


def test_the_error_window_resets_after_its_duration() -> None:
    state = HealthState()
    for i in range(9):
        outcome = Outcome.FAILURE if i % 3 != 2 else Outcome.SUCCESS
        state = record_outcome(state, outcome, float(i), CONFIG)
    state = record_outcome(state, Outcome.SUCCESS, 200.0, CONFIG)
    assert state.window_calls == 1


def test_open_circuit_is_unavailable_during_the_cool_down() -> None:
    state = opened(100.0)
    assert availability(state, 129.0, CONFIG) == (Availability.UNAVAILABLE,
                                                   "unhealthy: circuit open")
    assert not admit(state, 129.0, CONFIG).admitted


def test_after_cool_down_a_limited_number_of_probes_pass() -> None:
    state = opened(100.0)
    assert availability(state, 130.0, CONFIG)[0] is Availability.PROBE
    first = admit(state, 130.0, CONFIG)
    second = admit(first.state, 130.5, CONFIG)
    third = admit(second.state, 131.0, CONFIG)
    assert first.admitted and first.probe
    assert first.state.state is CircuitState.HALF_OPEN
    assert second.admitted and second.probe
    assert not third.admitted
    assert third.note == "unhealthy: half-open, probes in flight"


def test_a_successful_probe_closes_the_circuit() -> None:
    probing = admit(opened(100.0), 131.0, CONFIG).state
    closed = record_outcome(probing, Outcome.SUCCESS, 132.0, CONFIG)
    assert closed.state is CircuitState.CLOSED
    assert closed.probes_in_flight == 0
    assert availability(closed, 132.0, CONFIG)[0] is Availability.AVAILABLE


def test_a_declined_probe_also_closes_the_circuit() -> None:
    probing = admit(opened(100.0), 131.0, CONFIG).state
    assert record_outcome(probing, Outcome.DECLINED, 132.0, CONFIG).state is CircuitState.CLOSED


def test_a_failed_probe_reopens_and_restarts_the_cool_down() -> None:
    probing = admit(opened(100.0), 131.0, CONFIG).state
    reopened = record_outcome(probing, Outcome.TIMEOUT, 135.0, CONFIG)
    assert reopened.state is CircuitState.OPEN
    assert reopened.opened_at == 135.0
    assert reopened.reason == "probe timeout"
    assert availability(reopened, 160.0, CONFIG)[0] is Availability.UNAVAILABLE
    assert availability(reopened, 165.0, CONFIG)[0] is Availability.PROBE


def test_a_lost_probe_frees_its_slot_after_the_probe_timeout() -> None:
    state = opened(100.0)
    state = admit(state, 130.0, CONFIG).state
    state = admit(state, 130.0, CONFIG).state
    assert not admit(state, 140.0, CONFIG).admitted
    assert admit(state, 150.0, CONFIG).admitted


def test_stragglers_do_not_change_an_open_circuit() -> None:
    state = opened(100.0)
    assert record_outcome(state, Outcome.SUCCESS, 101.0, CONFIG) == state


def test_outcomes_after_the_cool_down_count_as_probes_even_without_admit() -> None:
    # A caller that never claims probe slots must not leave the circuit stuck open.
    state = opened(100.0)
    assert record_outcome(state, Outcome.SUCCESS, 131.0, CONFIG).state is CircuitState.CLOSED
    reopened = record_outcome(state, Outcome.FAILURE, 131.0, CONFIG)
    assert reopened.state is CircuitState.OPEN
    assert reopened.opened_at == 131.0


def test_recovery_cycle_end_to_end() -> None:
    state = opened(100.0)
    admission = admit(state, 140.0, CONFIG)
    state = record_outcome(admission.state, Outcome.SUCCESS, 141.0, CONFIG)
    assert state.state is CircuitState.CLOSED
    state = record_outcome(state, Outcome.FAILURE, 142.0, CONFIG)
    assert state.state is CircuitState.CLOSED
    assert state.consecutive_failures == 1


def test_forced_down_wins_over_a_closed_circuit() -> None:
    state = set_override(HealthState(), Override.FORCED_DOWN)
    assert availability(state, 0.0, CONFIG) == (Availability.UNAVAILABLE,
                                                "unhealthy: forced down")
    assert not admit(state, 0.0, CONFIG).admitted


def test_forced_up_wins_over_an_open_circuit_and_clearing_restores_it() -> None:
    state = set_override(opened(100.0), Override.FORCED_UP)
    assert availability(state, 101.0, CONFIG)[0] is Availability.AVAILABLE
    cleared = set_override(state, Override.NONE)
    assert availability(cleared, 101.0, CONFIG)[0] is Availability.UNAVAILABLE


events = st.lists(
    st.tuples(
        st.sampled_from(["admit", *[o.value for o in Outcome]]),
        st.floats(min_value=0.0, max_value=40.0),
    ),
    max_size=80,
)


@given(events)
def test_circuit_invariants_hold_for_any_sequence(sequence: list[tuple[str, float]]) -> None:
    state = HealthState()
    now = 0.0
    for event, dt in sequence:
        now += dt
        if event == "admit":
            admission = admit(state, now, CONFIG)
            if admission.probe:
                assert admission.state.state is CircuitState.HALF_OPEN
            state = admission.state
        else:
            before = state
            state = record_outcome(state, Outcome(event), now, CONFIG)
            probing = before.state is CircuitState.HALF_OPEN or (
                before.state is CircuitState.OPEN
                and now - before.opened_at >= CONFIG.cooldown_seconds
            )
            if probing:
                assert state.state is (
                    CircuitState.OPEN if Outcome(event).counts_as_failure
                    else CircuitState.CLOSED
                )
        assert 0 <= state.probes_in_flight <= CONFIG.half_open_probes
        assert state.consecutive_failures < CONFIG.failure_threshold
        if state.state is CircuitState.CLOSED:
            assert state.probes_in_flight == 0
        assert state.window_failures <= state.window_calls
