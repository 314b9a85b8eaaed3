"""Toxicity-guided dose escalation over many subjects: exact linear PK + Friberg marrow, in numba.

For each subject s (threads over subjects, ``prange``) the kernel walks one shared, time-sorted list of
actions: output-grid samples (kind ``SAMPLE``) and injections (kind ``INJECT``); a sample at an
injection time comes first (the pre-dose value, as in ``csfpk.schedule``).

PK (linear, exact): between two actions x(t + h) = exp(K·h)·x(t) (doses are boluses; the propagator of
the grid step is computed once per subject, other gaps when met, with a one-slot cache). Plasma total
concentration C_p = x[central]/V1.

Marrow: at every grid sample the Friberg pools of each lineage advance over the grid interval with C_p
linear on it (``friberg.interval``, the same RK4 code as the single-patient ``friberg.run``). The CTCAE
grade of lineage l is the number of thresholds the count is below; ``worst`` is the maximum over lineages.

Decision at injection k > 0 (``csfpk.escalation`` documents the rule; this is the same rule):

* an episode of worst ≥ ``step_back_grade`` began in (t_k-1, t_k], i.e. some sample there is severe while
  the grid sample before it was not → ``level ← max(level − 1, 0)`` (STEP_BACK);
* else the last sample of that window is severe → HOLD;
* else ``level`` at the top → AT_CAP, otherwise ``level ← level + 1`` (ESCALATE).

The dose given is ``levels[level]·dose_scale[s]`` mg (per-kg or per-m² levels times the subject's weight or
BSA), times the bioavailability of the route. Outputs per subject: dose and action per injection, and per
lineage the nadir, its time and the worst grade over the whole grid.
"""

import numpy as np
from numba import njit

from . import friberg
from .codes import AT_CAP, ESCALATE, HOLD, NONFINITE, OK, START, STEP_BACK
from .exact import advance, new_stepper, rates_active

SAMPLE, INJECT = 0, 1  # the two kinds of event on an escalation subject's timeline


@njit(cache=True, nogil=True)
def _grade(count, thr):
    g = 0
    for k in range(thr.shape[0]):
        if count < thr[k]:
            g = k + 1
    return g


@njit(cache=True, nogil=True)
def run_subject(K, central, v1, route, f_route, act_time, act_kind, act_index, grid_step, levels, dose_scale,
                step_back_grade, substeps, circ0, mtt, gamma, kcirc, slope, thresholds,
                doses, actions, nadir, nadir_time, worst_grade):
    """One subject (see module docstring). Lineage arrays: circ0, mtt, gamma, kcirc (≤ 0: k_tr), shape (L,);
    thresholds (L, 4). Writes doses (n_inj,), actions (n_inj,), nadir, nadir_time, worst_grade (L,)."""
    n = K.shape[0]
    L = circ0.shape[0]
    x = np.zeros(n)
    y = np.zeros(n)
    r = np.zeros(n)  # no infusions: IT and IV boluses only
    E, P, meta = new_stepper(K, grid_step)  # the exact kernel's propagator cache (slot 0: the grid step)
    pools = np.empty((L, friberg.N_POOLS))
    work = np.empty((friberg.N_POOLS, friberg.N_POOLS))
    ktr = np.empty(L)
    kc = np.empty(L)
    for ll in range(L):
        ktr[ll] = 4.0 / mtt[ll]
        kc[ll] = kcirc[ll] if kcirc[ll] > 0.0 else ktr[ll]
        friberg.init(pools[ll], circ0[ll], ktr[ll], kc[ll])
        nadir[ll] = np.inf
        nadir_time[ll] = np.nan
        worst_grade[ll] = 0
    top = levels.shape[0] - 1
    level = 0
    t = 0.0
    prev_c = 0.0
    prev_t = 0.0
    first_sample = True
    prev_severe = False
    began = False
    last_severe = False
    for a in range(act_time.shape[0]):
        h = act_time[a] - t
        if h > 0.0:
            advance(K, h, E, P, meta, x, y, r, rates_active(r))  # a bool variable, not a literal (one signature)
            t = act_time[a]
        if act_kind[a] == SAMPLE:
            cp = x[central] / v1
            worst = 0
            for ll in range(L):
                if not first_sample:
                    friberg.interval(pools[ll], prev_c, cp, t - prev_t, substeps, ktr[ll], kc[ll], circ0[ll],
                                     gamma[ll], slope, work)
                count = pools[ll, friberg.CIRC]
                g = _grade(count, thresholds[ll])
                if count < nadir[ll]:
                    nadir[ll] = count
                    nadir_time[ll] = t
                if g > worst_grade[ll]:
                    worst_grade[ll] = g
                if g > worst:
                    worst = g
            severe = worst >= step_back_grade
            if severe and not prev_severe and not first_sample:
                began = True
            last_severe = severe
            prev_severe = severe
            prev_c = cp
            prev_t = t
            first_sample = False
        else:
            k = act_index[a]
            if k == 0:
                actions[k] = START
            elif began:
                level = max(level - 1, 0)
                actions[k] = STEP_BACK
            elif last_severe:
                actions[k] = HOLD
            elif level == top:
                actions[k] = AT_CAP
            else:
                level += 1
                actions[k] = ESCALATE
            dose = levels[level] * dose_scale
            doses[k] = dose
            x[route] += f_route * dose
            began = False
            last_severe = False
    for i in range(n):
        if not np.isfinite(x[i]):
            return NONFINITE
    for ll in range(L):
        if not np.isfinite(nadir[ll]):
            return NONFINITE
        for j in range(friberg.N_POOLS):
            if not np.isfinite(pools[ll, j]):
                return NONFINITE
    return OK


@njit(cache=True, nogil=True)
def run_batch(Ks, central, v1, route, f_route, act_time, act_kind, act_index, grid_step, levels, dose_scale,
              step_back_grade, substeps, circ0, mtt, gamma, kcirc, slope, thresholds, skip,
              doses, actions, nadir, nadir_time, worst_grade, status):
    """``run_subject`` for every subject s with ``skip[s] == 0``: Ks[s], v1[s], dose_scale[s], circ0[s],
    mtt[s], slope[s] → doses[s], actions[s], nadir[s], nadir_time[s], worst_grade[s], status[s]. One thread:
    callers run blocks of subjects on threads (``csfpk.threads.on_threads``)."""
    for s in range(Ks.shape[0]):
        if skip[s] != 0:
            status[s] = NONFINITE
            continue
        status[s] = run_subject(Ks[s], central, v1[s], route, f_route, act_time, act_kind, act_index, grid_step,
                                levels, dose_scale[s], step_back_grade, substeps, circ0[s], mtt[s], gamma, kcirc,
                                slope[s], thresholds, doses[s], actions[s], nadir[s], nadir_time[s], worst_grade[s])
