"""Exact solution of the linear model along a timeline of actions (DESIGN §5).

Between two actions at t and t + h with constant input rates r (mg/h) the linear system
dx/dt = K·x + r has the exact solution

    x(t + h) = E(h)·x(t) + Φ(h)·r,     E(h) = exp(K·h),  Φ(h) = ∫₀ʰ exp(K·s) ds

(``exposure.exp_phi``: Taylor scaling and squaring). E of the regular output step is computed once per subject
(when first used; Φ only once an infusion runs); other gaps (doses between grid points) are computed when met and
cached for the next gap of the same length (``new_stepper``, ``advance``). Action semantics are documented
in ``csfpk.schedule``; steady states use

    SS_TRAIN:  x_dyn += E(u0)·(I − E(ii))⁻¹·v      (sum over the infinite train of past doses)
    SS_CONST:  x_dyn += −K_dyn⁻¹·r·e_c              (constant infusion at steady state)

on the non-sink block (sinks accumulate without bound at steady state and are left unchanged).

One walk (``walk``) serves both uses: ``run_subject`` keeps the states at every output row (single
subjects, ``csfpk.simulate``), ``batch.run_metrics`` keeps running exposure metrics and optional
downsampled concentration curves (populations). ``run_curves`` (``curves_walk``) keeps only the
concentrations asked for, reading runs of grid samples off tables of output rows (``grid_run``).
"""

import numpy as np
from numba import njit

from .codes import (AUC, BOLUS, CAVG, CMAX, INF_PART, N_METRICS, NONFINITE, OBS, OK, PCT_ABOVE, RATE, RESET, SINGULAR,
                    SS_CONST, SS_TRAIN, TIME_ABOVE, TMAX, TROUGH)
from .exposure import AT_TARGET_RTOL, exp_phi, gap, new_cache
from .linalg import lu_det, lu_factor, lu_solve, matmul, norm1
from .spectral import advance as spectral_advance
from .spectral import decompose
from .spectral import gap as spectral_gap
from .spectral import new_workspace


@njit(cache=True, nogil=True)
def propagators(K, h):
    """(E(h), Φ(h)) as new arrays, from ``exposure.exp_phi``."""
    n = K.shape[0]
    E = np.empty((1, n, n))
    P = np.empty((1, n, n))
    exp_phi(K, h, E, P, E.shape[0] - 1)  # slot 0 as a value: a literal would compile a second exp_phi
    return E[0], P[0]


@njit(cache=True, nogil=True)
def new_stepper(K, grid_step):
    """Propagator cache for ``advance``: E, P of shape (2, n, n) (slot 0 the grid step, slot 1 the
    last other gap) and meta = [grid_step, grid slot state, gap h, gap slot state], state 0 empty,
    2 E(h) and Φ(h) ready (both come from one ``exposure.exp_phi``). Propagators are computed when
    first needed."""
    n = K.shape[0]
    E = np.zeros((2, n, n))
    P = np.zeros((2, n, n))
    meta = np.empty(4)
    meta[0] = grid_step
    meta[1] = 0.0
    meta[2] = -1.0
    meta[3] = 0.0
    return E, P, meta


@njit(cache=True, nogil=True)
def advance(K, h, E, P, meta, x, y, r, use_r):
    """x ← E(h)·x + Φ(h)·r over a gap h > 0 (module docstring), y as scratch."""
    n = x.shape[0]
    step = meta[0]
    slot = 0 if (step > 0.0 and abs(h - step) <= 1e-12 * max(1.0, step)) else 1
    if slot == 1 and h != meta[2]:
        meta[2] = h
        meta[3] = 0.0
    if meta[1 + 2 * slot] < 2.0:
        exp_phi(K, step if slot == 0 else h, E, P, slot)
        meta[1 + 2 * slot] = 2.0
    for i in range(n):
        s = 0.0
        for j in range(n):
            s += E[slot, i, j] * x[j]
        if use_r:
            for j in range(n):
                s += P[slot, i, j] * r[j]
        y[i] = s
    for i in range(n):  # copy, not swap: swapping arrays costs refcount updates per step
        x[i] = y[i]


@njit(cache=True, nogil=True)
def rates_active(r):
    """True when any infusion rate is non-zero."""
    for i in range(r.shape[0]):
        if r[i] != 0.0:
            return True
    return False


@njit(cache=True, nogil=True)
def apply_simple(k, c, v, x, r):
    """Apply a BOLUS, RATE or RESET action (``csfpk.schedule``) to x and r, in place (the actions
    that need no propagator; ``adaptive`` uses only these)."""
    if k == BOLUS:
        x[c] += v
    elif k == RATE:
        new = r[c] + v
        # an infusion ending exactly cancels its start; clear rounding residue
        r[c] = 0.0 if abs(new) <= 1e-12 * abs(v) else new
    elif k == RESET:
        for i in range(x.shape[0]):
            x[i] = 0.0
            r[i] = 0.0


@njit(cache=True, nogil=True)
def apply_action(k, c, v, aux, K, n_dyn, x, r):
    """Apply one non-OBS action (``csfpk.schedule``) to the state x and rates r, in place.

    ``aux`` is the action's row (u0, ii, D) for SS_TRAIN and (u, ·, ·) for INF_PART. Returns a
    status code (SINGULAR when a steady state does not exist: the LU factorisation of the
    system matrix (``linalg``) meets a zero pivot or |det| < 1e-300).
    """
    n = x.shape[0]
    if k == BOLUS or k == RATE or k == RESET:
        apply_simple(k, c, v, x, r)
    elif k == SS_TRAIN:
        u0, ii, dur = aux[0], aux[1], aux[2]
        vec = np.zeros(n_dyn)
        if dur > 0.0:
            _, Pd = propagators(K, dur)
            for i in range(n_dyn):
                vec[i] = Pd[i, c] * v
        else:
            vec[c] = v
        Ei, _ = propagators(K, ii)
        A = np.empty((n_dyn, n_dyn))
        for i in range(n_dyn):
            for j in range(n_dyn):
                A[i, j] = (1.0 if i == j else 0.0) - Ei[i, j]
        piv = np.empty(n_dyn, dtype=np.int64)
        if not lu_factor(A, piv) or abs(lu_det(A, piv)) < 1e-300:
            return SINGULAR
        lu_solve(A, piv, vec)
        Eu, _ = propagators(K, u0)
        for i in range(n_dyn):
            s = 0.0
            for j in range(n_dyn):
                s += Eu[i, j] * vec[j]
            x[i] += s
    elif k == INF_PART:
        _, Pu = propagators(K, aux[0])
        for i in range(n):
            x[i] += Pu[i, c] * v
    elif k == SS_CONST:
        A = np.empty((n_dyn, n_dyn))
        for i in range(n_dyn):
            for j in range(n_dyn):
                A[i, j] = -K[i, j]
        piv = np.empty(n_dyn, dtype=np.int64)
        if not lu_factor(A, piv) or abs(lu_det(A, piv)) < 1e-300:
            return SINGULAR
        rhs = np.zeros(n_dyn)
        rhs[c] = v
        lu_solve(A, piv, rhs)
        for i in range(n_dyn):
            x[i] += rhs[i]
    return OK


RUN_CAP = 64  # grid steps covered by one table of output rows (``grid_run``); longer runs go in pieces


@njit(cache=True, nogil=True)
def new_runs(n, n_out):
    """Tables of ``grid_run`` for n states and n_out outputs: tab (RUN_CAP + 1, n_out, n), tab[k, o] =
    f_o·row i_o of E(step)ᵏ; pw (3, n, n): E(step)^L of the last jump L (slot 0) and scratch; pairs
    (2, RUN_CAP + 1): the steps k and output rows of the samples of a piece; run = [rows of tab filled
    (0: none yet), L of pw (0: none)]."""
    cap = RUN_CAP + 1
    tab = np.zeros((cap, n_out, n))
    pw = np.empty((3, n, n))
    pairs = np.empty((2, cap), dtype=np.int64)
    run = np.zeros(2, dtype=np.int64)
    return tab, pw, pairs, run


@njit(cache=True, nogil=True)
def _copy(A, B):
    """B ← A (element loops: slice assignment is slow to compile)."""
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            B[i, j] = A[i, j]


@njit(cache=True, nogil=True)
def _grid_power(E, L, pw):
    """pw[0] ← E^L (L ≥ 1) by binary powering: pw[1] holds E^(2^j), pw[2] is scratch."""
    first = True
    _copy(E, pw[1])
    while L > 0:
        if L & 1:
            if first:
                _copy(pw[1], pw[0])
                first = False
            else:
                matmul(pw[0], pw[1], pw[2])
                _copy(pw[2], pw[0])
        L >>= 1
        if L > 0:
            matmul(pw[1], pw[1], pw[2])
            _copy(pw[2], pw[1])


@njit(cache=True, nogil=True)
def _grid_jump(E, L, pw, run, x, y):
    """x ← E^L·x (``_grid_power``, kept for the next jump of the same length); y as scratch."""
    n = x.shape[0]
    if run[1] != L:
        _grid_power(E, L, pw)
        run[1] = L
    for i in range(n):
        s = 0.0
        for j in range(n):
            s += pw[0, i, j] * x[j]
        y[i] = s
    for i in range(n):
        x[i] = y[i]


@njit(cache=True, nogil=True)
def _grid_rows(E, tab, pairs, npair, run, x, f, out_state, curves):
    """Write the rows of the samples pairs[:, :npair] (steps k, rows g) of a piece: C_o = tab[k, o]·x,
    the table grown first up to the largest k (tab[j] = tab[j − 1]·E)."""
    n = x.shape[0]
    n_out = out_state.shape[0]
    if run[0] == 0:
        for o in range(n_out):
            tab[0, o, out_state[o]] = f[o]
    kmax = pairs[0, npair - 1]
    while run[0] < kmax:
        j = run[0] + 1
        for o in range(n_out):
            for c in range(n):
                s = 0.0
                for q in range(n):
                    s += tab[j - 1, o, q] * E[q, c]
                tab[j, o, c] = s
        run[0] = j
    for p in range(npair):
        k = pairs[0, p]
        g = pairs[1, p]
        for o in range(n_out):
            s = 0.0
            for c in range(n):
                s += tab[k, o, c] * x[c]
            curves[g, o] = s


@njit(cache=True, nogil=True)
def grid_run(K, E, P, meta, tab, pw, pairs, run, kind, time, cmt, value, dose_scale, a, t, x, y, out_state, f,
             curves):
    """Curves along a run of grid samples and boluses from action a, without stepping the state through each
    sample.

    With the state x0 at time t and no infusion running, the outputs k grid steps later are
    C_o(t + k·step) = f_o·(E(step)ᵏ·x0)[i_o] = tab[k, o]·x0 with the rows f_o·(Eᵏ)[i_o, :] built once
    per subject (up to ``RUN_CAP``): n_out·n products per output row instead of n² per grid step, and the
    rows of a piece are independent of each other (no chain of matrix–vector products). Before a bolus, or after ``RUN_CAP`` steps, x jumps to the current time,
    x ← E^k·x0 (binary powers of E, cached per k), and the bolus (× dose_scale) is added. A gap counts as
    one grid step on the test ``advance`` uses (|h − step| ≤ 1e-12·max(1, step)), a zero gap as none; any
    other gap, a bolus between grid samples, or any other action ends the run. E, P, meta are
    ``new_stepper``'s (E(step) computed here when still missing). Returns (index of the first action not
    taken, time of x). The rounding differs from stepping (sums in another order): ~k·n·ε relative, since
    E ≥ 0 for a compartmental K.
    """
    step = meta[0]
    tol = 1e-12 * max(1.0, step)
    n_act = kind.shape[0]
    if not (abs(time[a] - t - step) <= tol or time[a] == t):
        return a, t
    if meta[1] < 2.0:
        exp_phi(K, step, E, P, E.shape[0] - 2)  # slot 0 as a value: a literal would compile a second exp_phi
        meta[1] = 2.0
    Eg = E[0]
    k = a - a  # 0 as a value: a literal 0 would compile Literal[int] variants of _grid_jump and _grid_rows
    tk = t
    b = a
    npair = k
    rows = curves.shape[0]
    while True:
        end = b >= n_act
        bolus = False
        stepped = False
        if not end:
            h = time[b] - tk
            if kind[b] == OBS:
                stepped = h != 0.0
                end = stepped and abs(h - step) > tol
            elif kind[b] == BOLUS:
                bolus = True
                end = h != 0.0
            else:
                end = True
        if end or bolus or (stepped and k == RUN_CAP) or npair == pairs.shape[1]:  # (samples at one time: full)
            if npair > 0:
                _grid_rows(Eg, tab, pairs, npair, run, x, f, out_state, curves)
                npair = k - k
            if end:
                break
            if k > 0:
                _grid_jump(Eg, k, pw, run, x, y)
                k = npair
            if bolus:
                x[cmt[b]] += value[b] * dose_scale
                b += 1
                continue
        if stepped:
            k += 1
        tk = time[b]
        g = int(value[b])
        if g < rows:
            pairs[0, npair] = k
            pairs[1, npair] = g
            npair += 1
        b += 1
    if k > 0:
        _grid_jump(Eg, k, pw, run, x, y)
    return b, tk


@njit(cache=True, nogil=True)
def _skip(spec, K, h, E, P, meta, x, y, r, use_r, lam, V, W, n_dyn, vec):
    """x ← E(h)·x + Φ(h)·r over a gap without metrics: by the eigen-decomposition when ``spec`` (``walk``),
    else by the cached propagators (``advance``)."""
    if spec:
        spectral_advance(K, lam, V, W, n_dyn, h, x, r, use_r, vec)
    else:
        advance(K, h, E, P, meta, x, y, r, use_r)


@njit(cache=True, nogil=True)
def walk(K, n_dyn, kind, time, cmt, value, aux, grid_step, dose_scale, states, out_state, f, w0, w1, trough_index,
         target, curve_stride, curves, m, exact_win):
    """The exact walk along the timeline for one subject; the one loop behind curves and metrics.

    x(t + h) = E(h)·x(t) + Φ(h)·r between actions (module docstring), doses as jumps (``apply_action``),
    dose amounts and rates multiplied by ``dose_scale`` (per-m² or per-kg doses; exact for linear models).
    What is kept at an OBS action with output row g = ``value`` is switched by the array shapes:

    * states, float64[rows, n]: states[g] ← x (rows = 0: no state output);
    * concentrations C_o = f[o]·x[out_state[o]] of n_out outputs (out_state int64[n_out], f float64[n_out];
      f = scale/volume, in the unit the caller wants, nM for the population runner), n_out = 0: none;
    * curves, float64[rows_c, n_out]: curves[g // curve_stride] ← C at every ``curve_stride``-th g
      (curve_stride = 0 or rows_c = 0: none; curves alone: ``run_curves``, faster);
    * m, float64[n_out, N_METRICS]: running metrics over the grid samples w0 ≤ g ≤ w1 (slots in
      ``codes``; the formulas of ``csfpk.metrics``, the pure-numpy reference the tests compare with)::

          Cmax = max C_g,  Tmax = first t_g at Cmax,  AUC = Σ ½(t_g+1 − t_g)(C_g + C_g+1),
          Cavg = AUC/(t_w1 − t_w0),  time above T: per interval the length where the linear
          interpolant is ≥ T (T = target[o]),  % above = 100·time above/(t_w1 − t_w0),
          trough = C at g = ``trough_index`` (the pre-dose sample of the last dose in the window);

      w1 < w0 keeps no metrics. No concentration–time array is needed for metrics.
    * exact_win, float64[3] = (t0, t1, t_trough) h instead of float64[0]: the metrics in m are the
      exact, grid-free ones over [t0, t1] (on every inter-event gap inside the window, gaps split at
      t0 and t1; ``csfpk.metrics`` defines them): Cmax the supremum, Tmax the first time it is
      reached, AUC the integral, time above the measure of C ≥ T, trough the exact value at t_trough
      reached before any action at that time (the pre-dose value). The grid samples then only feed
      ``states`` and ``curves``; w0, w1, trough_index are ignored. The gaps are computed from the
      eigen-decomposition of K (``spectral.gap``; ``spectral.advance`` outside the window) when
      ``spectral.decompose`` accepts K, else by the certificate walk (``exposure.gap``). A fourth
      entry exact_win[3] = 1 forces the certificate walk (tests and benchmarks compare the two).

    Returns a status code (``codes``): OK, SINGULAR (a steady state does not exist) or NONFINITE.
    """
    n = K.shape[0]
    n_out = out_state.shape[0]
    keep_states = states.shape[0] > 0
    x = np.zeros(n)
    y = np.zeros(n)
    r = np.zeros(n)
    use_r = rates_active(r)  # False; a call, not a literal: numba would compile a Literal[bool] variant of advance
    E, P, meta = new_stepper(K, grid_step)
    t = 0.0
    prev = np.zeros(n_out)
    prev_t = 0.0
    for o in range(n_out):
        m[o, CMAX] = -np.inf
        m[o, TMAX] = np.nan
        m[o, TROUGH] = np.nan
        m[o, AUC] = 0.0
        m[o, TIME_ABOVE] = 0.0
    t_first = np.nan
    exact = exact_win.shape[0] > 0
    t0 = exact_win[0] if exact else 0.0
    t1 = exact_win[1] if exact else 0.0
    t_trough = exact_win[2] if exact else 0.0
    trough_done = not exact
    knorm = norm1(K)
    lam, V, W, vec, B, brk = new_workspace(n_dyn if exact else 0)
    spec = exact and not (exact_win.shape[0] > 3 and exact_win[3] == 1.0) and decompose(K, n_dyn, out_state, lam, V,
                                                                                        W)
    cE, cP, cQ, keys, kry, work, bnd = new_cache(K, n if (exact and not spec) else 0)
    level = np.empty(n_out)
    for o in range(n_out):
        level[o] = target[o] * (1.0 - AT_TARGET_RTOL)
    for a in range(kind.shape[0] + (1 if exact else 0)):
        t_next = time[a] if a < kind.shape[0] else t1  # exact: a last pseudo-action closes the window
        if t_next > t:
            te = min(t0, t_next) if exact else t_next  # the part before the window (all of it without metrics)
            if t < te:
                _skip(spec, K, te - t, E, P, meta, x, y, r, use_r, lam, V, W, n_dyn, vec)
                t = te
            if t < t_next and t < t1:  # inside the window
                te = min(t1, t_next)
                if spec:
                    spectral_gap(K, lam, V, W, n_dyn, t, te - t, x, r, use_r, out_state, f, level, m, vec, B, brk)
                else:
                    gap(K, knorm, t, te - t, x, r, use_r, out_state, f, level, m, cE, cP, cQ, keys, kry, work, bnd)
                t = te
            if t < t_next:  # after the window
                _skip(spec, K, t_next - t, E, P, meta, x, y, r, use_r, lam, V, W, n_dyn, vec)
            t = t_next
        if not trough_done and t >= t_trough:
            for o in range(n_out):
                m[o, TROUGH] = f[o] * x[out_state[o]]
            trough_done = True
        if a == kind.shape[0]:
            break
        k = kind[a]
        c = cmt[a]
        v = value[a]
        if k == OBS:
            g = int(v)
            if keep_states:
                for i in range(n):
                    states[g, i] = x[i]
            if curve_stride > 0 and g % curve_stride == 0:
                row = g // curve_stride
                if row < curves.shape[0]:
                    for o in range(n_out):
                        curves[row, o] = f[o] * x[out_state[o]]
            if exact or g < w0 or g > w1:
                continue
            for o in range(n_out):
                cc = f[o] * x[out_state[o]]
                if cc > m[o, CMAX]:
                    m[o, CMAX] = cc
                    m[o, TMAX] = t
                if g == trough_index:
                    m[o, TROUGH] = cc
                if g > w0:
                    dt = t - prev_t
                    c0 = prev[o]
                    m[o, AUC] += 0.5 * dt * (c0 + cc)
                    T = target[o]
                    if c0 >= T and cc >= T:
                        m[o, TIME_ABOVE] += dt
                    elif c0 >= T:
                        m[o, TIME_ABOVE] += dt * (c0 - T) / (c0 - cc)
                    elif cc >= T:
                        m[o, TIME_ABOVE] += dt * (cc - T) / (cc - c0)
                prev[o] = cc
            if g == w0:
                t_first = t
            prev_t = t
            continue
        if k != RESET:
            v = v * dose_scale
        code = apply_action(k, c, v, aux[a], K, n_dyn, x, r)
        if code != OK:
            return code
        use_r = rates_active(r)
    span = t1 - t0 if exact else prev_t - t_first
    for o in range(n_out):
        m[o, CAVG] = m[o, AUC] / span if span > 0.0 else np.nan
        m[o, PCT_ABOVE] = 100.0 * m[o, TIME_ABOVE] / span if span > 0.0 else np.nan
    for i in range(n):
        if not np.isfinite(x[i]):
            return NONFINITE
    return OK


@njit(cache=True, nogil=True)
def run_subject(K, n_dyn, kind, time, cmt, value, aux, grid_step, out):
    """Walk the timeline for one subject; write state rows into ``out``; return a status code (``walk``
    with states only)."""
    no_out = np.empty(0, dtype=np.int64)
    no_f = np.empty(0)
    zero = no_out.shape[0]  # 0 as a value: literal ints would compile a second walk (Literal[int] types)
    return walk(K, n_dyn, kind, time, cmt, value, aux, grid_step, 1.0, out, no_out, no_f, zero, zero - 1, zero - 1,
                no_f, zero, np.empty((0, 0)), np.empty((0, N_METRICS)), no_f)


@njit(cache=True, nogil=True)
def curves_walk(K, n_dyn, kind, time, cmt, value, aux, grid_step, dose_scale, out_state, f, curves):
    """The walk of one subject keeping only the concentrations asked for: curves[g, o] ← f[o]·x[out_state[o]]
    at output row g (every row with g < curves.shape[0]); returns a status code as ``walk``.

    Actions and gaps as ``walk`` (``apply_action``, ``advance``, doses × ``dose_scale``), but each run of
    grid samples with no infusion running is read off tables of output rows (``grid_run``) instead of
    stepping every state through every sample. Kept apart from ``walk`` on purpose: the tables and binary
    powers cost ~3 s of compile (measured), which a population run computing metrics would pay for nothing.
    """
    n = K.shape[0]
    n_out = out_state.shape[0]
    x = np.zeros(n)
    y = np.zeros(n)
    r = np.zeros(n)
    use_r = rates_active(r)  # False, as a value (see ``walk``)
    E, P, meta = new_stepper(K, grid_step)
    tab, pw, pairs, run = new_runs(n, n_out)
    t = 0.0
    a = out_state.shape[0] - n_out  # 0 as a value: a literal 0 would compile a Literal[int] grid_run
    n_act = kind.shape[0]
    while a < n_act:
        if kind[a] == OBS and not use_r and grid_step > 0.0:
            b, t = grid_run(K, E, P, meta, tab, pw, pairs, run, kind, time, cmt, value, dose_scale, a, t, x, y,
                            out_state, f, curves)
            if b > a:
                a = b
                continue
        if time[a] > t:
            advance(K, time[a] - t, E, P, meta, x, y, r, use_r)
            t = time[a]
        k = kind[a]
        v = value[a]
        if k == OBS:
            g = int(v)
            if g < curves.shape[0]:
                for o in range(n_out):
                    curves[g, o] = f[o] * x[out_state[o]]
        else:
            if k != RESET:
                v = v * dose_scale
            code = apply_action(k, cmt[a], v, aux[a], K, n_dyn, x, r)
            if code != OK:
                return code
            use_r = rates_active(r)
        a += 1
    for i in range(n):
        if not np.isfinite(x[i]):
            return NONFINITE
    return OK


@njit(cache=True, nogil=True)
def run_curves(Ks, n_dyn, kind, time, cmt, value, aux, grid_step, dose_scale, out_state, f, curves, status):
    """Concentration curves of every subject s, only the outputs asked for:
    curves[s, g, o] ← f[s, o]·x_s[out_state[o]](t_g) at every output row g of the timeline, with Ks[s] and
    doses × dose_scale[s] (f = scale/volume in the unit the caller wants); status[s] a status code
    (``curves_walk``). ``curves`` (S, rows, n_out) is the caller's: allocate it once and reuse it chunk
    after chunk. One thread: callers run blocks of subjects on threads (``csfpk.threads.on_threads``;
    ``nogil``), as ``batch.run_metrics``.
    """
    for s in range(Ks.shape[0]):
        status[s] = curves_walk(Ks[s], n_dyn, kind, time, cmt, value, aux, grid_step, dose_scale[s], out_state, f[s],
                                curves[s])
