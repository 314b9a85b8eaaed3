"""Adaptive integration along a timeline of actions (DESIGN §5).

Between two discontinuities (doses, infusion starts and ends, resets) the model ODE of
``csfpk._kernels.rhs`` is integrated by an error-controlled method:

* ``DOPRI5`` — Dormand–Prince 5(4), explicit, with dense output (``dopri5.py``);
* ``RODAS`` — a stiffly accurate L-stable Rosenbrock method (``rosenbrock.py``);
* ``AUTO`` — Dormand–Prince with stiffness detection, switching to Rodas4 while the problem is stiff
  and back (``autoswitch.py``); the method in use carries over from one segment to the next.

Both follow the segment contract written in ``stepping``; their step counts are summed over the
segments of a subject.

Output samples between discontinuities come from the method's dense output, so the step size is
set by accuracy, not by the output grid. Steady-state actions are not supported here (the Python
layer refuses them before calling).
"""

import numpy as np
from numba import njit, prange

from .autoswitch import auto_segment
from .codes import (AUTO, BOLUS, DOPRI5, N_SWITCH, NONFINITE, OBS, OK, RATE, RESET, RODAS, SW_FIXED, SW_MODE,
                    UNSUPPORTED)
from .exact import apply_simple


@njit(cache=True, nogil=True)
def run_subject(method, K, nl, kind, time, cmt, value, rtol, atol, max_steps, out, stats):
    """Walk the timeline for one subject with ``method``; write states into ``out``; add the step counts of
    every segment to ``stats`` (int64[N_STATS], slots in ``codes``); return a status code.

    ``max_steps`` bounds the steps attempted in each segment between two discontinuities.
    """
    n = K.shape[0]
    m = kind.shape[0]
    x = np.zeros(n)
    r = np.zeros(n)
    # every method runs through auto_segment (one integrator to compile): AUTO starts with Dormand–Prince and
    # tests stiffness; DOPRI5 and RODAS run their method alone, bit for bit as dopri5_segment and rodas_segment
    switch = np.zeros(N_SWITCH, dtype=np.int64)
    switch[SW_FIXED] = 0 if method == AUTO else 1
    switch[SW_MODE] = RODAS if method == RODAS else DOPRI5
    t = 0.0
    h = 0.0
    a = 0
    while a < m:
        if time[a] > t:
            e = a
            while e < m and kind[e] == OBS:
                e += 1
            t_target = time[e] if e < m else time[e - 1]
            # OBS rows in [a, e) with time <= t_target come from dense output of this segment
            cnt = e - a
            tobs = np.empty(cnt)
            for i in range(cnt):
                tobs[i] = time[a + i]
            xobs = np.empty((cnt, n))
            if t_target - t <= 1e-13 * max(1.0, abs(t_target)):
                # a gap below rounding (e.g. a lag of 1e-177 h): nothing to integrate
                for i in range(cnt):
                    row = int(value[a + i])
                    for j in range(n):  # element loops: slice assignment is slow to compile
                        out[row, j] = x[j]
                t = t_target
                a = e
                continue
            status, h = auto_segment(t, t_target, x, K, r, nl, rtol, atol, h, tobs, xobs, max_steps, stats, switch)
            if status != OK:
                return status
            for i in range(cnt):
                row = int(value[a + i])
                for j in range(n):
                    out[row, j] = xobs[i, j]
            t = t_target
            a = e
            continue
        k = kind[a]
        c = cmt[a]
        v = value[a]
        if k == OBS:
            row = int(v)
            for j in range(n):
                out[row, j] = x[j]
        elif k == BOLUS or k == RATE or k == RESET:
            apply_simple(k, c, v, x, r)
            h = 0.0  # restart step-size selection after a discontinuity
        else:
            return UNSUPPORTED
        a += 1
    for i in range(n):
        if not np.isfinite(x[i]):
            return NONFINITE
    return OK


@njit(cache=True, nogil=True, parallel=True)
def run_batch(method, Ks, nls, kind, time, cmt, value, rtol, atol, max_steps, out, status, stats):
    """``run_subject`` for every subject s: Ks[s], nls[s] → out[s], status[s], stats[s] (threads over subjects)."""
    for s in prange(Ks.shape[0]):
        status[s] = run_subject(method, Ks[s], nls[s], kind, time, cmt, value, rtol, atol, max_steps, out[s],
                                stats[s])
