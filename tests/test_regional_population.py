"""Populations in the regional CSF layout, CSF-side variability and the LM physiology (issue 11, items 1 and 3):
subject i of a population equals ``simulate`` with subject i's drug and physiology; the same numbers for any
thread count, chunk size or Dask cluster; CSF draws leave the other draws unchanged."""

import math

import numpy as np
import pandas as pd
import pytest

import csfpk
from csfpk import figures
from csfpk.batch import run
from csfpk.errors import ParameterError
from csfpk.model import REGIONS, build_model
from csfpk.physiology import IIV_KEYS, load_physiology
from csfpk.population import Population, build_rate_matrices, subject_inputs
from csfpk.scenario import Scenario
from csfpk.sweep import SweepError, sweep_from_dict
from csfpk.units import mg_per_L_to_nM

MTX = csfpk.load_drug("methotrexate")
ADULT = load_physiology("adult")
TWICE_WEEKLY = {"lumbar": csfpk.Regimen.every(amt=12, ii=84, n=3, route="it_lumbar"),
                "Ommaya": csfpk.Regimen.every(amt=12, ii=84, n=3, route="it_ventricular")}


def _trapz(c, t):
    """Trapezoid written out (not csfpk.metrics): the hand computation the runner must match."""
    return float(sum(0.5 * (t[k + 1] - t[k]) * (c[k] + c[k + 1]) for k in range(len(t) - 1)))


def _scenarios(n, layout="regional", physiology=ADULT, metrics="exact", seed=7):
    pop = Population(n=n, seed=seed)
    return [Scenario(MTX, reg, pop, t_end=252.0, dt=0.25, regimen_name=name, csf_layout=layout,
                     physiology=physiology, metrics=metrics) for name, reg in TWICE_WEEKLY.items()]


def frame_of(res):
    return res.metrics.sort_values(["regimen", "subject"]).reset_index(drop=True)


@pytest.mark.parametrize("layout", ["regional", "single"])
def test_subject_i_equals_simulate_with_its_drug_and_physiology(layout):
    """Grid metrics of every output (each CSF region, plasma) of subject i, lumbar and Ommaya, equal the
    same quantities computed by hand from ``simulate`` with subject i's drug and physiology; subjects
    really differ in CSF volume, bulk flow, spinal mixing and CSF efflux."""
    n = 4
    res = run(_scenarios(n, layout, metrics="grid"), progress=False)
    p = Population(n=n, seed=7).sample(MTX, 0, n, ADULT)
    for k in ("bulk_flow", "CL_out") + (("volume_lumbar", "mixing_cranial_lumbar") if layout == "regional"
                                         else ("csf_volume",)):
        assert np.ptp(p[k]) > 0.05 * np.mean(p[k]), k
    outputs = ["plasma"] + (list(REGIONS) if layout == "regional" else ["csf"])
    for rec in res.scenarios:
        df = res.scenario_metrics(rec["id"])
        reg = TWICE_WEEKLY[rec["id"].split(" / ")[1]]
        for i in range(n):
            drug_i, phys_i = subject_inputs(MTX, ADULT, p, i)
            sim = csfpk.simulate(drug_i, reg, t_end=252.0, dt=0.25, csf_layout=layout, physiology=phys_i)
            t = sim.times
            for o in outputs:
                c = mg_per_L_to_nM(sim.conc(o), MTX.molecular_weight)
                assert df[f"{o}_auc_span"][i] == pytest.approx(_trapz(c, t), rel=1e-9), (o, i)
                assert df[f"{o}_cmax_span"][i] == pytest.approx(c.max(), rel=1e-9), (o, i)
                peaks = [c[(t >= a - 1e-9) & (t <= a + 84 + 1e-9)].max() for a in (0.0, 84.0, 168.0)]
                assert df[f"{o}_peak_inj"][i] == pytest.approx(np.mean(peaks), rel=1e-9), (o, i)


def test_rate_matrices_equal_build_model_of_each_subject_bit_for_bit():
    p = Population(n=30, seed=2, penetration="range").sample(csfpk.load_drug("erlotinib"), 0, 30, ADULT)
    for name in ("methotrexate", "erlotinib"):  # mechanistic (CL_out drawn) and ratio mode (influx solved per subject)
        drug = csfpk.load_drug(name)
        q = Population(n=30, seed=2, penetration="range").sample(drug, 0, 30, ADULT)
        Ks, volume, _, model = build_rate_matrices(drug, q, ADULT, "regional")
        for i in range(30):
            d_i, phys_i = subject_inputs(drug, ADULT, q, i)
            m = build_model(d_i, phys_i, "regional")
            np.testing.assert_array_equal(Ks[i], m.K)
            np.testing.assert_array_equal(volume[i], [v if o not in ("plasma", "plasma_unbound") else q["V1"][i]
                                                      for o, (_, v, _) in m.outputs.items()])
    assert np.ptp(p["penetration_ratio"]) > 0


def test_same_numbers_for_threads_chunks_and_dask(dask_client, one_thread):
    """Grid metrics here: the exact ones sub-step at the model's fastest rate (the cisterna's tidal mixing,
    ~310 /h) and would make this test minutes long; the walk, the chunking and the draws are the same."""
    first = run(_scenarios(120, metrics="grid"), chunk=1000, progress=False)
    ref = frame_of(first)
    with one_thread():
        one = frame_of(run(_scenarios(120, metrics="grid"), chunk=37, progress=False))
    pd.testing.assert_frame_equal(ref, one, check_exact=True)
    got = frame_of(run(_scenarios(120, metrics="grid"), chunk=50, client=dask_client, progress=False))
    pd.testing.assert_frame_equal(ref, got, check_exact=True)
    assert (ref.status == 0).all() and len(ref) == 240
    # the route matters in the regional layout: an Ommaya dose peaks in the ventricles, a lumbar one in the lumbar SAS
    lum, omm = ref[ref.regimen == "lumbar"], ref[ref.regimen == "Ommaya"]
    for site, high, low in (("lumbar", lum, omm), ("ventricles", omm, lum)):
        a, b = high[f"csf_{site}_peak_inj"].to_numpy(), low[f"csf_{site}_peak_inj"].to_numpy()
        assert np.all(a > 2 * b) and np.median(a) > 5 * np.median(b), site
    # what a user reads: the table's lumbar and ventricular columns are those regions' medians; the figures
    # draw both regions
    table = first.table.set_index("regimen")
    for site, label in (("lumbar", "lumbar CSF C×T per injection µM·h"),
                        ("ventricles", "ventricular CSF C×T per injection µM·h")):
        for reg, part in (("lumbar", lum), ("Ommaya", omm)):
            shown = float(table.loc[reg, label].split(" [")[0].replace(",", ""))
            assert shown == pytest.approx(np.median(part[f"csf_{site}_cxt_inj"]), rel=0.01, abs=0.5), (site, reg)
    assert {"csf_lumbar_time_above_inj", "csf_ventricles_time_above_inj"} <= set(figures.main_metrics(first))


@pytest.mark.parametrize("route", ["it_lumbar", "it_ventricular"])
def test_exact_regional_auc_equals_scipy_expm_per_subject(route):
    """Exact (grid-free) metrics in the regional layout: each region's AUC over a week with two injections
    equals the integral computed independently with scipy's expm (an integrating state per output)."""
    from scipy.linalg import expm

    n = 3
    reg = csfpk.Regimen.every(amt=12, ii=84, n=2, route=route)
    pop = Population(n=n, seed=7)
    res = run([Scenario(MTX, reg, pop, t_end=168.0, csf_layout="regional", window="span")], progress=False)
    df = res.metrics.sort_values("subject")
    p = pop.sample(MTX, 0, n, ADULT)
    for i in range(n):
        m = build_model(*subject_inputs(MTX, ADULT, p, i), "regional")
        outs = list(REGIONS)
        aug = np.zeros((m.n + len(outs), m.n + len(outs)))
        aug[:m.n, :m.n] = m.K
        for j, o in enumerate(outs):
            aug[m.n + j, m.outputs[o][0]] = 1.0 / m.outputs[o][1]  # d(AUC_o)/dt = C_o (mg/L)
        x = np.zeros(aug.shape[0])
        x[m.routes[route]] = 12.0
        x = expm(aug * 84.0) @ x
        x[m.routes[route]] += 12.0
        x = expm(aug * 84.0) @ x
        for j, o in enumerate(outs):
            assert df[f"{o}_auc_span"].iloc[i] == pytest.approx(mg_per_L_to_nM(x[m.n + j], MTX.molecular_weight),
                                                                  rel=1e-9), (o, i)


def test_csf_draws_are_lognormal_and_leave_the_other_draws_unchanged():
    pop = Population(n=100_000, seed=4, correlations={"CL:Q": 0.3})
    on = pop.sample(MTX, 0, 100_000, ADULT)
    off = pop.replace(iiv={k: 0.0 for k in IIV_KEYS}).sample(MTX, 0, 100_000, ADULT)
    assert not any(k in off for k in IIV_KEYS)
    for k in off:
        np.testing.assert_array_equal(on[k], off[k])  # adding the CSF draws changed no existing subject
    for k in IIV_KEYS:
        typ = MTX.csf.CL_out if k == "CL_out" else getattr(ADULT, k)
        eta = np.log(on[k] / typ)
        omega = math.sqrt(math.log1p(ADULT.iiv[k] ** 2))
        assert abs(eta.std() - omega) < 0.02 * omega and abs(eta.mean()) < 0.01 * max(omega, 0.1), k
    for a, b in (("bulk_flow", "csf_volume"), ("bulk_flow", "CL"), ("CL_out", "Q"), ("volume_lumbar", "volume_cranial")):
        assert abs(np.corrcoef(np.log(on[a]), np.log(on[b]))[0, 1]) < 0.02, (a, b)  # one independent draw each
    # a drug in the ratio mode has no CL_out to vary; asking for it is refused
    erl = csfpk.load_drug("erlotinib")
    assert "CL_out" not in Population(n=5).sample(erl, 0, 5, ADULT)
    with pytest.raises(ParameterError, match="iiv.CL_out"):
        Population(n=5, iiv={"CL_out": 0.3}).sample(erl, 0, 5, ADULT)


def test_a_subject_whose_csf_cannot_reach_the_drugs_half_life_fails_alone():
    """Erlotinib's CSF half-life (1 h) needs ln2·V_csf/Q_bulk >= 1 h; a wide bulk-flow IIV gives a few
    subjects a faster CSF turnover than that: they are marked, the others keep their numbers."""
    drug = csfpk.load_drug("erlotinib")
    pop = Population(n=400, seed=1, iiv={"bulk_flow": 3.0})
    p = pop.sample(drug, 0, 400, ADULT)
    bad = math.log(2) * p["csf_volume"] / p["bulk_flow"] < drug.csf.equilibration_half_life
    assert 0 < bad.sum() < 100
    res = run([Scenario(drug, csfpk.Regimen.every(amt=150, ii=24, n=7), pop, t_end=168.0)], chunk=64,
              progress=False)
    df = frame_of(res)
    assert (df.status[bad] == csfpk.Status.NONFINITE).all() and (df.status[~bad] == 0).all()
    assert df.csf_auc_ss[bad].isna().all() and df.csf_auc_ss[~bad].notna().all()
    assert res.summary.n_failed[0] == bad.sum()
    with pytest.raises(ParameterError, match="equilibration_half_life"):
        build_model(drug, ADULT.replace(bulk_flow=ADULT.bulk_flow * 5))


def test_lm_physiology_keeps_a_lumbar_dose_in_the_spine_and_is_chosen_per_population():
    lm = load_physiology("adult_lm")
    assert lm.bulk_flow < ADULT.bulk_flow and lm.mixing_cranial_lumbar < ADULT.mixing_cranial_lumbar
    for key, q in lm.quantities.items():
        assert q.source.strip(), key
    reg = TWICE_WEEKLY["lumbar"]
    typ = {p.name: csfpk.simulate(MTX, reg, t_end=252.0, dt=0.25, csf_layout="regional", physiology=p)
           for p in (ADULT, lm)}
    auc = {k: _trapz(r.conc("csf_lumbar"), r.times) for k, r in typ.items()}
    vent = {k: _trapz(r.conc("csf_ventricles"), r.times) for k, r in typ.items()}
    assert auc["adult_lm"] > 1.3 * auc["adult"] and vent["adult_lm"] < vent["adult"]
    doc = {"schema": "csfpk.sweep/1", "name": "lm", "t_end": "10d", "csf_layout": "regional",
           "regimens": {"lumbar": {"amt": 12, "ii": "3.5d", "n": 3, "route": "it_lumbar", "source": "test"}},
           "populations": {"adult": {"n": 5}, "lm": {"n": 5, "physiology": "adult_lm"}},
           "grid": [{"drugs": ["methotrexate"], "regimens": ["lumbar"]}]}
    sweep = sweep_from_dict(doc)
    assert [s.physiology.name for s in sweep.scenarios] == ["adult", "adult_lm"]
    assert all(s.csf_layout == "regional" for s in sweep.scenarios)
    doc["populations"]["lm"]["physiology"] = "adult_nosuch"
    with pytest.raises(SweepError, match=r"populations.lm.*adult_nosuch"):
        sweep_from_dict(doc)
