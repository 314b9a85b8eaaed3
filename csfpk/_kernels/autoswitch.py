"""An explicit Runge–Kutta pair with stiffness detection, switching to Rodas4 while the problem is stiff (numba).

An explicit pair is the cheapest method on a non-stiff problem; on a stiff one its step size is held
near the boundary of its stability domain however smooth the solution is, while an L-stable method
takes steps set by accuracy alone. ``auto_segment`` starts a subject with the explicit pair and

* hands over to Rodas4 (``rosenbrock.rodas_steps``) when Hairer's stiffness test says so: h·ρ, with ρ
  estimated from the last two stages, above 9/10 of the pair's stability boundary on the negative real
  axis in 15 accepted steps not interrupted by 6 non-stiff ones (Hairer & Wanner, *Solving ODEs II*,
  2nd ed., §IV.2; Hairer's ``dopri5.f`` and ``dop853.f``, IASTI/NONSTI; Shampine 1977, "Stiffness and
  nonstiff differential equation solvers II: detecting stiffness with Runge–Kutta methods", ACM TOMS
  3:44; the threshold and why it is not dopri5.f's 3.25: ``dopri5.dopri5_steps``);
* hands back when Rodas4's next step h times its Jacobian's norm (a bound on the spectral radius ρ)
  stays below 9/10 of that boundary for 4 accepted steps in a row, that is when the explicit pair would
  be stable at the step size accuracy asks for (Rackauckas & Nie 2017, J Open Res Softw 5:15,
  DifferentialEquations.jl; OrdinaryDiffEq ``AutoSwitch`` defaults: nonstifftol 9/10, maxnonstiffstep 3,
  dtfac 2).

The explicit pair is DOP853 (``dop853``, order 8) when rtol ≤ ``HIGH_ORDER_RTOL``, else Dormand–Prince
5(4) (``dopri5``): on the nonlinear benchmark workload DOP853 needed about half the right-hand sides of
Dormand–Prince at rtol 1e-8 and ran 1.4× faster, but was slower at rtol 1e-4 (0.8×) and even at 1e-6
(1.07×, measured in one run on a loaded 2-core machine; ``benchmarks``), as OrdinaryDiffEq recommends
Tsit5 at default and Vern7 at tight tolerances.

At a hand-over the step size is doubled (to Rodas4) or halved (to the explicit pair), as ``AutoSwitch``'s
dtfac = 2. The method in use is kept across segments (a dose does not change the Jacobian's spectrum
much; OrdinaryDiffEq keeps it across callbacks) in ``switch[SW_MODE]``. Every hand-over adds one to
``stats[STIFFNESS_SWITCHES]``. On a problem that never trips the test the steps are those of
``dopri5_segment`` / ``dop853_segment``, bit for bit: the test reads the stages and changes nothing.

LSODA (Petzold 1983, SIAM J Sci Stat Comput 4:136) switches between Adams and BDF by comparing the
step sizes the two would take; the test here is the one of the explicit codes, cheap per step, and
Rodas4 needs no Newton iteration, so a hand-over too early or too late costs steps, never convergence.
"""

import numpy as np
from numba import njit

from csfpk._kernels.codes import (DOP853, DOPRI5, RODAS, SEGMENT_CONTINUE, STEPS_ACCEPTED, STEPS_REJECTED,
                                  STIFFNESS_SWITCH, STIFFNESS_SWITCHES, SW_DETECT, SW_MODE, SW_NONSTIFF, SW_STIFF)
from csfpk._kernels.dop853 import STABILITY_BOUNDARY as DOP853_BOUNDARY
from csfpk._kernels.dop853 import dop853_steps
from csfpk._kernels.dopri5 import STABILITY_BOUNDARY as DOPRI5_BOUNDARY
from csfpk._kernels.dopri5 import dopri5_steps
from csfpk._kernels.rosenbrock import rodas_steps
from csfpk._kernels.stepping import segment_start

H_FACTOR = 2.0  # AutoSwitch dtfac: h·2 on entering the stiff method, h/2 on leaving it
HIGH_ORDER_RTOL = 1e-7  # DOP853 as the explicit pair at rtol ≤ this (module docstring), Dormand–Prince above


@njit(cache=True, nogil=True)
def auto_segment(t0, t1, x, K, r, nl, rtol, atol, h, tobs, xobs, max_steps, stats, switch):
    """Integrate from t0 to t1, switching between an explicit pair and Rodas4 (module docstring); arguments,
    return and ``stats`` as in the segment contract of ``stepping``, plus ``switch``: int64[N_SWITCH] (slots
    ``SW_*`` of ``codes``), the switching state of the subject, zero before its first segment.

    ``max_steps`` bounds the steps attempted in the segment by both methods together.
    """
    explicit = DOP853 if rtol <= HIGH_ORDER_RTOL else DOPRI5
    boundary = DOP853_BOUNDARY if explicit == DOP853 else DOPRI5_BOUNDARY
    switch[SW_DETECT] = 1
    iobs, status = segment_start(t0, t1, x, tobs, xobs)
    if status != SEGMENT_CONTINUE:
        return status, h
    t = t0
    while True:
        used = stats[STEPS_ACCEPTED] + stats[STEPS_REJECTED]
        if switch[SW_MODE] == RODAS:
            status, h, t, iobs = rodas_steps(t, t1, x, K, r, nl, rtol, atol, h, tobs, xobs, iobs, max_steps, stats,
                                             switch, boundary)
        elif explicit == DOP853:
            status, h, t, iobs = dop853_steps(t, t1, x, K, r, nl, rtol, atol, h, tobs, xobs, iobs, max_steps, stats,
                                              switch)
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
            switch[SW_MODE] = explicit
            h = h / H_FACTOR
        else:
            switch[SW_MODE] = RODAS
            h = h * H_FACTOR
