"""Fault patches and the per-request fault decision (pure logic)."""

import pytest

from zeta_testbed.sim.faults import Action, Faults, FaultsError

pytestmark = pytest.mark.unit


class TestPatching:
    def test_a_patch_changes_only_the_fields_it_names(self):
        faults = Faults(slowdown=2.0, hang=True)
        patched = faults.patched({"error_rate": 0.25})
        assert patched == Faults(slowdown=2.0, hang=True, error_rate=0.25)

    def test_integers_are_accepted_as_numbers(self):
        assert Faults().patched({"slowdown": 3, "error_rate": 1}).slowdown == 3.0

    def test_round_trips_through_json(self):
        faults = Faults(slowdown=1.5, error_rate=0.1, hang=False, reset_connections=True)
        assert Faults().patched(faults.to_json()) == faults

    @pytest.mark.parametrize(
        ("patch", "field"),
        [
            ({"slowdown": 0.5}, "slowdown"),
            ({"slowdown": "2"}, "slowdown"),
            ({"slowdown": float("inf")}, "slowdown"),
            ({"error_rate": 1.5}, "error_rate"),
            ({"error_rate": -0.1}, "error_rate"),
            ({"error_rate": True}, "error_rate"),
            ({"hang": 1}, "hang"),
            ({"reset_connections": "yes"}, "reset_connections"),
            ({"crash": True}, "crash"),
        ],
    )
    def test_bad_patches_name_the_field(self, patch, field):
        with pytest.raises(FaultsError) as caught:
            Faults().patched(patch)
        assert caught.value.field == field
        assert field in str(caught.value)


class TestDecision:
    def test_healthy_faults_let_everything_proceed(self):
        assert {Faults().decide(draw) for draw in (0.0, 0.5, 0.999)} == {Action.PROCEED}

    def test_error_rate_is_the_fraction_of_draws_below_it(self):
        faults = Faults(error_rate=0.3)
        assert faults.decide(0.29) is Action.ERROR
        assert faults.decide(0.30) is Action.PROCEED

    def test_the_most_abrupt_fault_wins(self):
        everything = Faults(error_rate=1.0, hang=True, reset_connections=True)
        assert everything.decide(0.0) is Action.RESET
        assert Faults(error_rate=1.0, hang=True).decide(0.0) is Action.ERROR
        assert Faults(error_rate=0.5, hang=True).decide(0.9) is Action.HANG
