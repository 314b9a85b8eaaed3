r"""Exact exposure metrics of a linear model by the eigen-decomposition of its rate matrix (issue 12 item 1).

The same metrics as ``exposure.gap`` (AUC, Cmax/Tmax, time above a target over one inter-event gap, the
state advanced exactly), by a different method where it applies; ``exposure.gap`` (the certificate walk)
stays the fallback for the matrices this one refuses.

Method
------
Per subject, once (``decompose``): the dynamic block A = K[:n_dyn, :n_dyn] (the states after n_dyn are
sinks: zero columns, they feed nothing) is diagonalised, A = V·Λ·W with W = V⁻¹ (``np.linalg.eig``, LAPACK
dgeev; W by ``linalg.lu_factor``), eigenvalues sorted ascending. In a gap with constant input r, with
β = W·r, α = W·x(s) + Λ⁻¹β and x* = −V·Λ⁻¹β (the steady state of the gap's input),

    x(s + τ) = x* + V·e^{Λτ}·α,      C_o(s + τ) = c₀ + Σ_k c_k·e^{λ_k τ},   c₀ = f_o·x*_i,  c_k = f_o·V_ik·α_k,

so every output is an exponential sum, and

* AUC = c₀·h + Σ c_k·(e^{λ_k h} − 1)/λ_k (``np.expm1``, no cancellation for short gaps);
* the state at the gap end is x* + V·e^{Λh}·α (sinks: their inflow integrated in closed form);
* Cmax: the gap start (the post-dose value), the end, and the zeros of C′ = Σ c_k·λ_k·e^{λ_k τ} inside;
  none are searched when c₀ + Σ max(c_k, 0) (a bound of C on the whole gap) is below the Cmax so far;
* time above T: the zeros of (c₀ − T) + Σ c_k·e^{λ_k τ} inside the gap.

Zeros of an exponential sum G(τ) = Σ_k a_k·e^{μ_k τ} (μ ascending, ``_pieces``, ``_refine``):

* **Laguerre's rule of signs** (Laguerre 1883; Pólya & Szegő, *Problems and Theorems in Analysis II*,
  Part V, problem 75): the number of real zeros, counted with multiplicity, is at most the number of sign
  changes of a₀, a₁, … ordered by exponent. With ≤ 1 sign change a zero exists in [0, h] exactly when
  G changes sign between the ends.
* **Rolle recursion**: e^{−μ₀τ}·G has the same zeros as G and its derivative is the exponential sum
  G₁ = Σ_{k≥1} a_k·(μ_k − μ₀)·e^{(μ_k − μ₀)τ} with one term fewer (same zeros as
  Σ_{k≥1} a_k·(μ_k − μ₀)·e^{μ_k τ}); between two consecutive zeros of G₁, e^{−μ₀τ}·G is monotone, so
  G has at most one zero there. Level j has the coefficients a_k·Π_{i<j}(μ_k − μ_i) (k ≥ j), whose
  signs are those of a_k (μ ascending): the recursion starts at the first level whose coefficient
  tail has ≤ 1 sign change, and climbs back: the zeros of level j + 1 cut [0, h] into pieces with at
  most one zero of level j each, located by Newton steps on the exact slope safeguarded by bisection.
  Most gap/output pairs have ≤ 1 sign change and need one evaluation at each end only.
* A term whose largest value on the gap (|a_k|, at τ = 0: μ ≤ 0) is below ``DROP`` times the smallest
  value of Σ|a_k|·e^{μ_k τ} (at τ = h) is dropped: it changes G by less than its rounding error.

Guard (``decompose`` returns False and the caller uses ``exposure.gap``): non-finite K, a sink column
that is not zero, an output on a sink, complex eigenvalues (dgeev raises: numba's real ``eig`` refuses
a domain change), an eigenvalue ≥ −``TINY``·‖K‖₁ (no steady state: x* does not exist), or an estimate
‖V‖₁·‖W‖₁ of the eigenvector basis' condition number above ``COND_MAX`` — which catches defective and
near-defective K (transit chains of equal rates, ka = k): the basis becomes singular there, and the
coefficients c_k cancel. With cond ≤ 1e6, c_k errors are ≤ ~1e6·ε relative to the state, far inside the
1e-8 the metrics are tested to.

Why this method (measured on the shared 2-core machine, load 3–7, CPU time of one thread, so pessimistic):
the certificate walk (``exposure.gap``) has to locate extrema and crossings inside sub-steps of length
≤ 1/‖K‖₁; the regional CSF layout's tidal cisterna ⇄ cranial mixing (2.34 L/h over 7.5 mL) makes
‖K‖₁ ≈ 650 /h, so 26 weeks of the intrathecal methotrexate seed schedule (17 injections, 7 outputs, target
1 µM) cost ~10 ms per subject in the population kernel. Here that subject costs ~0.26 ms (~0.17 ms without a
target): one eigen-decomposition (``decompose``: ~12 µs at n_dyn = 9, ~4 µs at 3), then per gap and state
the zeros of C′ (~6 × 17 isolations, ~2 200 evaluations of 9 exponentials per subject) — independent of
‖K‖₁ and of the gaps' lengths. Erlotinib 150 mg qd over 28 days (n_dyn = 3, metrics over the last
interval): ~10 µs per subject against ~19 µs for the walk. Accuracy: equal to the walk within 1e-8
relative (Cmax, AUC, time above) on regional methotrexate; a pre-dose value ~1e-6 of the output's peak to
~1e-12 of the peak (eigenvectors are accurate to rounding of their norm, not componentwise), see
tests/test_exact_metrics.py. Shipped drugs and layouts fall back only where the model is defective:
brigatinib's transit chain (equal rates: every subject) and ~0.2 % of liposomal cytarabine's regional
subjects (complex eigenvalues); ``fallbacks`` counts them.

Newton on ln P − ln N rather than on G: near a zero where a fast and a slow term balance, G is a steep
exponential glued to a flat one and Newton on it creeps (tens of steps); the log form is nearly linear
there (the 152 zeros of one methotrexate subject, offline: 2 230 evaluations with Newton on G, 727 on the log
form).
"""

import numpy as np
from numba import njit

from .codes import AUC, CMAX, TIME_ABOVE, TMAX
from .linalg import lu_factor, lu_solve_matrix, norm1

COND_MAX = 1e6  # ‖V‖₁·‖W‖₁ above this: the eigenvector basis is too ill-conditioned → certificate walk
TINY = 1e-12  # an eigenvalue ≥ −TINY·‖K‖₁ counts as zero (no steady state) → certificate walk
DROP = 1e-17  # terms below this times the sum of magnitudes at the gap end are dropped (below its rounding)
ITERATIONS = 100  # safeguarded Newton/bisection steps per zero at most (bisection alone reaches 2^-100)


@njit(cache=True, nogil=True)
def new_workspace(n_dyn):
    """Arrays of ``decompose`` and ``gap`` for n_dyn dynamic states: lam (n_dyn), V, W (n_dyn × n_dyn) and
    scratch: vec (8, n_dyn + 1) (row 7 all ones; ``_exps``), levels B (n_dyn + 1, n_dyn + 1), breakpoints brk
    (3, n_dyn + 3) (row 2: the maxima of ``gap``)."""
    m = n_dyn + 1
    vec = np.empty((8, m))
    vec[2, n_dyn] = -1.0  # the gap length whose exponentials vec[2], vec[3] hold (none yet)
    vec[7] = 1.0
    return (np.empty(n_dyn), np.empty((n_dyn, n_dyn)), np.empty((n_dyn, n_dyn)), vec, np.empty((m, m)),
            np.empty((3, m + 2)))


@njit(cache=True, nogil=True)
def decompose(K, n_dyn, out_state, lam, V, W):
    """lam, V, W ← the eigenvalues (ascending) and eigenvectors of K[:n_dyn, :n_dyn] and W = V⁻¹; True when
    the spectral method applies (module docstring, Guard), False otherwise (lam, V, W then unspecified)."""
    n = K.shape[0]
    nd = n_dyn
    if nd < 1:
        return False
    for i in range(n):
        for j in range(n):
            if not np.isfinite(K[i, j]) or (j >= nd and K[i, j] != 0.0):
                return False
    for o in range(out_state.shape[0]):
        if out_state[o] >= nd:
            return False
    A = np.empty((nd, nd))
    for i in range(nd):
        for j in range(nd):
            A[i, j] = K[i, j]
    try:
        ev, vec = np.linalg.eig(A)
    except Exception:  # complex eigenvalues (numba's real eig refuses the domain change) or LAPACK failure
        return False
    order = np.argsort(ev)
    knorm = norm1(A)
    for k in range(nd):
        lam[k] = ev[order[k]]
        if not lam[k] < -TINY * knorm:
            return False
        for i in range(nd):
            V[i, k] = vec[i, order[k]]
    LU = V.copy()
    piv = np.empty(nd, dtype=np.int64)
    if not lu_factor(LU, piv):
        return False
    for i in range(nd):
        for j in range(nd):
            W[i, j] = 1.0 if i == j else 0.0
    lu_solve_matrix(LU, piv, W)
    cond = norm1(V) * norm1(W)
    return cond <= COND_MAX  # also False for NaN


@njit(cache=True, nogil=True)
def fallbacks(Ks, n_dyn, out_state):
    """How many of the rate matrices Ks[s] the spectral method refuses (``decompose`` False): those subjects'
    exact metrics come from the certificate walk (``exposure.gap``)."""
    lam, V, W, _, _, _ = new_workspace(n_dyn)
    count = 0
    for s in range(Ks.shape[0]):
        if not decompose(Ks[s], n_dyn, out_state, lam, V, W):
            count += 1
    return count


@njit(cache=True, nogil=True)
def _modes(lam, V, W, n_dyn, x, r, use_r, xs, alpha):
    """x* (xs) and the mode amplitudes α of the state x under the constant input r (module docstring)."""
    nd = n_dyn
    for i in range(nd):
        xs[i] = 0.0
    for k in range(nd):
        a = 0.0
        b = 0.0
        for j in range(nd):
            a += W[k, j] * x[j]
            if use_r:
                b += W[k, j] * r[j]
        b /= lam[k]  # (Λ⁻¹β)_k
        alpha[k] = a + b
        if use_r:
            for i in range(nd):
                xs[i] -= V[i, k] * b


@njit(cache=True, nogil=True)
def _advance(K, lam, V, n_dyn, h, x, r, xs, alpha, e, p):
    """x ← its value h later, from x* (xs) and α: x* + V·e^{Λh}·α; sinks gain ∫ of their inflow. e and p
    must hold e^{λh} and (e^{λh} − 1)/λ."""
    nd = n_dyn
    n = x.shape[0]
    for s in range(nd, n):
        acc = r[s] * h
        for j in range(nd):
            if K[s, j] != 0.0:
                integral = xs[j] * h
                for k in range(nd):
                    integral += V[j, k] * alpha[k] * p[k]
                acc += K[s, j] * integral
        x[s] += acc
    for i in range(nd):
        acc = xs[i]
        for k in range(nd):
            acc += V[i, k] * alpha[k] * e[k]
        x[i] = acc


@njit(cache=True, nogil=True)
def _exps(lam, n_dyn, h, e, p):
    """e ← e^{λh}, p ← (e^{λh} − 1)/λ, unless they already hold those of this h (kept in e[n_dyn]: a regimen's
    gaps repeat)."""
    if e[n_dyn] == h:
        return
    for k in range(n_dyn):
        e[k] = np.exp(lam[k] * h)
        p[k] = np.expm1(lam[k] * h) / lam[k]
    e[n_dyn] = h


@njit(cache=True, nogil=True)
def advance(K, lam, V, W, n_dyn, h, x, r, use_r, vec):
    """x ← E(h)·x + Φ(h)·r by the eigen-decomposition (no metrics): the gaps outside the metrics window."""
    nd = n_dyn
    xs = vec[0]
    alpha = vec[1]
    e = vec[2]
    p = vec[3]
    _modes(lam, V, W, nd, x, r, use_r, xs, alpha)
    _exps(lam, nd, h, e, p)
    _advance(K, lam, V, nd, h, x, r, xs, alpha, e, p)


@njit(cache=True, nogil=True)
def _eval(B, j, mu, m, t):
    """Level j of the Rolle recursion at τ = t: (G, ln P − ln N, its derivative), G = Σ_{k≥j} B[j, k]·e^{μ_k t} = P − N
    with P the sum of the positive terms and N of the negative ones (the last two NaN when P or N is 0)."""
    pos = 0.0
    neg = 0.0
    dpos = 0.0
    dneg = 0.0
    for k in range(j, m):
        term = B[j, k] * np.exp(mu[k] * t)
        if term > 0.0:
            pos += term
            dpos += term * mu[k]
        else:
            neg -= term
            dneg -= term * mu[k]
    if pos > 0.0 and neg > 0.0:
        return pos - neg, np.log(pos) - np.log(neg), dpos / pos - dneg / neg
    return pos - neg, np.nan, np.nan


@njit(cache=True, nogil=True)
def _starts_nonnegative(B, j, mu, m):
    """(level j ≥ 0) just after τ = 0: the sign of its first derivative at 0 (order 0, 1, …) that is above rounding
    level (a zero at the gap start: C′ of a compartment fed only through others after a dose elsewhere has
    C′(0) = 0, and C″(0) = 0 two compartments away)."""
    for q in range(m - j):
        g = 0.0
        size = 0.0
        for k in range(j, m):
            term = B[j, k] * mu[k] ** q
            g += term
            size += abs(term)
        if abs(g) > 1e-13 * size:
            return g > 0.0
    g = 0.0
    for k in range(j, m):
        g += B[j, k]
    return g >= 0.0


@njit(cache=True, nogil=True)
def _refine(B, j, mu, m, a, b, pa):
    """The zero of level j in [a, b], where (level ≥ 0) is ``pa`` at a and not at b. Newton steps on
    ln P − ln N (same zero: P = N; a log-sum-exp of lines on either side, nearly linear where one term
    dominates each, where Newton on G itself creeps), first from a, safeguarded as ``rtsafe`` (Press et al.,
    *Numerical Recipes* 3rd ed. §9.4): bisection whenever the Newton step leaves the bracket or is not below
    half the step before last (no oscillation), until the step is below 1e-15 of the initial bracket.
    When ``pa`` comes from a slope (``_starts_nonnegative``: level at rounding at a), values within 1e-12 of
    the bracket from a are rounding noise: they count as ``pa``, and Newton does not start from a."""
    tol = 1e-15 * (b - a)
    near = a + 1e-12 * (b - a)
    g, lg, d = _eval(B, j, mu, m, a)
    step = lg / d if d != 0.0 else np.nan
    if (g >= 0.0) == pa and a < a - step < b:  # False for NaN
        t = a - step
    else:
        t = 0.5 * (a + b)
    dx = b - a
    dx_old = dx
    for _ in range(ITERATIONS):
        g, lg, d = _eval(B, j, mu, m, t)
        if (g >= 0.0) == pa or t <= near:
            a = t
        else:
            b = t
        step = lg / d if d != 0.0 else np.nan
        if abs(step) <= tol:  # converged (a last step this small may fall on a bracket end: clamp)
            return min(max(t - step, a), b)
        if not (a < t - step < b) or abs(step) > 0.5 * abs(dx_old):  # NaN: bisection too
            dx_old = dx
            dx = 0.5 * (b - a)
            t = a + dx
        else:
            dx_old = dx
            dx = step
            t = t - step
        if b - a <= tol:
            return t
    return t


@njit(cache=True, nogil=True)
def _changes(B, j, m):
    """Laguerre's bound on the zeros of level j in τ > 0: the sign changes of the sums T_k = Σ_{i≥k} B[j, i] taken
    from the slowest term (zeros skipped). With μ ascending and w_k = e^{μ_k τ} increasing in k for τ > 0, Abel
    summation gives Σ b_k·w_k = T_j·w_j + Σ_{k>j} T_k·(w_k − w_{k−1}) (Pólya & Szegő V, problems 75–77; no
    more changes than the coefficients' own)."""
    tk = 0.0
    sign = 0
    changes = 0
    for k in range(m - 1, j - 1, -1):
        tk += B[j, k]
        if tk != 0.0:
            sk = 1 if tk > 0.0 else -1
            if sign != 0 and sk != sign:
                changes += 1
            sign = sk
    return changes


@njit(cache=True, nogil=True)
def _pieces(a, mu, m, h, B, brk):
    """Breakpoints 0 = brk[0, 0] < … < brk[0, nb − 1] = h between which a·e^{μτ} (m terms, μ ascending) has at
    most one zero (the zeros of level 1 of the Rolle recursion, module docstring); fills B (levels) and
    returns nb. Uses brk[1] as scratch."""
    for k in range(m):
        B[0, k] = a[k]
    start = m * 0  # the first level with ≤ 1 zero in τ > 0 (``_changes``); a value: a literal 0 adds a signature
    while start < m - 1 and _changes(B, start, m) > 1:
        for k in range(start + 1, m):
            B[start + 1, k] = B[start, k] * (mu[k] - mu[start])
        start += 1
    brk[0, 0] = 0.0
    brk[0, 1] = h
    nb = 2
    for j in range(start, 0, -1):  # zeros of level j from the breakpoints of level j + 1
        brk[1, 0] = 0.0
        cur = 1
        pa = _starts_nonnegative(B, j, mu, m)
        for q in range(1, nb):
            lo = brk[0, q - 1]
            hi = brk[0, q]
            g, _, _ = _eval(B, j, mu, m, hi)
            pb = g >= 0.0
            if pb != pa:
                brk[1, cur] = _refine(B, j, mu, m, lo, hi, pa)
                cur += 1
            pa = pb
        brk[1, cur] = h
        cur += 1
        for q in range(cur):
            brk[0, q] = brk[1, q]
        nb = cur
    return nb


@njit(cache=True, nogil=True)
def _terms(c, lam, nd, scale, const, e, a, mu):
    """The exponential sum const + Σ c_k·scale_k·e^{λ_k τ} (scale = λ for C′, ones for C) as terms a, μ: ascending
    distinct exponents (equal eigenvalues, e.g. two compartments with the same rates, are one term: a Rolle level
    would give the second a factor μ_k − μ_j ≈ 0 and Laguerre's count a spurious sign change, correct but one
    level more; within 1e-12 relative they are merged, which moves C by < 1e-12·|λ|·τ of the term), the
    constant with exponent 0 last, the negligible terms dropped
    (module docstring; e = e^{λh}). Returns the number of terms kept."""
    m = 0
    total = abs(const)
    for k in range(nd):
        v = c[k] * scale[k]
        total += abs(v) * e[k]
        if m > 0 and lam[k] - mu[m - 1] <= 1e-12 * abs(lam[k]):
            a[m - 1] += v
        else:
            a[m] = v
            mu[m] = lam[k]
            m += 1
    kept = 0
    for k in range(m):
        if a[k] != 0.0 and abs(a[k]) > DROP * total:
            a[kept] = a[k]
            mu[kept] = mu[k]
            kept += 1
    if const != 0.0:
        a[kept] = const
        mu[kept] = 0.0
        kept += 1
    return kept


@njit(cache=True, nogil=True)
def _value(c0, c, lam, nd, t):
    """C(τ = t) = c0 + Σ c_k·e^{λ_k t}."""
    s = c0
    for k in range(nd):
        s += c[k] * np.exp(lam[k] * t)
    return s


@njit(cache=True, nogil=True)
def gap(K, lam, V, W, n_dyn, t_start, h, x, r, use_r, out_state, f, level, m, vec, B, brk):
    """Advance x over [t_start, t_start + h] exactly and add that gap's exact metrics into m, as
    ``exposure.gap`` (same conventions; module docstring for the method). Per output: AUC in closed form; the
    zeros of C′ (``_pieces``, ``_refine``) unless neither Cmax nor the time above needs them (the bounds of
    ``_changes``); Cmax among the gap's start, end and those zeros; between consecutive zeros C is monotone, so
    each crossing of the target is one ``_refine`` of C − T on a piece whose ends straddle it."""
    nd = n_dyn
    xs = vec[0]
    alpha = vec[1]
    e = vec[2]
    p = vec[3]
    c = vec[4]
    a = vec[5]
    mu = vec[6]
    ones = vec[7]
    turns = brk[2]  # the zeros of C′ of the last output searched (state ``cached``): outputs of one state share them
    cached = -1
    n_turns = 0
    top = nd * 0  # level 0 as a value: a literal 0 would compile second signatures of _eval, _refine, …
    _modes(lam, V, W, nd, x, r, use_r, xs, alpha)
    _exps(lam, nd, h, e, p)
    for o in range(out_state.shape[0]):
        i = out_state[o]
        fo = f[o]
        c0 = fo * xs[i]
        auc = c0 * h
        for k in range(nd):
            c[k] = fo * V[i, k] * alpha[k]
            auc += c[k] * p[k]
        m[o, AUC] += auc
        start = fo * x[i]  # the gap's start (post-dose value) is a Cmax candidate
        if start > m[o, CMAX]:
            m[o, CMAX] = start
            m[o, TMAX] = t_start
        # sup of C over τ ≥ 0 is at most c0 + the largest sum of the slowest terms (Abel summation, ``_changes``);
        # the sums of C − T all ≥ 0: above on the whole gap, all < 0: never
        T = level[o]
        upper = c0
        lowest = c0 - T
        tk = c0
        for k in range(nd - 1, -1, -1):
            tk += c[k]
            upper = max(upper, tk)
            lowest = min(lowest, tk - T)
        crossings = T != np.inf and upper >= T
        if crossings and lowest >= 0.0:
            m[o, TIME_ABOVE] += h
            crossings = False
        if not crossings and not upper > m[o, CMAX]:
            continue
        if i != cached:  # the zeros of C′ in (0, h)
            n_turns = 0
            nt = _terms(c, lam, nd, lam, 0.0, e, a, mu)
            nb = _pieces(a, mu, nt, h, B, brk)
            pa = _starts_nonnegative(B, top, mu, nt)
            for q in range(1, nb):
                g, _, _ = _eval(B, top, mu, nt, brk[0, q])
                pb = g >= 0.0
                if pa != pb:
                    turns[n_turns] = _refine(B, top, mu, nt, brk[0, q - 1], brk[0, q], pa)
                    n_turns += 1
                pa = pb
            cached = i
        ta = 0.0
        ca = _value(c0, c, lam, nd, 0.0)
        above = 0.0
        ready = False  # the terms of C − T in B[0] for ``_refine``
        for q in range(n_turns + 1):
            tb = turns[q] if q < n_turns else h
            cb = _value(c0, c, lam, nd, tb)
            if q < n_turns and cb > m[o, CMAX]:
                m[o, CMAX] = cb
                m[o, TMAX] = t_start + tb
            if crossings:  # C is monotone on [ta, tb]
                pa = ca >= T
                pb = cb >= T
                if pa and pb:
                    above += tb - ta
                elif pa or pb:
                    if not ready:
                        nt = _terms(c, lam, nd, ones, c0 - T, e, a, mu)
                        for k in range(nt):
                            B[0, k] = a[k]
                        ready = True
                    root = _refine(B, top, mu, nt, ta, tb, pa)
                    above += root - ta if pa else tb - root
            ta = tb
            ca = cb
        m[o, TIME_ABOVE] += above
    _advance(K, lam, V, nd, h, x, r, xs, alpha, e, p)
    for o in range(out_state.shape[0]):  # the gap's end
        ce = f[o] * x[out_state[o]]
        if ce > m[o, CMAX]:
            m[o, CMAX] = ce
            m[o, TMAX] = t_start + h
