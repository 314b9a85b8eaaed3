"""Tests of the adaptive segment integrators: dopri5_segment (Dormand–Prince 5(4)) and
rodas_segment (Rodas4), against matrix exponentials, scipy's Radau and each other."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

from csfpk._kernels import codes
from csfpk._kernels.dopri5 import dopri5_segment
from csfpk._kernels.codes import (
    NL_CENTRAL,
    NL_DCL,
    NL_KIND,
    NL_KM,
    NL_SINK,
    NL_SIZE,
    NL_V1,
    NL_VMAX,
)
from csfpk._kernels.rosenbrock import rodas_segment
from oracles import expm_solution, radau_segment, reference_rhs

KERNELS = [dopri5_segment, rodas_segment]
IDS = ["dopri5", "rodas"]
DEPOT, CENTRAL, PERIPH, CSF, SINK = range(5)


def pk_matrix(ka=1.2, k12=0.3, k21=0.1, k13=0.05, k31=0.2, kel=0.25):
    """depot → central ⇄ peripheral, central ⇄ csf, central → sink; columns sum to zero."""
    K = np.zeros((5, 5))
    K[DEPOT, DEPOT] = -ka
    K[CENTRAL, DEPOT] = ka
    K[CENTRAL, CENTRAL] = -(k12 + k13 + kel)
    K[PERIPH, CENTRAL] = k12
    K[CSF, CENTRAL] = k13
    K[SINK, CENTRAL] = kel
    K[CENTRAL, PERIPH] = k21
    K[PERIPH, PERIPH] = -k21
    K[CENTRAL, CSF] = k31
    K[CSF, CSF] = -k31
    assert np.allclose(K.sum(axis=0), 0.0)
    return K


def make_nl(vmax=0.0, km=1.0, dcl=0.0, kind=0.0, v1=20.0):
    nl = np.zeros(NL_SIZE)
    nl[NL_CENTRAL] = CENTRAL
    nl[NL_SINK] = SINK
    nl[NL_V1] = v1
    nl[NL_VMAX] = vmax
    nl[NL_KM] = km
    nl[NL_DCL] = dcl
    nl[NL_KIND] = kind
    return nl


def run(fn, t0, t1, x0, K, r=None, nl=None, rtol=1e-10, atol=1e-12, h=0.0, tobs=None,
        max_steps=1_000_000, with_stats=False):
    """Call a kernel with canonical argument types; returns (status, h_next, n_acc, x, xobs), and the step
    counts as a dict after them when ``with_stats``."""
    x = np.array(x0, dtype=np.float64)
    n = x.shape[0]
    r = np.zeros(n) if r is None else np.ascontiguousarray(r, dtype=np.float64)
    nl = make_nl() if nl is None else nl
    tobs = np.zeros(0) if tobs is None else np.ascontiguousarray(tobs, dtype=np.float64)
    xobs = np.full((tobs.shape[0], n), np.nan)
    stats = np.zeros(codes.N_STATS, dtype=np.int64)
    status, h_next = fn(float(t0), float(t1), x, np.ascontiguousarray(K, dtype=np.float64),
                        r, nl, float(rtol), float(atol), float(h), tobs, xobs,
                        np.int64(max_steps), stats)
    n_acc = int(stats[codes.STEPS_ACCEPTED])
    if with_stats:
        return status, h_next, n_acc, x, xobs, {name: int(stats[slot]) for name, slot in codes.STATS.items()}
    return status, h_next, n_acc, x, xobs


def assert_rel(x, ref, rel, scale, slack=1e-11):
    """|x − ref| ≤ rel·(|ref| + 1e-6·scale) + slack: relative, with amounts below a millionth of
    the total amount ``scale`` compared against that floor, plus an absolute ``slack`` of 10·atol
    (the solver's absolute tolerance is 1e-12 in these tests: tiny amounts of small doses are
    only resolved to that level)."""
    x = np.asarray(x)
    ref = np.asarray(ref)
    bound = rel * (np.abs(ref) + 1e-6 * scale) + slack
    bad = np.abs(x - ref) > bound
    assert not bad.any(), (
        f"max |err|/bound = {np.max(np.abs(x - ref) / bound):.3g}; "
        f"max |err| = {np.max(np.abs(x - ref)):.3g}")


# --------------------------------------------------------------------------- linear models


@pytest.mark.parametrize("fn", KERNELS, ids=IDS)
def test_bolus_matches_expm(fn):
    K = pk_matrix()
    x0 = np.array([250.0, 0, 0, 0, 0])
    tobs = np.linspace(0.0, 72.0, 20)
    status, h_next, n_acc, x, xobs = run(fn, 0.0, 72.0, x0, K, tobs=tobs)
    assert status == 0 and n_acc > 0 and h_next > 0
    ref = expm_solution(K, x0, tobs)
    assert_rel(xobs, ref, 1e-8, x0.sum())
    assert_rel(x, ref[-1], 1e-8, x0.sum())
    np.testing.assert_array_equal(xobs[0], x0)  # tobs == t0: the initial state
    np.testing.assert_array_equal(xobs[-1], x)  # tobs == t1: the final state, exactly


@pytest.mark.parametrize("fn", KERNELS, ids=IDS)
def test_infusion_matches_augmented_expm(fn):
    K = pk_matrix(ka=0.8, k12=0.5, k21=0.2, k13=0.02, k31=0.3, kel=0.15)
    x0 = np.array([50.0, 10.0, 5.0, 0.5, 0.0])
    r = np.array([0.0, 12.5, 0.0, 0.0, 0.0])  # 12.5 mg/h into central
    t0, t1 = 3.0, 27.0
    tobs = np.linspace(t0, t1, 20)
    status, _, _, x, xobs = run(fn, t0, t1, x0, K, r=r, tobs=tobs)
    assert status == 0
    ref = expm_solution(K, x0, tobs - t0, r=r)
    total = x0.sum() + r.sum() * (t1 - t0)
    assert_rel(xobs, ref, 1e-8, total)
    assert_rel(x, ref[-1], 1e-8, total)
    # mass balance with input: Σx(t) = Σx0 + Σr·(t − t0)
    np.testing.assert_allclose(xobs.sum(axis=1), x0.sum() + r.sum() * (tobs - t0), rtol=1e-12)


@pytest.mark.parametrize("fn", KERNELS, ids=IDS)
def test_dense_output_does_not_change_steps(fn):
    K = pk_matrix()
    x0 = np.array([100.0, 0, 0, 0, 0])
    _, h1, n1, x1, _ = run(fn, 0.0, 24.0, x0, K)
    _, h2, n2, x2, _ = run(fn, 0.0, 24.0, x0, K, tobs=np.linspace(0.0, 24.0, 37))
    assert n1 == n2 and h1 == h2
    np.testing.assert_array_equal(x1, x2)


@pytest.mark.parametrize("fn", KERNELS, ids=IDS)
def test_segments_chain_with_h_next(fn):
    K = pk_matrix()
    x0 = np.array([100.0, 0, 0, 0, 0])
    s1, h, _, xa, _ = run(fn, 0.0, 10.0, x0, K)
    s2, _, _, xb, _ = run(fn, 10.0, 30.0, xa, K, h=h)
    assert s1 == 0 and s2 == 0 and h > 0
    assert_rel(xb, expm_solution(K, x0, [30.0])[0], 1e-8, 100.0)


# --------------------------------------------------------------------------- nonlinear models


@pytest.mark.parametrize("fn", KERNELS, ids=IDS)
@pytest.mark.parametrize("kind", ["michaelis_menten", "autoinduction", "both"])
def test_nonlinear_matches_radau(fn, kind):
    K = pk_matrix(kel=0.05)
    if kind == "michaelis_menten":
        nl = make_nl(vmax=30.0, km=2.0)  # C0 ≈ 10 mg/L ≫ Km: saturated at first
    elif kind == "autoinduction":
        nl = make_nl(dcl=4.0, kind=0.1)
    else:
        nl = make_nl(vmax=30.0, km=2.0, dcl=4.0, kind=0.1)
    x0 = np.array([100.0, 200.0, 0, 0, 0])
    r = np.array([0.0, 5.0, 0, 0, 0])
    t0, t1 = 0.5, 48.5  # t0 ≠ 0: the autoinduction term depends on absolute time
    tobs = np.linspace(t0, t1, 20)
    status, _, _, x, xobs = run(fn, t0, t1, x0, K, r=r, nl=nl, tobs=tobs)
    assert status == 0
    ref = radau_segment(K, nl, x0, t0, t1, tobs, r=r, rtol=1e-10, atol=1e-12)
    total = x0.sum() + r.sum() * (t1 - t0)
    assert_rel(xobs, ref, 1e-7, total)
    assert_rel(x, ref[-1], 1e-7, total)
    np.testing.assert_allclose(x.sum(), total, rtol=1e-12)


# --------------------------------------------------------------------------- stiffness


def test_stiff_rodas_far_fewer_steps_and_both_match_expm():
    # rate constants spanning 1e-3 .. 1e4 /h
    K = pk_matrix(ka=1e4, k12=2e3, k21=5e2, k13=1e-3, k31=1e-2, kel=0.2)
    x0 = np.array([100.0, 0, 0, 0, 0])
    tobs = np.linspace(0.0, 100.0, 20)
    ref = expm_solution(K, x0, tobs)
    out = {}
    for name, fn in zip(IDS, KERNELS):
        status, _, n_acc, x, xobs = run(fn, 0.0, 100.0, x0, K, tobs=tobs)
        assert status == 0
        # dopri5 sits on its stability boundary: its depot amount (exactly 0 after the first
        # hour) jitters at the atol level, hence 1e-7 rather than 1e-8
        assert_rel(xobs, ref, 1e-7, 100.0)
        assert_rel(x, ref[-1], 1e-7, 100.0)
        out[name] = n_acc
    assert out["rodas"] * 50 < out["dopri5"], out


def test_rodas_l_stable_single_step():
    """One step with h·λ = −1e8: a stiffly accurate L-stable method damps the fast mode."""
    K = pk_matrix(ka=1e8)
    x0 = np.array([100.0, 0, 0, 0, 0])
    status, _, n_acc, x, _ = run(rodas_segment, 0.0, 1.0, x0, K, rtol=1e9, atol=1e9, h=1.0)
    assert status == 0 and n_acc == 1
    assert abs(x[DEPOT]) < 1e-4
    # mass is conserved up to the rounding of the fluxes themselves (|ka·x_depot| = 1e10 mg/h,
    # so Σ f(x) is only zero to ~1e10·eps): not 1e-12 here, but to 1e-7 relative
    np.testing.assert_allclose(x.sum(), 100.0, rtol=1e-7)


def _fixed_step_error(fn, K, r, nl, x0, T, N, ref):
    """Global error with N equal steps: one single-step segment each (tolerances huge)."""
    x = np.array(x0, dtype=np.float64)
    H = T / N
    for i in range(N):
        status, _, n_acc, x, _ = run(fn, i * H, (i + 1) * H, x, K, r=r, nl=nl, rtol=1e9,
                                     atol=1e9, h=H)
        assert status == 0 and n_acc == 1
    return np.max(np.abs(x - ref))


@pytest.mark.parametrize("fn, order", [(dopri5_segment, 5), (rodas_segment, 4)], ids=IDS)
def test_convergence_order(fn, order):
    """Checks the tableaus: observed order on a linear problem with infusion and on the
    non-autonomous autoinduction problem (which needs ∂f/∂t in Rodas)."""
    K = pk_matrix()
    x0 = np.array([100.0, 0, 0, 0, 0])
    r = np.array([0.0, 5.0, 0, 0, 0])
    T = 8.0
    ref = expm_solution(K, x0, [T], r=r)[0]
    e1 = _fixed_step_error(fn, K, r, make_nl(), x0, T, 32, ref)
    e2 = _fixed_step_error(fn, K, r, make_nl(), x0, T, 64, ref)
    assert abs(np.log2(e1 / e2) - order) < 0.2
    nl = make_nl(dcl=3.0, kind=0.5, v1=10.0)
    f, _ = reference_rhs(K, nl)
    ref = solve_ivp(f, (0.0, T), x0, method="DOP853", rtol=1e-13, atol=1e-13, args=(r,)).y[:, -1]
    e1 = _fixed_step_error(fn, K, r, nl, x0, T, 64, ref)
    e2 = _fixed_step_error(fn, K, r, nl, x0, T, 128, ref)
    assert np.log2(e1 / e2) > order - 0.5


# --------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("fn", KERNELS, ids=IDS)
@pytest.mark.parametrize("nlkw", [{}, {"vmax": 30.0, "km": 2.0}, {"dcl": 4.0, "kind": 0.1}],
                         ids=["linear", "mm", "autoinduction"])
def test_mass_conservation(fn, nlkw):
    K = pk_matrix(ka=2.0, k12=1.5, k21=0.4, k13=0.01, k31=0.05, kel=0.3)
    x0 = np.array([300.0, 20.0, 7.0, 0.1, 3.0])
    tobs = np.linspace(0.0, 200.0, 20)
    status, _, _, x, xobs = run(fn, 0.0, 200.0, x0, K, nl=make_nl(**nlkw), rtol=1e-8,
                                atol=1e-10, tobs=tobs)
    assert status == 0
    np.testing.assert_allclose(x.sum(), x0.sum(), rtol=1e-12)
    np.testing.assert_allclose(xobs.sum(axis=1), x0.sum(), rtol=1e-12)
    assert x[SINK] > 0.9 * x0.sum()  # nearly everything eliminated after 200 h


rate = st.floats(min_value=-2.0, max_value=0.7).map(lambda e: 10.0 ** e)


@settings(max_examples=6, deadline=None)
@given(ka=rate, k12=rate, k21=rate, k13=rate, k31=rate, kel=rate,
       dose=st.floats(min_value=0.1, max_value=1e4),
       central=st.floats(min_value=0.0, max_value=1e3),
       t1=st.floats(min_value=0.5, max_value=96.0))
def test_random_linear_models_match_expm(ka, k12, k21, k13, k31, kel, dose, central, t1):
    K = pk_matrix(ka, k12, k21, k13, k31, kel)
    x0 = np.array([dose, central, 0.0, 0.0, 0.0])
    tobs = np.linspace(0.0, t1, 7)
    ref = expm_solution(K, x0, tobs)
    for fn in KERNELS:
        status, _, _, x, xobs = run(fn, 0.0, t1, x0, K, tobs=tobs)
        assert status == 0
        assert_rel(xobs, ref, 1e-7, x0.sum())
        assert_rel(x, ref[-1], 1e-7, x0.sum())


# --------------------------------------------------------------------------- status codes


@pytest.mark.parametrize("fn", KERNELS, ids=IDS)
def test_status_max_steps(fn):
    K = pk_matrix()
    x0 = np.array([100.0, 0, 0, 0, 0])
    status, _, n_acc, _, _ = run(fn, 0.0, 1000.0, x0, K, max_steps=2)
    assert status == 3 and n_acc <= 2


@pytest.mark.parametrize("fn", KERNELS, ids=IDS)
def test_status_nonfinite(fn):
    K = pk_matrix()
    x0 = np.array([100.0, np.nan, 0, 0, 0])
    status, _, n_acc, _, _ = run(fn, 0.0, 10.0, x0, K)
    assert status == 2 and n_acc == 0


@pytest.mark.parametrize("fn", KERNELS, ids=IDS)
def test_status_step_underflow(fn):
    K = pk_matrix()
    x0 = np.array([100.0, 0, 0, 0, 0])
    status, _, n_acc, _, _ = run(fn, 0.0, 10.0, x0, K, h=1e-20)
    assert status == 4 and n_acc == 0


# --------------------------------------------------------------------------- step counts


@pytest.mark.parametrize("rtol", [1e-4, 1e-6, 1e-8])
def test_dopri5_takes_the_steps_and_evaluations_of_scipy_rk45(rtol):
    """Same tableau, error norm, step control and initial-step heuristic as scipy's RK45: the same number of
    steps and of right-hand-side evaluations (scipy's nfev: 2 + 6 per attempted step), like scipy's own
    tests that pin function-evaluation counts."""
    K = pk_matrix()
    x0 = np.array([100.0, 0, 0, 0, 0])
    status, _, _, _, _, stats = run(dopri5_segment, 0.0, 48.0, x0, K, rtol=rtol, atol=1e-9, with_stats=True)
    assert status == 0
    f, _ = reference_rhs(K, make_nl())
    sol = solve_ivp(f, (0.0, 48.0), x0, method="RK45", rtol=rtol, atol=1e-9, args=(np.zeros(5),))
    assert stats["steps_accepted"] == sol.t.size - 1
    assert stats["rhs_evaluations"] == sol.nfev == 2 + 6 * (stats["steps_accepted"] + stats["steps_rejected"])
    assert stats["lu_factorisations"] == 0


def test_rodas_counts_one_lu_per_attempt_and_five_rhs_per_stage_set():
    K = pk_matrix(kel=0.05)
    nl = make_nl(vmax=30.0, km=2.0)
    x0 = np.array([100.0, 200.0, 0, 0, 0])
    status, _, _, _, _, stats = run(rodas_segment, 0.0, 48.0, x0, K, nl=nl, rtol=1e-6, atol=1e-9, with_stats=True)
    assert status == 0 and stats["steps_accepted"] > 0
    attempts = stats["steps_accepted"] + stats["steps_rejected"]
    assert stats["lu_factorisations"] == attempts
    # f at the start, 1 for the first-step heuristic, 5 stages per attempt, f at each new accepted point but the last
    assert stats["rhs_evaluations"] == 2 + 5 * attempts + stats["steps_accepted"] - 1


@pytest.mark.parametrize("fn", KERNELS, ids=IDS)
def test_tighter_rtol_takes_more_steps(fn):
    K = pk_matrix(kel=0.05)
    nl = make_nl(vmax=30.0, km=2.0, dcl=4.0, kind=0.1)
    x0 = np.array([100.0, 200.0, 0, 0, 0])
    counts = [run(fn, 0.5, 48.5, x0, K, nl=nl, rtol=rtol, atol=1e-10, with_stats=True)[5] for rtol in (1e-4, 1e-7, 1e-10)]
    for loose, tight in zip(counts, counts[1:]):
        assert tight["steps_accepted"] > loose["steps_accepted"] > 0
        assert tight["rhs_evaluations"] > loose["rhs_evaluations"]
        if fn is rodas_segment:
            assert tight["lu_factorisations"] > loose["lu_factorisations"]


# --------------------------------------------------------------------------- compilation


def test_every_kernel_compiles_one_signature_through_the_public_api():
    """DESIGN §5 / STYLE 4: one compile per model structure. Raw Python ints, lists and pandas columns go
    in through the public API (simulate, solve, compare, counts_along) with models of different sizes
    (plasma only, single, regional, nonlinear); afterwards every numba dispatcher of csfpk._kernels that
    was compiled has exactly one signature. (A missing cast in the Python layer, e.g. passing ``atol=1``
    on as an int, would compile a second one.)"""
    import importlib
    import pkgutil

    import pandas as pd
    from numba.core.registry import CPUDispatcher

    import csfpk
    import csfpk._kernels
    from csfpk._kernels import exact
    from csfpk.myelosuppression import counts_along, load_myelosuppression
    from csfpk.schedule import build_timeline
    from csfpk.simulation import solve

    erl, lor, mtx = (csfpk.load_drug(n) for n in ("erlotinib", "lorlatinib", "methotrexate"))
    frame = pd.DataFrame({"time": [0, 12, 36], "amt": [100, 100, 150], "cmt": ["oral"] * 3})  # int64 columns
    ss = pd.DataFrame({"time": [0], "amt": [150], "cmt": ["oral"], "ii": [24], "ss": [1]})
    for regimen in (csfpk.Regimen.every(amt=150, ii=24, n=3), csfpk.Regimen.from_frame(frame)):
        for layout in ("none", "single", "regional"):
            for method in ("exact", "adaptive", "stiff", "switching"):
                csfpk.simulate(erl, regimen, t_end=72, dt=1, method=method, csf_layout=layout)
            csfpk.simulate(erl, regimen, t_end="3d", dt=2, method="stiff", rtol=1e-6, atol=1, csf_layout=layout)
        for method in ("adaptive", "stiff", "switching"):
            csfpk.simulate(lor, regimen, t_end=72, dt=3, method=method, rtol=np.float64(1e-7), atol=1)
        csfpk.simulate(lor, regimen, t_end=72, dt=3)  # auto → switching
        model = csfpk.build_model(erl)
        solve(model, regimen, [0, 1, 2, 10, 50], record_outputs=True)
        solve(model, regimen, frame["time"], method="adaptive", atol=1, max_steps=10_000)
    csfpk.simulate(erl, csfpk.Regimen.from_frame(ss), t_end=48)  # steady-state actions
    csfpk.simulate(mtx, csfpk.Regimen.from_frame(pd.DataFrame({"time": [0, 84], "amt": [12, 12],
                                                             "cmt": ["it_lumbar"] * 2})), t_end=200)
    csfpk.compare(erl, {"150 mg qd": csfpk.Regimen.every(amt=150, ii=24, n=2)},
                  population=csfpk.Population(n=3, seed=1), t_end=48)
    for method, metrics in (("auto", "exact"), ("adaptive", "grid")):  # nonlinear populations (run_adaptive)
        csfpk.compare(lor, {"100 mg qd": csfpk.Regimen.every(amt=100, ii=24, n=2)}, method=method, metrics=metrics,
                      population=csfpk.Population(n=3, seed=1, covariates={"bsa": (1.8, 0.1)}), t_end=48)
    lineage = load_myelosuppression().lineages["neutrophils"]
    counts_along([0, 1, 2, 3], [0, 1, 2, 0], lineage, 1, substeps=2)
    model = csfpk.build_model(erl)  # the curves kernel (benchmarks' csfpk-exact), not behind a public name
    tl = build_timeline(model, csfpk.Regimen.every(amt=150, ii=24, n=2), np.arange(0.0, 49.0))
    exact.run_curves(model.K[None].copy(), model.n_dynamic, tl.kind, tl.time, tl.cmt, tl.value, tl.aux, 1.0,
                     np.ones(1), np.array([1, 3]), np.ones((1, 2)), np.zeros((1, tl.n_out, 2)), np.zeros(1, dtype=np.int64))

    compiled = {}
    for info in pkgutil.iter_modules(csfpk._kernels.__path__):
        mod = importlib.import_module(f"csfpk._kernels.{info.name}")
        for name, obj in vars(mod).items():
            if isinstance(obj, CPUDispatcher) and obj.__module__ == mod.__name__ and obj.signatures:
                compiled[f"{info.name}.{name}"] = obj.signatures
    # the kernels Python calls; their callees show signatures too when compiled afresh (not loaded from cache)
    for entry in ("exact.run_subject", "exact.run_curves", "adaptive.run_subject", "batch.run_metrics", "batch.run_adaptive",
                  "friberg.run"):
        assert entry in compiled, f"{entry} was not exercised"
    many = {k: v for k, v in compiled.items() if len(v) != 1}
    assert not many, many
