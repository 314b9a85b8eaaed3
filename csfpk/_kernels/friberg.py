"""Friberg semi-mechanistic myelosuppression model, integrated along a plasma concentration curve.

Friberg et al. (2002) J Clin Oncol 20:4713, with k_tr = (n + 1)/MTT, n = 3 transit compartments::

    dProl/dt = k_tr·Prol·(1 − E(t))·(Circ0/Circ)^γ − k_tr·Prol
    dT1/dt   = k_tr·(Prol − T1),  dT2/dt = k_tr·(T1 − T2),  dT3/dt = k_tr·(T2 − T3)
    dCirc/dt = k_tr·T3 − k_tr·Circ
    E(t)     = min(slope·C_p(t), 1)          (linear drug effect on proliferation, capped at full kill)

with every pool at Circ0 before the drug. C_p is given on a time grid and taken as linear between
grid points; the classical 4th-order Runge–Kutta method steps along the grid with ``substeps``
steps per grid interval (the system time scale MTT/4 ≈ 20–30 h is far longer than the grid step,
so the error is set by how well the grid resolves C_p).
"""

import numpy as np
from numba import njit

from .codes import OK

PROL, T1, T2, T3, CIRC = range(5)


@njit(cache=True, nogil=True)
def _f(y, e, ktr, circ0, gamma, dy):
    feedback = (circ0 / max(y[CIRC], 1e-12)) ** gamma
    dy[PROL] = ktr * y[PROL] * (1.0 - e) * feedback - ktr * y[PROL]
    dy[T1] = ktr * (y[PROL] - y[T1])
    dy[T2] = ktr * (y[T1] - y[T2])
    dy[T3] = ktr * (y[T2] - y[T3])
    dy[CIRC] = ktr * (y[T3] - y[CIRC])


@njit(cache=True, nogil=True)
def run(times, conc, circ0, mtt, gamma, slope, substeps, out):
    """Integrate the model along ``times``; write the five pools at each time into ``out`` (n_t, 5)."""
    ktr = 4.0 / mtt
    y = np.full(5, circ0)
    k1 = np.empty(5)
    k2 = np.empty(5)
    k3 = np.empty(5)
    k4 = np.empty(5)
    tmp = np.empty(5)
    for j in range(5):  # element loops: slice assignment is slow to compile
        out[0, j] = y[j]
    for i in range(times.shape[0] - 1):
        h = (times[i + 1] - times[i]) / substeps
        for s in range(substeps):
            # effect at the start, middle and end of the substep (C_p linear on the grid interval)
            a0 = s / substeps
            am = (s + 0.5) / substeps
            a1 = (s + 1.0) / substeps
            e0 = min(slope * (conc[i] + a0 * (conc[i + 1] - conc[i])), 1.0)
            em = min(slope * (conc[i] + am * (conc[i + 1] - conc[i])), 1.0)
            e1 = min(slope * (conc[i] + a1 * (conc[i + 1] - conc[i])), 1.0)
            _f(y, e0, ktr, circ0, gamma, k1)
            for j in range(5):
                tmp[j] = y[j] + 0.5 * h * k1[j]
            _f(tmp, em, ktr, circ0, gamma, k2)
            for j in range(5):
                tmp[j] = y[j] + 0.5 * h * k2[j]
            _f(tmp, em, ktr, circ0, gamma, k3)
            for j in range(5):
                tmp[j] = y[j] + h * k3[j]
            _f(tmp, e1, ktr, circ0, gamma, k4)
            for j in range(5):
                y[j] += h / 6.0 * (k1[j] + 2.0 * k2[j] + 2.0 * k3[j] + k4[j])
        for j in range(5):
            out[i + 1, j] = y[j]
    return OK
