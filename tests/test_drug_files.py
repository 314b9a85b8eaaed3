"""Every drug file loads strictly and its model meets its own penetration ratio at steady state."""

import math

import numpy as np
import pytest
from scipy.integrate import simpson

import csfpk
from csfpk.regimen import Record, Regimen
from csfpk.simulation import solve

DRUGS = csfpk.list_drugs()
TKIS = ["erlotinib", "gefitinib", "afatinib", "osimertinib", "azd3759", "crizotinib", "ceritinib", "alectinib",
        "brigatinib", "lorlatinib"]


def test_all_table1_drugs_have_files():
    assert set(TKIS) <= set(DRUGS)


@pytest.mark.parametrize("name", DRUGS)
def test_every_value_has_unit_and_source(name):
    drug = csfpk.load_drug(name)
    assert drug.quantities, name
    for key, q in drug.quantities.items():
        assert q.unit and q.source.strip(), (name, key)
        assert math.isfinite(q.value)


@pytest.mark.parametrize("name", TKIS)
def test_table1_row_recorded(name):
    t1 = csfpk.load_drug(name).table1
    assert {"dose", "csf_level_nM", "penetration_percent"} <= set(t1)


def _site(layout):
    return "csf" if layout == "single" else "csf_lumbar"


def _low_concentration(drug):
    """``drug`` with a linear CSF uptake: with saturable uptake (gefitinib) R is the ratio's low-concentration
    limit, which these tests check; the saturation itself is tested in tests/test_tki_exposure.py."""
    return drug.replace(uptake_half_saturation=None) if drug.csf.uptake_half_saturation is not None else drug


def _expected_ratio(drug):
    return drug.csf.penetration_ratio * (1.0 if drug.csf.basis == "total" else drug.plasma.fu)


RATIO_DRUGS = [d for d in DRUGS if not csfpk.load_drug(d).csf.mechanistic]


@pytest.mark.parametrize("layout", ["single", "regional"])
@pytest.mark.parametrize("name", RATIO_DRUGS)
def test_constant_infusion_steady_state_meets_ratio_exactly(name, layout):
    """Under a constant plasma level (IV infusion at steady state, ss=1 with ii=0) C_CSF/C_plasma is
    the file's ratio R (on its basis; at the lumbar site for the regional layout) at every instant."""
    drug = _low_concentration(csfpk.load_drug(name))
    if drug.plasma.nonlinear:
        drug = drug.replace(CL_induced=None, k_induction=None)  # a steady state needs constant CL
    model = csfpk.build_model(drug, csf_layout=layout)
    reg = Regimen((Record(time=0.0, amt=0.0, cmt="iv", rate=10.0, ii=0.0, ss=1),))
    out, _, _ = solve(model, reg, np.array([]), record_outputs=True)
    c_p = out[0, model.outputs["plasma"][0]] / model.outputs["plasma"][1]
    c_csf = out[0, model.outputs[_site(layout)][0]] / model.outputs[_site(layout)][1]
    assert c_csf / c_p == pytest.approx(_expected_ratio(drug), rel=1e-9)


@pytest.mark.parametrize("name", RATIO_DRUGS)
def test_labelled_regimen_auc_ratio_at_steady_state(name):
    """At periodic steady state of the labelled oral regimen, AUC_CSF/AUC_plasma over one interval
    is R too (Simpson quadrature on 4001 points: 1e-4)."""
    drug = _low_concentration(csfpk.load_drug(name))
    model = csfpk.build_model(drug, csf_layout="single")
    dose = drug.label_dose
    if model.linear:
        reg = Regimen((Record(time=0.0, amt=dose.amt, cmt="oral", ii=dose.ii, ss=1),))
        times = np.linspace(0.0, dose.ii, 4001)
        out, _, _ = solve(model, reg, times)
    else:  # time-dependent clearance: simulate 60 days so that induction is complete
        n = int(60 * 24 / dose.ii)
        reg = Regimen.every(amt=dose.amt, ii=dose.ii, n=n + 1)
        times = np.linspace(n * dose.ii, (n + 1) * dose.ii, 4001)
        out, _, _ = solve(model, reg, times, method="stiff", rtol=1e-10, atol=1e-14)
    idx_p, v_p, _ = model.outputs["plasma"]
    idx_c, v_c, _ = model.outputs["csf"]
    ratio = simpson(out[:, idx_c] / v_c, x=times) / simpson(out[:, idx_p] / v_p, x=times)
    assert ratio == pytest.approx(_expected_ratio(drug), rel=1e-4 if model.linear else 2e-3)
