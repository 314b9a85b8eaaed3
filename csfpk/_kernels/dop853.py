"""Dormand–Prince 8(5,3) explicit Runge–Kutta integrator with 7th-order dense output (numba kernel).

Method DOP853 (Prince & Dormand 1981, J Comput Appl Math 7:67; Hairer, Nørsett & Wanner, *Solving
Ordinary Differential Equations I*, 2nd ed., §II.10 and Hairer's ``dop853.f``). 12 stages, FSAL; the
coefficients below are those of ``dop853.f`` as transcribed in scipy's
``scipy/integrate/_ivp/dop853_coefficients.py`` (class ``DOP853``), to double precision (checked equal by
the tests)::

    k1 = f(t, y)                                    (= f(t, y1) of the previous step: FSAL)
    ki = f(t + c_i·h, y + h·Σ_{j<i} a_ij·kj),       i = 2..12
    y1 = y + h·Σ_i b_i·ki                           (8th order)
    err5 = Σ_i e5_i·ki,  err3 = Σ_i e3_i·ki         (5th- and 3rd-order estimators)

Error norm (dop853.f; scipy ``DOP853._estimate_error_norm``), with sc_i = atol + rtol·max(|y_i|, |y1_i|)::

    ‖err‖ = h · ‖err5/sc‖² / sqrt(n · (‖err5/sc‖² + 0.01·‖err3/sc‖²))

Step control as ``dopri5``/scipy: accepted when ‖err‖ < 1, h·min(10, max(0.2, 0.9·‖err‖^(−1/8))), no
increase right after a rejection. Initial step: Hairer's heuristic with error-estimator order 7.

Dense output (dop853.f ``CONTD8``; scipy ``Dop853DenseOutput``): three more stages k14..k16 (rows 13..15
of A and C), computed only for steps that hold an output time, and with θ = (t − t_n)/h::

    F0 = y1 − y,  F1 = h·k1 − F0,  F2 = 2·F0 − h·(k13 + k1),  F3..F6 = h·D·k       (k13 = f(t + h, y1))
    y(t_n + θh) = y + θ(F0 + (1−θ)(F1 + θ(F2 + (1−θ)(F3 + θ(F4 + (1−θ)(F5 + θ·F6))))))

Stiffness test (``dop853.f``): h·ρ ≈ h·‖k13 − k12‖/‖y1 − Y12‖, Y12 the argument of stage 12 (c12 = 1),
against 9/10 of the stability boundary 6.1 on the negative real axis, counted as in ``dopri5.dopri5_steps``.
"""

import numpy as np
from numba import njit

from csfpk._kernels.codes import (MAX_STEPS, N_SWITCH, NONFINITE, OK, RHS_EVALUATIONS, SEGMENT_CONTINUE,
                                  STEP_UNDERFLOW, STEPS_ACCEPTED, STEPS_REJECTED, STIFFNESS_SWITCH, SW_DETECT,
                                  SW_NONSTIFF, SW_STIFF)
from csfpk._kernels.rhs import rhs
from csfpk._kernels.stepping import _all_finite, _initial_step, segment_start

SAFETY = 0.9
MIN_FACTOR = 0.2
MAX_FACTOR = 10.0
ERR_EXPONENT = -1.0 / 8.0  # −1/(q+1), q = 7 = order of the error estimator
STABILITY_BOUNDARY = 6.1  # dop853.f: stability boundary on the negative real axis
STIFF_H_RHO = 0.9 * STABILITY_BOUNDARY  # as dopri5: 9/10 of the boundary (OrdinaryDiffEq AutoSwitch stifftol)
STIFF_STEPS = 15  # dop853.f: IASTI = 15
STIFF_NONSTIFF = 6  # dop853.f: NONSTI = 6

# Coefficients (dop853.f; scipy dop853_coefficients.py). Rows 12..15 of A: the dense-output stages.
C = np.array([0.0, 0.05260015195876773, 0.0789002279381516, 0.1183503419072274, 0.2816496580927726,
              0.3333333333333333, 0.25, 0.3076923076923077, 0.6512820512820513, 0.6, 0.8571428571428571, 1.0, 1.0,
              0.1, 0.2, 0.7777777777777778])
A = np.zeros((16, 16))
A[1, [0]] = [0.05260015195876773]
A[2, [0, 1]] = [0.0197250569845379, 0.0591751709536137]
A[3, [0, 2]] = [0.02958758547680685, 0.08876275643042054]
A[4, [0, 2, 3]] = [0.2413651341592667, -0.8845494793282861, 0.924834003261792]
A[5, [0, 3, 4]] = [0.037037037037037035, 0.17082860872947386, 0.12546768756682242]
A[6, [0, 3, 4, 5]] = [0.037109375, 0.17025221101954405, 0.06021653898045596, -0.017578125]
A[7, [0, 3, 4, 5, 6]] = [0.03709200011850479, 0.17038392571223998, 0.10726203044637328, -0.015319437748624402,
                         0.008273789163814023]
A[8, [0, 3, 4, 5, 6, 7]] = [0.6241109587160757, -3.3608926294469414, -0.868219346841726, 27.59209969944671,
                            20.154067550477894, -43.48988418106996]
A[9, [0, 3, 4, 5, 6, 7, 8]] = [0.47766253643826434, -2.4881146199716677, -0.590290826836843, 21.230051448181193,
                               15.279233632882423, -33.28821096898486, -0.020331201708508627]
A[10, [0, 3, 4, 5, 6, 7, 8, 9]] = [-0.9371424300859873, 5.186372428844064, 1.0914373489967295, -8.149787010746927,
                                   -18.52006565999696, 22.739487099350505, 2.4936055526796523, -3.0467644718982196]
A[11, [0, 3, 4, 5, 6, 7, 8, 9, 10]] = [2.273310147516538, -10.53449546673725, -2.0008720582248625, -17.9589318631188,
                                       27.94888452941996, -2.8589982771350235, -8.87285693353063, 12.360567175794303,
                                       0.6433927460157636]
A[12, [0, 5, 6, 7, 8, 9, 10, 11]] = [0.054293734116568765, 4.450312892752409, 1.8915178993145003, -5.801203960010585,
                                     0.3111643669578199, -0.1521609496625161, 0.20136540080403034, 0.04471061572777259]
A[13, [0, 6, 7, 8, 9, 10, 11, 12]] = [0.056167502283047954, 0.25350021021662483, -0.2462390374708025,
                                      -0.12419142326381637, 0.15329179827876568, 0.00820105229563469,
                                      0.007567897660545699, -0.008298]
A[14, [0, 5, 6, 7, 10, 11, 12, 13]] = [0.03183464816350214, 0.028300909672366776, 0.053541988307438566,
                                       -0.05492374857139099, -0.00010834732869724932, 0.0003825710908356584,
                                       -0.00034046500868740456, 0.1413124436746325]
A[15, [0, 5, 6, 7, 8, 12, 13, 14]] = [-0.42889630158379194, -4.697621415361164, 7.683421196062599, 4.06898981839711,
                                      0.3567271874552811, -0.0013990241651590145, 2.9475147891527724,
                                      -9.15095847217987]
B = np.array([0.054293734116568765, 0.0, 0.0, 0.0, 0.0, 4.450312892752409, 1.8915178993145003, -5.801203960010585,
              0.3111643669578199, -0.1521609496625161, 0.20136540080403034, 0.04471061572777259])
E3 = np.array([-0.18980075407240762, 0.0, 0.0, 0.0, 0.0, 4.450312892752409, 1.8915178993145003, -5.801203960010585,
               -0.4226823213237919, -0.1521609496625161, 0.20136540080403034, 0.02265179219836082])
E5 = np.array([0.01312004499419488, 0.0, 0.0, 0.0, 0.0, -1.2251564463762044, -0.4957589496572502, 1.6643771824549864,
               -0.35032884874997366, 0.3341791187130175, 0.08192320648511571, -0.022355307863886294])
D = np.zeros((4, 16))
D[0, [0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]] = [-8.428938276109013, 0.5667149535193777, -3.0689499459498917,
                                                    2.38466765651207, 2.117034582445028, -0.871391583777973,
                                                    2.2404374302607883, 0.6315787787694688, -0.08899033645133331,
                                                    18.148505520854727, -9.194632392478356, -4.436036387594894]
D[1, [0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]] = [10.427508642579134, 242.28349177525817, 165.20045171727028,
                                                    -374.5467547226902, -22.113666853125306, 7.733432668472264,
                                                    -30.674084731089398, -9.332130526430229, 15.697238121770845,
                                                    -31.139403219565178, -9.35292435884448, 35.81684148639408]
D[2, [0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]] = [19.985053242002433, -387.0373087493518, -189.17813819516758,
                                                    527.8081592054236, -11.57390253995963, 6.8812326946963,
                                                    -1.0006050966910838, 0.7777137798053443, -2.778205752353508,
                                                    -60.19669523126412, 84.32040550667716, 11.99229113618279]
D[3, [0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]] = [-25.69393346270375, -154.18974869023643, -231.5293791760455,
                                                    357.6391179106141, 93.40532418362432, -37.45832313645163,
                                                    104.0996495089623, 29.8402934266605, -43.53345659001114,
                                                    96.32455395918828, -39.17726167561544, -149.72683625798564]


@njit(cache=True, nogil=True)
def dop853_segment(t0, t1, x, K, r, nl, rtol, atol, h, tobs, xobs, max_steps, stats):
    """Integrate from t0 to t1 by DOP853; arguments, return and ``stats`` as in the segment contract of
    ``stepping``. Counts: 1 + 12 right-hand sides per attempted step, 3 more per accepted step that writes
    an output before its end (+1 to select the first step), no LU.
    """
    iobs, status = segment_start(t0, t1, x, tobs, xobs)
    if status != SEGMENT_CONTINUE:
        return status, h
    switch = np.zeros(N_SWITCH, dtype=np.int64)  # SW_DETECT = 0: no stiffness test
    status, h, _, _ = dop853_steps(t0, t1, x, K, r, nl, rtol, atol, h, tobs, xobs, iobs, max_steps, stats, switch)
    return status, h


@njit(cache=True, nogil=True)
def dop853_steps(t0, t1, x, K, r, nl, rtol, atol, h, tobs, xobs, iobs, max_steps, stats, switch):
    """The steps of ``dop853_segment`` from t0 (> every tobs before ``iobs``) towards t1; returns (status,
    h_next, t reached, next observation index), with the stiffness test of the module docstring when
    ``switch[SW_DETECT]`` = 1 (slots and counting as ``dopri5.dopri5_steps``)."""
    n = x.shape[0]
    m = tobs.shape[0]
    k = np.empty((16, n))
    F = np.empty((7, n))
    y = np.empty(n)
    ynew = np.empty(n)

    rhs(t0, x, K, r, nl, k[0])
    stats[RHS_EVALUATIONS] += 1
    if not _all_finite(k[0]):
        return NONFINITE, h, t0, iobs

    span = t1 - t0
    if not (h > 0.0) or not np.isfinite(h):
        h = _initial_step(t0, t1, x, k[0], K, r, nl, rtol, atol, 7.0, y, ynew)
        stats[RHS_EVALUATIONS] += 1
    h = min(h, span)

    detect = switch[SW_DETECT] != 0
    t = t0
    n_att = 0
    rejected = False
    while True:
        if n_att >= max_steps:
            return MAX_STEPS, h, t, iobs
        if h < 1e-14 * max(abs(t), 1.0):
            return STEP_UNDERFLOW, h, t, iobs
        last = False
        hs = h
        if t + 1.01 * h >= t1:  # clip onto t1 (absorbing a sliver of < 1 % of h)
            hs = t1 - t
            last = True
        n_att += 1
        t_new = t1 if last else t + hs

        for s in range(1, 12):
            for i in range(n):
                acc = 0.0
                for j in range(s):
                    acc += A[s, j] * k[j, i]
                y[i] = x[i] + hs * acc
            rhs(t_new if s == 11 else t + C[s] * hs, y, K, r, nl, k[s])
        for i in range(n):
            acc = 0.0
            for j in range(12):
                acc += B[j] * k[j, i]
            ynew[i] = x[i] + hs * acc
        rhs(t_new, ynew, K, r, nl, k[12])
        stats[RHS_EVALUATIONS] += 12

        e5 = 0.0
        e3 = 0.0
        for i in range(n):
            a5 = 0.0
            a3 = 0.0
            for j in range(12):
                a5 += E5[j] * k[j, i]
                a3 += E3[j] * k[j, i]
            sc = atol + rtol * max(abs(x[i]), abs(ynew[i]))
            e5 += (a5 / sc) ** 2
            e3 += (a3 / sc) ** 2
        if e5 == 0.0 and e3 == 0.0:
            err = 0.0
        else:
            err = hs * e5 / np.sqrt((e5 + 0.01 * e3) * n)

        if not np.isfinite(err):  # overflow in a stage: shrink hard and retry
            h = hs * MIN_FACTOR
            rejected = True
            stats[STEPS_REJECTED] += 1
            continue

        if err < 1.0:
            if err == 0.0:
                factor = MAX_FACTOR
            else:
                factor = min(MAX_FACTOR, SAFETY * err ** ERR_EXPONENT)
            if rejected:
                factor = min(1.0, factor)
            if iobs < m and tobs[iobs] < t_new:  # an output inside the step: the dense-output stages
                for s in range(13, 16):
                    for i in range(n):
                        acc = 0.0
                        for j in range(s):
                            acc += A[s, j] * k[j, i]
                        F[0, i] = x[i] + hs * acc  # scratch
                    rhs(t + C[s] * hs, F[0], K, r, nl, k[s])
                stats[RHS_EVALUATIONS] += 3
                for i in range(n):
                    d0 = ynew[i] - x[i]
                    F[0, i] = d0
                    F[1, i] = hs * k[0, i] - d0
                    F[2, i] = 2.0 * d0 - hs * (k[12, i] + k[0, i])
                    for q in range(4):
                        acc = 0.0
                        for j in range(16):
                            acc += D[q, j] * k[j, i]
                        F[3 + q, i] = hs * acc
            while iobs < m and tobs[iobs] <= t_new:
                to = tobs[iobs]
                if to == t_new:
                    for i in range(n):
                        xobs[iobs, i] = ynew[i]
                else:
                    th = (to - t) / hs
                    th1 = 1.0 - th
                    for i in range(n):
                        v = F[6, i] * th + F[5, i]
                        v = v * th1 + F[4, i]
                        v = v * th + F[3, i]
                        v = v * th1 + F[2, i]
                        v = v * th + F[1, i]
                        v = v * th1 + F[0, i]
                        xobs[iobs, i] = x[i] + v * th
                iobs += 1
            stiff = False
            if detect and not last:
                num = 0.0
                den = 0.0
                for i in range(n):
                    num += (k[12, i] - k[11, i]) ** 2
                    den += (ynew[i] - y[i]) ** 2
                stiff = den > 0.0 and hs * np.sqrt(num / den) > STIFF_H_RHO
            for i in range(n):
                x[i] = ynew[i]
                k[0, i] = k[12, i]  # FSAL
            stats[STEPS_ACCEPTED] += 1
            t = t_new
            h_new = hs * factor
            if last:
                h_next = max(h_new, h)
                while iobs < m:  # defensive: tobs beyond t1
                    for i in range(n):
                        xobs[iobs, i] = x[i]
                    iobs += 1
                return OK, h_next, t, iobs
            h = h_new
            rejected = False
            if detect:
                if stiff:
                    switch[SW_NONSTIFF] = 0
                    switch[SW_STIFF] += 1
                    if switch[SW_STIFF] >= STIFF_STEPS:
                        switch[SW_STIFF] = 0
                        return STIFFNESS_SWITCH, h, t, iobs
                else:
                    switch[SW_NONSTIFF] += 1
                    if switch[SW_NONSTIFF] >= STIFF_NONSTIFF:
                        switch[SW_STIFF] = 0
        else:
            h = hs * max(MIN_FACTOR, SAFETY * err ** ERR_EXPONENT)
            rejected = True
            stats[STEPS_REJECTED] += 1
