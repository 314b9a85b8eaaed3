r"""Grid-free exact exposure metrics of a linear model over one inter-event gap (DESIGN §8).

Between two actions of the timeline the inputs r (mg/h) are constant and the states solve
dx/dt = K·x + r exactly:

    x(s + τ) = E(τ)·x(s) + Φ(τ)·r,   ∫₀^τ x(s + u) du = Φ(τ)·x(s) + Ψ(τ)·r,

with E = exp(K·τ), Φ = ∫E, Ψ = ∫Φ, the upper blocks of exp([[K, I, 0], [0, 0, I], [0, 0, 0]]·τ)
(Van Loan 1978, IEEE Trans Autom Control 23:395; ``expm.expm``). An output is C_o = f_o·x[i_o] and
its derivative dC_o/dt = f_o·(K·x + r)[i_o] is known exactly everywhere.

Method (``gap``)
----------------
1. **Sub-steps.** A gap of length h is cut into N = max(1, ⌈‖K‖₁·h/ρ⌉) equal sub-steps δ = h/N
   (ρ = ``RHO``), so that ‖K‖₁·δ ≤ ρ. Their propagators E, Φ, Ψ(δ) are computed once per distinct
   δ (a small cache: regimens repeat the same gaps) and stepped exactly, so the state at every
   sub-step end, the exact AUC increment f_o·(Φ·x + Ψ·r)[i_o] and the exact derivative at both ends
   are known. The cost is N matrix–vector products per gap: it grows with the number of events and
   with ‖K‖·h (the fastest rate of the model), never with the length of an output grid.
2. **Screening.** A sub-step of an output may hold an interior extremum or a crossing of the target
   when the derivative changes sign between its ends, when the value crosses the target, or when
   the exact second derivative f_o·(K·(K·x + r))[i_o] changes sign (an inflection: two extrema can
   hide between ends of equal slope only if C″ changes sign inside). Other sub-steps are taken as
   monotone and contribute their end values (Cmax) and their whole length or nothing (time above
   target). A first version screened with the cubic Hermite interpolant of the ends instead; it
   flagged nearly every sub-step of a fast convex decay (‖K‖δ ≈ 4) and ran 7.8× slower than the
   hourly grid on the erlotinib benchmark.
3. **Refinement.** In a flagged sub-step the output is expanded exactly in a Taylor series about
   its start, C(s + τ) = Σ_k τᵏ/k!·f_o·(Kᵏ⁻¹·(K·x + r))[i_o] (``TAYLOR_TERMS`` terms: with
   ‖K‖₁·τ ≤ ρ = 1 the remainder is below ρᵐ/m! ≈ 4e-19 of the state and the largest term at most
   e^ρ ≈ 2.7 times it, so the polynomial equals the solution to ~1e-15 relative). The polynomial and
   its derivative are sampled at ``SAMPLES`` points (resolution ‖K‖₁·Δτ ≤ 0.25) to bracket every
   sign change of C′ (extrema) and of C − T (crossings); each bracket is refined to machine
   precision on that polynomial by Newton steps with the exact slope (C″ for extrema, C′ for
   crossings), safeguarded by bisection: scalar Horner evaluations only.

Why this and not an eigen-decomposition of K: the compartment graphs shipped include transit
chains (equal transfer rates: K has a Jordan block and no eigenvector basis), depot and elimination
rates that coincide in a population draw (ka = k, the classic flip-flop degeneracy), and cycles
(plasma ⇄ CSF with bulk flow; regional CSF circulation) with possibly complex eigenvalues. An
eigen-basis is singular or ill-conditioned exactly there, and a guard would need this propagator
path anyway. The propagator + Taylor route uses only the exact matrix exponential (robust for any K,
defective or not) and products with K, so one code serves every graph; its cost is a few
matrix–vector products per sub-step, about the cost of one hourly grid step each.

Measured (``python benchmarks/batch_scale.py --n 100000 --metrics exact grid``: erlotinib 150 mg qd,
28 days, 100 000 subjects, metrics only, 2 threads on a shared 2-core machine, one process): exact
11.3 s, hourly grid 2.4 s (4.8×). With the refinement switched off the exact path took 7.4 s against
2.9 s: at the median ‖K‖₁ = 1.9 /h (twice ka) a subject has ~1 300 sub-steps against 672 grid
steps, so the sub-stepping is about two thirds of the time and the refinement one third. ρ = 4
(36 Taylor terms, 16 samples) ran 27 s: fewer sub-steps, much dearer refinement. The next gain is
a ρ chosen per gap from the rates that are still active (the absorption rate ka sets ‖K‖ but the
depot is empty a few half-lives after a dose).

Limitation (documented in ``csfpk.metrics``): two sign changes of C′ (or of C − T) closer than the
sample resolution, ‖K‖₁·Δτ ≤ 0.25, or inside an unflagged sub-step whose C″ changes sign twice, are
seen as none; the
features they would bound differ from the monotone curve by a relative amount of order
(‖K‖Δτ)² ≲ 6 % of the local variation and last less than Δτ.

Conventions: the curve is right-continuous (after a dose its post-dose value starts the next gap,
so Cmax is the supremum, including the instant after a bolus); Tmax is the first time Cmax is
attained; time above target is the measure of {t : C(t) ≥ T·(1 − ``AT_TARGET_RTOL``)}: a curve
that only touches T at a peak adds (almost) nothing, a curve flat at T counts as above.
"""

import numpy as np
from numba import njit

from .codes import AUC, CMAX, TIME_ABOVE, TMAX
from .expm import expm
from .linalg import matvec, matvec_add

RHO = 1.0  # ‖K‖₁·δ bound of a sub-step
TAYLOR_TERMS = 20  # terms of the Taylor expansion in a flagged sub-step (1/20! ≈ 4e-19)
SAMPLES = 4  # samples of the Taylor polynomial per flagged sub-step (bracketing resolution ρ/4)
BISECTIONS = 60  # safeguarded Newton/bisection steps per root at most (bisection alone reaches 2^-60)
SLOTS = 4  # distinct sub-step lengths cached per subject
AT_TARGET_RTOL = 1e-10  # C ≥ T·(1 − 1e-10) counts as at or above the target


@njit(cache=True, nogil=True)
def new_cache(n):
    """Propagator cache of ``gap``: E, Φ, Ψ of shape (SLOTS, n, n), their sub-step lengths (−1 empty),
    and scratch (Krylov vectors and work vectors)."""
    E = np.zeros((SLOTS, n, n))
    P = np.zeros((SLOTS, n, n))
    Q = np.zeros((SLOTS, n, n))
    keys = np.full(SLOTS + 1, -1.0)  # keys[SLOTS]: the next slot to overwrite
    keys[SLOTS] = 0.0
    kry = np.zeros((TAYLOR_TERMS, n))
    work = np.zeros((5, n))
    return E, P, Q, keys, kry, work


@njit(cache=True, nogil=True)
def _slot(K, delta, E, P, Q, keys):
    """Cache slot holding E, Φ, Ψ(δ), filled from one exponential of the 3n block matrix when absent."""
    for s in range(SLOTS):
        if keys[s] == delta:
            return s
    s = int(keys[SLOTS])
    keys[SLOTS] = float((s + 1) % SLOTS)
    keys[s] = delta
    n = K.shape[0]
    M = np.zeros((3 * n, 3 * n))
    for i in range(n):
        for j in range(n):
            M[i, j] = K[i, j] * delta
        M[i, n + i] = delta
        M[n + i, 2 * n + i] = delta
    X = expm(M)
    for i in range(n):
        for j in range(n):
            E[s, i, j] = X[i, j]
            P[s, i, j] = X[i, n + j]
            Q[s, i, j] = X[i, 2 * n + j]
    return s


@njit(cache=True, nogil=True)
def _poly(cf, tau):
    """Σ cf[k]·τᵏ (Horner)."""
    s = 0.0
    for k in range(cf.shape[0] - 1, -1, -1):
        s = s * tau + cf[k]
    return s


@njit(cache=True, nogil=True)
def _dpoly(cf, tau):
    """d/dτ Σ cf[k]·τᵏ."""
    s = 0.0
    for k in range(cf.shape[0] - 1, 0, -1):
        s = s * tau + k * cf[k]
    return s


@njit(cache=True, nogil=True)
def _d2poly(cf, tau):
    """d²/dτ² Σ cf[k]·τᵏ."""
    s = 0.0
    for k in range(cf.shape[0] - 1, 1, -1):
        s = s * tau + k * (k - 1) * cf[k]
    return s


@njit(cache=True, nogil=True)
def _root(cf, a, b, level, deriv):
    """The sign change of g = P − level (deriv False) or g = P′ (deriv True) in [a, b]: Newton steps
    on the exact slope (P′ or P″), safeguarded by the bracket (a bisection whenever Newton leaves it),
    until the step is below 1e-15 of the bracket's initial width (machine precision)."""
    ga = _dpoly(cf, a) if deriv else _poly(cf, a) - level
    pos = ga > 0.0
    tol = 1e-15 * (b - a)
    t = 0.5 * (a + b)
    for _ in range(BISECTIONS):
        g = _dpoly(cf, t) if deriv else _poly(cf, t) - level
        if g == 0.0:
            return t
        if (g > 0.0) == pos:
            a = t
        else:
            b = t
        dg = _d2poly(cf, t) if deriv else _dpoly(cf, t)
        tn = t - g / dg if dg != 0.0 else a
        if not (a < tn < b):
            tn = 0.5 * (a + b)
        if abs(tn - t) <= tol or b - a <= tol:
            return tn
        t = tn
    return t


@njit(cache=True, nogil=True)
def _above(cf, a, b, pa, pb, level):
    """Length of {τ ∈ [a, b] : P(τ) ≥ level} for P monotone on [a, b], ends pa, pb."""
    ha = pa >= level
    hb = pb >= level
    level_root = cf.shape[0] < 0  # False as a value: a literal bool would compile a second _root (Literal[bool])
    if ha and hb:
        return b - a
    if ha:
        return _root(cf, a, b, level, level_root) - a
    if hb:
        return b - _root(cf, a, b, level, level_root)
    return 0.0


@njit(cache=True, nogil=True)
def gap(K, knorm, t_start, h, x, r, use_r, out_state, f, level, m, E, P, Q, keys, kry, work):
    """Advance x over [t_start, t_start + h] exactly and add that gap's exact metrics into m (module
    docstring): AUC (nM·h), Cmax/Tmax (candidates: the gap start, sub-step ends and interior maxima)
    and time above ``level[o]`` (= T·(1 − AT_TARGET_RTOL)). x is updated in place."""
    n = x.shape[0]
    n_out = out_state.shape[0]
    N = max(1, int(np.ceil(knorm * h / RHO)))
    delta = h / N
    s = _slot(K, delta, E, P, Q, keys)
    v = work[0]  # K·x + r at the sub-step start (dx/dt)
    y = work[1]  # state at the sub-step end
    w = work[2]  # K·y + r
    u = work[3]  # K·v (d²x/dt² at the start)
    z = work[4]  # K·w
    matvec_add(K, x, r, v)
    matvec(K, v, u)
    for o in range(n_out):  # the gap's start (post-dose value) is a Cmax candidate
        c = f[o] * x[out_state[o]]
        if c > m[o, CMAX]:
            m[o, CMAX] = c
            m[o, TMAX] = t_start
    cf = np.zeros(TAYLOR_TERMS + 1)
    for j in range(N):
        s0 = t_start + j * delta
        for o in range(n_out):
            i = out_state[o]
            a = 0.0
            for k in range(n):
                a += P[s, i, k] * x[k]
                if use_r:
                    a += Q[s, i, k] * r[k]
            m[o, AUC] += f[o] * a
        for i in range(n):
            acc = 0.0
            for k in range(n):
                acc += E[s, i, k] * x[k]
                if use_r:
                    acc += P[s, i, k] * r[k]
            y[i] = acc
        matvec_add(K, y, r, w)
        matvec(K, w, z)
        have_kry = False
        for o in range(n_out):
            i = out_state[o]
            c0 = f[o] * x[i]
            c1 = f[o] * y[i]
            d0 = f[o] * v[i]
            d1 = f[o] * w[i]
            T = level[o]
            e0 = f[o] * u[i]
            e1 = f[o] * z[i]
            flagged = ((d0 > 0.0 and d1 < 0.0) or (d0 < 0.0 and d1 > 0.0) or ((c0 >= T) != (c1 >= T))
                       or (e0 > 0.0 and e1 < 0.0) or (e0 < 0.0 and e1 > 0.0))
            if not flagged:
                if c1 > m[o, CMAX]:
                    m[o, CMAX] = c1
                    m[o, TMAX] = s0 + delta
                if c0 >= T:
                    m[o, TIME_ABOVE] += delta
                continue
            if not have_kry:  # Krylov vectors Kᵏ·v, k = 0 … TAYLOR_TERMS − 1, shared by the outputs
                for q in range(n):
                    kry[0, q] = v[q]
                for k in range(1, TAYLOR_TERMS):
                    for q in range(n):
                        acc = 0.0
                        for p in range(n):
                            acc += K[q, p] * kry[k - 1, p]
                        kry[k, q] = acc
                have_kry = True
            cf[0] = c0
            fact = 1.0
            for k in range(1, TAYLOR_TERMS + 1):
                fact *= k
                cf[k] = f[o] * kry[k - 1, i] / fact
            ta = 0.0
            pa = c0
            da = d0
            for q in range(1, SAMPLES + 1):
                tb = delta if q == SAMPLES else q * delta / SAMPLES
                pb = c1 if q == SAMPLES else _poly(cf, tb)
                db = d1 if q == SAMPLES else _dpoly(cf, tb)
                if (da > 0.0 and db < 0.0) or (da < 0.0 and db > 0.0):
                    te = _root(cf, ta, tb, 0.0, cf.shape[0] > 0)  # True as a value, not a literal (see _above)
                    pe = _poly(cf, te)
                    if da > 0.0 and pe > m[o, CMAX]:
                        m[o, CMAX] = pe
                        m[o, TMAX] = s0 + te
                    m[o, TIME_ABOVE] += _above(cf, ta, te, pa, pe, T) + _above(cf, te, tb, pe, pb, T)
                else:
                    m[o, TIME_ABOVE] += _above(cf, ta, tb, pa, pb, T)
                if pb > m[o, CMAX]:
                    m[o, CMAX] = pb
                    m[o, TMAX] = s0 + tb
                ta = tb
                pa = pb
                da = db
        for i in range(n):
            x[i] = y[i]
            v[i] = w[i]
            u[i] = z[i]
