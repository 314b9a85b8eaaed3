"""Dormand–Prince 5(4) with stiffness detection, switching to Rodas4 while the problem is stiff (numba).

An explicit pair is the cheapest method on a non-stiff problem; on a stiff one its step size is held
near the boundary of its stability domain however smooth the solution is, while an L-stable method
takes steps set by accuracy alone. ``auto_segment`` starts a subject with Dormand–Prince
(``dopri5.dopri5_steps``) and

* hands over to Rodas4 (``rosenbrock.rodas_steps``) when Hairer's stiffness test says so: h·ρ, with ρ
  estimated from the last two stages, above 9/10 of the stability boundary on the negative real axis
  (3.3066) in 15 accepted steps not interrupted by 6 non-stiff ones (Hairer & Wanner, *Solving ODEs
  II*, 2nd ed., §IV.2; Hairer's ``dopri5.f``, IASTI/NONSTI; Shampine 1977, "Stiffness and nonstiff
  differential equation solvers II: detecting stiffness with Runge–Kutta methods", ACM TOMS 3:44; the
  threshold, and why it is not dopri5.f's 3.25: ``dopri5.dopri5_steps``);
* hands back when Rodas4's next step h times its Jacobian's norm (a bound on the spectral radius ρ)
  stays below 9/10 of that boundary for 4 accepted steps in a row, that is when Dormand–Prince would be
  stable at the step size accuracy asks for (Rackauckas & Nie 2017, J Open Res Softw 5:15,
  DifferentialEquations.jl; OrdinaryDiffEq ``AutoSwitch`` defaults: nonstifftol 9/10, maxnonstiffstep 3,
  dtfac 2).

At a hand-over the step size is doubled (to Rodas4) or halved (to Dormand–Prince), as ``AutoSwitch``'s
dtfac = 2. The method in use is kept across segments (a dose does not change the Jacobian's spectrum
much; OrdinaryDiffEq keeps it across callbacks) in ``switch[SW_MODE]``. Every hand-over adds one to
``stats[STIFFNESS_SWITCHES]``. On a problem that never trips the test the steps are those of
``dopri5_segment``, bit for bit: the test reads the stages and changes nothing.

LSODA (Petzold 1983, SIAM J Sci Stat Comput 4:136) switches between Adams and BDF by comparing the
step sizes the two would take; the test here is the one of the explicit code, cheap per step, and
Rodas4 needs no Newton iteration, so a hand-over too early or too late costs steps, never convergence.

A higher-order explicit pair (DOP853, Hairer's dop853.f as in scipy) was tried as the explicit half at
rtol ≤ 1e-7: 1.4× faster on the nonlinear benchmark workload at rtol 1e-8, but on 300 random linear PK
models (rates 0.01–5 /h) its error exceeded 10·rtol in 123 (up to 9e-4 relative on amounts above 0.1 %
of the dose; Dormand–Prince: never), with scipy's DOP853 as bad: its combined 5th/3rd-order error
estimate accepts steps where a mode sits near its stability boundary. It is not used.
"""

import numpy as np
from numba import njit

from csfpk._kernels.codes import (DOPRI5, RODAS, SEGMENT_CONTINUE, STEPS_ACCEPTED, STEPS_REJECTED, STIFFNESS_SWITCH,
                                  STIFFNESS_SWITCHES, SW_DETECT, SW_FIXED, SW_MODE, SW_NONSTIFF, SW_STIFF)
from csfpk._kernels.dopri5 import STABILITY_BOUNDARY, dopri5_steps
from csfpk._kernels.rosenbrock import rodas_steps
from csfpk._kernels.stepping import segment_start

H_FACTOR = 2.0  # AutoSwitch dtfac: h·2 on entering the stiff method, h/2 on leaving it


@njit(cache=True, nogil=True)
def auto_segment(t0, t1, x, K, r, nl, rtol, atol, h, tobs, xobs, max_steps, stats, switch):
    """Integrate from t0 to t1, switching between Dormand–Prince and Rodas4 (module docstring); arguments,
    return and ``stats`` as in the segment contract of ``stepping``, plus ``switch``: int64[N_SWITCH] (slots
    ``SW_*`` of ``codes``), the switching state of the subject, zero before its first segment.

    ``max_steps`` bounds the steps attempted in the segment by both methods together.

    ``switch[SW_FIXED]`` = 1 never switches: the method ``switch[SW_MODE]`` runs alone, the steps of
    ``dopri5_segment`` or ``rodas_segment`` bit for bit (the same calls, no stiffness test; Rodas4's
    ``boundary`` is read only when testing). ``adaptive.run_subject`` runs every method through here, so
    that a population run compiles one segment integrator, not three.
    """
    switch[SW_DETECT] = 1 - switch[SW_FIXED]
    iobs, status = segment_start(t0, t1, x, tobs, xobs)
    if status != SEGMENT_CONTINUE:
        return status, h
    t = t0
    while True:
        used = stats[STEPS_ACCEPTED] + stats[STEPS_REJECTED]
        if switch[SW_MODE] == RODAS:
            status, h, t, iobs = rodas_steps(t, t1, x, K, r, nl, rtol, atol, h, tobs, xobs, iobs, max_steps, stats,
                                             switch, STABILITY_BOUNDARY)
        else:
            status, h, t, iobs = dopri5_steps(t, t1, x, K, r, nl, rtol, atol, h, tobs, xobs, iobs, max_steps, stats,
                                              switch)
        if status != STIFFNESS_SWITCH:
            return status, h
        max_steps -= stats[STEPS_ACCEPTED] + stats[STEPS_REJECTED] - used
        stats[STIFFNESS_SWITCHES] += 1
        switch[SW_STIFF] = 0
        switch[SW_NONSTIFF] = 0
        if switch[SW_MODE] == RODAS:
            switch[SW_MODE] = DOPRI5
            h = h / H_FACTOR
        else:
            switch[SW_MODE] = RODAS
            h = h * H_FACTOR
