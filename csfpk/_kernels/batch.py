"""Population kernel: walk the shared timeline for many subjects, keep only exposure metrics.

For each subject s (threads over subjects, ``prange``) the exact propagation of ``exact.py``
(x(t + h) = E(h)·x(t) + Φ(h)·r, doses as jumps, steady states in closed form) runs along the
shared timeline; at every output-grid sample the concentrations of the outputs

    C_o = f[s, o] · x[state_o]          (f = scale/volume, converted to nM: ·1e6/MW)

update running metrics, so no concentration–time array is stored (memory per subject is a few
vectors). The metric formulas are those of ``csfpk.metrics`` (the pure-numpy reference, tested
against this kernel): on the grid samples with window_start ≤ g ≤ window_end,

    Cmax = max C_g,  Tmax = first t_g at Cmax,  AUC = Σ ½(t_g+1 − t_g)(C_g + C_g+1),
    time above T: per interval the length where the linear interpolant is ≥ T,
    trough = C at grid index ``trough_index`` (the pre-dose sample of the last dose in the window).

Dose actions are multiplied by ``dose_scale[s]`` (per-m² or per-kg doses, exact for linear models).
Optionally every ``curve_stride``-th grid sample is written to ``curves[s]``.
"""

import numpy as np
from numba import njit, prange

from .codes import (AUC, CAVG, CMAX, N_METRICS, NONFINITE, OBS, OK, PCT_ABOVE, RESET,  # noqa: F401 (N_METRICS: API)
                    TIME_ABOVE, TMAX, TROUGH)
from .exact import advance, apply_action, new_stepper, rates_active


@njit(cache=True, nogil=True)
def _subject(K, n_dyn, kind, time, cmt, value, aux, grid_step, dose_scale, out_state, f, w0, w1, trough_index,
             target, curve_stride, curves, m):
    n = K.shape[0]
    n_out = out_state.shape[0]
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
    for a in range(kind.shape[0]):
        h = time[a] - t
        if h > 0.0:
            advance(K, h, E, P, meta, x, y, r, use_r)
            t = time[a]
        k = kind[a]
        c = cmt[a]
        v = value[a]
        if k == OBS:
            g = int(v)
            if curve_stride > 0 and g % curve_stride == 0:
                row = g // curve_stride
                if row < curves.shape[0]:
                    for o in range(n_out):
                        curves[row, o] = f[o] * x[out_state[o]]
            if g < w0 or g > w1:
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
    span = prev_t - t_first
    for o in range(n_out):
        m[o, CAVG] = m[o, AUC] / span if span > 0.0 else np.nan
        m[o, PCT_ABOVE] = 100.0 * m[o, TIME_ABOVE] / span if span > 0.0 else np.nan
    for i in range(n):
        if not np.isfinite(x[i]):
            return NONFINITE
    return OK


@njit(cache=True, nogil=True, parallel=True)
def run_metrics(Ks, n_dyn, kind, time, cmt, value, aux, grid_step, dose_scale, out_state, f, w0, w1, trough_index,
                target, curve_stride, curves, metrics, status):
    """Metrics of every subject: Ks[s], dose_scale[s], f[s] → metrics[s] (n_out × N_METRICS), status[s].

    ``curves`` has shape (S, rows, n_out) (rows may be 0 when ``curve_stride`` is 0).
    """
    for s in prange(Ks.shape[0]):
        status[s] = _subject(Ks[s], n_dyn, kind, time, cmt, value, aux, grid_step, dose_scale[s], out_state, f[s],
                             w0, w1, trough_index, target, curve_stride, curves[s], metrics[s])
