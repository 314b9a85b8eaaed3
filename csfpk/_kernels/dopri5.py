"""Dormand–Prince 5(4) explicit Runge–Kutta integrator with dense output (numba kernel).

Method (Dormand & Prince 1980, J Comput Appl Math 6:19; Hairer, Nørsett & Wanner, *Solving
Ordinary Differential Equations I*, 2nd ed., §II.5 Table 5.2 and §II.6 (dense output); the
coefficients below are those of Hairer's ``dopri5.f`` and of ``scipy/integrate/_ivp/rk.py``,
class ``RK45``)::

    k1 = f(t, y)                                   (= k7 of the previous step: FSAL)
    ki = f(t + c_i·h, y + h·Σ_{j<i} a_ij·kj),      i = 2..6
    y1 = y + h·Σ_i b_i·ki                          (5th order, propagated: local extrapolation)
    k7 = f(t + h, y1)
    err = h·Σ_i e_i·ki,  i = 1..7                  (difference to the embedded 4th order solution)

    c = (0, 1/5, 3/10, 4/5, 8/9, 1, 1)
    b = (35/384, 0, 500/1113, 125/192, −2187/6784, 11/84, 0)
    e = (−71/57600, 0, 71/16695, −71/1920, 17253/339200, −22/525, 1/40)

Error norm (Hairer; scipy)::

    ‖err‖ = sqrt( (1/n)·Σ_i (err_i / (atol + rtol·max(|y_i|, |y1_i|)))² )

A step is accepted when ‖err‖ < 1; the next step is h·min(10, max(0.2, 0.9·‖err‖^(−1/5)))
(no increase directly after a rejection), as in scipy's ``RK45``.

Dense output (continuous extension of order 4, Shampine 1986 Math Comp 46:135, with the optimal
free parameter; HNW I §II.6; scipy's ``RK45.P``)::

    y(t + θ·h) = y + h·Σ_{j=1..7} kj · Σ_{m=1..4} P_jm·θ^m,     0 ≤ θ ≤ 1

The initial step, when not given, follows Hairer's heuristic (HNW I §II.4, p. 169), exactly as
``scipy.integrate._ivp.common.select_initial_step`` with error-estimator order 4.
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
ERR_EXPONENT = -1.0 / 5.0  # −1/(q+1), q = 4 = order of the embedded error estimator
# stiffness test (``dopri5_steps``): h·ρ above 9/10 of the stability boundary in STIFF_STEPS steps
STABILITY_BOUNDARY = 3.3066  # Dormand–Prince 5(4) on the negative real axis (OrdinaryDiffEq alg_stability_size)
STIFF_H_RHO = 0.9 * STABILITY_BOUNDARY  # OrdinaryDiffEq AutoSwitch stifftol 9/10 (dopri5.f: 3.25, see docstring)
STIFF_STEPS = 15  # dopri5.f: IASTI = 15
STIFF_NONSTIFF = 6  # dopri5.f: NONSTI = 6 resets IASTI

C2 = 1.0 / 5.0
C3 = 3.0 / 10.0
C4 = 4.0 / 5.0
C5 = 8.0 / 9.0

A21 = 1.0 / 5.0
A31 = 3.0 / 40.0
A32 = 9.0 / 40.0
A41 = 44.0 / 45.0
A42 = -56.0 / 15.0
A43 = 32.0 / 9.0
A51 = 19372.0 / 6561.0
A52 = -25360.0 / 2187.0
A53 = 64448.0 / 6561.0
A54 = -212.0 / 729.0
A61 = 9017.0 / 3168.0
A62 = -355.0 / 33.0
A63 = 46732.0 / 5247.0
A64 = 49.0 / 176.0
A65 = -5103.0 / 18656.0

B1 = 35.0 / 384.0
B3 = 500.0 / 1113.0
B4 = 125.0 / 192.0
B5 = -2187.0 / 6784.0
B6 = 11.0 / 84.0

E1 = -71.0 / 57600.0
E3 = 71.0 / 16695.0
E4 = -71.0 / 1920.0
E5 = 17253.0 / 339200.0
E6 = -22.0 / 525.0
E7 = 1.0 / 40.0

# Dense output: P[j, m] multiplies k_{j+1} θ^{m+1} (scipy RK45.P; row 2 is zero).
P11 = 1.0
P12 = -8048581381.0 / 2820520608.0
P13 = 8663915743.0 / 2820520608.0
P14 = -12715105075.0 / 11282082432.0
P32 = 131558114200.0 / 32700410799.0
P33 = -68118460800.0 / 10900136933.0
P34 = 87487479700.0 / 32700410799.0
P42 = -1754552775.0 / 470086768.0
P43 = 14199869525.0 / 1410260304.0
P44 = -10690763975.0 / 1880347072.0
P52 = 127303824393.0 / 49829197408.0
P53 = -318862633887.0 / 49829197408.0
P54 = 701980252875.0 / 199316789632.0
P62 = -282668133.0 / 205662961.0
P63 = 2019193451.0 / 616988883.0
P64 = -1453857185.0 / 822651844.0
P72 = 40617522.0 / 29380423.0
P73 = -110615467.0 / 29380423.0
P74 = 69997945.0 / 29380423.0


@njit(cache=True, nogil=True)
def dopri5_segment(t0, t1, x, K, r, nl, rtol, atol, h, tobs, xobs, max_steps, stats):
    """Integrate from t0 to t1 by Dormand–Prince 5(4); arguments, return and ``stats`` as in the segment
    contract of ``stepping``.

    FSAL and Shampine's 4th-order dense output; coefficients from Hairer, Nørsett & Wanner, Solving ODEs I
    (2nd ed.), §II.5 Table 5.2 / §II.6, identical to scipy/integrate/_ivp/rk.py (RK45.A, B, E, P). Step
    control as scipy's RK45: safety 0.9, step factor in [0.2, 10], exponent −1/5, no increase right after
    a rejection. Counts: 1 + 6 right-hand sides per attempted step (+1 to select the first step), no LU.
    """
    iobs, status = segment_start(t0, t1, x, tobs, xobs)
    if status != SEGMENT_CONTINUE:
        return status, h
    switch = np.zeros(N_SWITCH, dtype=np.int64)  # SW_DETECT = 0: no stiffness test
    status, h, _, _ = dopri5_steps(t0, t1, x, K, r, nl, rtol, atol, h, tobs, xobs, iobs, max_steps, stats, switch)
    return status, h


@njit(cache=True, nogil=True)
def dopri5_steps(t0, t1, x, K, r, nl, rtol, atol, h, tobs, xobs, iobs, max_steps, stats, switch):
    """The steps of ``dopri5_segment`` from t0 (> every tobs before ``iobs``) towards t1; returns
    (status, h_next, t reached, next observation index).

    ``switch`` (int64[N_SWITCH], slots ``SW_*`` of ``codes``) carries the stiffness test of Hairer's
    ``dopri5.f`` across calls. With ``switch[SW_DETECT]`` = 1, after every accepted step::

        h·ρ ≈ h·‖k7 − k6‖ / ‖y1 − Y6‖

    where Y6 is the argument of stage 6 and y1 the new solution (both at t + h, so k7 − k6 =
    J·(y1 − Y6) to first order: h·ρ estimates h times the dominant eigenvalue of the Jacobian; HNW II
    §IV.2, eq. (2.6) and dopri5.f). A step with h·ρ > ``STIFF_H_RHO`` adds one to ``switch[SW_STIFF]``;
    ``STIFF_NONSTIFF`` (6) successive steps below it reset that count (dopri5.f: IASTI, NONSTI). When it
    reaches ``STIFF_STEPS`` (15) the call returns ``STIFFNESS_SWITCH`` at the time reached, with the count
    cleared. Detection only reads the stages: the steps taken are those of ``dopri5_segment``, bit for bit.

    Threshold: dopri5.f tests h·ρ > 3.25, just under the stability boundary 3.3066 on the negative real
    axis, where its PI step control (β = 0.04) settles. Our step control (scipy's RK45, no PI term) settles
    lower on a stiff problem: on Michaelis–Menten elimination far below Km (rate 2 100/h) the accepted steps
    had h·ρ between 3.10 and 3.17 (10th–100th percentile, 3 350 steps), so 3.25 never fires. The threshold
    is OrdinaryDiffEq's ``AutoSwitch`` one, 9/10 of the boundary (2.98); accuracy-limited steps of a
    non-stiff problem sit far below it.
    """
    n = x.shape[0]
    m = tobs.shape[0]
    k = np.empty((7, n))
    y = np.empty(n)
    ynew = np.empty(n)

    rhs(t0, x, K, r, nl, k[0])
    stats[RHS_EVALUATIONS] += 1
    if not _all_finite(k[0]):
        return NONFINITE, h, t0, iobs

    span = t1 - t0
    if not (h > 0.0) or not np.isfinite(h):
        h = _initial_step(t0, t1, x, k[0], K, r, nl, rtol, atol, 4.0, y, ynew)
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

        # stages 2..6
        for i in range(n):
            y[i] = x[i] + hs * A21 * k[0, i]
        rhs(t + C2 * hs, y, K, r, nl, k[1])
        for i in range(n):
            y[i] = x[i] + hs * (A31 * k[0, i] + A32 * k[1, i])
        rhs(t + C3 * hs, y, K, r, nl, k[2])
        for i in range(n):
            y[i] = x[i] + hs * (A41 * k[0, i] + A42 * k[1, i] + A43 * k[2, i])
        rhs(t + C4 * hs, y, K, r, nl, k[3])
        for i in range(n):
            y[i] = x[i] + hs * (A51 * k[0, i] + A52 * k[1, i] + A53 * k[2, i] + A54 * k[3, i])
        rhs(t + C5 * hs, y, K, r, nl, k[4])
        for i in range(n):
            y[i] = x[i] + hs * (A61 * k[0, i] + A62 * k[1, i] + A63 * k[2, i]
                                + A64 * k[3, i] + A65 * k[4, i])
        t_new = t1 if last else t + hs
        rhs(t_new, y, K, r, nl, k[5])
        for i in range(n):
            ynew[i] = x[i] + hs * (B1 * k[0, i] + B3 * k[2, i] + B4 * k[3, i]
                                   + B5 * k[4, i] + B6 * k[5, i])
        rhs(t_new, ynew, K, r, nl, k[6])
        stats[RHS_EVALUATIONS] += 6

        err = 0.0
        for i in range(n):
            e = hs * (E1 * k[0, i] + E3 * k[2, i] + E4 * k[3, i] + E5 * k[4, i]
                      + E6 * k[5, i] + E7 * k[6, i])
            sc = atol + rtol * max(abs(x[i]), abs(ynew[i]))
            err += (e / sc) ** 2
        err = np.sqrt(err / n)

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
            # dense output for tobs in (t, t_new]
            while iobs < m and tobs[iobs] <= t_new:
                to = tobs[iobs]
                if to == t_new:
                    for i in range(n):
                        xobs[iobs, i] = ynew[i]
                else:
                    th = (to - t) / hs
                    th2 = th * th
                    th3 = th2 * th
                    th4 = th3 * th
                    q1 = hs * (P11 * th + P12 * th2 + P13 * th3 + P14 * th4)
                    q3 = hs * (P32 * th2 + P33 * th3 + P34 * th4)
                    q4 = hs * (P42 * th2 + P43 * th3 + P44 * th4)
                    q5 = hs * (P52 * th2 + P53 * th3 + P54 * th4)
                    q6 = hs * (P62 * th2 + P63 * th3 + P64 * th4)
                    q7 = hs * (P72 * th2 + P73 * th3 + P74 * th4)
                    for i in range(n):
                        xobs[iobs, i] = x[i] + (q1 * k[0, i] + q3 * k[2, i] + q4 * k[3, i]
                                                + q5 * k[4, i] + q6 * k[5, i] + q7 * k[6, i])
                iobs += 1
            for i in range(n):
                x[i] = ynew[i]
                k[0, i] = k[6, i]  # FSAL
            stats[STEPS_ACCEPTED] += 1
            t = t_new
            h_new = hs * factor
            if last:
                # the clipped step says little about the natural step size: keep the larger
                h_next = max(h_new, h)
                while iobs < m:  # defensive: tobs beyond t1
                    for i in range(n):
                        xobs[iobs, i] = x[i]
                    iobs += 1
                return OK, h_next, t, iobs
            h = h_new
            rejected = False
            if detect:
                num = 0.0
                den = 0.0
                for i in range(n):
                    num += (k[0, i] - k[5, i]) ** 2  # k[0] holds k7 now (FSAL)
                    den += (x[i] - y[i]) ** 2
                if den > 0.0 and hs * np.sqrt(num / den) > STIFF_H_RHO:
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
