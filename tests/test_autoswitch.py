"""Method 'switching' (csfpk._kernels.autoswitch, the ``auto`` choice for nonlinear models): an explicit pair
with Hairer's stiffness test handing over to Rodas4 while the problem is stiff, and back (issue 12, item 3).

Oracles: scipy's Radau at rtol 1e-12, the explicit kernels themselves on problems that are not stiff (bit
for bit), and mass balance."""

import numpy as np
import pytest

import csfpk
from csfpk._kernels import adaptive, codes
from csfpk._kernels.autoswitch import auto_segment
from csfpk._kernels.dopri5 import dopri5_segment
from csfpk._kernels.rosenbrock import _bound_spectral_radius, rodas_segment
from csfpk.simulation import choose_method
from oracles import radau_segment
from test_kernels_adaptive import CENTRAL, assert_rel, make_nl, pk_matrix, run

RTOLS = [1e-6, 1e-8]


def run_auto(t0, t1, x0, K, r, nl, rtol, atol=1e-12, tobs=None, max_steps=1_000_000):
    """auto_segment for one segment of a new subject; returns (status, x, xobs, stats dict)."""
    x = np.array(x0, dtype=np.float64)
    tobs = np.zeros(0) if tobs is None else np.ascontiguousarray(tobs, dtype=np.float64)
    xobs = np.full((tobs.size, x.size), np.nan)
    stats = np.zeros(codes.N_STATS, dtype=np.int64)
    switch = np.zeros(codes.N_SWITCH, dtype=np.int64)
    status, _ = auto_segment(float(t0), float(t1), x, K, r, nl, float(rtol), float(atol), 0.0, tobs, xobs,
                             np.int64(max_steps), stats, switch)
    return status, x, xobs, {name: int(stats[slot]) for name, slot in codes.STATS.items()}


# --------------------------------------------------------------------------- stiff: a fast CSF exchange


@pytest.mark.parametrize("rtol", RTOLS)
def test_fast_csf_exchange_switches_to_rodas_and_matches_radau(rtol):
    """central ⇄ CSF at 2 000 and 5 000 /h beside Michaelis–Menten elimination: stiff after the first
    minutes. Dormand–Prince alone needs > 100 000 steps for 48 h; 'switching' hands over once and
    takes about as many steps as Rodas4, to Radau's solution within the tolerance, mass conserved."""
    K = pk_matrix(ka=1.0, k12=0.3, k21=0.1, k13=2e3, k31=5e3, kel=0.1)
    nl = make_nl(vmax=30.0, km=2.0)
    x0 = np.array([100.0, 200.0, 0.0, 0.0, 0.0])
    r = np.zeros(5)
    tobs = np.linspace(0.0, 48.0, 25)
    status, x, xobs, stats = run_auto(0.0, 48.0, x0, K, r, nl, rtol, tobs=tobs)
    assert status == codes.OK
    assert stats["stiffness_switches"] == 1  # stiff for good once the fast exchange has equilibrated
    explicit = run(dopri5_segment, 0.0, 48.0, x0, K, nl=nl, rtol=rtol, with_stats=True)[5]
    rodas = run(rodas_segment, 0.0, 48.0, x0, K, nl=nl, rtol=rtol, with_stats=True)[5]
    assert stats["steps_accepted"] * 100 < explicit["steps_accepted"], (stats, explicit)
    assert stats["steps_accepted"] < 1.2 * rodas["steps_accepted"], (stats, rodas)
    assert 0 < stats["lu_factorisations"] < stats["steps_accepted"] + stats["steps_rejected"]
    ref = radau_segment(K, nl, x0, 0.0, 48.0, tobs, r=r, rtol=1e-12, atol=1e-14)
    assert_rel(xobs, ref, 10 * rtol, x0.sum())
    np.testing.assert_allclose(xobs.sum(axis=1), x0.sum(), rtol=1e-11)
    np.testing.assert_allclose(x.sum(), x0.sum(), rtol=1e-11)


# --------------------------------------------------------------------------- stiff and back: saturable elimination


def _mm_timeline(grid, dose_times, amt):
    """OBS rows on ``grid`` and boluses of ``amt`` mg into the central compartment (pre-dose samples first)."""
    kind, time, cmt, value = [], [], [], []
    for i, t in enumerate(grid):
        kind.append(codes.OBS), time.append(t), cmt.append(0), value.append(float(i))
        if t in dose_times:
            kind.append(codes.BOLUS), time.append(t), cmt.append(CENTRAL), value.append(amt)
    return (np.array(kind, dtype=np.int64), np.array(time), np.array(cmt, dtype=np.int64), np.array(value))


def _run_subject(method, K, nl, timeline, n_out, rtol):
    out = np.zeros((n_out, K.shape[0]))
    stats = np.zeros(codes.N_STATS, dtype=np.int64)
    status = adaptive.run_subject(np.int64(method), K, nl, *timeline, float(rtol), 1e-12, np.int64(10_000_000), out,
                                  stats)
    return status, out, {name: int(stats[slot]) for name, slot in codes.STATS.items()}


@pytest.mark.parametrize("rtol", RTOLS)
def test_saturable_elimination_switches_both_ways_across_doses(rtol):
    """Michaelis–Menten elimination with Km = 1e-3 mg/L: saturated (slow, not stiff: d flux/dx ≈ 0) after each
    200 mg bolus, then stiff (Vmax/(V1·Km) = 2 500 /h) once the dose is eliminated. 'switching' goes to Rodas4
    in every dosing interval and back to Dormand–Prince after the next dose: at least 5 hand-overs
    in 3 doses, fewer LU factorisations than Rodas4 alone, Radau's solution, mass conserved."""
    K = pk_matrix(ka=1.0, k12=0.3, k21=0.1, k13=0.05, k31=0.2, kel=0.01)
    nl = make_nl(vmax=50.0, km=1e-3)
    grid = np.arange(0.0, 73.0)
    doses = (0.0, 24.0, 48.0)
    tl = _mm_timeline(grid, doses, 200.0)
    status, out, stats = _run_subject(codes.AUTO, K, nl, tl, grid.size, rtol)
    assert status == codes.OK
    assert stats["stiffness_switches"] >= 5, stats
    _, _, rodas = _run_subject(codes.RODAS, K, nl, tl, grid.size, rtol)
    assert stats["lu_factorisations"] < 0.6 * rodas["lu_factorisations"], (stats, rodas)
    # and fewer steps than Rodas4 alone (dopri5.f's threshold 3.25 switches late: 15 734 steps at rtol 1e-8)
    assert stats["steps_accepted"] < rodas["steps_accepted"], (stats, rodas)
    ref = np.zeros_like(out)
    x = np.zeros(5)
    for a, b in zip(doses, doses[1:] + (72.0,)):
        x[CENTRAL] += 200.0
        rows = (grid > a) & (grid <= b)
        ref[rows] = radau_segment(K, nl, x, a, b, grid[rows], rtol=1e-12, atol=1e-14)
        x = ref[rows][-1].copy()
    assert_rel(out, ref, 10 * rtol, 600.0)
    given = 200.0 * np.searchsorted(np.array(doses), grid, side="left")  # a sample at a dose time is pre-dose
    np.testing.assert_allclose(out.sum(axis=1), given, rtol=1e-11, atol=1e-9)


# --------------------------------------------------------------------------- not stiff: Dormand–Prince, bit for bit


@pytest.mark.parametrize("rtol", RTOLS)
def test_not_stiff_never_switches_and_equals_dopri5_bit_for_bit(rtol):
    """The benchmark's nonlinear model (saturable elimination, Km far above the concentrations' spread):
    the stiffness test never fires, and every state and step count is Dormand–Prince's."""
    K = pk_matrix(kel=0.05)
    nl = make_nl(vmax=30.0, km=2.0, dcl=4.0, kind=0.1)
    x0 = np.array([100.0, 200.0, 0, 0, 0])
    r = np.array([0.0, 5.0, 0, 0, 0])
    tobs = np.linspace(0.5, 48.5, 30)
    status, x, xobs, stats = run_auto(0.5, 48.5, x0, K, r, nl, rtol, tobs=tobs)
    s2, _, _, x2, xobs2, stats2 = run(dopri5_segment, 0.5, 48.5, x0, K, r=r, nl=nl, rtol=rtol, atol=1e-12, tobs=tobs,
                                      with_stats=True)
    assert status == s2 == codes.OK
    assert stats == stats2 and stats["stiffness_switches"] == 0
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(xobs, xobs2)


@pytest.mark.parametrize("rtol", RTOLS)
def test_auto_is_switching_for_nonlinear_models_and_equals_dopri5_on_lorlatinib(rtol):
    lorlatinib = csfpk.load_drug("lorlatinib")
    assert choose_method(csfpk.build_model(lorlatinib), "auto") == "switching"
    assert choose_method(csfpk.build_model(csfpk.load_drug("erlotinib")), "auto") == "exact"
    regimen = csfpk.Regimen.every(amt=100, ii=24, n=3)
    auto = csfpk.simulate(lorlatinib, regimen, t_end=96, rtol=rtol)
    explicit = csfpk.simulate(lorlatinib, regimen, t_end=96, rtol=rtol, method="adaptive")
    assert auto.method == "switching" and auto.stats == explicit.stats
    np.testing.assert_array_equal(auto.amounts, explicit.amounts)


def test_stats_report_switches_through_the_public_api():
    """lorlatinib with saturable elimination of tiny Km (an assumed variant: stiff once the dose is gone):
    simulate(method='auto') reports the hand-overs, matches Rodas4 at tight tolerance and takes fewer
    steps than Rodas4 alone."""
    drug = csfpk.load_drug("lorlatinib").replace(Vmax=20.0, Km=1e-4)
    regimen = csfpk.Regimen.every(amt=100, ii=24, n=3)
    auto = csfpk.simulate(drug, regimen, t_end=72)
    stiff = csfpk.simulate(drug, regimen, t_end=72, method="stiff", rtol=1e-11, atol=1e-14)
    assert auto.method == "switching" and auto.stats["stiffness_switches"] >= 2
    assert stiff.stats["stiffness_switches"] == 0
    assert 0 < auto.stats["lu_factorisations"] < stiff.stats["lu_factorisations"]
    scale = np.abs(stiff.amounts).max()
    np.testing.assert_allclose(auto.amounts, stiff.amounts, rtol=1e-7, atol=1e-7 * 1e-6 * scale)


def test_max_steps_bounds_both_methods_together():
    K = pk_matrix(ka=1.0, k12=0.3, k21=0.1, k13=2e3, k31=5e3, kel=0.1)
    nl = make_nl(vmax=30.0, km=2.0)
    x0 = np.array([100.0, 200.0, 0.0, 0.0, 0.0])
    status, _, _, stats = run_auto(0.0, 48.0, x0, K, np.zeros(5), nl, 1e-8)
    used = stats["steps_accepted"] + stats["steps_rejected"]
    status, _, _, capped = run_auto(0.0, 48.0, x0, K, np.zeros(5), nl, 1e-8, max_steps=used - 1)
    assert status == codes.MAX_STEPS and capped["steps_accepted"] + capped["steps_rejected"] <= used - 1
    assert capped["stiffness_switches"] == 1  # the cap was reached in Rodas4, after the hand-over


def test_rodas_bounds_the_spectral_radius_by_the_smaller_induced_norm():
    """ρ(J) ≤ min(‖J‖₁, ‖J‖∞), both norms exact (compartment matrices and random ones)."""
    rng = np.random.default_rng(7)
    for _ in range(20):
        K = pk_matrix(*(10.0 ** rng.uniform(-2, 3, 6)))
        bound = _bound_spectral_radius(K)
        assert bound == min(np.linalg.norm(K, 1), np.linalg.norm(K, np.inf))
        assert np.abs(np.linalg.eigvals(K)).max() <= bound * (1 + 1e-12)
        J = rng.standard_normal((4, 4))
        assert _bound_spectral_radius(J) == pytest.approx(min(np.linalg.norm(J, 1), np.linalg.norm(J, np.inf)),
                                                          rel=1e-15)
