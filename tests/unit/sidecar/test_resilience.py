"""Retry budget, outlier ejection (growing, capped at half a model), warm-up."""

import pytest

from zeta_api import Outlier
from zeta_sidecar.pods import warmup_factor
from zeta_sidecar.resilience import Health, HealthState, RetryBudget, may_eject

OUTLIER = Outlier(consecutive_failures=3, base_ejection=10.0, max_ejection=25.0)


def test_retry_budget_allows_about_a_fifth_of_requests() -> None:
    budget = RetryBudget(budget=0.2, min_per_second=0.0)
    allowed = 0
    for i in range(1000):
        now = i * 0.005  # 200 requests per second, within the 10 s window
        budget.request(now)
        allowed += budget.try_retry(now)
    assert allowed == pytest.approx(200, abs=2)


def test_retry_budget_has_a_floor_for_quiet_gateways() -> None:
    budget = RetryBudget(budget=0.2, min_per_second=1.0)
    assert sum(budget.try_retry(0.0) for _ in range(20)) == 10  # 1/s over the 10 s window


def test_retry_budget_forgets_old_requests() -> None:
    budget = RetryBudget(budget=0.5, min_per_second=0.0)
    for _ in range(100):
        budget.request(0.0)
    assert budget.try_retry(1.0)
    assert not budget.try_retry(20.0)  # the requests are out of the window


def test_consecutive_failures_eject_for_a_growing_time() -> None:
    h = Health()
    assert not h.failure(OUTLIER, 0.0, may_eject=True)
    assert not h.failure(OUTLIER, 0.0, may_eject=True)
    assert h.failure(OUTLIER, 0.0, may_eject=True)
    assert h.state is HealthState.EJECTED
    assert h.ejected_until == 10.0
    assert not h.due_for_probe(9.0)
    assert h.due_for_probe(10.0)
    h.probed(False, OUTLIER, 10.0)  # still down: ejected again, twice as long
    assert h.ejected_until == 30.0
    assert h.due_for_probe(30.0)
    h.probed(False, OUTLIER, 30.0)
    assert h.ejected_until == 55.0  # capped at max_ejection
    assert h.due_for_probe(55.0)
    h.probed(True, OUTLIER, 55.0)
    assert h.state is HealthState.PROBATION
    assert h.serving
    assert h.failure(OUTLIER, 56.0, may_eject=True)  # on probation one failure is enough


def test_success_resets_the_count_and_ends_probation() -> None:
    h = Health(state=HealthState.PROBATION, consecutive=2)
    h.success()
    assert (h.state, h.consecutive) == (HealthState.HEALTHY, 0)


def test_never_more_than_half_of_a_models_pods() -> None:
    pods = [Health() for _ in range(4)]
    ejected = 0
    for h in pods:
        for _ in range(3):
            ejected += h.failure(OUTLIER, 0.0, may_eject=may_eject(pods, OUTLIER))
    assert ejected == 2
    assert sum(not h.serving for h in pods) == 2


def test_a_models_only_pod_is_never_ejected() -> None:
    assert not may_eject([Health()], OUTLIER)


def test_warmup_ramps_from_a_tenth_to_full() -> None:
    assert warmup_factor(0.0, 30.0) == pytest.approx(0.1)
    assert warmup_factor(15.0, 30.0) == pytest.approx(0.55)
    assert warmup_factor(30.0, 30.0) == 1.0
    assert warmup_factor(float("inf"), 30.0) == 1.0
    assert warmup_factor(0.0, 0.0) == 1.0
