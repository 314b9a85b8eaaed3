"""The segment contract of the adaptive integrators, and the helpers they share (``dopri5``, ``rosenbrock``).

Segment contract (``dopri5.dopri5_segment`` and ``rosenbrock.rodas_segment``; written here once)::

    status, h_next = segment(t0, t1, x, K, r, nl, rtol, atol, h, tobs, xobs, max_steps, stats)

integrates dx/dt = f(t, x) = K·x + r + nonlinear terms (``rhs.rhs``) from t0 to t1 with constant
input rates r.

* x: float64[n], the state at t0, overwritten with the state at t1 (the last step is clipped to land
  exactly on t1). On a status other than OK, x holds the state at the last accepted time.
* K: float64[n, n], 1/h; r: float64[n], mg/h; nl: float64[NL_SIZE], the nonlinear terms (``rhs``).
* rtol, atol: the error norm is RMS_i err_i / (atol + rtol·max(|x_i|, |x_new_i|)) (Hairer; scipy);
  a step is accepted when it is ≤ 1 (Rodas4) or < 1 (Dormand–Prince, as scipy's RK45).
* h: the first step to try; h ≤ 0 or non-finite selects it automatically (``_initial_step``:
  Hairer's heuristic, HNW I §II.4, as scipy's ``select_initial_step``). It is cut to t1 − t0.
* tobs: float64[m], sorted, within [t0, t1]; xobs: float64[m, n], row i receives x(tobs[i]) from
  the method's dense output (steps are not forced onto tobs): tobs == t0 gets the initial state and
  tobs == t1 the final state exactly. Asking for output does not change the steps taken.
* max_steps: bound on the steps attempted in this segment (accepted and rejected).
* stats: int64[N_STATS], step counts added to in place (slots in ``codes``: STEPS_ACCEPTED,
  STEPS_REJECTED, RHS_EVALUATIONS, LU_FACTORISATIONS), so that a walk over many segments sums them.
* status (``codes``): OK; NONFINITE (non-finite initial state or right-hand side); MAX_STEPS;
  STEP_UNDERFLOW (h < 1e-14·max(|t|, 1)). h_next is the step to try in the next segment.
"""

import numpy as np
from numba import njit

from csfpk._kernels.codes import NONFINITE, OK, SEGMENT_CONTINUE
from csfpk._kernels.rhs import rhs


@njit(cache=True, nogil=True)
def _all_finite(v):
    for i in range(v.shape[0]):
        if not np.isfinite(v[i]):
            return False
    return True


@njit(cache=True, nogil=True)
def _initial_step(t0, t1, x, f0, K, r, nl, rtol, atol, order, y1, f1):
    """Hairer's starting-step heuristic (HNW I §II.4), as scipy's ``select_initial_step``."""
    n = x.shape[0]
    span = t1 - t0
    d0 = 0.0
    d1 = 0.0
    for i in range(n):
        sc = atol + rtol * abs(x[i])
        d0 += (x[i] / sc) ** 2
        d1 += (f0[i] / sc) ** 2
    d0 = np.sqrt(d0 / n)
    d1 = np.sqrt(d1 / n)
    if d0 < 1e-5 or d1 < 1e-5:
        h0 = 1e-6
    else:
        h0 = 0.01 * d0 / d1
    h0 = min(h0, span)
    for i in range(n):
        y1[i] = x[i] + h0 * f0[i]
    rhs(t0 + h0, y1, K, r, nl, f1)
    d2 = 0.0
    for i in range(n):
        sc = atol + rtol * abs(x[i])
        d2 += ((f1[i] - f0[i]) / sc) ** 2
    d2 = np.sqrt(d2 / n) / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1.0))
    h = min(100.0 * h0, h1, span)
    if not (h > 0.0):  # NaN guard; non-finite inputs are rejected before this is called
        h = span
    return h


@njit(cache=True, nogil=True)
def segment_start(t0, t1, x, tobs, xobs):
    """Common start of an integrator segment: observations at (or, defensively, before) t0 get the
    initial state; returns (next observation index, status): ``SEGMENT_CONTINUE`` to go on integrating,
    ``NONFINITE`` for a non-finite initial state, ``OK`` when the span is empty (every observation then
    gets the initial state).
    """
    n = x.shape[0]
    m = tobs.shape[0]
    iobs = 0
    while iobs < m and tobs[iobs] <= t0:
        for i in range(n):
            xobs[iobs, i] = x[i]
        iobs += 1
    if not _all_finite(x):
        return iobs, NONFINITE
    if not (t1 > t0):
        while iobs < m:
            for i in range(n):
                xobs[iobs, i] = x[i]
            iobs += 1
        return iobs, OK
    return iobs, SEGMENT_CONTINUE
