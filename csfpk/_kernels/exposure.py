r"""Grid-free exact exposure metrics of a linear model over one inter-event gap (DESIGN §8).

Between two actions of the timeline the inputs r (mg/h) are constant and the states solve
dx/dt = K·x + r exactly:

    x(s + τ) = E(τ)·x(s) + Φ(τ)·r,   ∫₀^τ x(s + u) du = Φ(τ)·x(s) + Ψ(τ)·r,

with E = exp(K·τ), Φ = ∫E, Ψ = ∫Φ. An output is C_o = f_o·x[i_o]; every derivative of it is known
exactly at any point: with v = K·x + r, x⁽ᵏ⁾ = Kᵏ⁻¹·v, and because E commutes with K,
x⁽ᵏ⁾(s + τ) = E(τ)·Kᵏ⁻¹·v(s).

Method (``gap``)
----------------
1. **Propagators.** Sub-steps have lengths w = h·2^(−j/``STEPS_PER_OCTAVE``) or the rest of the gap.
   E, Φ, Ψ(w) are cached per subject by length (``_level``): a Taylor series at w/2^B with
   ‖K‖₁·w/2^B ≤ ``THETA`` (truncation below 1e-18), squared up B times with E(2w) = E², Φ(2w) = Φ + E·Φ,
   Ψ(2w) = Ψ + w·Φ + E·Ψ, keeping every length passed (scaling and squaring, Taylor in place of Padé;
   Higham 2005 and Al-Mohy & Higham 2011, SIAM J Sci Comput 33:488, for Taylor-based exponentials). A
   dosing interval that repeats, and the halvings shared by different lengths, cost nothing after the
   first time. The state at a sub-step end and its exact AUC increment f_o·(Φ·x + Ψ·r)[i_o] follow.
2. **Certified sub-steps.** From the exact derivatives at the sub-step start, the longest w is found
   on which each output provably has no turn, no crossing, or at most one turn:
   C′(τ) ∈ d₀ + d₁τ ± B₃τ²/2 (d_k = C⁽ᵏ⁺¹⁾(s)) shows C′ keeps its sign while |d₀| + sgn(d₀)·d₁·w > B₃w²/2;
   the same with C − T, C′ and B₂ shows no crossing; with C″, C‴ and B₄ that C′ is monotone (at most one
   turn). The bounds B_k ≥ sup_τ |C⁽ᵏ⁾(s + τ)| use x⁽ᵏ⁾(s + τ) = E(τ)·Kᵏ⁻¹·v: for a compartmental K
   (off-diagonal rates ≥ 0, column sums ≤ 0) E ≥ 0, E_ii ≤ 1 and E_ij ≤ β_i = max_{k≠i} K_ik/|K_ii| for
   j ≠ i (the amount in i never exceeds its inflow over its outflow rate), so
   |(E·z)_i| ≤ |z_i| + β_i·Σ_{j≠i} |z_j| (sinks left out); otherwise |(E·z)_i| ≤ e^{μh}‖z‖₁ (μ the
   logarithmic 1-norm). The bound follows the rates still active: once a depot is empty, ka no longer
   limits the step. An output whose variation over w is provably below ``FLAT`` (relative) is taken as
   flat. The sub-step is the longest allowed length within the certified w of every output; a turn or a
   crossing can only lie in a sub-step with ‖K‖₁·w ≤ ``RHO``, where step 3 locates it.
3. **Location.** In a sub-step with a turn or a crossing the output is expanded exactly in a Taylor
   series about its start, C(s + τ) = Σ_k τᵏ/k!·f_o·(Kᵏ⁻¹·v)[i_o] (``TAYLOR_TERMS`` terms: with
   ‖K‖₁·τ ≤ ρ = 1 the remainder is below ρᵐ/m! ≈ 4e-19 of the state, so the polynomial equals the
   solution to ~1e-15 relative). The one turn (sign change of C′ between the ends) and each crossing of
   a monotone piece are refined to machine precision by Newton steps with the exact slope, safeguarded
   by bisection: scalar Horner evaluations only. Where nothing can be certified down to ``FINEST``·ρ/‖K‖₁
   (C′ and C″ both vanishing at a point), that shortest sub-step is sampled at ``SAMPLES`` points
   instead; features hidden there are below ~B₃·w³ (w ≈ 2e-8/‖K‖₁).

Role: the fallback of ``spectral.gap`` (the eigen-decomposition of K, used by ``exact.walk`` wherever it
applies): the compartment graphs shipped include transit chains (equal transfer rates: K has a Jordan
block and no eigenvector basis), depot and elimination rates that coincide in a population draw (ka = k,
the classic flip-flop degeneracy), and cycles with possibly complex eigenvalues. An eigen-basis is
singular or ill-conditioned exactly there. The propagator + Taylor route uses only the exact exponential
(robust for any K, defective or not) and products with K, so it serves every graph; its cost grows with
‖K‖₁ (sub-steps ‖K‖₁·w ≤ 1 around every feature), which is why it is not the first choice.

Measured (erlotinib 150 mg qd, 28 days, metrics only, shared 2-core machine): the first version cut
every gap into equal sub-steps ‖K‖₁·δ ≤ 1 (~53 per 24 h gap, ~1 500 per subject over 28 days at the
median ‖K‖₁ = 1.9 /h, which ka sets), screened only their ends and one 12×12 block exponential; the
certified steps take ~15 per gap (~415 over 28 days), and in single-thread CPU time a 24 h gap with warm
propagators costs 5.8 µs against 9.5 µs, the propagators ~4 µs against 4.8 µs for the block exponential
(``benchmarks/batch_scale.py`` for whole runs).

Conventions: the curve is right-continuous (after a dose its post-dose value starts the next gap,
so Cmax is the supremum, including the instant after a bolus); Tmax is the first time Cmax is
attained; time above target is the measure of {t : C(t) ≥ T·(1 − ``AT_TARGET_RTOL``)}: a curve
that only touches T at a peak adds (almost) nothing, a curve flat at T counts as above.
"""

import numpy as np
from numba import njit

from .codes import AUC, CMAX, TIME_ABOVE, TMAX
from .linalg import matmul, matvec, matvec_add, norm1

RHO = 1.0  # ‖K‖₁·w bound of a sub-step on which the Taylor polynomial is used
TAYLOR_TERMS = 20  # terms of the Taylor polynomial of an output (1/20! ≈ 4e-19)
SAMPLES = 4  # samples per sub-step in the uncertified fallback (finest level only)
BISECTIONS = 60  # safeguarded Newton/bisection steps per root at most (bisection alone reaches 2^-60)
STEPS_PER_OCTAVE = 2  # sub-step lengths are h·2^(−j/2) (or the rest of the gap): a lost fraction ≤ 29 %
CACHE = 48  # propagator entries (one per sub-step length) cached per subject
THETA = 0.5  # ‖K‖₁·w of the level whose propagators are summed as Taylor series (coarser levels: squaring)
LADDER_TOL = 1e-18  # the propagators' Taylor series stop when ‖K·w‖₁ᵏ/k! is below this
FINEST = 2.0 ** -24  # shortest sub-step, relative to RHO/‖K‖₁: an uncertified sub-step is sampled there
FLAT = 1e-13  # a sub-step over which an output provably varies by less than this (relative) is taken as flat
SAFETY = 1.0 + 1e-6  # factor on the derivative bounds (rounding of K's column sums)
ROUND = 1e-13  # relative rounding margin of the exact derivatives at a point
AT_TARGET_RTOL = 1e-10  # C ≥ T·(1 − 1e-10) counts as at or above the target


@njit(cache=True, nogil=True)
def new_cache(K, n):
    """Propagator cache and bound data of ``gap`` for rate matrix K (n = K.shape[0]; n = 0: no exact
    metrics, empty arrays): E, Φ, Ψ of shape (CACHE, n, n); keys (CACHE + 2): the sub-step length of
    each entry (−1 empty), keys[CACHE] the next entry to overwrite, keys[CACHE + 1] = μ⁺ (module
    docstring, step 2); kry (Krylov vectors), work vectors; bnd (2, n): β_i and the source mask."""
    E = np.empty((CACHE, n, n))
    P = np.empty((CACHE, n, n))
    Q = np.empty((CACHE, n, n))
    keys = np.full(CACHE + 2, -1.0)
    keys[CACHE] = 0.0
    kry = np.zeros((TAYLOR_TERMS, n))
    work = np.zeros((7, n))
    bnd = np.ones((2, n))
    compartmental = True  # off-diagonal rates ≥ 0, column sums ≤ 0 up to rounding (a leak ≤ 1e-6 of the column)
    mu = 0.0  # the logarithmic 1-norm of K (general case) or the largest leak (compartmental case)
    leak = 0.0
    for j in range(n):
        col = 0.0
        size = 0.0
        off = 0.0
        for i in range(n):
            col += K[i, j]
            size += abs(K[i, j])
            if i != j:
                off += abs(K[i, j])
                if K[i, j] < 0.0:
                    compartmental = False
        if col > 1e-6 * size:
            compartmental = False
        leak = max(leak, col)
        mu = max(mu, K[j, j] + off)
        bnd[1, j] = 1.0 if size > 0.0 else 0.0  # a zero column (a sink) passes nothing on
    if compartmental:
        mu = leak
        for i in range(n):
            kin = 0.0
            for k in range(n):
                if k != i:
                    kin = max(kin, K[i, k])
            if K[i, i] < 0.0:
                bnd[0, i] = min(1.0, kin / -K[i, i])
    keys[CACHE + 1] = max(mu, 0.0)
    return E, P, Q, keys, kry, work, bnd


@njit(cache=True, nogil=True)
def _new_entry(keys, w, keep):
    """The next cache entry in turn (never ``keep``, the entry being squared), now keyed w."""
    s = int(keys[CACHE])
    if s == keep:
        s = (s + 1) % CACHE
    keys[CACHE] = float((s + 1) % CACHE)
    keys[s] = w
    return s


@njit(cache=True, nogil=True)
def _taylor(K, w, E, P, Q, s, a):
    """E, Φ, Ψ(w) of entry s as Taylor series of A = K·w (‖A‖₁ = a ≤ THETA): Σ Aᵏ/k!, w·Σ Aᵏ/(k+1)!,
    w²·Σ Aᵏ/(k+2)!."""
    n = K.shape[0]
    T = np.empty((n, n))
    W = np.empty((n, n))
    A = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            A[i, j] = K[i, j] * w
            T[i, j] = 1.0 if i == j else 0.0
            E[s, i, j] = T[i, j]
            P[s, i, j] = w * T[i, j]
            Q[s, i, j] = 0.5 * w * w * T[i, j]
    bound = 1.0
    k = 0
    while bound > LADDER_TOL and k < 40:
        k += 1
        bound *= a / k
        matmul(T, A, W)
        cp = w / (k + 1)
        cq = w * w / ((k + 1) * (k + 2))
        for i in range(n):
            for j in range(n):
                t = W[i, j] / k
                T[i, j] = t
                E[s, i, j] += t
                P[s, i, j] += cp * t
                Q[s, i, j] += cq * t


@njit(cache=True, nogil=True)
def _double(E, P, Q, src, dst, w):
    """Entry dst ← the propagators of twice the step w of entry src: E(2w) = E², Φ(2w) = Φ + E·Φ and
    Ψ(2w) = Ψ + w·Φ + E·Ψ (from Φ(w + s) = Φ(w) + E(w)·Φ(s), integrated over s)."""
    n = E.shape[1]
    matmul(E[src], E[src], E[dst])
    matmul(E[src], P[src], P[dst])
    matmul(E[src], Q[src], Q[dst])
    for i in range(n):
        for j in range(n):
            Q[dst, i, j] += Q[src, i, j] + w * P[src, i, j]
            P[dst, i, j] += P[src, i, j]


@njit(cache=True, nogil=True)
def exp_phi(K, h, E, P, slot):
    """E[slot] ← exp(K·h) and P[slot] ← Φ(h) = ∫₀ʰ exp(K·s) ds by the scaling and squaring of ``_level``
    (a Taylor series at h/2^B with ‖K‖₁·h/2^B ≤ THETA, squared B times): the one exponential of the exact
    walk, so that a population run compiles no Padé ``expm``."""
    n = K.shape[0]
    knorm = norm1(K)
    B = 0
    while B < 1000 and knorm * h * 0.5 ** B > THETA:
        B += 1
    Es = np.empty((2, n, n))
    Ps = np.empty((2, n, n))
    Qs = np.empty((2, n, n))
    s = Es.shape[0] - 2  # slot 0 as a value: a literal 0 would compile second _taylor and _double signatures
    _taylor(K, h * 0.5 ** B, Es, Ps, Qs, s, knorm * h * 0.5 ** B)
    for b in range(B, 0, -1):
        _double(Es, Ps, Qs, s, 1 - s, h * 0.5 ** b)
        s = 1 - s
    for i in range(n):
        for j in range(n):
            E[slot, i, j] = Es[s, i, j]
            P[slot, i, j] = Ps[s, i, j]


@njit(cache=True, nogil=True)
def _find(keys, w):
    for s in range(CACHE):
        if keys[s] == w:
            return s
    return -1


@njit(cache=True, nogil=True)
def _level(K, knorm, w, E, P, Q, keys):
    """Cache entry holding E, Φ, Ψ(w), computed when absent: a Taylor series at w/2^B, the first halving
    with ‖K‖₁·w/2^B ≤ THETA (or from the longest cached w/2^b, b ≤ B), squared up to w; every length
    passed on the way is kept (scaling and squaring, with Taylor in place of Padé; w·2 is exact)."""
    s = _find(keys, w)
    if s >= 0:
        return s
    B = 0
    while B < 1000 and knorm * w * 0.5 ** B > THETA:
        B += 1
    lev = B
    for b in range(1, B + 1):
        s = _find(keys, w * 0.5 ** b)
        if s >= 0:
            lev = b
            break
    if s < 0:
        s = _new_entry(keys, w * 0.5 ** B, s)  # s = −1 here: a value, not a literal −1 (one signature)
        _taylor(K, w * 0.5 ** B, E, P, Q, s, knorm * w * 0.5 ** B)
    while lev > 0:
        d = _new_entry(keys, w * 0.5 ** (lev - 1), s)
        _double(E, P, Q, s, d, w * 0.5 ** lev)
        s = d
        lev -= 1
    return s


@njit(cache=True, nogil=True)
def _quantum(h, j):
    """h·2^(−j/STEPS_PER_OCTAVE), written so that twice the length of j is exactly the length of j − STEPS_PER_OCTAVE."""
    return h * 2.0 ** (-(j % STEPS_PER_OCTAVE) / STEPS_PER_OCTAVE) * 0.5 ** (j // STEPS_PER_OCTAVE)


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
def _spread(z, i, beta, src):
    """Bound on |(E(τ)·z)_i| for every τ ≥ 0 of a compartmental K: |z_i| + β_i·Σ_{j ≠ i, j a source} |z_j|."""
    s = 0.0
    for j in range(z.shape[0]):
        if j != i and src[j] > 0.0:
            s += abs(z[j])
    return abs(z[i]) + beta[i] * s


@njit(cache=True, nogil=True)
def _absdot(K, z, i):
    """Σ_j |K_ij·z_j|: the scale of the rounding error of (K·z)_i."""
    s = 0.0
    for j in range(z.shape[0]):
        s += abs(K[i, j] * z[j])
    return s


@njit(cache=True, nogil=True)
def _reach(c, b, a):
    """The largest w ≥ 0 with c + b·τ − a·τ² > 0 for every τ in [0, w] (a ≥ 0); 0 when c ≤ 0."""
    if not c > 0.0:
        return 0.0
    if c == np.inf:
        return np.inf
    if a <= 0.0:
        return np.inf if b >= 0.0 else c / -b
    sq = np.sqrt(b * b + 4.0 * a * c)
    return (b + sq) / (2.0 * a) if b >= 0.0 else 2.0 * c / (sq - b)


@njit(cache=True, nogil=True)
def _sgn(v):
    return 1.0 if v > 0.0 else -1.0


@njit(cache=True, nogil=True)
def gap(K, knorm, t_start, h, x, r, use_r, out_state, f, level, m, E, P, Q, keys, kry, work, bnd):
    """Advance x over [t_start, t_start + h] exactly and add that gap's exact metrics into m (module
    docstring): AUC (nM·h), Cmax/Tmax (candidates: the gap start, sub-step ends and interior maxima)
    and time above ``level[o]`` (= T·(1 − AT_TARGET_RTOL)). x is updated in place."""
    n = x.shape[0]
    n_out = out_state.shape[0]
    gamma = np.exp(min(700.0, keys[CACHE + 1] * h)) * SAFETY
    beta = bnd[0]
    srcm = bnd[1]
    v = work[0]  # K·x + r = x′ at the sub-step start
    v1 = work[1]  # K·v = x″
    v2 = work[2]  # K²·v = x‴
    v3 = work[3]  # K³·v = x⁗ (when needed)
    y = work[4]  # state at the sub-step end
    vn = work[5]  # x′ at the sub-step end
    matvec_add(K, x, r, v)
    matvec(K, v, v1)
    matvec(K, v1, v2)
    for o in range(n_out):  # the gap's start (post-dose value) is a Cmax candidate
        c = f[o] * x[out_state[o]]
        if c > m[o, CMAX]:
            m[o, CMAX] = c
            m[o, TMAX] = t_start
    wrho = RHO / knorm if knorm > 0.0 else np.inf
    shortest = min(wrho, h) * FINEST
    cf = np.zeros(TAYLOR_TERMS + 1)
    done = 0.0  # length of the gap covered so far
    while h - done > 1e-13 * h:
        rest = h - done
        wmin = np.inf  # the longest certified sub-step (step 2 of the module docstring)
        have3 = False
        for o in range(n_out):
            i = out_state[o]
            fo = f[o]
            d0 = fo * v[i]
            d1 = fo * v1[i]
            g0 = fo * x[i] - level[o]
            e0 = ROUND * fo * (_absdot(K, x, i) + abs(r[i]))
            e1 = ROUND * fo * _absdot(K, v, i)
            b2 = 0.5 * fo * gamma * _spread(v1, i, beta, srcm)  # |C″|/2 ≤ b2 on the whole gap
            wm = _reach(abs(d0) - e0, _sgn(d0) * d1, 0.5 * fo * gamma * _spread(v2, i, beta, srcm))
            wc = _reach(abs(g0) - ROUND * abs(fo * x[i]), _sgn(g0) * d0, b2)
            wf = np.inf if (d0 == 0.0 and b2 == 0.0) else _reach(FLAT * abs(fo * x[i]), -abs(d0), b2)
            wm = max(wm, wf)
            wo = min(wm, wc)
            if wo < wrho:
                wu = wm
                if wm < wrho:
                    if not have3:
                        matvec(K, v2, v3)
                        have3 = True
                    e2 = ROUND * fo * _absdot(K, v1, i)
                    wu = max(wm, _reach(abs(d1) - e2, _sgn(d1) * fo * v2[i],
                                        0.5 * fo * gamma * _spread(v3, i, beta, srcm)))
                wo = max(wo, min(wrho, wu))
            wmin = min(wmin, wo)
        wt = max(wmin, shortest)
        if wt >= rest:  # the rest of the gap in one sub-step
            w = rest
        else:  # the longest length h·2^(−j/STEPS_PER_OCTAVE) within wt
            j = max(0, int(np.ceil(-STEPS_PER_OCTAVE * np.log2(wt / h))))
            while _quantum(h, j) > wt:
                j += 1
            w = _quantum(h, j)
        certified = w <= wmin
        s0 = t_start + done
        s = _level(K, knorm, w, E, P, Q, keys)
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
        matvec_add(K, y, r, vn)
        poly = knorm * w <= RHO * (1.0 + 1e-12)
        have_kry = False
        for o in range(n_out):
            i = out_state[o]
            c0 = f[o] * x[i]
            c1 = f[o] * y[i]
            da = f[o] * v[i]
            db = f[o] * vn[i]
            T = level[o]
            turns = (da > 0.0 and db < 0.0) or (da < 0.0 and db > 0.0)
            if not (poly and (turns or ((c0 >= T) != (c1 >= T)) or not certified)):
                # monotone without a crossing (certified): the ends are the candidates
                if c1 > m[o, CMAX]:
                    m[o, CMAX] = c1
                    m[o, TMAX] = s0 + w
                if c0 >= T:
                    m[o, TIME_ABOVE] += w
                continue
            if not have_kry:  # Krylov vectors Kᵏ·v, k = 0 … TAYLOR_TERMS − 1, shared by the outputs
                for q in range(n):
                    kry[0, q] = v[q]
                    kry[1, q] = v1[q]
                    kry[2, q] = v2[q]
                for k in range(3, TAYLOR_TERMS):
                    for q in range(n):
                        acc = 0.0
                        for p2 in range(n):
                            acc += K[q, p2] * kry[k - 1, p2]
                        kry[k, q] = acc
                have_kry = True
            cf[0] = c0
            fact = 1.0
            for k in range(1, TAYLOR_TERMS + 1):
                fact *= k
                cf[k] = f[o] * kry[k - 1, i] / fact
            n_pieces = 1 if certified else SAMPLES  # certified: at most one turn of C in the sub-step
            ta = 0.0
            pa = c0
            da_ = da
            for q in range(1, n_pieces + 1):
                tb = w if q == n_pieces else q * w / n_pieces
                pb = c1 if q == n_pieces else _poly(cf, tb)
                db_ = db if q == n_pieces else _dpoly(cf, tb)
                if (da_ > 0.0 and db_ < 0.0) or (da_ < 0.0 and db_ > 0.0):
                    te = _root(cf, ta, tb, 0.0, cf.shape[0] > 0)  # True as a value, not a literal (see _above)
                    pe = _poly(cf, te)
                    if da_ > 0.0 and pe > m[o, CMAX]:
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
                da_ = db_
        for i in range(n):
            x[i] = y[i]
            v[i] = vn[i]
        matvec(K, v, v1)
        matvec(K, v1, v2)
        done = h if w == rest else done + w
