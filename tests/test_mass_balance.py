"""Physical properties over random parameters and regimens (hypothesis): mass balance to 1e-9,
non-negativity, superposition."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from csfpk import Regimen
from csfpk.drug import CSFExchange, Drug, PlasmaPK
from csfpk.model import build_model
from csfpk.physiology import Physiology
from csfpk.simulation import solve

pos = st.floats(0.05, 50.0)


@st.composite
def models(draw, nonlinear=False):
    pk = dict(CL=draw(pos), V1=draw(st.floats(1.0, 500.0)), ka=draw(st.floats(0.05, 5.0)),
              F=draw(st.floats(0.1, 1.0)), tlag=draw(st.floats(0.0, 2.0)), fu=draw(st.floats(0.01, 1.0)))
    if draw(st.booleans()):
        pk.update(Q=draw(pos), V2=draw(st.floats(1.0, 1000.0)))
    if draw(st.booleans()):
        pk.update(n_transit=draw(st.integers(1, 4)), mtt=draw(st.floats(0.2, 5.0)))
    if nonlinear:
        pk.update(Vmax=draw(st.floats(0.1, 50.0)), Km=draw(st.floats(0.01, 10.0)))
    csf = CSFExchange(penetration_ratio=draw(st.floats(0.001, 1.0)),
                      equilibration_half_life=draw(st.floats(0.1, 4.0)), basis=draw(st.sampled_from(["total", "unbound"])))
    layout = draw(st.sampled_from(["single", "regional"]))
    phys = _PHYS
    if draw(st.booleans()):  # the delayed CSF drainage compartment (csf_drainage)
        phys = _PHYS.replace(drainage_fraction=draw(st.floats(0.0, 1.0)), drainage_half_life=draw(st.floats(0.2, 48.0)))
    return build_model(Drug("random", 400.0, PlasmaPK(**pk), csf), phys, layout)


_PHYS = Physiology(csf_volume=0.14, bulk_flow=0.024, volume_ventricles=0.025, volume_cisterna=0.0075,
                   volume_cranial=0.0725, volume_lumbar=0.035, spinal_fraction=0.2, mixing_cranial_lumbar=0.012)


@st.composite
def regimens(draw):
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        route = draw(st.sampled_from(["oral", "iv", "it_lumbar", "it_ventricular"]))
        amt = draw(st.floats(0.5, 2000.0))
        n = draw(st.integers(1, 6))
        ii = draw(st.floats(1.0, 72.0))
        dur = draw(st.one_of(st.none(), st.floats(0.1, 10.0))) if route in ("iv", "it_lumbar") else None
        parts.append(Regimen.every(amt=amt, ii=ii, n=n, route=route, start=draw(st.floats(0.0, 48.0)),
                                   duration=dur))
    reg = parts[0]
    for p in parts[1:]:
        reg = reg + p
    return reg


def _dosed(tl):
    return sum(d[2] for d in tl.doses)


@settings(max_examples=60, deadline=None)
@given(models(), regimens())
def test_mass_balance_exact(model, regimen):
    t_end = regimen.end + 400.0
    out, tl, _ = solve(model, regimen, np.array([0.0, t_end / 2, t_end]), method="exact")
    dosed = _dosed(tl)
    assert abs(out[-1].sum() - dosed) <= 1e-9 * dosed
    assert np.all(out >= -1e-12 * dosed)


@settings(max_examples=15, deadline=None)
@given(models(nonlinear=True), regimens())
def test_mass_balance_stiff_nonlinear(model, regimen):
    t_end = regimen.end + 100.0
    out, tl, _ = solve(model, regimen, np.linspace(0, t_end, 7), method="stiff", rtol=1e-8, atol=1e-12)
    dosed = _dosed(tl)
    assert abs(out[-1].sum() - dosed) <= 1e-9 * dosed
    assert np.all(out >= -1e-9 * dosed)


@settings(max_examples=30, deadline=None)
@given(models(), regimens(), regimens())
def test_superposition_linear(model, a, b):
    times = np.linspace(0, max(a.end, b.end) + 100.0, 40)
    xa, _, _ = solve(model, a, times)
    xb, _, _ = solve(model, b, times)
    xab, _, _ = solve(model, a + b, times)
    scale = max(np.abs(xab).max(), 1e-300)
    assert np.max(np.abs(xab - xa - xb)) <= 1e-10 * scale


def test_columns_of_rate_matrix_sum_to_zero():
    from csfpk import load_drug

    for name in ["erlotinib", "methotrexate", "lorlatinib", "brigatinib"]:
        m = build_model(load_drug(name), csf_layout="single")
        assert np.allclose(m.K.sum(axis=0), 0.0, atol=1e-15 * np.abs(m.K).max())
