"""Exact solution of the linear model along a timeline of actions (DESIGN §5).

Between two actions at t and t + h with constant input rates r (mg/h) the linear system
dx/dt = K·x + r has the exact solution

    x(t + h) = E(h)·x(t) + Φ(h)·r,     E(h) = exp(K·h),  Φ(h) = ∫₀ʰ exp(K·s) ds

(``csfpk._kernels.expm.propagators``). E and Φ of the regular output step are computed once per
subject; other gaps (doses between grid points) are computed when met and cached for the next
gap of the same length. Action semantics are documented in ``csfpk.schedule``; steady states use

    SS_TRAIN:  x_dyn += E(u0)·(I − E(ii))⁻¹·v      (sum over the infinite train of past doses)
    SS_CONST:  x_dyn += −K_dyn⁻¹·r·e_c              (constant infusion at steady state)

on the non-sink block (sinks accumulate without bound at steady state and are left unchanged).
"""

import numpy as np
from numba import njit, prange

from .expm import propagators

OBS, BOLUS, RATE, RESET, SS_TRAIN, INF_PART, SS_CONST = range(7)
OK, NONFINITE, SINGULAR = 0, 2, 5


@njit(cache=True, nogil=True)
def _matvec_add(E, x, P, r, use_r, y):
    n = x.shape[0]
    for i in range(n):
        s = 0.0
        for j in range(n):
            s += E[i, j] * x[j]
        if use_r:
            for j in range(n):
                s += P[i, j] * r[j]
        y[i] = s


@njit(cache=True, nogil=True)
def rates_active(r):
    """True when any infusion rate is non-zero."""
    for i in range(r.shape[0]):
        if r[i] != 0.0:
            return True
    return False


@njit(cache=True, nogil=True)
def apply_action(k, c, v, aux, K, n_dyn, x, r):
    """Apply one non-OBS action (``csfpk.schedule``) to the state x and rates r, in place.

    ``aux`` is the action's row (u0, ii, D) for SS_TRAIN and (u, ·, ·) for INF_PART. Returns a
    status code (SINGULAR when a steady state does not exist).
    """
    n = x.shape[0]
    if k == BOLUS:
        x[c] += v
    elif k == RATE:
        new = r[c] + v
        # an infusion ending exactly cancels its start; clear rounding residue
        r[c] = 0.0 if abs(new) <= 1e-12 * abs(v) else new
    elif k == RESET:
        x[:] = 0.0
        r[:] = 0.0
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
        A = np.eye(n_dyn) - np.ascontiguousarray(Ei[:n_dyn, :n_dyn])
        if abs(np.linalg.det(A)) < 1e-300:
            return SINGULAR
        z = np.linalg.solve(A, vec)
        Eu, _ = propagators(K, u0)
        z2 = np.ascontiguousarray(Eu[:n_dyn, :n_dyn]) @ z
        for i in range(n_dyn):
            x[i] += z2[i]
    elif k == INF_PART:
        _, Pu = propagators(K, aux[0])
        for i in range(n):
            x[i] += Pu[i, c] * v
    elif k == SS_CONST:
        A = -np.ascontiguousarray(K[:n_dyn, :n_dyn])
        if abs(np.linalg.det(A)) < 1e-300:
            return SINGULAR
        rhs = np.zeros(n_dyn)
        rhs[c] = v
        z = np.linalg.solve(A, rhs)
        for i in range(n_dyn):
            x[i] += z[i]
    return OK


@njit(cache=True, nogil=True)
def run_subject(K, n_dyn, kind, time, cmt, value, aux, grid_step, out):
    """Walk the timeline for one subject; write state rows into ``out``; return a status code."""
    n = K.shape[0]
    x = np.zeros(n)
    y = np.zeros(n)
    r = np.zeros(n)
    use_r = False
    if grid_step > 0.0:
        Eg, Pg = propagators(K, grid_step)
    else:
        Eg, Pg = np.eye(n), np.zeros((n, n))
    hc = -1.0
    Ec, Pc = np.eye(n), np.zeros((n, n))
    t = 0.0
    tol = 1e-12 * max(1.0, grid_step)
    for a in range(kind.shape[0]):
        h = time[a] - t
        if h > 0.0:
            if grid_step > 0.0 and abs(h - grid_step) <= tol:
                _matvec_add(Eg, x, Pg, r, use_r, y)
            else:
                if h != hc:
                    Ec, Pc = propagators(K, h)
                    hc = h
                _matvec_add(Ec, x, Pc, r, use_r, y)
            x, y = y, x
            t = time[a]
        k = kind[a]
        if k == OBS:
            out[int(value[a]), :] = x
        else:
            code = apply_action(k, cmt[a], value[a], aux[a], K, n_dyn, x, r)
            if code != OK:
                return code
            use_r = rates_active(r)
    for i in range(n):
        if not np.isfinite(x[i]):
            return NONFINITE
    return OK


@njit(cache=True, nogil=True, parallel=True)
def run_batch(Ks, n_dyn, kind, time, cmt, value, aux, grid_step, out, status):
    """``run_subject`` for every subject s: Ks[s] → out[s], status[s] (threads over subjects)."""
    for s in prange(Ks.shape[0]):
        status[s] = run_subject(Ks[s], n_dyn, kind, time, cmt, value, aux, grid_step, out[s])
