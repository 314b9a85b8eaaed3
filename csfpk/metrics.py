r"""Exposure metrics of concentration–time curves and their population summaries (DESIGN §8).

Pure numpy. A curve is sampled on an output grid t_0 < t_1 < … (h); metrics use the samples
inside an analysis window [w0, w1] (the indices g0 … g1 with w0 ≤ t_g ≤ w1). A sample at a dose
time is the pre-dose value (csfpk's output convention). With C in nM:

=============  ===========================================================================
``cmax``       max_g C_g  (nM)
``tmax``       the first t_g at which C_g = Cmax  (h)
``trough``     C at the pre-dose sample of the last dose in the window (nM); with no dose on
               the grid inside the window, C at the window end. For a regimen with a constant
               interval τ this is C_ss,min of the last interval.
``auc``        linear trapezoid Σ ½(t_g+1 − t_g)(C_g + C_g+1) over the window  (nM·h). Exact
               for piecewise-linear curves; for smooth curves the error is O(Δt²) (hourly output:
               well below 1 % for TKI half-lives of days).
``cavg``       AUC / (t_g1 − t_g0)  (nM), the average concentration over the window
``time_above`` time (h) during which the linear interpolant of C is ≥ the target T: per
               interval, Δt if both ends ≥ T, 0 if both < T, else the part on the high side of
               the linear crossing, Δt·(C_high − T)/(C_high − C_low)
``pct_above``  100 · time_above / (t_g1 − t_g0)  (%)
=============  ===========================================================================

**Exact metrics** (``metrics="exact"``, the default of populations, whose models are linear). The
same names, computed without a grid from the exact solution x(t) = E(t)·x0 + Φ(t)·r between events
(``csfpk._kernels.exposure``, which documents the method), over the window [w0, w1] in h:

=============  ===========================================================================
``cmax``       sup C(t) over [w0, w1]; the curve is right-continuous, so the value just after a
               bolus counts (a dose at w1 itself does not: its post-dose value lies after w1)
``tmax``       the first time at which C reaches Cmax (h)
``trough``     C just before the last dose in (w0, w1] (before any event at that time), exactly;
               with no dose there, C(w1). As on the grid, the dose times are those of the
               timeline (lag included).
``auc``        ∫ C dt over [w0, w1] (nM·h), exact
``cavg``       AUC / (w1 − w0)
``time_above`` the length of {t ∈ [w0, w1] : C(t) ≥ T·(1 − 1e-10)} (h), every crossing located
               to machine precision. A curve that only touches T at a peak adds (almost) nothing;
               a curve flat at T (a steady state equal to the target) counts as above: the
               relative tolerance 1e-10 makes both independent of rounding.
``pct_above``  100 · time_above / (w1 − w0)
=============  ===========================================================================

Exact values are the limits of the grid values as dt → 0. They differ from grid values by what the
grid misses: peaks between samples (the grid's Cmax is low, its Tmax on a sample), the curvature
between samples (trapezoid AUC) and the crossings (linear interpolation). The grid definitions stay
available (``metrics="grid"``) to compare with NCA on sampled data. Nonlinear models (adaptive
solvers) have grid metrics only.

The CSF/plasma AUC ratio of a subject is ``auc_csf / auc_plasma``. Over a population
(``summarize``): the median and the 5th and 95th percentiles (numpy's linear interpolation between
order statistics, Hyndman & Fan type 7), and the probability of target attainment (``pta``): the
share of subjects whose metric is ≥ the threshold.

Examples
--------
>>> import numpy as np
>>> from csfpk import metrics
>>> t = np.arange(0.0, 25.0)
>>> m = metrics.exposure(np.exp(-0.1 * t), t, target=0.5)
>>> round(float(m["cmax"]), 3), round(float(m["time_above"]), 2)
(1.0, 6.93)
"""

import numpy as np

from .units import mg_per_L_to_nM

NAMES = ("cmax", "tmax", "trough", "cavg", "auc", "time_above", "pct_above")
UNITS = {"cmax": "nM", "tmax": "h", "trough": "nM", "cavg": "nM", "auc": "nM·h", "time_above": "h",
         "pct_above": "%"}
PERCENTILES = (5.0, 50.0, 95.0)


def window_indices(times, window=None):
    """First and last grid index inside ``window`` = (w0, w1) in h (default: the whole grid)."""
    times = np.asarray(times, dtype=float)
    if window is None:
        return 0, times.size - 1
    w0, w1 = float(window[0]), float(window[1])
    eps = 1e-9 * max(1.0, abs(w1))
    inside = np.nonzero((times >= w0 - eps) & (times <= w1 + eps))[0]
    if inside.size < 2 or not w1 > w0:
        raise ValueError(f"window = {tuple(window)!r} h holds fewer than 2 output samples; expected w0 < w1 "
                         f"within {times[0]:g}..{times[-1]:g} h")
    return int(inside[0]), int(inside[-1])


def trough_index(times, dose_times, window=None):
    """Grid index of the trough: the pre-dose sample of the last dose in (w0, w1], else w1's sample."""
    times = np.asarray(times, dtype=float)
    g0, g1 = window_indices(times, window)
    best = g1
    for td in sorted(dose_times):
        j = int(np.searchsorted(times, td - 1e-9 * max(1.0, td)))
        if j < times.size and abs(times[j] - td) <= 1e-9 * max(1.0, td) and g0 < j <= g1:
            best = j
    return best


def auc(conc, times, window=None):
    """Linear-trapezoid AUC over the window, along the last axis (conc units · h)."""
    c, t = _slice(conc, times, window)
    return np.sum(0.5 * np.diff(t) * (c[..., 1:] + c[..., :-1]), axis=-1)


def cavg(conc, times, window=None):
    """AUC / window length (conc units)."""
    c, t = _slice(conc, times, window)
    return auc(c, t) / (t[-1] - t[0])


def cmax(conc, times, window=None):
    """Maximum over the window's samples."""
    c, _ = _slice(conc, times, window)
    return np.max(c, axis=-1)


def tmax(conc, times, window=None):
    """First sample time at the maximum (h)."""
    c, t = _slice(conc, times, window)
    return t[np.argmax(c, axis=-1)]


def time_above(conc, times, target, window=None):
    """Hours during which the linear interpolant of ``conc`` is ≥ ``target`` (module docstring)."""
    c, t = _slice(conc, times, window)
    c0, c1 = c[..., :-1], c[..., 1:]
    dt = np.diff(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        down = dt * (c0 - target) / (c0 - c1)
        up = dt * (c1 - target) / (c1 - c0)
    part = np.where((c0 >= target) & (c1 >= target), dt,
                    np.where(c0 >= target, down, np.where(c1 >= target, up, 0.0)))
    return np.sum(part, axis=-1)


def pct_above(conc, times, target, window=None):
    """Percentage of the window during which ``conc`` ≥ ``target``."""
    _, t = _slice(conc, times, window)
    return 100.0 * time_above(conc, times, target, window) / (t[-1] - t[0])


def exposure(conc, times, target=np.inf, window=None, dose_times=()):
    """All metrics of ``conc`` (shape (..., len(times))) as ``{name: array}`` (module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.array([0.0, 1.0, 2.0])
    >>> float(exposure(np.array([0.0, 2.0, 0.0]), t, target=1.0)["time_above"])
    1.0
    """
    conc = np.asarray(conc, dtype=float)
    times = np.asarray(times, dtype=float)
    g = trough_index(times, dose_times, window)
    return {
        "cmax": cmax(conc, times, window),
        "tmax": tmax(conc, times, window),
        "trough": conc[..., g],
        "cavg": cavg(conc, times, window),
        "auc": auc(conc, times, window),
        "time_above": time_above(conc, times, target, window),
        "pct_above": pct_above(conc, times, target, window),
    }


def of_result(result, target_nM=np.inf, window=None):
    """Metrics of every compartment of a ``SimulationResult``: ``{compartment: {metric: value}}`` (nM, h)."""
    dose_times = [d[0] for d in result.doses]
    out = {}
    for name in result.compartments:
        c = mg_per_L_to_nM(result.conc(name), result.model.molecular_weight)
        out[name] = {k: float(v) for k, v in exposure(c, result.times, target_nM, window, dose_times).items()}
    return out


def summarize(values, percentiles=PERCENTILES):
    """``(p05, median, p95)`` of ``values`` ignoring NaN (linear interpolation, type 7)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return tuple(np.nan for _ in percentiles)
    return tuple(float(x) for x in np.percentile(v, percentiles))


def pta(values, threshold):
    """Probability of target attainment: share of subjects (NaN excluded) with value ≥ ``threshold``."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    return float(np.mean(v >= threshold)) if v.size else np.nan


def _slice(conc, times, window):
    conc = np.asarray(conc, dtype=float)
    times = np.asarray(times, dtype=float)
    g0, g1 = window_indices(times, window)
    return conc[..., g0:g1 + 1], times[g0:g1 + 1]
