"""Exposure metrics against hand-computed values on analytic curves, and the kernel against them."""

import math

import numpy as np
import pytest

import csfpk
from csfpk import metrics


def test_exponential_decay():
    k = 0.1
    t = np.arange(0.0, 49.0)
    c = np.exp(-k * t)
    m = metrics.exposure(c, t, target=0.5)
    assert m["cmax"] == 1.0 and m["tmax"] == 0.0
    # trapezoid of exp(-kt) with step h: sum h/2 (c_i + c_i+1), closed form of the geometric series
    h = 1.0
    trap = h / 2 * (1 + math.exp(-k * h)) * (1 - math.exp(-k * 48)) / (1 - math.exp(-k * h))
    assert m["auc"] == pytest.approx(trap, rel=1e-12)
    assert m["auc"] == pytest.approx((1 - math.exp(-4.8)) / k, rel=1e-3)  # grid error O(h²k²/12)
    assert m["cavg"] == pytest.approx(trap / 48, rel=1e-12)
    # crossing between t = 6 and 7 by linear interpolation
    c6, c7 = math.exp(-0.6), math.exp(-0.7)
    assert m["time_above"] == pytest.approx(6 + (c6 - 0.5) / (c6 - c7), rel=1e-12)
    assert m["time_above"] == pytest.approx(math.log(2) / k, rel=2e-3)
    assert m["pct_above"] == pytest.approx(100 * m["time_above"] / 48, rel=1e-12)
    assert m["trough"] == c[-1]


def test_sine_and_window():
    t = np.linspace(0, 24, 24 * 60 + 1)
    c = 2 + np.sin(2 * np.pi * t / 24)
    m = metrics.exposure(c, t, target=2.0)
    assert m["cavg"] == pytest.approx(2.0, abs=1e-9)
    assert m["time_above"] == pytest.approx(12.0, abs=1e-6)
    assert m["tmax"] == pytest.approx(6.0)
    w = metrics.exposure(c, t, target=2.0, window=(0, 12))
    assert w["auc"] == pytest.approx(2 * 12 + 24 / np.pi, rel=1e-6)  # ∫0..12 sin(2πt/24) dt = 24/π
    assert w["cmax"] == pytest.approx(3.0)
    assert w["time_above"] == pytest.approx(12.0, abs=1e-6)


def test_step_and_trough():
    t = np.arange(0.0, 11.0)
    c = np.where(t < 5, 4.0, 1.0)
    m = metrics.exposure(c, t, target=2.0, dose_times=[0.0, 8.0])
    # linear interpolation between (4, 4) and (5, 1) crosses 2 at t = 4 + 2/3
    assert m["time_above"] == pytest.approx(4 + 2 / 3)
    assert m["auc"] == pytest.approx(4 * 4 + 2.5 + 5 * 1)
    assert m["trough"] == 1.0  # pre-dose sample at the last dose (t = 8)
    assert metrics.trough_index(t, [0.0, 8.0]) == 8
    assert metrics.trough_index(t, [0.0]) == 10


def test_summaries():
    v = np.arange(1.0, 102.0)
    assert metrics.summarize(v) == (6.0, 51.0, 96.0)
    assert metrics.pta(v, 51) == pytest.approx(51 / 101)
    assert metrics.pta([np.nan, 1.0, 3.0], 2) == 0.5


def test_kernel_metrics_match_numpy_reference():
    from csfpk.batch import Scenario, run_chunk
    from csfpk.physiology import load_physiology
    from csfpk.population import subject_inputs

    drug = csfpk.load_drug("osimertinib")
    reg = csfpk.Regimen.every(amt=160, ii=24, n=10)
    pop = csfpk.Population(n=20, seed=2, penetration="range")
    scn = Scenario(drug, reg, pop, t_end=300.0, dt=1.0, window=(48.0, 290.0), metrics="grid")  # the grid kernel
    frame, _ = run_chunk(scn, 0, 6)
    p = pop.sample(drug, 0, 6)
    for i in range(6):
        drug_i, phys_i = subject_inputs(drug, load_physiology("adult"), p, i)
        res = csfpk.simulate(drug_i, reg, t_end=300, dt=1, physiology=phys_i)
        ref = metrics.of_result(res, target_nM=drug.potency_target_nM, window=(48.0, 290.0))
        for o, vals in ref.items():
            for name, v in vals.items():
                assert frame[f"{o}_{name}_win"][i] == pytest.approx(v, rel=1e-10, abs=1e-12), (o, name)


def test_tmax_is_the_first_time_at_the_maximum():
    """A plateau (an infusion at steady state, a clipped curve) has many samples at Cmax: Tmax is the first,
    in the whole span and in a window that starts on the plateau."""
    t = np.arange(0.0, 10.0)
    c = np.array([0.0, 1.0, 3.0, 3.0, 3.0, 2.0, 3.0, 1.0, 0.0, 0.0])
    assert metrics.tmax(c, t) == 2.0
    assert metrics.exposure(c, t)["tmax"] == 2.0
    assert metrics.tmax(c, t, window=(3.0, 9.0)) == 3.0
    both = metrics.tmax(np.vstack([c, c[::-1]]), t)  # along the last axis, per row
    np.testing.assert_array_equal(both, [2.0, 3.0])
