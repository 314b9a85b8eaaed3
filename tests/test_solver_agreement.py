"""exact vs adaptive vs stiff vs switching vs scipy Radau (rtol 1e-10) on every drug file."""

import numpy as np
import pytest

import csfpk
from oracles import radau_reference
from csfpk.simulation import solve

DRUGS = csfpk.list_drugs()


@pytest.mark.parametrize("name", DRUGS)
def test_solvers_agree_on_drug(name):
    drug = csfpk.load_drug(name)
    dose = drug.label_dose
    regimen = csfpk.Regimen.every(amt=dose.amt, ii=dose.ii, n=4, route=dose.route)
    model = csfpk.build_model(drug, csf_layout="single")
    times = np.arange(0.0, 4 * dose.ii + 48.0 + 0.5, 0.5)
    ref = radau_reference(model, regimen, times)  # Radau between events, rtol 1e-10
    obs = [model.outputs[k][0] for k in ("plasma", "csf")]
    mask = times > 1.0
    scale = np.abs(ref[:, obs]).max(axis=0)

    def err(x):
        return np.max(np.abs(x[mask][:, obs] - ref[mask][:, obs]) / np.maximum(np.abs(ref[mask][:, obs]), 1e-6 * scale))

    methods = ["adaptive", "stiff", "switching"] + (["exact"] if model.linear else [])
    for method in methods:
        x, _, used = solve(model, regimen, times, method=method, rtol=1e-10, atol=1e-13)
        assert err(x) < 1e-7, (method, err(x))


def test_results_expose_step_counts_that_grow_with_tighter_rtol():
    """SimulationResult.stats: the adaptive methods' work, summed over every dose interval; none for exact."""
    regimen = csfpk.Regimen.every(amt=100, ii=24, n=3)
    for method in ("adaptive", "stiff", "switching"):
        loose, tight = (csfpk.simulate("lorlatinib", regimen, t_end=96, method=method, rtol=rtol).stats
                        for rtol in (1e-5, 1e-9))
        assert loose["steps_accepted"] >= 3  # at least one step per dose interval
        assert min(loose.values()) >= 0 and loose["rhs_evaluations"] > loose["steps_accepted"]
        assert tight["steps_accepted"] > loose["steps_accepted"]
        assert tight["rhs_evaluations"] > loose["rhs_evaluations"]
        assert (tight["lu_factorisations"] > loose["lu_factorisations"] > 0) if method == "stiff" else \
            (tight["lu_factorisations"] == loose["lu_factorisations"] == 0)
    assert csfpk.simulate("erlotinib", regimen, t_end=96).stats is None  # exact: no steps
