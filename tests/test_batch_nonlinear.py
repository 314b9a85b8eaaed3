"""Populations of nonlinear models (issue 11): the adaptive solvers inside the batch path.

Subject i of a population must give the numbers ``simulate`` gives for subject i's parameters (same
method, same tolerances); rows must not depend on threads, chunk sizes, blocks or Dask; a failing
subject loses only its own row, marked and counted.
"""

import json

import numpy as np
import pandas as pd
import pytest

import csfpk
from csfpk import metrics
from csfpk.batch import run
from csfpk.errors import ParameterError
from csfpk.population import subject_inputs
from csfpk.scenario import Scenario
from csfpk.sweep import SweepError, sweep_from_dict

T_END = 168.0


def mm_drug():
    """Erlotinib with Michaelis–Menten elimination added (and linear absorption, so that a per-m² dose is
    exactly a scaled dose)."""
    return csfpk.load_drug("erlotinib").replace(Vmax=10.0, Km=0.5, F_dose_threshold=None, F_dose_half=None)


def cases():
    """(label, drug, regimen, population, scenario keywords): one case per kind of nonlinear term."""
    return [
        ("lorlatinib", csfpk.load_drug("lorlatinib"), csfpk.Regimen.every(amt=100, ii=24, n=7),
         csfpk.Population(n=5, seed=11), {}),
        ("gefitinib", csfpk.load_drug("gefitinib"), csfpk.Regimen.every(amt=1250, ii=24, n=7),
         csfpk.Population(n=5, seed=12, penetration="range"), {}),
        ("michaelis-menten", mm_drug(), csfpk.Regimen.every(amt=150, ii=24, n=7),
         csfpk.Population(n=5, seed=13), {"method": "adaptive"}),
    ]


def scenario(drug, regimen, pop, **kw):
    kw.setdefault("metrics", "grid")
    return Scenario(drug, regimen, pop, t_end=T_END, regimen_name=kw.pop("regimen_name", "r"), **kw)


def reference(drug, regimen, s, i, params, dt=1.0, t_end=T_END):
    """Metrics of ``simulate`` for subject i (its parameters, the scenario's method and tolerances)."""
    d, phys = subject_inputs(drug, s.physiology, params, i)
    res = csfpk.simulate(d, regimen, t_end=t_end, dt=dt, method=s.method, rtol=s.rtol, atol=s.atol, physiology=phys)
    assert res.method == s.solver
    kind, bounds = metrics.resolve_window(s.window, [x[0] for x in res.doses], t_end)
    if kind == "per_injection":
        return res, {o: metrics.per_injection(metrics.mg_per_L_to_nM(res.conc(o), d.molecular_weight), res.times,
                                              s.target_nM, bounds) for o in res.compartments}
    return res, metrics.of_result(res, s.target_nM, bounds)


@pytest.mark.parametrize("label, drug, regimen, pop, kw", cases(), ids=[c[0] for c in cases()])
def test_subject_i_equals_simulate(label, drug, regimen, pop, kw):
    s = scenario(drug, regimen, pop, **kw)
    assert s.solver != "exact"
    df = run([s], progress=False).metrics
    params = pop.sample(drug, 0, pop.n)
    assert (df.status == 0).all() and len(df) == pop.n
    assert np.ptp(params["V1"]) > 0  # the subjects differ, so per-subject nonlinear terms are exercised
    for i in range(pop.n):
        _, ref = reference(drug, regimen, s, i, params)
        for o, mm in ref.items():
            for k, v in mm.items():
                assert df[f"{o}_{k}_ss"].iloc[i] == pytest.approx(v, rel=1e-12, abs=1e-300), (label, i, o, k)


def test_per_subject_nonlinear_terms_follow_the_subject():
    """CL_induced moves with CL (one η, Chen 2021) and gefitinib's half-saturation amount K_u·V1/fu with V1, fu."""
    from csfpk._kernels.codes import NL_ASAT, NL_DCL, NL_KIN
    from csfpk.model import VARYING, nonlinear_parameters, rate_matrices

    lor = csfpk.load_drug("lorlatinib")
    p = csfpk.Population(n=50, seed=3).sample(lor, 0, 50)
    np.testing.assert_allclose(p["CL_induced"] / p["CL"], lor.plasma.CL_induced / lor.plasma.CL, rtol=1e-14)
    gef = csfpk.load_drug("gefitinib")
    phys = csfpk.load_physiology("adult")
    q = csfpk.Population(n=20, seed=4, penetration="range").sample(gef, 0, 20)
    values = {k: q[k] for k in VARYING if k in q}
    model = csfpk.build_model(gef)
    Ks = rate_matrices(gef, phys, "single", values)
    nls = nonlinear_parameters(gef, "single", model.states, Ks, values)
    for i in (0, 7, 19):
        one = csfpk.build_model(*subject_inputs(gef, phys, q, i))
        np.testing.assert_array_equal(nls[i], one.nl)
        np.testing.assert_array_equal(Ks[i], one.K)
    assert np.ptp(nls[:, NL_ASAT]) > 0 and np.ptp(nls[:, NL_KIN]) > 0
    lnl = nonlinear_parameters(lor, "single", csfpk.build_model(lor).states,
                               rate_matrices(lor, phys, "single", {k: p[k] for k in VARYING if k in p}),
                               {k: p[k] for k in VARYING if k in p})
    np.testing.assert_allclose(lnl[:, NL_DCL], p["CL_induced"] - p["CL"], rtol=1e-14)


def test_dose_per_m2_scales_each_subject_dose():
    """A per-m² dose is the subject's own dose inside the adaptive kernel (a nonlinear model is not dose-linear)."""
    drug = mm_drug()
    phys = csfpk.load_physiology("adult")
    pop = csfpk.Population(n=4, seed=2, covariates={"bsa": (1.8, 0.15)})
    per_m2 = 80.0
    regimen = csfpk.Regimen.every(amt=per_m2 * phys.bsa_m2, ii=24, n=7)
    s = scenario(drug, regimen, pop, method="stiff", dose_basis="bsa")
    df = run([s], progress=False).metrics
    params = pop.sample(drug, 0, pop.n, phys)
    for i in range(pop.n):
        amt = per_m2 * phys.bsa_m2 * (params["bsa_m2"][i] / phys.bsa_m2)
        _, ref = reference(drug, csfpk.Regimen.every(amt=amt, ii=24, n=7), s, i, params)
        for k in ("auc", "cmax", "trough"):
            assert df[f"csf_{k}_ss"].iloc[i] == pytest.approx(ref["csf"][k], rel=1e-12), (i, k)
    # and the model is really nonlinear in the dose (saturable elimination): half the dose, less than half the AUC
    half = run([scenario(drug, csfpk.Regimen.every(amt=per_m2 * phys.bsa_m2 / 2, ii=24, n=7), pop,
                         method="stiff", dose_basis="bsa")], progress=False).metrics
    assert (half.plasma_auc_ss < 0.45 * df.plasma_auc_ss).all()


def test_per_injection_metrics_of_a_nonlinear_intrathecal_drug():
    drug = csfpk.load_drug("methotrexate").replace(Vmax=5.0, Km=0.2)
    regimen = csfpk.Regimen.every(amt=12, ii=72, n=2, route="it_lumbar")
    pop = csfpk.Population(n=3, seed=5)
    s = scenario(drug, regimen, pop, dt=0.25)
    assert s.window == "per_injection"
    df = run([s], progress=False).metrics
    params = pop.sample(drug, 0, pop.n)
    for i in range(pop.n):
        _, ref = reference(drug, regimen, s, i, params, dt=0.25)
        assert df.csf_peak_inj.iloc[i] == pytest.approx(ref["csf"]["peak"], rel=1e-12)
        assert df.csf_time_above_inj.iloc[i] == pytest.approx(ref["csf"]["time_above"], rel=1e-12)
        assert df.csf_cxt_inj.iloc[i] == pytest.approx(ref["csf"]["cxt"] / 1000.0, rel=1e-12)


def test_exact_mode_reads_metrics_off_a_fine_grid_and_says_so(tmp_path):
    """metrics="exact" on a nonlinear model: a 0.01 h grid inside the window, within 1e-4 of a 0.002 h grid."""
    drug = csfpk.load_drug("lorlatinib")
    regimen = csfpk.Regimen.every(amt=100, ii=24, n=7)
    pop = csfpk.Population(n=3, seed=11)
    s = scenario(drug, regimen, pop, metrics="exact")
    assert s.metrics_grid_h == metrics.NONLINEAR_STEP_H
    res = run([s], tmp_path / "run", progress=False, curves=True)
    df = res.metrics
    params = pop.sample(drug, 0, pop.n)
    rec = res.scenarios[0]
    cur = np.load(tmp_path / "run" / "scenarios" / rec["key"] / "curves-000000.npy")  # (subjects, 169 hourly rows, outputs)
    for i in range(pop.n):
        hourly, _ = reference(drug, regimen, s, i, params)
        for j, o in enumerate(("plasma", "plasma_unbound", "csf")):  # the curves are the regular grid's samples
            np.testing.assert_allclose(cur[i, :, j], metrics.mg_per_L_to_nM(hourly.conc(o), drug.molecular_weight),
                                       rtol=1e-6)
        _, fine = reference(drug, regimen, s, i, params, dt=0.002)
        for o in ("plasma", "csf"):
            for k in ("auc", "cavg", "cmax", "trough"):
                assert df[f"{o}_{k}_ss"].iloc[i] == pytest.approx(fine[o][k], rel=1e-4), (i, o, k)
            assert df[f"{o}_tmax_ss"].iloc[i] == pytest.approx(fine[o]["tmax"], abs=0.01)
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["scenarios"][0]["solver"] == {"method": "auto", "used": s.solver, "rtol": 1e-8, "atol": 1e-12,
                                             "metrics_grid_h": 0.01}
    assert "inside the window" in res.summary.metrics_text[0] and res.summary.solver_text[0].startswith(s.solver)


# ----------------------------------------------------------------------------- reproducibility
def two_scenarios(n=24):
    pop = csfpk.Population(n=n, seed=21)
    return [Scenario(csfpk.load_drug("lorlatinib"), csfpk.Regimen.every(amt=100, ii=24, n=4), pop, t_end=96.0,
                     regimen_name="lor"),
            Scenario(mm_drug(), csfpk.Regimen.every(amt=150, ii=24, n=4), pop, t_end=96.0, regimen_name="mm",
                     method="adaptive", metrics="grid")]


def frame_of(res):
    return res.metrics.sort_values(["regimen", "subject"]).reset_index(drop=True)


def test_same_numbers_for_threads_chunks_and_blocks(monkeypatch, one_thread):
    from csfpk import batch

    ref = frame_of(run(two_scenarios(), chunk=1000, progress=False))
    with one_thread():
        one = frame_of(run(two_scenarios(), chunk=5, progress=False))
    pd.testing.assert_frame_equal(ref, one, check_exact=True)
    monkeypatch.setattr(batch, "_BLOCK_VALUES", 1)  # one subject per kernel call
    pd.testing.assert_frame_equal(ref, frame_of(run(two_scenarios(), chunk=7, progress=False)), check_exact=True)
    assert (ref.status == 0).all() and len(ref) == 48


def test_dask_localcluster_gives_identical_numbers(dask_client):
    ref = frame_of(run(two_scenarios(16), chunk=6, progress=False))
    got = frame_of(run(two_scenarios(16), chunk=6, client=dask_client, progress=False))
    pd.testing.assert_frame_equal(ref, got, check_exact=True)


# ----------------------------------------------------------------------------- failures
def test_failing_subjects_lose_only_their_rows(bad_subjects):
    """A NaN clearance (screened) and a ka so large that Dormand–Prince's step size underflows (kernel status):
    both rows are marked, counted by status, and every other row is unchanged."""
    scns = [two_scenarios(12)[1]]
    ref = frame_of(run(scns, chunk=5, progress=False))
    bad_subjects(CL={3: np.nan}, ka={8: 1e9})  # ka 1e9 h⁻¹ is stiff: an explicit method cannot step
    got = run(scns, chunk=5, progress=False)
    b = frame_of(got)
    assert b.status[3] == csfpk.Status.NONFINITE and b.status[8] == csfpk.Status.STEP_UNDERFLOW
    bad = b.subject.isin([3, 8]).to_numpy()
    assert (b.status[~bad] == 0).all() and b.loc[bad, "csf_auc_ss"].isna().all()
    cols = [c for c in b.columns if c not in ("CL", "ka")]
    pd.testing.assert_frame_equal(ref.loc[~bad, cols].reset_index(drop=True), b.loc[~bad, cols].reset_index(drop=True),
                                  check_exact=True)
    assert got.summary.n_failed[0] == 2 and got.summary.failed_by_status[0] == "NONFINITE 1, STEP_UNDERFLOW 1"
    assert got.table.failed[0] == "2 of 12 (NONFINITE 1, STEP_UNDERFLOW 1)"


# ----------------------------------------------------------------------------- method and its record
def test_method_is_checked_resolved_and_recorded():
    lor = csfpk.load_drug("lorlatinib")
    reg = csfpk.Regimen.every(amt=100, ii=24, n=4)
    pop = csfpk.Population(n=2)
    with pytest.raises(ParameterError) as exc:
        Scenario(lor, reg, pop, t_end=96.0, method="exact")
    assert "method = 'exact' needs a linear" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(ParameterError, match=r"method = 'rk4' is not allowed"):
        Scenario(lor, reg, pop, t_end=96.0, method="rk4")
    with pytest.raises(ParameterError, match=r"rtol = 0.5 is not allowed"):
        Scenario(lor, reg, pop, t_end=96.0, rtol=0.5)
    erl = Scenario(csfpk.load_drug("erlotinib"), reg, pop, t_end=96.0)
    assert erl.solver == "exact" and erl.record()["solver"] == {"method": "auto", "used": "exact", "rtol": None,
                                                                "atol": None, "metrics_grid_h": None}
    stiff = Scenario(csfpk.load_drug("erlotinib"), reg, pop, t_end=96.0, method="stiff")
    assert stiff.solver == "stiff" and stiff.key != erl.key  # a different solver is a different run
    doc = {"schema": "csfpk.sweep/1", "name": "x", "t_end": "4d", "method": "adaptive",
           "regimens": {"a": {"amt": 100, "ii": "24h", "source": "test"}},
           "populations": {"p": {"n": 3}}, "grid": [{"drugs": ["lorlatinib", "erlotinib"], "regimens": ["a"]}]}
    sw = sweep_from_dict(doc)
    assert [s.solver for s in sw.scenarios] == ["adaptive", "adaptive"]
    with pytest.raises(SweepError, match=r"method = 'rodas' is not allowed"):
        sweep_from_dict({**doc, "method": "rodas"})
    tol = sweep_from_dict({**doc, "rtol": 1e-6, "atol": 1e-9})
    assert [(s.rtol, s.atol) for s in tol.scenarios] == [(1e-6, 1e-9)] * 2
    assert tol.scenarios[0].record()["solver"]["rtol"] == 1e-6 and tol.scenarios[0].key != sw.scenarios[0].key
    with pytest.raises(SweepError, match=r"atol = -1 is not allowed"):
        sweep_from_dict({**doc, "atol": -1})
    with pytest.raises(SweepError, match=r"lorlatinib / a: method = 'exact' needs a linear"):
        sweep_from_dict({**doc, "method": "exact"})


def test_fine_metric_grid_is_bounded_over_long_spans():
    lor = csfpk.load_drug("lorlatinib")
    pop = csfpk.Population(n=1)
    short = Scenario(lor, csfpk.Regimen.every(amt=100, ii=24, n=28), pop, t_end=672.0)
    long = Scenario(lor, csfpk.Regimen.every(amt=100, ii=24, n=182), pop, t_end=4368.0, window="span")
    assert short.metrics_grid_h == metrics.NONLINEAR_STEP_H
    assert long.metrics_grid_h == pytest.approx(4368.0 / metrics.NONLINEAR_MAX_SAMPLES)
    from csfpk.batch import prepare

    assert prepare(long).samples.size <= metrics.NONLINEAR_MAX_SAMPLES + 4368 + 200  # fine grid + hourly + doses
