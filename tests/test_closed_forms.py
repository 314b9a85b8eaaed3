"""Exact and adaptive solvers against closed-form solutions (1- and 2-compartment, bolus,
infusion, oral) and the steady-state accumulation ratio."""

import numpy as np
import pytest

from csfpk import Regimen
from csfpk.simulation import solve
from conftest import plasma_model

T = np.linspace(0.0, 96.0, 193)
METHODS = [("exact", 1e-8), ("adaptive", 1e-6), ("stiff", 1e-6)]


def conc(model, regimen, method, times=T):
    out, _, _ = solve(model, regimen, times, method=method, rtol=1e-9, atol=1e-14)
    return out[:, model.states.index("central")] / model.outputs["plasma"][1]


@pytest.mark.parametrize("method,tol", METHODS)
def test_one_compartment_iv_bolus(method, tol, rel_err):
    cl, v, dose = 4.0, 50.0, 100.0
    m = plasma_model(CL=cl, V1=v)
    c = conc(m, Regimen.every(amt=dose, ii=0, n=1, route="iv"), method)
    ref = dose / v * np.exp(-cl / v * T)
    assert c[0] == 0.0  # a sample at a dose time is the pre-dose value
    assert rel_err(c[1:], ref[1:]) < tol


@pytest.mark.parametrize("method,tol", METHODS)
def test_two_compartment_iv_bolus(method, tol, rel_err):
    cl, v1, q, v2, dose = 3.0, 20.0, 6.0, 80.0, 250.0
    m = plasma_model(CL=cl, V1=v1, Q=q, V2=v2)
    c = conc(m, Regimen.every(amt=dose, ii=0, n=1, route="iv"), method)
    k10, k12, k21 = cl / v1, q / v1, q / v2
    s, p = k10 + k12 + k21, k10 * k21
    alpha, beta = (s + np.sqrt(s * s - 4 * p)) / 2, (s - np.sqrt(s * s - 4 * p)) / 2
    a = dose / v1 * (alpha - k21) / (alpha - beta)
    b = dose / v1 * (k21 - beta) / (alpha - beta)
    ref = a * np.exp(-alpha * T) + b * np.exp(-beta * T)
    assert rel_err(c[1:], ref[1:]) < tol


@pytest.mark.parametrize("method,tol", METHODS)
def test_one_compartment_infusion_peaks_at_end(method, tol, rel_err):
    cl, v, dose, dur = 2.0, 30.0, 120.0, 6.0
    m = plasma_model(CL=cl, V1=v)
    c = conc(m, Regimen.every(amt=dose, ii=0, n=1, route="iv", duration=dur), method)
    k, rate = cl / v, dose / dur
    ref = np.where(T <= dur, rate / cl * (1 - np.exp(-k * T)),
                   rate / cl * (1 - np.exp(-k * dur)) * np.exp(-k * (T - dur)))
    assert rel_err(c[T > 0], ref[T > 0]) < tol
    assert T[np.argmax(c)] == pytest.approx(dur)  # the infusion ends at the proper time


@pytest.mark.parametrize("method,tol", METHODS)
def test_one_compartment_oral_with_lag_and_f(method, tol, rel_err):
    cl, v, ka, f, lag, dose = 3.95, 233.0, 0.95, 0.6, 0.75, 150.0
    m = plasma_model(CL=cl, V1=v, ka=ka, F=f, tlag=lag)
    c = conc(m, Regimen.every(amt=dose, ii=0, n=1), method)
    k, tt = cl / v, np.clip(T - lag, 0, None)
    ref = f * dose * ka / (v * (ka - k)) * (np.exp(-k * tt) - np.exp(-ka * tt))
    mask = T > lag + 0.25
    assert rel_err(c[mask], ref[mask]) < tol
    assert np.all(c[T <= lag] == 0)


def test_accumulation_ratio_at_steady_state():
    cl, v, dose, tau = 5.0, 60.0, 100.0, 12.0
    m = plasma_model(CL=cl, V1=v)
    k = cl / v
    times = np.arange(0, 40 * tau + 1, 1.0)
    c = conc(m, Regimen.every(amt=dose, ii=tau, n=40, route="iv"), "exact", times)
    post = c[:: int(tau)]  # pre-dose samples at dose times
    trough_ss = post[-2]
    ratio_pred = 1.0 / (1.0 - np.exp(-k * tau))
    first_trough = dose / v * np.exp(-k * tau)
    assert trough_ss / first_trough == pytest.approx(ratio_pred, rel=1e-9)
    # the closed-form steady state (ss=1) equals the long history
    ss = conc(m, [*Regimen.every(amt=dose, ii=tau, n=1, route="iv").records], "exact", times[:13])
    ss_reg = Regimen.from_frame(__import__("pandas").DataFrame(
        {"time": [0.0], "amt": [dose], "cmt": ["iv"], "ii": [tau], "ss": [1]}))
    c_ss = conc(m, ss_reg, "exact", times[:13])
    assert c_ss[12] == pytest.approx(trough_ss, rel=1e-9)
    assert ss[12] == pytest.approx(first_trough, rel=1e-12)


def test_transit_chain_matches_gamma_shape(rel_err):
    """n transit compartments + absorption (all at rate k_tr = ka) give an Erlang input."""
    from scipy.linalg import expm

    m = plasma_model(CL=2.0, V1=40.0, ka=2.0, n_transit=2, mtt=1.5)  # k_tr = 3/1.5 = 2 = ka
    c = conc(m, Regimen.every(amt=100, ii=0, n=1), "exact")
    x0 = np.zeros(m.n)
    x0[0] = 100.0
    ref = np.array([(expm(m.K * t) @ x0)[m.states.index("central")] / 40.0 for t in T])
    assert rel_err(c[T > 0.5], ref[T > 0.5]) < 1e-10
