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

Windows (``resolve_window``): every metric names the window it was computed over, and the
per-subject columns carry it as a suffix (``csf_cavg_ss``):

=================  ======  ==================================================================
``"span"``         _span   the whole simulated span, 0 … t_end (includes the climb to steady state)
``"ss"``           _ss     the last complete dosing interval [t_i, t_i + τ] within the span
                           (τ = t_i+1 − t_i, or the previous interval after the last dose):
                           Cmax,ss, Cmin,ss (``trough``: the pre-dose sample at the interval's
                           end), Cavg,ss = AUCτ/τ, AUCτ (``auc``); the default for repeated doses
(start, end)       _win    an explicit window, h
``"per_injection"`` _inj   after each injection until the next (the last: until t_end); per
                           subject the mean over injections of the peak (``peak``, nM), the
                           time ≥ target (``time_above``, h) and C×T = AUC (``cxt``, µM·h);
                           the default for intrathecal regimens (pulses: no trough, no Cavg)
=================  ======  ==================================================================

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
solvers) have no closed form between events: with ``metrics="exact"`` their metrics are the grid
formulas above on a grid of ``NONLINEAR_STEP_H`` = 0.01 h inside the window (plus the dose times,
so the trough is the exact pre-dose value), read off the solver's dense output; AUC, Cavg and Cmax
are then within about 1e-4 (relative) and Tmax within 0.01 h of the limit dt → 0 for the shipped
oral TKIs (ka up to ≈ 10 /h; the grid's Cmax is low by about (dt·ka)²/8 at most). The run manifest
records the step (``solver.metrics_grid_h``). Over spans longer than
``NONLINEAR_MAX_SAMPLES`` × 0.01 h (about 6 weeks) the step is t_end / ``NONLINEAR_MAX_SAMPLES``.

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

NONLINEAR_STEP_H = 0.01  # grid step (h) inside the window for metrics="exact" of a nonlinear model (module docstring)
NONLINEAR_MAX_SAMPLES = 100_000  # ... coarsened to t_end / this for long spans (memory and timeline size per subject)

NAMES = ("cmax", "tmax", "trough", "cavg", "auc", "time_above", "pct_above")
UNITS = {"cmax": "nM", "tmax": "h", "trough": "nM", "cavg": "nM", "auc": "nM·h", "time_above": "h",
         "pct_above": "%"}
PERCENTILES = (5.0, 50.0, 95.0)
WINDOWS = ("span", "ss", "per_injection")
SUFFIX = {"span": "span", "ss": "ss", "window": "win", "per_injection": "inj"}
INJECTION_NAMES = ("peak", "time_above", "cxt")
INJECTION_UNITS = {"peak": "nM", "time_above": "h", "cxt": "µM·h"}


def last_interval(dose_times, t_end):
    """The last complete dosing interval ``(t_i, t_i + τ)`` inside [0, ``t_end``] (h), or None.

    τ is the time to the next dose; after the last dose, the interval before it. Intervals that
    end after ``t_end`` are skipped (the previous one is taken).

    Examples
    --------
    >>> last_interval([0.0, 24.0, 48.0], 72.0)
    (48.0, 72.0)
    >>> last_interval([0.0, 72.0, 144.0], 200.0)
    (72.0, 144.0)
    """
    d = sorted({float(x) for x in dose_times if x < t_end})
    eps = 1e-9 * max(1.0, abs(t_end))
    for i in range(len(d) - 1, -1, -1):
        if i + 1 < len(d):
            end = d[i + 1]
        elif i >= 1:
            end = d[i] + (d[i] - d[i - 1])
        else:
            continue
        if end <= t_end + eps:
            return d[i], end
    return None


def injection_windows(dose_times, t_end):
    """``[(t_i, t_i+1), …, (t_last, t_end)]``: from each injection to the next (h)."""
    d = sorted({float(x) for x in dose_times if x < t_end})
    return [(a, b) for a, b in zip(d, d[1:] + [float(t_end)]) if b > a]


def resolve_window(window, dose_times, t_end):
    """``(kind, bounds)`` of a scenario's ``window``: kind ``"span"``, ``"ss"``, ``"window"`` or
    ``"per_injection"``; bounds ``(start, end)`` h (per injection: a list of them).

    Raises ``ValueError`` (one line) when the regimen has no complete dosing interval or no
    injection inside the span.
    """
    if window is None or window == "span":
        return "span", (0.0, float(t_end))
    if window == "ss":
        w = last_interval(dose_times, t_end)
        if w is None:
            raise ValueError(f"window = 'ss' needs two doses with a complete dosing interval before t_end = "
                             f"{t_end:g} h; use window = 'span' or an explicit [start, end]")
        return "ss", w
    if window == "per_injection":
        w = injection_windows(dose_times, t_end)
        if not w:
            raise ValueError(f"window = 'per_injection' needs a dose before t_end = {t_end:g} h")
        return "per_injection", w
    return "window", (float(window[0]), float(window[1]))


def window_text(kind, bounds):
    """Plain words for a window: "last dosing interval 648–672 h", "whole span 0–672 h", ..."""
    if kind == "per_injection":
        return f"per injection ({len(bounds)} injections, each until the next)"
    a, b = bounds
    what = {"span": "whole span", "ss": "last dosing interval", "window": "window"}[kind]
    return f"{what} {a:g}–{b:g} h"


def per_injection(conc, times, target, windows):
    """Mean over injection ``windows`` of peak (conc units), time ≥ ``target`` (h) and AUC (conc·h).

    The numpy reference of the population runner's per-injection metrics; each injection uses the
    grid metrics of this module over its window.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(0.0, 21.0)
    >>> c = np.where(t <= 10, np.exp(-0.5 * t), 2 * np.exp(-0.5 * (t - 10)))  # at t = 10: the pre-dose value
    >>> m = per_injection(c, t, 0.5, [(0.0, 10.0), (10.0, 20.0)])
    >>> round(float(m["peak"]), 3)  # mean of 1 and 2·e^-0.5: a grid misses the bolus peak 2 (a grid metric)
    1.107
    """
    peaks = [cmax(conc, times, w) for w in windows]
    above = [time_above(conc, times, target, w) for w in windows]
    aucs = [auc(conc, times, w) for w in windows]
    return {"peak": np.mean(peaks, axis=0), "time_above": np.mean(above, axis=0), "cxt": np.mean(aucs, axis=0)}


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
