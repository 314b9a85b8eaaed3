"""Exact and adaptive solvers against closed-form solutions (1- and 2-compartment, bolus,
infusion, oral, transit chain) and the steady-state accumulation ratio; the rate matrix of a
2-compartment + CSF drug against one written by hand."""

import math

import numpy as np
import pytest

import oracles
from csfpk import Regimen
from csfpk.drug import CSFExchange, Drug, PlasmaPK
from csfpk.model import build_model
from csfpk.physiology import Physiology
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
    ref = oracles.one_compartment_iv_bolus(T, dose, cl, v)
    assert c[0] == 0.0  # a sample at a dose time is the pre-dose value
    assert rel_err(c[1:], ref[1:]) < tol


@pytest.mark.parametrize("method,tol", METHODS)
def test_two_compartment_iv_bolus(method, tol, rel_err):
    cl, v1, q, v2, dose = 3.0, 20.0, 6.0, 80.0, 250.0
    m = plasma_model(CL=cl, V1=v1, Q=q, V2=v2)
    c = conc(m, Regimen.every(amt=dose, ii=0, n=1, route="iv"), method)
    ref = oracles.two_compartment_iv_bolus(T, dose, cl, v1, q, v2)
    assert rel_err(c[1:], ref[1:]) < tol


@pytest.mark.parametrize("method,tol", METHODS)
def test_one_compartment_infusion_peaks_at_end(method, tol, rel_err):
    cl, v, dose, dur = 2.0, 30.0, 120.0, 6.0
    m = plasma_model(CL=cl, V1=v)
    c = conc(m, Regimen.every(amt=dose, ii=0, n=1, route="iv", duration=dur), method)
    ref = oracles.one_compartment_infusion(T, dose, dur, cl, v)
    assert rel_err(c[T > 0], ref[T > 0]) < tol
    assert T[np.argmax(c)] == pytest.approx(dur)  # the infusion ends at the proper time


@pytest.mark.parametrize("method,tol", METHODS)
def test_one_compartment_oral_with_lag_and_f(method, tol, rel_err):
    cl, v, ka, f, lag, dose = 3.95, 233.0, 0.95, 0.6, 0.75, 150.0
    m = plasma_model(CL=cl, V1=v, ka=ka, F=f, tlag=lag)
    c = conc(m, Regimen.every(amt=dose, ii=0, n=1), method)
    ref = oracles.one_compartment_oral(T, dose, ka, cl, v, f=f, lag=lag)
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


@pytest.mark.parametrize("n_transit, mtt", [(1, 2.0), (2, 0.9), (4, 3.0)])
@pytest.mark.parametrize("method,tol", METHODS)
def test_transit_chain_is_an_erlang_input(n_transit, mtt, method, tol, rel_err):
    """With ka = k_tr = (n + 1)/MTT (brigatinib's setting: Gupta 2021 has no separate absorption step)
    the dose passes n + 1 first-order stages at k_tr before the central compartment (Savic 2007): the
    amount that has arrived is D·P(n + 1, k_tr·t) (Erlang), its mean arrival time is MTT, and the
    central amount is the Erlang density convolved with elimination (tests/oracles.py, scipy's gammainc;
    not the model's own K)."""
    cl, v1, dose = 2.0, 40.0, 100.0
    k_tr = (n_transit + 1) / mtt
    m = plasma_model(CL=cl, V1=v1, ka=k_tr, n_transit=n_transit, mtt=mtt)
    times = np.linspace(0.0, 12.0 * mtt, 241)
    out, _, _ = solve(m, Regimen.every(amt=dose, ii=0, n=1), times, method=method, rtol=1e-10, atol=1e-14)
    central, eliminated = out[:, m.states.index("central")], out[:, m.states.index("eliminated")]
    arrived = oracles.erlang_arrived(times, dose, n_transit + 1, k_tr)
    late = times > 0.1 * mtt  # early on both are ~t^(n+1): compare where they are resolved
    assert rel_err((central + eliminated)[late], arrived[late]) < tol
    assert rel_err(central[late], oracles.erlang_then_elimination(times, dose, n_transit + 1, k_tr, cl / v1)[late]) < tol
    # mean arrival time ∫(D − arrived)dt / D = MTT (trapezoid on a fine grid, tail beyond 12·MTT negligible)
    mean_time = np.trapezoid(1.0 - (central + eliminated) / dose, times)
    assert mean_time == pytest.approx(mtt, rel=2e-3)


def test_transit_chain_rate_constants_written_by_hand():
    """The chain as built, element by element: depot and transits 1..n−1 pass on at k_tr = (n + 1)/MTT, the
    last transit (the absorption step) at ka (csfpk.model)."""
    n, mtt, ka, cl, v1 = 3, 2.0, 1.3, 4.0, 30.0
    m = plasma_model(CL=cl, V1=v1, ka=ka, n_transit=n, mtt=mtt)
    assert m.states == ("depot", "transit1", "transit2", "transit3", "central", "eliminated")
    k_tr = (n + 1) / mtt
    K = np.zeros((6, 6))
    for i, k in enumerate([k_tr, k_tr, k_tr, ka]):  # depot → transit1 → transit2 → transit3 →(ka) central
        K[i, i] = -k
        K[i + 1, i] = k
    K[4, 4] = -cl / v1
    K[5, 4] = cl / v1
    np.testing.assert_array_equal(m.K, K)


@pytest.mark.parametrize("basis", ["total", "unbound"])
def test_two_compartment_csf_rate_matrix_written_by_hand(basis):
    """build_model's K for a 2-compartment + single-CSF drug equals the matrix written out by hand from the
    equations of csfpk.model's docstring (tests/oracles.py), element by element."""
    pk = dict(ka=0.9, CL=5.0, V1=60.0, Q=8.0, V2=150.0, fu=0.2)
    ratio, t_half, v_csf, q_bulk = 0.05, 2.0, 0.15, 0.022
    drug = Drug("hand", 400.0, PlasmaPK(F=0.6, **pk),
                CSFExchange(penetration_ratio=ratio, equilibration_half_life=t_half, basis=basis))
    model = build_model(drug, Physiology(csf_volume=v_csf, bulk_flow=q_bulk), "single")
    assert model.states == ("depot", "central", "peripheral", "csf", "eliminated")
    cl_in, cl_out = oracles.single_layout_exchange(ratio, t_half, v_csf, q_bulk, pk["fu"], basis)
    assert cl_out == pytest.approx(math.log(2) * 0.15 / 2.0 - 0.022)
    ref = oracles.two_compartment_csf_K(CL_in=cl_in, CL_out=cl_out, V_csf=v_csf, Q_bulk=q_bulk,
                                        **{k: pk[k] for k in ("ka", "CL", "V1", "Q", "V2", "fu")})
    np.testing.assert_allclose(model.K, ref, rtol=1e-14, atol=0)
    # the steady-state ratio the user asked for: C_csf/C_p = CL_in·fu/(CL_out + Q_bulk) (× 1/fu on unbound basis)
    ss = cl_in * pk["fu"] / (cl_out + q_bulk)
    assert ss == pytest.approx(ratio if basis == "total" else ratio * pk["fu"], rel=1e-14)


def test_two_compartment_csf_rate_matrix_with_drainage_written_by_hand():
    """The delayed CSF drainage (csf_drainage): build_model's K equals the hand-written matrix element by element."""
    pk = dict(ka=1.7, CL=12.0, V1=200.0, Q=20.0, V2=500.0, fu=0.05)
    drug = Drug("hand", 400.0, PlasmaPK(**pk), CSFExchange(CL_in=0.4, CL_out=0.01))
    phys = Physiology(csf_volume=0.14, bulk_flow=0.021, drainage_fraction=0.6, drainage_half_life=5.0)
    model = build_model(drug, phys, "single")
    assert model.states == ("depot", "central", "peripheral", "csf", "csf_drainage", "eliminated")
    ref = oracles.two_compartment_csf_K(CL_in=0.4, CL_out=0.01, V_csf=0.14, Q_bulk=0.021, drainage_fraction=0.6,
                                        drainage_half_life=5.0, **pk)
    np.testing.assert_allclose(model.K, ref, rtol=1e-14, atol=0)


def test_two_compartment_csf_mechanistic_rate_matrix_written_by_hand():
    pk = dict(ka=1.7, CL=12.0, V1=200.0, Q=20.0, V2=500.0, fu=0.05)
    drug = Drug("hand", 400.0, PlasmaPK(**pk), CSFExchange(CL_in=0.4, CL_out=0.01))
    model = build_model(drug, Physiology(csf_volume=0.14, bulk_flow=0.021), "single")
    ref = oracles.two_compartment_csf_K(CL_in=0.4, CL_out=0.01, V_csf=0.14, Q_bulk=0.021, **pk)
    np.testing.assert_allclose(model.K, ref, rtol=1e-14, atol=0)
