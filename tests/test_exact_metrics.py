"""Exact grid-free metrics (``csfpk._kernels.exposure``, issue 12 item 1) against a brute-force reference.

The reference (``reference`` below) is deliberately naive: the solution sampled every 1e-4 h with
scipy.linalg.expm (events on a 0.1 h lattice, so every sample between events is exact), Cmax from
the largest sample refined by the parabola through its neighbours, AUC by Simpson's rule per 0.1 h
segment, time above target by linear interpolation between samples. Its errors, and so the
tolerances:

* AUC: Simpson's error is δ⁴/180·max|C⁗| per unit time, < 1e-14 relative here → 1e-8 relative.
* Cmax: the parabola's error is O(δ³·C‴) ≈ 1e-12 relative → 1e-8 relative.
* time above: linear interpolation places a transversal crossing within δ²·|C″/C′| ≪ 1e-6 h, but a
  near-tangent crossing (target at a peak) only within δ = 1e-4 h; windows here have at most ~12
  crossings → 2e-3 h absolute.
* Tmax: defined by the value: the exact curve at the kernel's Tmax equals Cmax to 1e-8 relative,
  and where the reference peak is unique the times agree within 1e-3 h (a peak's time is
  ill-conditioned: C′ = 0 there, so a relative value error ε moves it by √(2ε·C/|C″|)).
"""

import numpy as np
import pytest
import scipy.linalg
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import csfpk
from csfpk._kernels.codes import AUC, BOLUS, CMAX, N_METRICS, OBS, RATE, SS_CONST, TIME_ABOVE, TMAX, TROUGH

DELTA = 1e-4  # reference spacing, h
LATTICE = 0.1  # events and window ends are multiples of this, h
J = int(round(LATTICE / DELTA))


def run_exact(K, n_dyn, events, out_state, f, target, w0, w1, t_trough, method="auto"):
    """The population kernel for one subject with exact metrics: metrics[o, slot] and status. method "auto": the
    eigen-decomposition (``spectral``) where it applies, else the certificate walk; "walk": the certificate walk
    (``exposure.gap``) always."""
    from csfpk._kernels.batch import run_metrics

    acts = sorted(events, key=lambda e: e[0]) + [(w1, OBS, 0, 0.0)]
    acts.sort(key=lambda e: (e[0], e[1] != OBS))  # a sample at an event time comes first (pre-event)
    kind = np.array([a[1] for a in acts], dtype=np.int64)
    time = np.array([a[0] for a in acts], dtype=float)
    cmt = np.array([a[2] for a in acts], dtype=np.int64)
    value = np.array([a[3] for a in acts], dtype=float)
    aux = np.zeros((len(acts), 3))
    n_out = len(out_state)
    m = np.empty((1, n_out, N_METRICS))
    status = np.zeros(1, dtype=np.int64)
    run_metrics(K[None].copy(), np.int64(n_dyn), kind, time, cmt, value, aux, 0.0, np.ones(1),
                np.asarray(out_state, dtype=np.int64), np.asarray(f, dtype=float)[None].copy(), np.int64(1),
                np.int64(0), np.int64(0), np.asarray(target, dtype=float), np.int64(0), np.zeros((1, 0, n_out)), m,
                status, np.array([w0, w1, t_trough] + ([1.0] if method == "walk" else [])))
    return m[0], int(status[0])


def spectral_applies(K, n_dyn, out_state):
    """True when the kernel uses the eigen-decomposition for this K (``spectral.decompose``)."""
    from csfpk._kernels.spectral import fallbacks

    return fallbacks(K[None].copy(), np.int64(n_dyn), np.asarray(out_state, dtype=np.int64)) == 0


def state_at(K, events, t):
    """Brute force: the state at time t (right-continuous), event by event with scipy.linalg.expm."""
    n = K.shape[0]
    x = np.zeros(n)
    r = np.zeros(n)
    now = 0.0
    for te, kind, c, v in sorted(events, key=lambda e: e[0]) + [(t, -1, 0, 0.0)]:
        if te > t:
            te = t
        if te > now:
            M = np.zeros((2 * n, 2 * n))
            M[:n, :n] = K * (te - now)
            M[:n, n:] = np.eye(n) * (te - now)
            X = scipy.linalg.expm(M)
            x = X[:n, :n] @ x + X[:n, n:] @ r
            now = te
        if kind == BOLUS and te <= t:
            x[c] += v
        elif kind == RATE and te <= t:
            r[c] += v
        if te >= t:
            break
    return x


def reference(K, events, out_state, f, target, w0, w1, t_trough):
    """Brute-force metrics (module docstring): samples every DELTA h on [w0, w1]."""
    n = K.shape[0]
    steps = np.arange(J + 1) * DELTA
    M = np.zeros((J + 1, 2 * n, 2 * n))
    M[:, :n, :n] = K[None] * steps[:, None, None]
    M[:, :n, n:] = np.eye(n)[None] * steps[:, None, None]
    X = scipy.linalg.expm(M)
    Es, Ps = X[:, :n, :n], X[:, :n, n:]
    x = np.zeros(n)
    r = np.zeros(n)
    evs = sorted(events, key=lambda e: e[0])
    k_end = int(round(w1 / LATTICE))
    out_state = np.asarray(out_state)
    f = np.asarray(f)
    level = np.asarray(target) * (1 - 1e-10)
    segs, trough = [], None
    for k in range(k_end):
        tk = k * LATTICE
        if trough is None and tk >= t_trough - 1e-9:
            trough = f * x[out_state]
        for te, kind, c, v in evs:
            if abs(te - tk) < 1e-9:
                if kind == BOLUS:
                    x[c] += v
                else:
                    r[c] += v
        xs = Es @ x + Ps @ r  # (J + 1, n)
        if tk >= w0 - 1e-9:
            segs.append((tk, f[None] * xs[:, out_state]))
        x = xs[-1]
    if trough is None:
        trough = f * x[out_state]
    auc = sum((DELTA / 3) * (C[0] + 4 * C[1:-1:2].sum(0) + 2 * C[2:-1:2].sum(0) + C[-1]) for _, C in segs)
    above = np.zeros(len(out_state))
    for _, C in segs:
        c0, c1 = C[:-1], C[1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            part = np.where((c0 >= level) & (c1 >= level), DELTA,
                            np.where(c0 >= level, DELTA * (c0 - level) / (c0 - c1),
                                     np.where(c1 >= level, DELTA * (c1 - level) / (c1 - c0), 0.0)))
        above += part.sum(0)
    allC = np.concatenate([C for _, C in segs])
    allt = np.concatenate([tk + steps for tk, _ in segs])
    cmax, tmax, unique = np.empty(len(out_state)), np.empty(len(out_state)), np.empty(len(out_state), bool)
    for o in range(len(out_state)):
        c = allC[:, o]
        g = int(np.argmax(c))
        cmax[o], tmax[o] = c[g], allt[g]
        if 0 < g < len(c) - 1 and c[g - 1] < c[g] and c[g + 1] <= c[g] and abs(allt[g + 1] - allt[g] - DELTA) < 1e-9 \
                and abs(allt[g] - allt[g - 1] - DELTA) < 1e-9:  # not at an event (samples repeat its time)
            a, b, d = c[g - 1], c[g], c[g + 1]
            den = a - 2 * b + d
            if den < 0:
                s = 0.5 * (a - d) / den
                cmax[o] = b - 0.25 * (a - d) * s
                tmax[o] = allt[g] + s * DELTA
        far = np.abs(allt - tmax[o]) > 0.5
        unique[o] = not far.any() or c[far].max() < cmax[o] * (1 - 1e-6)
    return {"auc": auc, "cmax": cmax, "tmax": tmax, "trough": trough, "time_above": above, "unique": unique}


# ----------------------------------------------------------------------------- random linear models
@st.composite
def cases(draw):
    """A random linear model — depot, 0–2 transit compartments (same rate as ka: a Jordan block, or rates
    spread apart: diagonalisable), central, 0–2 peripherals, CSF, sink — a random regimen and window, and
    targets."""
    rate = st.floats(0.02, 3.0)
    n_tr = draw(st.integers(0, 2))
    n_per = draw(st.integers(0, 2))
    names = ["depot"] + [f"tr{i}" for i in range(n_tr)] + ["central"] + [f"p{i}" for i in range(n_per)] + ["csf", "sink"]
    ix = {s: i for i, s in enumerate(names)}
    n = len(names)
    K = np.zeros((n, n))

    def flow(a, b, k):
        K[ix[b], ix[a]] += k
        K[ix[a], ix[a]] -= k

    ka = draw(rate)
    spread = draw(st.sampled_from([1.0, 1.7]))
    chain = ["depot"] + [f"tr{i}" for i in range(n_tr)] + ["central"]
    for q, (a, b) in enumerate(zip(chain[:-1], chain[1:])):
        flow(a, b, ka * spread ** q)
    flow("central", "sink", draw(st.floats(0.01, 1.0)))
    for i in range(n_per):
        flow("central", f"p{i}", draw(rate))
        flow(f"p{i}", "central", draw(rate))
    flow("central", "csf", draw(st.floats(1e-3, 0.2)))
    flow("csf", "central", draw(st.floats(0.05, 3.0)))
    ii = draw(st.sampled_from([6.0, 8.0, 12.0]))
    n_doses = draw(st.integers(1, 3))
    route = draw(st.sampled_from(["bolus", "infusion", "oral", "it"]))
    amt = draw(st.floats(1.0, 500.0))
    lag = draw(st.sampled_from([0.0, 0.3, 1.2])) if route == "oral" else 0.0
    dur = draw(st.sampled_from([0.5, 1.0, 2.5]))
    events, doses = [], []
    for d in range(n_doses):
        t = round(d * ii + lag, 6)
        doses.append(t)
        if route == "infusion":
            events += [(t, RATE, ix["central"], amt / dur), (round(t + dur, 6), RATE, ix["central"], -amt / dur)]
        else:
            c = {"bolus": "central", "oral": "depot", "it": "csf"}[route]
            events.append((t, BOLUS, ix[c], amt))
    w1 = round(min(n_doses * ii + 6.0, 30.0), 6)
    w0 = draw(st.sampled_from([0.0, 0.0, 2.0, 5.3]))
    dosed = [t for t in doses if w0 < t <= w1]
    t_trough = max(dosed) if dosed else w1
    out_state = [ix["central"], ix["csf"]]
    f = [1.0 / draw(st.floats(5.0, 200.0)), 1.0 / 0.14]
    u = [draw(st.floats(0.02, 1.3)) for _ in out_state]
    return K, n - 1, events, out_state, f, u, w0, w1, t_trough


@pytest.mark.parametrize("method", ["spectral", "walk"])
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_exact_metrics_equal_brute_force_reference(case, method):
    """Both methods of the exact metrics: the eigen-decomposition (models it accepts: transit chains with equal
    rates are defective and go to the walk) and the certificate walk it falls back to (every model)."""
    K, n_dyn, events, out_state, f, u, w0, w1, t_trough = case
    if method == "spectral":
        assume(spectral_applies(K, n_dyn, out_state))
    # targets as fractions of the reference peak (drawn on the reference, not on the code under test)
    probe = reference(K, events, out_state, f, [np.inf] * len(f), w0, w1, t_trough)
    target = [ui * c for ui, c in zip(u, probe["cmax"])]
    ref = reference(K, events, out_state, f, target, w0, w1, t_trough)
    m, status = run_exact(K, n_dyn, events, out_state, f, target, w0, w1, t_trough,
                          "auto" if method == "spectral" else "walk")
    assert status == 0
    np.testing.assert_allclose(m[:, AUC], ref["auc"], rtol=1e-8)
    np.testing.assert_allclose(m[:, CMAX], ref["cmax"], rtol=1e-8)
    np.testing.assert_allclose(m[:, TROUGH], ref["trough"], rtol=1e-8, atol=1e-300)
    np.testing.assert_allclose(m[:, TIME_ABOVE], ref["time_above"], rtol=0, atol=2e-3)
    for o in range(len(out_state)):
        c_at = f[o] * state_at(K, events, m[o, TMAX])[out_state[o]]
        assert c_at == pytest.approx(m[o, CMAX], rel=1e-8)
        if ref["unique"][o]:
            assert m[o, TMAX] == pytest.approx(ref["tmax"][o], abs=1e-3)


# ----------------------------------------------------------------------------- closed forms
def one_compartment_oral(ka, k, V):
    """depot → central → sink, outputs central/V (Bateman)."""
    K = np.array([[-ka, 0, 0], [ka, -k, 0], [0, k, 0.0]])
    return K


def bateman(t, D, ka, k, V):
    return D / V * ka / (ka - k) * (np.exp(-k * t) - np.exp(-ka * t))


METHODS = pytest.mark.parametrize("method", ["auto", "walk"])  # auto: the eigen-decomposition (asserted) here


@METHODS
def test_cmax_tmax_auc_of_a_single_oral_dose_equal_the_closed_forms(method):
    ka, k, V, D = 1.3, 0.11, 40.0, 100.0
    K = one_compartment_oral(ka, k, V)
    assert spectral_applies(K, 2, [1])
    tmax = np.log(ka / k) / (ka - k)
    cmax = bateman(tmax, D, ka, k, V)
    w1 = 48.0
    auc = D / V * ka / (ka - k) * ((1 - np.exp(-k * w1)) / k - (1 - np.exp(-ka * w1)) / ka)
    m, status = run_exact(K, 2, [(0.0, BOLUS, 0, D)], [1], [1 / V], [np.inf], 0.0, w1, w1, method)
    assert status == 0
    assert m[0, CMAX] == pytest.approx(cmax, rel=1e-12)
    assert m[0, TMAX] == pytest.approx(tmax, abs=1e-6)
    assert m[0, AUC] == pytest.approx(auc, rel=1e-12)
    assert m[0, TROUGH] == pytest.approx(bateman(w1, D, ka, k, V), rel=1e-10)


def test_flip_flop_degenerate_ka_equal_k():
    """ka = k: K is defective (a Jordan block); C = D/V·k·t·e^(−kt), Cmax at t = 1/k. The eigen-decomposition
    refuses it (no eigenvector basis) and the walk computes it; so does ka = k·(1 + 1e-9), where the basis exists
    but is too ill-conditioned (its coefficients would cancel to ~1e-7)."""
    k, V, D = 0.4, 20.0, 50.0
    assert not spectral_applies(one_compartment_oral(k, k, V), 2, [1])
    assert not spectral_applies(one_compartment_oral(k * (1 + 1e-9), k, V), 2, [1])
    m, status = run_exact(one_compartment_oral(k, k, V), 2, [(0.0, BOLUS, 0, D)], [1], [1 / V], [np.inf], 0.0, 24.0,
                          24.0)
    assert status == 0
    assert m[0, TMAX] == pytest.approx(1 / k, abs=1e-6)
    assert m[0, CMAX] == pytest.approx(D / V * np.exp(-1.0), rel=1e-12)
    assert m[0, AUC] == pytest.approx(D / V / k * (1 - np.exp(-k * 24) * (1 + k * 24)), rel=1e-12)


@METHODS
def test_target_touched_at_the_peak_and_crossed_just_below_it(method):
    from scipy.optimize import brentq

    ka, k, V, D = 1.3, 0.11, 40.0, 100.0
    K = one_compartment_oral(ka, k, V)
    tmax = np.log(ka / k) / (ka - k)
    cmax = bateman(tmax, D, ka, k, V)
    # touched exactly: the measure of {C ≥ Cmax} is zero (the 1e-10 tolerance leaves ≤ ~1e-4 h)
    m, _ = run_exact(K, 2, [(0.0, BOLUS, 0, D)], [1], [1 / V], [cmax], 0.0, 48.0, 48.0, method)
    assert 0.0 <= m[0, TIME_ABOVE] < 1e-4
    # just below the peak: two transversal crossings, located to machine precision
    T = cmax * (1 - 1e-3)
    g = lambda t: bateman(t, D, ka, k, V) - T  # noqa: E731
    length = brentq(g, tmax, 48.0, xtol=1e-14) - brentq(g, 0.0, tmax, xtol=1e-14)
    m, _ = run_exact(K, 2, [(0.0, BOLUS, 0, D)], [1], [1 / V], [T * (1 + 1e-10)], 0.0, 48.0, 48.0, method)
    assert m[0, TIME_ABOVE] == pytest.approx(length, abs=1e-9)
    # above the peak: never
    m, _ = run_exact(K, 2, [(0.0, BOLUS, 0, D)], [1], [1 / V], [cmax * (1 + 1e-6)], 0.0, 48.0, 48.0, method)
    assert m[0, TIME_ABOVE] == 0.0


@METHODS
def test_curve_flat_at_the_target_counts_as_above(method):
    """A constant infusion at steady state (SS_CONST) equal to the target: C ≡ T for the whole window."""
    k, V, R = 0.2, 10.0, 3.0
    K = np.array([[-k, 0.0], [k, 0.0]])
    assert spectral_applies(K, 1, [0])
    css = R / (k * V)
    events = [(0.0, SS_CONST, 0, R), (0.0, RATE, 0, R)]
    for T, expected in ((css, 24.0), (css * (1 + 1e-6), 0.0)):
        m, status = run_exact(K, 1, events, [0], [1 / V], [T], 0.0, 24.0, 24.0, method)
        assert status == 0
        assert m[0, TIME_ABOVE] == pytest.approx(expected, abs=1e-12)  # a sum of sub-step pieces
        assert m[0, CMAX] == pytest.approx(css, rel=1e-13)
        assert m[0, AUC] == pytest.approx(css * 24.0, rel=1e-12)


@METHODS
def test_bolus_peak_right_after_the_dose_and_dose_at_window_end(method):
    """Right-continuity: a bolus at t0 gives Cmax = D/V at t0; a bolus at w1 does not count, but its
    pre-dose value is the trough."""
    k, V, D = 0.3, 5.0, 10.0
    K = np.array([[-k, 0.0], [k, 0.0]])
    events = [(0.0, BOLUS, 0, D), (12.0, BOLUS, 0, D)]
    m, _ = run_exact(K, 1, events, [0], [1 / V], [np.inf], 0.0, 12.0, 12.0, method)
    assert m[0, CMAX] == pytest.approx(D / V, rel=1e-14) and m[0, TMAX] == 0.0
    assert m[0, TROUGH] == pytest.approx(D / V * np.exp(-k * 12), rel=1e-12)
    assert m[0, AUC] == pytest.approx(D / V * (1 - np.exp(-k * 12)) / k, rel=1e-12)


# ----------------------------------------------------------------------------- through the batch runner
def _scenarios(mode, n=60, dt=1.0):
    drug = csfpk.load_drug("erlotinib")
    pop = csfpk.Population(n=n, seed=3, iiv={"CL": 0.3, "V1": 0.3, "ka": 0.5}, penetration="range")
    from csfpk.scenario import Scenario

    return [Scenario(drug, csfpk.Regimen.every(amt=150, ii=24, n=4), pop, t_end=96.0, dt=dt, regimen_name="qd",
                     metrics=mode, window=(24.0, 96.0), target_nM=60.0)]


def test_exact_is_the_limit_of_grid_metrics():
    from csfpk.batch import run

    exact = run(_scenarios("exact"), progress=False).metrics
    fine = run(_scenarios("grid", dt=0.002), progress=False).metrics
    coarse = run(_scenarios("grid", dt=1.0), progress=False).metrics
    for o in ("plasma", "csf"):
        np.testing.assert_allclose(exact[f"{o}_auc_win"], fine[f"{o}_auc_win"], rtol=1e-6)
        np.testing.assert_allclose(exact[f"{o}_cmax_win"], fine[f"{o}_cmax_win"], rtol=1e-6)
        # both exact at the same instant; the grid run rounds over 36 000 steps
        np.testing.assert_allclose(exact[f"{o}_trough_win"], fine[f"{o}_trough_win"], rtol=1e-10)
        np.testing.assert_allclose(exact[f"{o}_time_above_win"], fine[f"{o}_time_above_win"], atol=2e-3)
        assert (exact[f"{o}_cmax_win"] >= coarse[f"{o}_cmax_win"] * (1 - 1e-12)).all()  # the grid misses the peak


def test_same_numbers_for_threads_and_chunk_sizes(one_thread):
    import pandas as pd

    from csfpk.batch import run

    ref = run(_scenarios("exact", n=200), chunk=1000, progress=False).metrics
    with one_thread():
        one = run(_scenarios("exact", n=200), chunk=37, progress=False).metrics
    pd.testing.assert_frame_equal(ref, one, check_exact=True)


def test_manifest_records_the_metrics_mode(tmp_path):
    import json

    from csfpk.batch import run
    from csfpk.runfolder import metrics_mode

    for mode in ("exact", "grid"):
        run(_scenarios(mode, n=10), tmp_path / mode, progress=False)
        man = json.loads((tmp_path / mode / "manifest.json").read_text())
        assert [metrics_mode(r) for r in man["scenarios"]] == [mode]


def test_bad_metrics_mode_names_the_field():
    from csfpk.errors import ParameterError

    with pytest.raises(ParameterError, match=r"metrics = 'nca' is not allowed; expected 'exact' or 'grid'"):
        _scenarios("nca")


# ----------------------------------------------------------------------------- features between sub-step ends
def _shoulder(eps):
    """Oral dose into the depot and IV bolus into a two-compartment central at t = 0 (depot, central,
    peripheral, sink; V = 10 L): the fast distribution drop and the slower absorption rise make C′ touch 0
    near t ≈ 2 h at the oral dose D* (a shoulder); at D*·(1 + eps) C has a local minimum at t1 and a local
    maximum at t2 a few hundredths of an hour later, both inside one sub-step of length 1/‖K‖₁ ≈ 0.16 h.
    Returns K, the events, C(t) and t1, t2 (scipy, to ~1e-13)."""
    from scipy.optimize import brentq, minimize_scalar

    ka, k10, k12, k21, V, Dc = 0.5, 0.1, 3.0, 1.0, 10.0, 100.0
    K = np.array([[-ka, 0, 0, 0], [ka, -(k10 + k12), k21, 0], [0, k12, -k21, 0], [0, k10, 0, 0.0]])

    def dC(t, Do):
        return (K @ scipy.linalg.expm(K * t) @ np.array([Do, Dc, 0, 0.0]))[1] / V

    def top(Do):  # the local maximum of C′ near the shoulder
        r = minimize_scalar(lambda t: -dC(t, Do), bounds=(1.5, 2.5), method="bounded", options={"xatol": 1e-12})
        return -r.fun, r.x

    Do = brentq(lambda D: top(D)[0], 20.0, 40.0, xtol=1e-13) * (1 + eps)
    tp = top(Do)[1]
    t1 = brentq(lambda t: dC(t, Do), tp - 0.5, tp, xtol=1e-14)
    t2 = brentq(lambda t: dC(t, Do), tp, tp + 0.5, xtol=1e-14)

    def C(t):
        return (scipy.linalg.expm(K * t) @ np.array([Do, Dc, 0, 0.0]))[1] / V

    return K, [(0.0, BOLUS, 0, Do), (0.0, BOLUS, 1, Dc)], C, t1, t2


@METHODS
@pytest.mark.parametrize("eps", [3e-5, 1e-4])
def test_two_extrema_inside_one_sub_step_are_both_found(eps, method):
    """A local minimum and maximum 0.01–0.02 h apart (both inside one sub-step, with C′ of the same sign at its
    ends): the target between them adds the short interval where the bump rises above it, and a window starting
    just before the minimum, below the bump's top, has its Cmax at the local maximum. A kernel that looks for
    sign changes only at sub-step ends (or at a few samples inside) misses both."""
    from scipy.optimize import brentq

    K, events, C, t1, t2 = _shoulder(eps)
    c1, c2 = C(t1), C(t2)
    assert 0.004 < t2 - t1 < 0.03 and c2 > c1
    T = 0.5 * (c1 + c2)
    x1 = brentq(lambda t: C(t) - T, t1 - 1.0, t1, xtol=1e-14)  # falling from the bolus peak
    x2 = brentq(lambda t: C(t) - T, t1, t2, xtol=1e-14)  # rising into the bump
    x3 = brentq(lambda t: C(t) - T, t2, t2 + 1.0, xtol=1e-14)  # falling after it
    assert spectral_applies(K, 3, [1])
    m, status = run_exact(K, 3, events, [1], [0.1], [T * (1 + 1e-10)], 0.0, 6.0, 6.0, method)
    assert status == 0
    assert m[0, TIME_ABOVE] == pytest.approx(x1 + (x3 - x2), abs=1e-7)
    # a window from just before the minimum, where C is below the bump's top: Cmax is the local maximum
    w0 = brentq(lambda t: C(t) - 0.5 * (c1 + c2), t1 - 1.0, t1, xtol=1e-14)
    m, status = run_exact(K, 3, events, [1], [0.1], [np.inf], w0, 6.0, 6.0, method)
    assert status == 0
    assert m[0, TMAX] == pytest.approx(t2, abs=1e-6)
    assert m[0, CMAX] == pytest.approx(c2, rel=1e-13)


# ----------------------------------------------------------------------------- eigen-decomposition vs walk
def _population_kernel(scn, S, method):
    """Exact metrics of the first S subjects of ``scn`` through the population kernel, by ``method``."""
    from csfpk._kernels.batch import run_metrics
    from csfpk.batch import prepare
    from csfpk.population import build_rate_matrices

    prep = prepare(scn)
    tl = prep.timeline
    p = scn.population.sample(scn.drug, 0, S, scn.physiology)
    Ks, volume, scale, model = build_rate_matrices(scn.drug, p, scn.physiology, scn.csf_layout)
    f = scale / volume * (1e6 / scn.drug.molecular_weight)
    n_out = len(prep.out_names)
    m = np.empty((S, n_out, N_METRICS))
    status = np.zeros(S, dtype=np.int64)
    win = np.append(prep.exact_win, 1.0) if method == "walk" else prep.exact_win
    run_metrics(Ks, np.int64(model.n_dynamic), tl.kind, tl.time, tl.cmt, tl.value, tl.aux, float(tl.grid_step),
                np.ones(S), prep.out_state, np.ascontiguousarray(f), np.int64(1), np.int64(0), np.int64(0),
                prep.target, np.int64(0), np.zeros((S, 0, n_out)), m, status, win)
    return m, status, Ks, model, prep


@pytest.mark.parametrize("target", [50.0, 1000.0])
def test_regional_intrathecal_methotrexate_spectral_equals_the_walk(target):
    """The stiff case the eigen-decomposition is for (‖K‖₁ ≈ 650 /h: tidal cisterna ⇄ cranial mixing): 26 weeks of
    the seed IT schedule, every output of the regional layout, a target crossed after every injection (at 1 µM,
    subject 4's cisterna has a crossing where unguarded Newton steps on ln P − ln N oscillate). Cmax, AUC
    and time above agree to 1e-8 relative, Tmax within 1e-6 h; the trough (the pre-dose value 4 weeks after the
    previous injection, down to ~1e-6 of the output's Cmax) to 1e-12 of the output's Cmax: the eigenvectors are
    accurate to rounding of their norm, not componentwise (the walk's positive propagators are)."""
    from csfpk._kernels.spectral import fallbacks
    from csfpk.scenario import Scenario

    drug = csfpk.load_drug("methotrexate")
    regimen = csfpk.load_regimen("it_mtx_seed").regimen
    scn = Scenario(drug, regimen, csfpk.Population(n=5, seed=1), t_end=26 * 168.0, dt=1.0, csf_layout="regional",
                   window="span", metrics="exact", target_nM=target)
    spec, st1, Ks, model, prep = _population_kernel(scn, 5, "auto")
    walk, st2, _, _, _ = _population_kernel(scn, 5, "walk")
    assert (st1 == 0).all() and (st2 == 0).all()
    assert fallbacks(Ks, np.int64(model.n_dynamic), prep.out_state) == 0  # the spectral path ran
    csf = [i for i, o in enumerate(prep.out_names) if o.startswith("csf")]
    assert (walk[:, csf, TIME_ABOVE] > 0).all()  # the target is crossed in every CSF region
    for slot in (CMAX, AUC, TIME_ABOVE):
        np.testing.assert_allclose(spec[..., slot], walk[..., slot], rtol=1e-8)
    np.testing.assert_allclose(spec[..., TMAX], walk[..., TMAX], rtol=0, atol=1e-6)
    np.testing.assert_array_less(np.abs(spec[..., TROUGH] - walk[..., TROUGH]), 1e-12 * walk[..., CMAX])


def test_fallback_only_where_the_model_is_defective():
    """Transit chains of equal rates (brigatinib) have no eigenvector basis: every subject takes the walk; the
    regional methotrexate and single-layout erlotinib populations none."""
    from csfpk._kernels.spectral import fallbacks
    from csfpk.population import build_rate_matrices

    for name, layout, expected in (("brigatinib", "single", 50), ("methotrexate", "regional", 0),
                                   ("erlotinib", "single", 0)):
        drug = csfpk.load_drug(name)
        phys = csfpk.load_physiology("adult")
        p = csfpk.Population(n=50, seed=2).sample(drug, 0, 50, phys)
        Ks, _, _, model = build_rate_matrices(drug, p, phys, layout)
        out = np.array([model.outputs[o][0] for o in model.outputs], dtype=np.int64)
        assert fallbacks(Ks, np.int64(model.n_dynamic), out) == expected, name


@METHODS
def test_repeated_eigenvalue_and_zero_slope_at_the_gap_start(method):
    """Found by the property: an oral dose (depot → transit → central ⇄ peripheral, CSF) where the peripheral and
    the CSF have the same outflow rate as the depot (eigenvalue −1 twice, with an eigenvector basis) and the
    central concentration starts with C′(0) = 0 (its drug arrives through the transit compartment): the exponential
    sum must merge the equal exponents, and the sign of C′ just after the dose comes from C″(0)."""
    K = np.array([[-1.0, 0, 0, 0, 0, 0], [1.0, -1.7, 0, 0, 0, 0], [0, 1.7, -0.9375, 1.0, 1.0, 0],
                  [0, 0, 0.375, -1.0, 0, 0], [0, 0, 0.0625, 0, -1.0, 0], [0, 0, 0.5, 0, 0, 0]])
    events, out, f = [(0.0, BOLUS, 0, 1.0)], [2, 4], [0.2, 1 / 0.14]
    assert spectral_applies(K, 5, out)
    ref = reference(K, events, out, f, [np.inf] * 2, 0.0, 12.0, 12.0)
    target = [0.5 * ref["cmax"][0], 0.5 * ref["cmax"][1]]
    ref = reference(K, events, out, f, target, 0.0, 12.0, 12.0)
    m, status = run_exact(K, 5, events, out, f, target, 0.0, 12.0, 12.0, method)
    assert status == 0
    np.testing.assert_allclose(m[:, CMAX], ref["cmax"], rtol=1e-8)
    np.testing.assert_allclose(m[:, TMAX], ref["tmax"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(m[:, TIME_ABOVE], ref["time_above"], rtol=0, atol=2e-3)
