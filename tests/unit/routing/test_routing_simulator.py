"""The routing simulator: deterministic, and success-rate routing beats static priority."""

from __future__ import annotations

import pytest

from server.tools.simulate_routing import SimulationResult, format_report, main, run_simulation


@pytest.fixture(scope="module")
def result() -> SimulationResult:
    return run_simulation(4_000, seed=3)


def test_the_same_seed_gives_the_same_figures(result: SimulationResult) -> None:
    assert run_simulation(4_000, seed=3).as_dict() == result.as_dict()


def test_success_rate_routing_beats_static_and_trails_the_oracle(
    result: SimulationResult,
) -> None:
    figures = result.as_dict()
    assert figures["success_rate"]["success_rate"] > figures["static"]["success_rate"]
    assert figures["oracle"]["expected_first_attempt_regret"] == 0
    assert (figures["success_rate"]["expected_first_attempt_regret"]
            < figures["static"]["expected_first_attempt_regret"])


def test_the_outage_is_detected_and_static_routing_never_detects_it(
    result: SimulationResult,
) -> None:
    assert result.detection("static") is None
    detected = result.detection("success_rate")
    assert detected is not None and detected < 50


def test_timeouts_are_synced_never_charged_twice(result: SimulationResult) -> None:
    for stats in result.stats.values():
        assert stats.successes <= 4_000
        assert stats.attempts >= 4_000
    assert result.stats["static"].syncs > result.stats["success_rate"].syncs


def test_report_and_cli(
    capsys: pytest.CaptureFixture[str], result: SimulationResult,
) -> None:
    report = format_report(result)
    assert "static" in report and "oracle" in report and "detect" in report
    assert main(["--payments", "1000", "--seed", "2", "--json"]) == 0
    assert '"success_rate"' in capsys.readouterr().out
