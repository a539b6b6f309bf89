"""The benchmark's verdict: the floor is called a ceiling only when it saturated the machine."""

from __future__ import annotations

from typing import Any

from server.tools.bench import _verdict

CONDITIONS = {"cpus": 2}


def floor(rate: float, busy: float) -> dict[str, Any]:
    return {"per_second": rate, "cpu_cores": {"machine": busy}}


def test_a_saturated_floor_below_the_target_puts_it_out_of_reach() -> None:
    verdict = _verdict(185.0, CONDITIONS, floor(484.0, 1.98))
    assert "below the seed's 500" in verdict
    assert "out of this stack's reach" in verdict


def test_a_floor_that_left_the_machine_idle_is_not_called_a_ceiling() -> None:
    verdict = _verdict(144.0, CONDITIONS, floor(254.0, 1.10))
    assert "out of this stack's reach" not in verdict
    assert "not saturated (1.10 of 2 CPUs busy)" in verdict


def test_a_saturated_floor_above_the_target_shows_triveni_s_own_share() -> None:
    verdict = _verdict(200.0, CONDITIONS, floor(800.0, 1.95))
    assert "Triveni's own work costs the other 75%" in verdict


def test_meeting_the_target_needs_no_floor() -> None:
    assert _verdict(600.0, CONDITIONS, {}).startswith("600 payments/s: 1.2x the seed's")
