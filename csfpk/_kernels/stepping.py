"""Step-size helpers shared by the adaptive integrators (``dopri5``, ``rosenbrock``)."""

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
