"""Rodas4: stiffly accurate, L-stable Rosenbrock method of order 4(3) with dense output (numba).

Method (Hairer & Wanner, *Solving Ordinary Differential Equations II*, 2nd ed., §VI.4,
Table 4.2 ("RODAS"), and Hairer's Fortran code ``rodas.f``, subroutine ``RODAS4``/``ROCOE``
with METH = 1). With γ = 1/4, J = ∂f/∂y(t, y), f_t = ∂f/∂t(t, y) (analytic, ``rhs.jacobian`` and
``rhs.time_derivative``) and the matrix E = I/(h·γ) − J, each step solves six linear systems with
the same LU factorisation of E (``linalg.lu_factor``, partial pivoting)::

    E·k1 = f(t, y)                                                + h·d1·f_t
    E·k2 = f(t + c2·h, y + a21·k1)                + (c21·k1)/h    + h·d2·f_t
    E·k3 = f(t + c3·h, y + a31·k1 + a32·k2)       + (c31·k1 + c32·k2)/h           + h·d3·f_t
    E·k4 = f(t + c4·h, y + a41·k1 + … + a43·k3)   + (c41·k1 + … + c43·k3)/h       + h·d4·f_t
    u5   = y + a51·k1 + a52·k2 + a53·k3 + a54·k4
    E·k5 = f(t + h, u5)                           + (c51·k1 + … + c54·k4)/h
    u6   = u5 + k5                                       (embedded 3rd-order solution)
    E·k6 = f(t + h, u6)                           + (c61·k1 + … + c65·k5)/h
    y1   = u6 + k6                                       (4th-order solution)
    err  = k6                                            (= y1 − u6)

Both u6 and y1 are stage values (stiff accuracy), which makes the method L-stable with
R(∞) = 0. Error norm (Hairer)::

    ‖err‖ = sqrt( (1/n)·Σ_i (err_i / (atol + rtol·max(|y_i|, |y1_i|)))² )

Step size (rodas.f): fac = clip(‖err‖^(1/4)/0.9, 1/6, 5), h_new = h/fac, with Gustafsson's
predictive controller on accepted steps, fac ≥ (h_acc/h)·(‖err‖²/‖err_acc‖)^(1/4)/0.9, and
no increase right after a rejection.

Dense output (rodas.f ``CONTRO``; order 3)::

    y(t + θ·h) = (1 − θ)·y + θ·(y1 + (1 − θ)·(q1 + θ·q2)),
    q1 = Σ_{j=1..5} h2j·kj,   q2 = Σ_{j=1..5} h3j·kj

Coefficients: γ, c_i, d_i, a_ij, c_ij and the dense-output h_ij below are those of Hairer's
``rodas.f`` (http://www.unige.ch/~hairer/prog/stiff/rodas.f, ROCOE METH = 1) as transcribed in
DifferentialEquations.jl, OrdinaryDiffEq.jl ``src/tableaus/rosenbrock_tableaus.jl``,
``Rodas4Tableau``; cross-checked digit by digit against Numerical Recipes 3rd ed. (Press et al.
2007, §17.5, ``StepperRoss`` / ``Ross_constants``, whose d2j, d3j are our h2j, h3j). The tests
verify 4th-order convergence, L-stability (R(−∞) = 0) and agreement with matrix exponentials.

The initial step, when not given, follows Hairer's heuristic (HNW I §II.4) as scipy's
``select_initial_step`` with error-estimator order 3.
"""

import numpy as np
from numba import njit

from csfpk._kernels.codes import (LU_FACTORISATIONS, MAX_STEPS, N_SWITCH, NONFINITE, OK, RHS_EVALUATIONS,
                                  SEGMENT_CONTINUE, STEP_UNDERFLOW, STEPS_ACCEPTED, STEPS_REJECTED, STIFFNESS_SWITCH,
                                  SW_DETECT, SW_NONSTIFF)
from csfpk._kernels.linalg import lu_factor, lu_solve
from csfpk._kernels.rhs import jacobian, rhs, time_derivative
from csfpk._kernels.stepping import _all_finite, _initial_step, segment_start


SAFETY = 0.9
FAC_MIN = 1.0 / 6.0  # h_new/h <= 6  (rodas.f: FAC2 = 6)
FAC_MAX = 5.0  # h_new/h >= 1/5 (rodas.f: FAC1 = 0.2)
# back to the explicit method (``rodas_steps``): OrdinaryDiffEq AutoSwitch, nonstifftol 9/10, maxnonstiffstep 3
NONSTIFF_TOL = 0.9
NONSTIFF_STEPS = 4

GAMMA = 0.25
C2 = 0.386
C3 = 0.21
C4 = 0.63
D1 = 0.25
D2 = -0.1043
D3 = 0.1035
D4 = -0.3620000000000023e-01

A21 = 1.544
A31 = 0.9466785280815826
A32 = 0.2557011698983284
A41 = 3.314825187068521
A42 = 2.896124015972201
A43 = 0.9986419139977817
A51 = 1.221224509226641
A52 = 6.019134481288629
A53 = 12.53708332932087
A54 = -0.6878860361058950

G21 = -5.6688
G31 = -2.430093356833875
G32 = -0.2063599157091915
G41 = -0.1073529058151375
G42 = -9.594562251023355
G43 = -20.47028614809616
G51 = 7.496443313967647
G52 = -10.24680431464352
G53 = -33.99990352819905
G54 = 11.70890893206160
G61 = 8.083246795921522
G62 = -7.981132988064893
G63 = -31.52159432874371
G64 = 16.31930543123136
G65 = -6.058818238834054

H21 = 10.12623508344586
H22 = -7.487995877610167
H23 = -34.80091861555747
H24 = -7.992771707568823
H25 = 1.025137723295662
H31 = -0.6762803392801253
H32 = 6.087714651680015
H33 = 16.43084320892478
H34 = 24.76722511418386
H35 = -6.594389125716872


@njit(cache=True, nogil=True)
def rodas_segment(t0, t1, x, K, r, nl, rtol, atol, h, tobs, xobs, max_steps, stats):
    """Integrate from t0 to t1 by Rodas4; arguments, return and ``stats`` as in the segment contract of
    ``stepping``.

    Rodas4 (Hairer & Wanner, Solving ODEs II, §VI.4; coefficients of Hairer's rodas.f as given in
    OrdinaryDiffEq.jl ``Rodas4Tableau``, cross-checked with Numerical Recipes 3rd ed. ``StepperRoss``):
    6 stages, one LU factorisation of I/(h·γ) − J per attempted step, analytic Jacobian (rhs.jacobian)
    and explicit time derivative (rhs.time_derivative), 3rd-order dense output. Counts: 5 right-hand
    sides per attempted step that factorises, 1 more per new point (t, x), 1 to select the first step.
    """
    iobs, status = segment_start(t0, t1, x, tobs, xobs)
    if status != SEGMENT_CONTINUE:
        return status, h
    switch = np.zeros(N_SWITCH, dtype=np.int64)  # SW_DETECT = 0: no non-stiffness test
    status, h, _, _ = rodas_steps(t0, t1, x, K, r, nl, rtol, atol, h, tobs, xobs, iobs, max_steps, stats, switch,
                                  0.0)
    return status, h


@njit(cache=True, nogil=True)
def rodas_steps(t0, t1, x, K, r, nl, rtol, atol, h, tobs, xobs, iobs, max_steps, stats, switch, boundary):
    """The steps of ``rodas_segment`` from t0 (> every tobs before ``iobs``) towards t1; returns
    (status, h_next, t reached, next observation index).

    With ``switch[SW_DETECT]`` = 1 (``autoswitch``), after every accepted step but a segment's last the
    step h the controller proposes next is compared with the Jacobian J of the step: ρ = min(‖J‖₁, ‖J‖∞)
    bounds its spectral radius (OrdinaryDiffEq's auto-switching takes ‖J‖∞ as the Rosenbrock methods'
    eigenvalue estimate, ``calc_J``; the smaller of two induced norms is still a bound). Steps with
    h·ρ < ``NONSTIFF_TOL``·``boundary`` = 0.9 × the stability boundary on the negative real axis of the
    explicit method that would take over (OrdinaryDiffEq ``AutoSwitch``: nonstifftol 9/10) add one to
    ``switch[SW_NONSTIFF]``, any other step clears it; after
    ``NONSTIFF_STEPS`` = 4 in a row (``maxnonstiffstep`` = 3, switching on the 4th) the call returns
    ``STIFFNESS_SWITCH`` at the time reached: the explicit method would be stable at this step size.
    """
    n = x.shape[0]
    m = tobs.shape[0]
    f0 = np.empty(n)
    fx = np.empty(n)
    J = np.empty((n, n))
    E = np.empty((n, n))
    piv = np.empty(n, dtype=np.int64)
    k1 = np.empty(n)
    k2 = np.empty(n)
    k3 = np.empty(n)
    k4 = np.empty(n)
    k5 = np.empty(n)
    k6 = np.empty(n)
    y = np.empty(n)
    dy = np.empty(n)

    n_acc = 0
    rhs(t0, x, K, r, nl, f0)
    stats[RHS_EVALUATIONS] += 1
    if not _all_finite(f0):
        return NONFINITE, h, t0, iobs

    span = t1 - t0
    if not (h > 0.0) or not np.isfinite(h):
        h = _initial_step(t0, t1, x, f0, K, r, nl, rtol, atol, 3.0, y, dy)
        stats[RHS_EVALUATIONS] += 1
    h = min(h, span)

    detect = switch[SW_DETECT] != 0
    t = t0
    n_att = 0
    rejected = False
    fresh = False  # f0, J, fx are valid at (t, x)
    first = True
    h_acc = 0.0
    err_acc = 1.0
    while True:
        if n_att >= max_steps:
            return MAX_STEPS, h, t, iobs
        if h < 1e-14 * max(abs(t), 1.0):
            return STEP_UNDERFLOW, h, t, iobs
        if not fresh:
            if n_acc > 0:
                rhs(t, x, K, r, nl, f0)
                stats[RHS_EVALUATIONS] += 1
            jacobian(t, x, K, nl, J)
            time_derivative(t, x, nl, fx)
            fresh = True
        last = False
        hs = h
        if t + 1.01 * h >= t1:
            hs = t1 - t
            last = True
        n_att += 1
        t_new = t1 if last else t + hs

        fac = 1.0 / (hs * GAMMA)
        for i in range(n):
            for j in range(n):
                E[i, j] = -J[i, j]
            E[i, i] += fac
        stats[LU_FACTORISATIONS] += 1
        if not lu_factor(E, piv):
            h = hs * 0.5
            rejected = True
            stats[STEPS_REJECTED] += 1
            continue

        ih = 1.0 / hs
        # stage 1
        for i in range(n):
            k1[i] = f0[i] + hs * D1 * fx[i]
        lu_solve(E, piv, k1)
        # stage 2
        for i in range(n):
            y[i] = x[i] + A21 * k1[i]
        rhs(t + C2 * hs, y, K, r, nl, dy)
        for i in range(n):
            k2[i] = dy[i] + ih * (G21 * k1[i]) + hs * D2 * fx[i]
        lu_solve(E, piv, k2)
        # stage 3
        for i in range(n):
            y[i] = x[i] + A31 * k1[i] + A32 * k2[i]
        rhs(t + C3 * hs, y, K, r, nl, dy)
        for i in range(n):
            k3[i] = dy[i] + ih * (G31 * k1[i] + G32 * k2[i]) + hs * D3 * fx[i]
        lu_solve(E, piv, k3)
        # stage 4
        for i in range(n):
            y[i] = x[i] + A41 * k1[i] + A42 * k2[i] + A43 * k3[i]
        rhs(t + C4 * hs, y, K, r, nl, dy)
        for i in range(n):
            k4[i] = dy[i] + ih * (G41 * k1[i] + G42 * k2[i] + G43 * k3[i]) + hs * D4 * fx[i]
        lu_solve(E, piv, k4)
        # stage 5
        for i in range(n):
            y[i] = x[i] + A51 * k1[i] + A52 * k2[i] + A53 * k3[i] + A54 * k4[i]
        rhs(t_new, y, K, r, nl, dy)
        for i in range(n):
            k5[i] = dy[i] + ih * (G51 * k1[i] + G52 * k2[i] + G53 * k3[i] + G54 * k4[i])
        lu_solve(E, piv, k5)
        # stage 6 (embedded solution u6 = u5 + k5)
        for i in range(n):
            y[i] += k5[i]
        rhs(t_new, y, K, r, nl, dy)
        for i in range(n):
            k6[i] = dy[i] + ih * (G61 * k1[i] + G62 * k2[i] + G63 * k3[i] + G64 * k4[i]
                                  + G65 * k5[i])
        lu_solve(E, piv, k6)
        stats[RHS_EVALUATIONS] += 5

        err = 0.0
        for i in range(n):
            ynew = y[i] + k6[i]
            sc = atol + rtol * max(abs(x[i]), abs(ynew))
            err += (k6[i] / sc) ** 2
        err = np.sqrt(err / n)

        if not np.isfinite(err):
            h = hs * 0.2
            rejected = True
            stats[STEPS_REJECTED] += 1
            continue

        fc = max(FAC_MIN, min(FAC_MAX, err ** 0.25 / SAFETY))
        if err <= 1.0:
            if not first:  # Gustafsson's predictive controller (rodas.f, PRED = .TRUE.)
                fgus = (h_acc / hs) * (err * err / err_acc) ** 0.25 / SAFETY
                fgus = max(FAC_MIN, min(FAC_MAX, fgus))
                fc = max(fc, fgus)
            first = False
            h_acc = hs
            err_acc = max(1e-2, err)
            h_new = hs / fc
            if rejected:
                h_new = min(h_new, hs)
            # dense output for tobs in (t, t_new]: reuse k2, k3 as q1, q2
            if iobs < m and tobs[iobs] <= t_new:
                for i in range(n):
                    q1 = H21 * k1[i] + H22 * k2[i] + H23 * k3[i] + H24 * k4[i] + H25 * k5[i]
                    q2 = H31 * k1[i] + H32 * k2[i] + H33 * k3[i] + H34 * k4[i] + H35 * k5[i]
                    k2[i] = q1
                    k3[i] = q2
                    k4[i] = y[i] + k6[i]
                while iobs < m and tobs[iobs] <= t_new:
                    to = tobs[iobs]
                    if to == t_new:
                        for i in range(n):
                            xobs[iobs, i] = k4[i]
                    else:
                        th = (to - t) / hs
                        th1 = 1.0 - th
                        for i in range(n):
                            xobs[iobs, i] = th1 * x[i] + th * (k4[i] + th1 * (k2[i] + th * k3[i]))
                    iobs += 1
            for i in range(n):
                x[i] = y[i] + k6[i]
            n_acc += 1
            stats[STEPS_ACCEPTED] += 1
            t = t_new
            fresh = False
            if last:
                h_next = max(h_new, h)
                while iobs < m:
                    for i in range(n):
                        xobs[iobs, i] = x[i]
                    iobs += 1
                return OK, h_next, t, iobs
            h = h_new
            rejected = False
            if detect:
                if h_new * _bound_spectral_radius(J) < NONSTIFF_TOL * boundary:
                    switch[SW_NONSTIFF] += 1
                    if switch[SW_NONSTIFF] >= NONSTIFF_STEPS:
                        switch[SW_NONSTIFF] = 0
                        return STIFFNESS_SWITCH, h, t, iobs
                else:
                    switch[SW_NONSTIFF] = 0
        else:
            if first and n_acc == 0 and not rejected:
                h = hs * 0.1  # rodas.f: first step rejected → h/10
            else:
                h = hs / fc
            rejected = True
            stats[STEPS_REJECTED] += 1


@njit(cache=True, nogil=True)
def _bound_spectral_radius(J):
    """min(‖J‖₁, ‖J‖∞) ≥ ρ(J): maximal absolute column sum and row sum."""
    n = J.shape[0]
    row = 0.0
    col = 0.0
    for i in range(n):
        sr = 0.0
        sc = 0.0
        for j in range(n):
            sr += abs(J[i, j])
            sc += abs(J[j, i])
        row = max(row, sr)
        col = max(col, sc)
    return min(row, col)
