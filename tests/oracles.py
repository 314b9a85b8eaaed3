"""Oracles for the tests: closed forms and reference solvers written apart from the code under test.

Nothing here calls csfpk's model, kernels or right-hand side; each function is derived from the
equations in ``csfpk.model``'s docstring or from textbook pharmacokinetics (Gibaldi & Perrier,
*Pharmacokinetics*, 2nd ed., 1982; Savic et al. 2007 J Pharmacokinet Pharmacodyn 34:711 for the
transit chain), and the references are scipy's ``expm``, ``gammainc`` and ``solve_ivp(Radau)``.
(Like stumpy's ``tests/naive.py``: slow, plain, obviously right.)

Units: time h, amount mg, volume L, clearance L/h, concentration mg/L.
"""

import math

import numpy as np
import scipy.linalg as sla
from scipy.integrate import solve_ivp
from scipy.special import gammainc


# ----------------------------------------------------------------------------- closed forms
def one_compartment_iv_bolus(t, dose, cl, v):
    """C(t) = D/V·exp(−(CL/V)·t)."""
    return dose / v * np.exp(-cl / v * np.asarray(t, float))


def two_compartment_iv_bolus(t, dose, cl, v1, q, v2):
    """C(t) = A·e^{−αt} + B·e^{−βt} (Gibaldi & Perrier ch. 2) with k10 = CL/V1, k12 = Q/V1, k21 = Q/V2,
    α, β the roots of λ² − (k10 + k12 + k21)·λ + k10·k21, A = D/V1·(α − k21)/(α − β),
    B = D/V1·(k21 − β)/(α − β)."""
    t = np.asarray(t, float)
    k10, k12, k21 = cl / v1, q / v1, q / v2
    s, p = k10 + k12 + k21, k10 * k21
    alpha, beta = (s + np.sqrt(s * s - 4 * p)) / 2, (s - np.sqrt(s * s - 4 * p)) / 2
    a = dose / v1 * (alpha - k21) / (alpha - beta)
    b = dose / v1 * (k21 - beta) / (alpha - beta)
    return a * np.exp(-alpha * t) + b * np.exp(-beta * t)


def one_compartment_infusion(t, dose, dur, cl, v):
    """Zero-order infusion of ``dose`` over ``dur`` h: C = R/CL·(1 − e^{−kt}) during, then decay."""
    t = np.asarray(t, float)
    k, rate = cl / v, dose / dur
    return np.where(t <= dur, rate / cl * (1 - np.exp(-k * t)),
                    rate / cl * (1 - np.exp(-k * dur)) * np.exp(-k * (t - dur)))


def one_compartment_oral(t, dose, ka, cl, v, f=1.0, lag=0.0):
    """Bateman function: C = F·D·ka/(V·(ka − k))·(e^{−k·τ} − e^{−ka·τ}), τ = max(t − lag, 0)."""
    k = cl / v
    tau = np.clip(np.asarray(t, float) - lag, 0.0, None)
    return f * dose * ka / (v * (ka - k)) * (np.exp(-k * tau) - np.exp(-ka * tau))


def erlang_arrived(t, dose, stages, k):
    """Amount that has left a chain of ``stages`` first-order compartments (each rate k, 1/h) after a
    bolus ``dose`` into the first: D·P(stages, k·t), P the regularised lower incomplete gamma function
    (the Erlang distribution function; Savic 2007 eq. 2 summed over the chain)."""
    return dose * gammainc(stages, k * np.asarray(t, float))


def erlang_then_elimination(t, dose, stages, k, kel):
    """Amount in a compartment fed by the Erlang outflow of ``stages`` compartments at rate k and
    emptied at rate kel < k:  ∫₀ᵗ D·kᴺ·sᴺ⁻¹/(N−1)!·e^{−k s}·e^{−kel (t−s)} ds
    = D·e^{−kel·t}·(k/(k − kel))ᴺ·P(N, (k − kel)·t)."""
    t = np.asarray(t, float)
    return dose * np.exp(-kel * t) * (k / (k - kel)) ** stages * gammainc(stages, (k - kel) * t)


def single_layout_exchange(ratio, half_life, v_csf, q_bulk, fu, basis="total"):
    """(CL_in, CL_out) L/h of the single CSF layout from csfpk.model's docstring:
    CL_out = ln2·V_csf/t½ − Q_bulk;  CL_in = R·(CL_out + Q_bulk)/fu (total basis) or R·(CL_out + Q_bulk)."""
    cl_out = math.log(2) * v_csf / half_life - q_bulk
    cl_in = ratio * (cl_out + q_bulk) / (fu if basis == "total" else 1.0)
    return cl_in, cl_out


def two_compartment_csf_K(*, ka, CL, V1, Q, V2, fu, CL_in, CL_out, V_csf, Q_bulk, drainage_fraction=None,
                          drainage_half_life=None):
    """Rate matrix (1/h) of depot → central ⇄ peripheral, central ⇄ csf, central → eliminated,
    written out by hand from csfpk.model's docstring; K[j, i] is the flow i → j.
    State order: depot, central, peripheral, csf, eliminated; with a drainage fraction φ and half-life t½
    (the delayed CSF drainage) depot, central, peripheral, csf, csf_drainage, eliminated: csf → csf_drainage
    at φ·Q_bulk/V_csf, csf → central at (CL_out + (1 − φ)·Q_bulk)/V_csf, csf_drainage → central at ln2/t½."""
    if drainage_fraction is not None:
        K6 = np.zeros((6, 6))
        K6[np.ix_([0, 1, 2, 3, 5], [0, 1, 2, 3, 5])] = two_compartment_csf_K(
            ka=ka, CL=CL, V1=V1, Q=Q, V2=V2, fu=fu, CL_in=CL_in, CL_out=CL_out, V_csf=V_csf, Q_bulk=Q_bulk)
        s, r, c = 3, 4, 1
        K6[c, s] -= drainage_fraction * Q_bulk / V_csf
        K6[r, s] = drainage_fraction * Q_bulk / V_csf
        K6[r, r] = -math.log(2) / drainage_half_life
        K6[c, r] = math.log(2) / drainage_half_life
        return K6
    d, c, p, s, e = range(5)
    K = np.zeros((5, 5))
    K[d, d] = -ka
    K[c, d] = ka
    K[c, c] = -(CL / V1 + Q / V1 + CL_in * fu / V1)
    K[p, c] = Q / V1
    K[s, c] = CL_in * fu / V1
    K[e, c] = CL / V1
    K[c, p] = Q / V2
    K[p, p] = -Q / V2
    K[c, s] = (CL_out + Q_bulk) / V_csf
    K[s, s] = -(CL_out + Q_bulk) / V_csf
    return K


# ----------------------------------------------------------------------------- reference solvers
def expm_solution(K, x0, times, r=None):
    """x(t) of dx/dt = K·x + r, x(0) = x0, by scipy's expm of the augmented matrix [[K, r], [0, 0]]."""
    n = K.shape[0]
    M = np.zeros((n + 1, n + 1))
    M[:n, :n] = K
    if r is not None:
        M[:n, n] = r
    z0 = np.append(x0, 1.0)
    return np.array([(sla.expm(M * t) @ z0)[:n] for t in times])


def reference_rhs(K, nl):
    """f(t, x, r) and ∂f/∂x of the model ODE, written from csfpk._kernels.rhs's docstring (not its code):
    dx/dt = K·x + r − e_c·E(t, x_c) + e_s·E(t, x_c) + (e_c − e_csf)·S(x_c),
    E = Vmax·C/(Km + C) + ΔCL·(1 − e^{−k_ind·t})·C, C = x_c/V1, S = k_in·x_c²/(A_sat + x_c) (saturable CSF
    uptake; 0 when A_sat = 0), with nl = (c, s, V1, Vmax, Km, ΔCL, k_ind[, csf, k_in, A_sat])."""
    c, sink, v1, vmax, km, dcl, kind = int(nl[0]), int(nl[1]), nl[2], nl[3], nl[4], nl[5], nl[6]
    csf, kin, asat = (int(nl[7]), nl[8], nl[9]) if len(nl) > 9 else (0, 0.0, 0.0)

    def f(t, x, r):
        dx = K @ x + r
        conc = x[c] / v1
        flux = (vmax * conc / (km + conc) if vmax else 0.0) + (dcl * (1 - np.exp(-kind * t)) * conc if dcl else 0.0)
        dx[c] -= flux
        dx[sink] += flux
        if asat:
            back = kin * x[c] ** 2 / (asat + x[c])
            dx[c] += back
            dx[csf] -= back
        return dx

    def jac(t, x, r):
        J = np.array(K, dtype=float)
        conc = x[c] / v1
        d = (vmax * km / (v1 * (km + conc) ** 2) if vmax else 0.0) + (dcl * (1 - np.exp(-kind * t)) / v1 if dcl else 0.0)
        J[c, c] -= d
        J[sink, c] += d
        if asat:
            ds = kin * x[c] * (x[c] + 2 * asat) / (asat + x[c]) ** 2
            J[c, c] += ds
            J[csf, c] -= ds
        return J

    return f, jac


def radau_segment(K, nl, x0, t0, t1, tobs, r=None, rtol=1e-10, atol=1e-13):
    """States at ``tobs`` (within [t0, t1]) of the model ODE by scipy's Radau with the analytic Jacobian."""
    f, jac = reference_rhs(K, nl)
    r = np.zeros(K.shape[0]) if r is None else np.asarray(r, float)
    sol = solve_ivp(f, (t0, t1), np.asarray(x0, float), method="Radau", jac=jac, t_eval=tobs, rtol=rtol,
                    atol=atol, args=(r,))
    assert sol.success, sol.message
    return sol.y.T


def radau_reference(model, regimen, times, rtol=1e-10, atol=1e-13):
    """States of ``model`` under ``regimen`` at ``times`` by Radau between events (boluses as jumps,
    infusions as rate changes, from csfpk.schedule's timeline); a sample at an event time is pre-event."""
    from csfpk._kernels.codes import BOLUS, RATE
    from csfpk.schedule import build_timeline

    tl = build_timeline(model, regimen, None)
    f, jac = reference_rhs(model.K, model.nl)
    times = np.asarray(times, float)
    x = np.zeros(model.n)
    r = np.zeros(model.n)
    t = 0.0
    out = np.zeros((len(times), model.n))  # rows at t = 0 stay 0: pre-dose
    stops = sorted(set(tl.time.tolist()) | {float(times[-1])})
    acts = list(zip(tl.time, tl.kind, tl.cmt, tl.value))
    for te in stops:
        if te > t:
            seg = times[(times > t) & (times <= te)]
            sol = solve_ivp(f, (t, te), x, method="Radau", jac=jac, rtol=rtol, atol=atol, args=(r,),
                            dense_output=True)
            out[np.searchsorted(times, seg)] = sol.sol(seg).T
            x = sol.y[:, -1].copy()
            t = te
        for ta, kind, cmt, val in acts:
            if ta == te and kind == BOLUS:
                x[cmt] += val
            elif ta == te and kind == RATE:
                r[cmt] += val
    return out
