"""Friberg semi-mechanistic myelosuppression model, integrated along a plasma concentration curve.

Friberg et al. (2002) J Clin Oncol 20:4713, with k_tr = (n + 1)/MTT, n = 3 transit compartments::

    dProl/dt = k_tr·Prol·(1 − E(t))·(Circ0/Circ)^γ − k_tr·Prol
    dT1/dt   = k_tr·(Prol − T1),  dT2/dt = k_tr·(T1 − T2),  dT3/dt = k_tr·(T2 − T3)
    dCirc/dt = k_tr·T3 − k_circ·Circ
    E(t)     = min(slope·C_p(t), 1)          (linear drug effect on proliferation, capped at full kill)

k_circ = k_tr is Friberg's model; a separate k_circ is the loss of circulating cells in platelet models
with random destruction (Pérez-Ruixo et al. (2016) AAPS J 18:239). Before the drug every pool is at
its steady state: Circ = Circ0 and Prol = T1 = T2 = T3 = (k_circ/k_tr)·Circ0.

C_p is given on a time grid and taken as linear between grid points; the classical 4th-order
Runge–Kutta method steps along the grid with ``substeps`` steps per grid interval (the system time
scale MTT/4 ≈ 20–140 h is far longer than the grid step, so the error is set by how well the grid
resolves C_p). ``init`` and ``interval`` are the building blocks shared by ``run`` (one curve) and
the population escalation kernel (``csfpk._kernels.escalation``), so both give the same numbers.
"""

import math

import numpy as np
from numba import njit

from .codes import OK

PROL, T1, T2, T3, CIRC = range(5)
N_POOLS = 5


@njit(cache=True, nogil=True)
def _f(y, e, ktr, kcirc, circ0, gamma, dy):
    feedback = math.exp(gamma * math.log(circ0 / max(y[CIRC], 1e-12)))  # (Circ0/Circ)^γ; 15 % faster than **
    dy[PROL] = ktr * y[PROL] * (1.0 - e) * feedback - ktr * y[PROL]
    dy[T1] = ktr * (y[PROL] - y[T1])
    dy[T2] = ktr * (y[T1] - y[T2])
    dy[T3] = ktr * (y[T2] - y[T3])
    dy[CIRC] = ktr * y[T3] - kcirc * y[CIRC]


@njit(cache=True, nogil=True)
def init(y, circ0, ktr, kcirc):
    """Set the five pools ``y`` to the drug-free steady state (module docstring)."""
    pre = circ0 * kcirc / ktr if kcirc != ktr else circ0
    for j in range(4):
        y[j] = pre
    y[CIRC] = circ0


@njit(cache=True, nogil=True)
def interval(y, c0, c1, dt, substeps, ktr, kcirc, circ0, gamma, slope, work):
    """Advance the pools ``y`` over one grid interval of length dt (h) on which C_p goes linearly
    from c0 to c1 (mg/L): ``substeps`` RK4 steps; ``work`` is float64[5, 5] scratch."""
    h = dt / substeps
    k1 = work[0]
    k2 = work[1]
    k3 = work[2]
    k4 = work[3]
    tmp = work[4]
    for s in range(substeps):
        # effect at the start, middle and end of the substep (C_p linear on the grid interval)
        a0 = s / substeps
        am = (s + 0.5) / substeps
        a1 = (s + 1.0) / substeps
        e0 = min(slope * (c0 + a0 * (c1 - c0)), 1.0)
        em = min(slope * (c0 + am * (c1 - c0)), 1.0)
        e1 = min(slope * (c0 + a1 * (c1 - c0)), 1.0)
        _f(y, e0, ktr, kcirc, circ0, gamma, k1)
        for j in range(N_POOLS):  # element loops: slice assignment is slow to compile
            tmp[j] = y[j] + 0.5 * h * k1[j]
        _f(tmp, em, ktr, kcirc, circ0, gamma, k2)
        for j in range(N_POOLS):
            tmp[j] = y[j] + 0.5 * h * k2[j]
        _f(tmp, em, ktr, kcirc, circ0, gamma, k3)
        for j in range(N_POOLS):
            tmp[j] = y[j] + h * k3[j]
        _f(tmp, e1, ktr, kcirc, circ0, gamma, k4)
        for j in range(N_POOLS):
            y[j] += h / 6.0 * (k1[j] + 2.0 * k2[j] + 2.0 * k3[j] + k4[j])


@njit(cache=True, nogil=True)
def run(times, conc, circ0, mtt, gamma, slope, kcirc, substeps, out):
    """Integrate the model along ``times``; write the five pools at each time into ``out`` (n_t, 5).
    ``kcirc`` (1/h) <= 0 means k_circ = k_tr (Friberg 2002)."""
    ktr = 4.0 / mtt
    kc = kcirc if kcirc > 0.0 else ktr
    y = np.empty(N_POOLS)
    work = np.empty((N_POOLS, N_POOLS))
    init(y, circ0, ktr, kc)
    for j in range(N_POOLS):
        out[0, j] = y[j]
    for i in range(times.shape[0] - 1):
        interval(y, conc[i], conc[i + 1], times[i + 1] - times[i], substeps, ktr, kc, circ0, gamma, slope, work)
        for j in range(N_POOLS):
            out[i + 1, j] = y[j]
    return OK
