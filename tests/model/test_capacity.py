"""Replicas needed for a demand, and the online correction of the profile."""

from __future__ import annotations

import math

import pytest

from scaler.config.profiles import default_profile
from scaler.model.capacity import CapacityModel

PROFILE = default_profile()


def test_no_demand_needs_no_replica():
    assert CapacityModel(PROFILE).replicas_for(0.0, 600, 200) == 0


def test_need_grows_with_demand_and_never_at_full_utilisation():
    model = CapacityModel(PROFILE)
    mu = model.per_replica_rate(600, 200)
    needs = [model.replicas_for(rate, 600, 200) for rate in (10, 50, 100, 200, 400, 800)]
    assert needs == sorted(needs) and needs[0] >= 1
    for k in (1, 4, 10):
        assert model.replicas_for(k * mu, 600, 200) > k  # exactly saturated is overloaded


def test_a_tighter_slo_needs_more_replicas():
    loose = CapacityModel(PROFILE, slo_ttft_s=5.0).replicas_for(300, 600, 200)
    tight = CapacityModel(PROFILE, slo_ttft_s=0.3).replicas_for(300, 600, 200)
    assert tight > loose


def test_observed_saturated_throughput_corrects_the_profile():
    model = CapacityModel(PROFILE)
    before = model.replicas_for(300, 600, 200)
    mu = PROFILE.saturated_request_rate(600, 200)
    for _ in range(100):
        model.observe_saturated(2 * mu, 600, 200)  # pods really serve twice the profile
    assert model.correction == pytest.approx(2.0, rel=0.01)
    assert model.per_replica_rate(600, 200) == pytest.approx(2 * mu, rel=0.01)
    assert model.replicas_for(300, 600, 200) < before


def test_two_agreeing_samples_correct_the_profile_and_one_wild_sample_does_not():
    """A pod far slower than its profile is learnt from two independent windows; one noisy
    window, first or later, is outvoted."""
    mu = PROFILE.saturated_request_rate(1000, 200)
    model = CapacityModel(PROFILE)
    model.observe_saturated(0.3 * mu, 1000, 200)
    assert model.correction == 1.0  # one sample alone never moves it
    model.observe_saturated(0.3 * mu, 1000, 200)
    assert model.correction == pytest.approx(0.3)
    for wild in (4.0, 0.05):
        model.observe_saturated(wild * mu, 1000, 200)
        assert model.correction == pytest.approx(0.3)
        model.observe_saturated(0.3 * mu, 1000, 200)
    first_wild = CapacityModel(PROFILE)
    first_wild.observe_saturated(4 * mu, 1000, 200)
    first_wild.observe_saturated(0.3 * mu, 1000, 200)
    assert first_wild.correction == 1.0  # the profile still has the casting vote
    first_wild.observe_saturated(0.3 * mu, 1000, 200)
    assert first_wild.correction == pytest.approx(0.3)


def test_a_profile_ten_times_too_fast_is_corrected():
    """Another model under the default profile: down to a tenth, not stuck at a quarter."""
    mu = PROFILE.saturated_request_rate(1000, 200)
    model = CapacityModel(PROFILE)
    for _ in range(3):
        model.observe_saturated(0.12 * mu, 1000, 200)
    assert model.correction == pytest.approx(0.12)
    with pytest.raises(ValueError, match="correction_samples must be >= 3"):
        CapacityModel(PROFILE, correction_samples=2)


def test_correction_is_bounded_and_ignores_empty_samples():
    model = CapacityModel(PROFILE, correction_bounds=(0.5, 2.0))
    model.observe_saturated(0.0, 600, 200)
    model.observe_saturated(math.inf, 600, 200)
    assert model.correction == 1.0
    for _ in range(200):
        model.observe_saturated(1e6, 600, 200)
    assert model.correction == pytest.approx(2.0, rel=1e-3)


def test_an_impossible_slo_is_a_clear_error():
    with pytest.raises(ValueError, match="no fleet meets the SLO: one 8000-token prompt"):
        CapacityModel(PROFILE, slo_ttft_s=0.001).replicas_for(10, 8000, 200)
