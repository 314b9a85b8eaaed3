"""Exact solution of the linear model along a timeline of actions (DESIGN §5).

Between two actions at t and t + h with constant input rates r (mg/h) the linear system
dx/dt = K·x + r has the exact solution

    x(t + h) = E(h)·x(t) + Φ(h)·r,     E(h) = exp(K·h),  Φ(h) = ∫₀ʰ exp(K·s) ds

(``csfpk._kernels.expm.propagators``). E of the regular output step is computed once per subject
(Φ only once an infusion runs); other gaps (doses between grid points) are computed when met and
cached for the next gap of the same length (``new_stepper``, ``advance``). Action semantics are documented in ``csfpk.schedule``; steady states use

    SS_TRAIN:  x_dyn += E(u0)·(I − E(ii))⁻¹·v      (sum over the infinite train of past doses)
    SS_CONST:  x_dyn += −K_dyn⁻¹·r·e_c              (constant infusion at steady state)

on the non-sink block (sinks accumulate without bound at steady state and are left unchanged).
"""

import numpy as np
from numba import njit, prange

from .expm import expm, propagators

OBS, BOLUS, RATE, RESET, SS_TRAIN, INF_PART, SS_CONST = range(7)
OK, NONFINITE, SINGULAR = 0, 2, 5


@njit(cache=True, nogil=True)
def new_stepper(K, grid_step):
    """Propagator cache for ``advance``: E, P of shape (2, n, n) (slot 0 the grid step, slot 1 the
    last other gap) and meta = [grid_step, grid Φ ready, gap h, gap Φ ready]. Only exp(K·dt) is
    computed up front; Φ (the 2n×2n block exponential) waits until an infusion is running."""
    n = K.shape[0]
    E = np.zeros((2, n, n))
    P = np.zeros((2, n, n))
    meta = np.array([grid_step, 0.0, -1.0, 0.0])
    if grid_step > 0.0:
        E[0] = expm(K * grid_step)
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
        if use_r:
            E1, P1 = propagators(K, h)
            E[1] = E1
            P[1] = P1
            meta[3] = 1.0
        else:
            E[1] = expm(K * h)
    elif use_r and meta[1 + 2 * slot] == 0.0:
        Eh, Ph = propagators(K, step if slot == 0 else h)
        E[slot] = Eh
        P[slot] = Ph
        meta[1 + 2 * slot] = 1.0
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
    E, P, meta = new_stepper(K, grid_step)
    t = 0.0
    for a in range(kind.shape[0]):
        h = time[a] - t
        if h > 0.0:
            advance(K, h, E, P, meta, x, y, r, use_r)
            t = time[a]
        k = kind[a]
        if k == OBS:
            row = int(value[a])
            for i in range(n):
                out[row, i] = x[i]
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
