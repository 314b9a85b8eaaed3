"""Intrathecal dosing: regional CSF layout, routes, Friberg myelosuppression, toxicity-guided escalation."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import solve_ivp

import csfpk
from csfpk.drug import Drug, PlasmaPK
from csfpk.errors import ParameterError, ScheduleError
from csfpk.escalation import Escalation, run_escalation
from csfpk.myelosuppression import blood_counts, counts_along, load_myelosuppression
from csfpk.protocols import list_regimens, load_regimen
from csfpk.regimen import Record, Regimen
from csfpk.simulation import solve

REGIONS = ("csf_ventricles", "csf_cisterna", "csf_cranial", "csf_lumbar")
IT_DRUGS = ("methotrexate", "pemetrexed")


def regional(name, **phys):
    p = csfpk.load_physiology("adult")
    return csfpk.build_model(csfpk.load_drug(name), p.replace(**phys) if phys else p, "regional")


def auc(res, name):
    return np.trapezoid(res.conc(name), res.times)


def assert_two_states_follow(model, k, names):
    """12 mg by lumbar puncture at t = 0: the states ``names`` follow expm(k·t)·[12, 0] (k a hand-written 2×2
    rate matrix of an autonomous block) at five times, to 1e-9 relative."""
    from scipy.linalg import expm

    times = np.array([0.5, 3.0, 12.0, 48.0, 120.0])
    out, _, _ = solve(model, Regimen.every(12, 24, 1, route="it_lumbar"), times)
    ix = [model.states.index(n) for n in names]
    for t, row in zip(times, out):
        want = expm(k * t) @ np.array([12.0, 0.0])
        assert row[ix] == pytest.approx(want, rel=1e-9, abs=1e-14)


# ---------------------------------------------------------------- mass balance, agreement
@settings(max_examples=20, deadline=None)
@given(st.sampled_from(IT_DRUGS), st.sampled_from(["it_lumbar", "it_ventricular"]), st.floats(1.0, 60.0),
       st.integers(1, 6), st.floats(12.0, 200.0))
def test_mass_balance_all_regions(name, route, amt, n, ii):
    model = regional(name)
    reg = Regimen.every(amt=amt, ii=ii, n=n, route=route)
    times = np.linspace(0, reg.end + 300, 50)
    out, tl, _ = solve(model, reg, times)
    dosed = sum(d[2] for d in tl.doses)
    assert abs(out[-1].sum() - dosed) <= 1e-9 * dosed
    assert out.min() >= -1e-12 * dosed
    assert out[:, model.states.index("csf_drainage")].max() > 1e-3 * amt  # the delayed drainage is in the balance


@pytest.mark.parametrize("name", IT_DRUGS)
@pytest.mark.parametrize("route", ["it_lumbar", "it_ventricular"])
def test_exact_and_adaptive_agree_on_regional(name, route):
    model = regional(name)
    reg = Regimen.every(amt=12, ii=84, n=3, route=route)
    times = np.arange(0.0, 300.0, 0.25)
    exact, _, _ = solve(model, reg, times, method="exact")
    for method in ("adaptive", "stiff"):
        other, _, _ = solve(model, reg, times, method=method, rtol=1e-10, atol=1e-14)
        scale = np.abs(exact).max(axis=0) + 1e-300
        assert np.max(np.abs(other - exact) / scale) < 1e-7, method


# ---------------------------------------------------------------- routes and layouts
@pytest.mark.parametrize("name", IT_DRUGS)
def test_lumbar_dose_favours_lumbar_and_ommaya_favours_ventricles(name):
    model = regional(name)
    lum = csfpk.simulate(model, Regimen.every(amt=12, ii=0, n=1, route="it_lumbar"), t_end=72, dt=0.1)
    omm = csfpk.simulate(model, Regimen.every(amt=12, ii=0, n=1, route="it_ventricular"), t_end=72, dt=0.1)
    assert auc(lum, "csf_lumbar") > 2 * auc(lum, "csf_ventricles")
    assert auc(omm, "csf_ventricles") > auc(omm, "csf_lumbar")
    # Balis 2000 (rhesus, lateral-ventricle bolus): lumbar exposure 11-69 % of the fourth-ventricle exposure
    assert 0.11 <= auc(omm, "csf_lumbar") / auc(omm, "csf_ventricles") <= 0.70
    assert omm.conc("csf_ventricles").max() > lum.conc("csf_ventricles").max()


@pytest.mark.parametrize("name,route", [("methotrexate", "it_lumbar"), ("pemetrexed", "it_ventricular"),
                                        ("erlotinib", "oral"), ("lorlatinib", "oral")])
def test_regional_collapses_to_single_under_fast_mixing(name, route):
    fast = dict(mixing_cranial_lumbar=1e5, mixing_ventricles_cisterna=1e5, mixing_cisterna_cranial=1e5)
    phys = csfpk.load_physiology("adult")
    drug = csfpk.load_drug(name)
    reg = Regimen.every(amt=12 if route.startswith("it") else drug.label_dose.amt, ii=24, n=3, route=route)
    kw = dict(t_end=120, dt=0.5)
    single = csfpk.simulate(drug, reg, csf_layout="single", physiology=phys, **kw)
    fused = csfpk.simulate(drug, reg, csf_layout="regional", physiology=phys.replace(**fast), **kw)
    slow = csfpk.simulate(drug, reg, csf_layout="regional", physiology=phys, **kw)
    total_csf = sum(fused.amount(r) for r in REGIONS)
    mask = fused.times > 1.0
    ref = single.amount("csf")[mask]
    assert np.max(np.abs(total_csf[mask] - ref) / ref) < 1e-3
    np.testing.assert_allclose(fused.conc("plasma")[mask], single.conc("plasma")[mask], rtol=1e-6)
    # and the default mixing is not "fast": the layouts differ
    slow_total = sum(slow.amount(r) for r in REGIONS)
    assert np.max(np.abs(slow_total[mask] - ref) / ref) > 1e-3


def test_it_routes_in_event_tables():
    frame = __import__("pandas").DataFrame({"time": [0, 84], "amt": [12, 12], "cmt": ["it_lumbar", "it_ventricular"]})
    res = csfpk.simulate("methotrexate", Regimen.from_frame(frame), t_end=120, csf_layout="regional")
    assert [res.model.states[d[1]] for d in res.doses] == ["csf_lumbar", "csf_ventricles"]


# ---------------------------------------------------------------- bad input
def test_it_route_on_drug_without_csf_parameters():
    drug = Drug("plain", 300.0, PlasmaPK(CL=5, V1=50))
    with pytest.raises(ParameterError, match=r"csf_layout = 'regional' needs a \[csf\] section"):
        csfpk.simulate(drug, Regimen.every(amt=10, ii=0, n=1, route="it_lumbar"), t_end=24, csf_layout="regional")
    model = csfpk.build_model(drug, csf_layout="none")
    with pytest.raises(ScheduleError, match=r"'it_lumbar': route not available"):
        csfpk.simulate(model, Regimen.every(amt=10, ii=0, n=1, route="it_lumbar"), t_end=24)


def test_dose_into_region_the_layout_lacks():
    with pytest.raises(ScheduleError, match=r"cmt = 'csf_lumbar' is not a compartment of this model"):
        csfpk.simulate("methotrexate", Regimen((Record(time=0, amt=12, cmt="csf_lumbar"),)), t_end=24,
                       csf_layout="single")


def test_escalation_cap_below_start():
    with pytest.raises(ScheduleError, match=r"cap = 5 mg is below start = 10 mg"):
        Escalation(times=(0, 84), start=10, step=5, cap=5)


def test_liposomal_depot_has_no_ommaya_route_in_regional_layout():
    with pytest.raises(ScheduleError, match=r"'it_ventricular': route not available"):
        csfpk.simulate("cytarabine_liposomal", Regimen.every(amt=50, ii=0, n=1, route="it_ventricular"),
                       t_end=24, csf_layout="regional")


# ---------------------------------------------------------------- myelosuppression PD
def _lineage(name="neutrophils"):
    return load_myelosuppression().lineages[name]


@pytest.mark.parametrize("name", ["leukocytes", "neutrophils", "platelets"])
def test_pd_baseline_is_steady_without_drug(name):
    lin = _lineage(name)
    t = np.arange(0, 2000.0, 1.0)
    assert np.all(counts_along(t, np.zeros_like(t), lin, 5.0) == pytest.approx(lin.circ0, rel=1e-12))


@pytest.mark.parametrize("name", ["leukocytes", "platelets"])
def test_pd_matches_radau_on_piecewise_linear_drive(name):
    """Platelets have a circulating loss rate k_circ != k_tr (Pérez-Ruixo 2016): dCirc/dt = k_tr·T3 − k_circ·Circ,
    with the precursor pools at (k_circ/k_tr)·Circ0 before the drug."""
    lin = _lineage(name)
    t = np.arange(0, 1200.0, 0.5)
    conc = 0.3 * np.exp(-t / 20.0) * (t > 0)
    slope = 2.0 if name == "leukocytes" else 3.0  # below the cap E = 1 (a kink RK4 resolves less well)
    c = counts_along(t, conc, lin, slope, substeps=4)
    ktr = 4 / lin.mtt
    kc = lin.kcirc or ktr
    assert (lin.kcirc is not None) == (name == "platelets")

    def f(tt, y):
        e = min(slope * np.interp(tt, t, conc), 1.0)
        return [ktr * y[0] * (1 - e) * (lin.circ0 / y[4]) ** lin.gamma - ktr * y[0], ktr * (y[0] - y[1]),
                ktr * (y[1] - y[2]), ktr * (y[2] - y[3]), ktr * y[3] - kc * y[4]]

    y0 = [lin.circ0 * kc / ktr] * 4 + [lin.circ0]
    ref = solve_ivp(f, (0, t[-1]), y0, method="Radau", rtol=1e-11, atol=1e-12, t_eval=t, max_step=0.5).y[4]
    assert np.max(np.abs(c - ref) / ref) < 1e-6
    assert ref.min() < 0.95 * lin.circ0  # the drive is strong enough to matter


@pytest.mark.parametrize("name", ["leukocytes", "neutrophils"])
def test_pd_nadir_after_brief_pulse_is_of_order_mtt(name):
    """Friberg 2002: the depletion of the proliferating pool reaches the blood through three transit
    compartments (mean transit time MTT), and the feedback then restores it; after a brief pulse the
    nadir falls between 1 and 2 MTT (docetaxel neutrophils, MTT 3.7 d: nadir ≈ day 7)."""
    lin = _lineage(name)
    t = np.arange(0, 1500.0, 0.25)
    c = counts_along(t, np.where(t < 1.0, 0.5, 0.0), lin, 1.0)
    nadir_t = t[np.argmin(c)]
    assert lin.mtt < nadir_t < 2.0 * lin.mtt
    assert c[-1] == pytest.approx(lin.circ0, rel=0.02)  # recovery


def test_ctcae_grades():
    lin = _lineage("neutrophils")  # LLN 2.0, then 1.5, 1.0, 0.5
    assert lin.grade([2.5, 1.9, 1.4, 0.9, 0.4]).tolist() == [0, 1, 2, 3, 4]
    plt = _lineage("platelets")  # CTCAE v4.03 'Platelet count decreased': LLN 150, then 75, 50, 25 x10^9/L
    assert plt.grade([150.0, 149.9, 75.0, 74.9, 50.0, 49.9, 25.0, 24.9]).tolist() == [0, 1, 1, 2, 2, 3, 3, 4]


def test_blood_counts_frame():
    res = csfpk.simulate("methotrexate", Regimen.every(amt=12, ii=84, n=2, route="it_lumbar"), t_end="3w", dt=0.5)
    counts = blood_counts(res)
    assert set(counts.columns) == {"time_h", "lineage", "count_1e9_L", "grade"}
    assert set(counts.lineage) == {"leukocytes", "neutrophils", "platelets"}
    assert len(counts) == 3 * len(res.times)


# ---------------------------------------------------------------- escalation
def _pd_with_slope(slope):
    pd = load_myelosuppression()
    return type(pd)(pd.lineages, {"pemetrexed": slope}, pd.quantities)


def _events(counts, esc, grade):
    """Grade >= `grade` events seen at injections 2..n: inter-injection intervals (t_k-1, t_k] in which
    an episode began, from the PD trace (several dips between two injections are one decision)."""
    worst = counts.groupby("time_h").grade.max()
    severe = (worst >= grade).to_numpy()
    t = worst.index.to_numpy()
    onset = t[1:][severe[1:] & ~severe[:-1]]
    edges = np.asarray(esc.times)
    return sum(bool(np.any((onset > a) & (onset <= b))) for a, b in zip(edges[:-1], edges[1:]))


@settings(max_examples=8, deadline=None)
@given(st.floats(2.0, 40.0))
def test_escalation_steps_back_once_per_severe_event_and_respects_cap(slope):
    esc = Escalation.seed_pemetrexed(weeks=16)
    er = run_escalation("pemetrexed", esc, dt=0.5, pd=_pd_with_slope(slope))
    doses = er.doses_given
    assert doses.max() <= 50.0 and doses.min() >= 10.0
    assert doses[0] == 10.0
    steps = np.diff(doses)
    assert set(np.round(steps, 9)) <= {-5.0, 0.0, 5.0}
    assert int(np.sum(er.decisions.action == "step_back")) == _events(er.counts, esc, 3)
    # the result's dose record is exactly the decisions
    assert [d[2] for d in er.result.doses] == doses.tolist()


def test_escalation_without_toxicity_reaches_cap():
    esc = Escalation.seed_pemetrexed(weeks=12)
    er = run_escalation("pemetrexed", esc, dt=0.5, pd=_pd_with_slope(0.0))
    assert er.doses_given.tolist()[:9] == [10, 15, 20, 25, 30, 35, 40, 45, 50]
    assert set(er.decisions.action[9:]) <= {"at_cap"}


# ---------------------------------------------------------------- regimen files
def test_regimen_files_load_with_sources():
    names = list_regimens()
    assert {"it_mtx_seed", "it_pemetrexed_seed", "it_mtx_10mg_twice_weekly", "it_mtx_15mg_twice_weekly"} <= set(names)
    for name in names:
        p = load_regimen(name)
        assert p.source and csfpk.load_drug(p.drug)


def test_seed_schedule_twice_weekly_weekly_then_every_four_weeks():
    times = np.array([d.time for d in load_regimen("it_mtx_seed").regimen.doses()]) / 24.0
    assert np.sum(times < 28) == 8 and np.sum((times >= 28) & (times < 56)) == 4
    assert np.allclose(np.diff(times[12:]), 28.0)
    assert all(d.amt == 12 for d in load_regimen("it_mtx_seed").regimen.doses())


def test_example_runs(tmp_path):
    import runpy
    import sys

    sys.argv = ["intrathecal_protocol.py", "--out", str(tmp_path), "--weeks", "10"]
    runpy.run_path(str(__import__("pathlib").Path(__file__).parent.parent / "examples" / "intrathecal_protocol.py"),
                   run_name="__main__")
    for f in ("exposure.csv", "doses_given.csv", "csf_by_region.png", "leukocytes.png"):
        assert (tmp_path / f).stat().st_size > 0


# ---------------------------------------------------------------- brain interstitial fluid (issue 10)
def test_interstitial_exchange_matches_the_two_state_closed_form():
    """Single layout, no influx from plasma: CSF and brain ECF form an autonomous 2-state block whose
    exact solution is scipy's expm of the 2×2 rate matrix written from the module docstring."""
    phys = csfpk.load_physiology("adult")
    drug = csfpk.load_drug("methotrexate").replace(CL_in=0.0, CL_out=0.01, CL_interstitial=0.02, CL_brain_out=0.005)
    model = csfpk.build_model(drug, phys, "single")
    vc, vi, qb = phys.csf_volume, phys.volume_interstitial, phys.bulk_flow
    k = np.array([[-(qb + 0.01 + 0.02) / vc, 0.02 / vi], [0.02 / vc, -(0.02 + 0.005) / vi]])
    assert_two_states_follow(model, k, ("csf", "brain_ecf"))


@pytest.mark.parametrize("name", ["erlotinib", "osimertinib"])
def test_interstitial_exchange_leaves_steady_state_penetration_unchanged(name):
    phys = csfpk.load_physiology("adult")
    base = csfpk.load_drug(name)
    reg = Regimen.every(amt=30_000, ii=0, n=1, route="iv", rate=10.0)  # a 3000-h constant infusion
    for layout, site in (("single", "csf"), ("regional", "csf_lumbar")):
        ratios = []
        for drug in (base, base.replace(CL_interstitial=0.05)):
            m = csfpk.build_model(drug, phys, layout)
            a, _, _ = solve(m, reg, np.array([2999.0]))
            ratios.append(a[0, m.outputs[site][0]] / m.outputs[site][1] / (a[0, m.outputs["plasma"][0]] / m.outputs["plasma"][1]))
        assert "brain_ecf" in csfpk.build_model(base.replace(CL_interstitial=0.05), phys, layout).states
        assert ratios[1] == pytest.approx(ratios[0], rel=1e-9)


def test_interstitial_errors():
    phys = csfpk.load_physiology("adult")
    drug = csfpk.load_drug("methotrexate")
    with pytest.raises(ParameterError, match="needs the physiology's \\[csf\\] volume_interstitial"):
        csfpk.build_model(drug, phys.replace(volume_interstitial=None), "regional")
    with pytest.raises(ParameterError, match="CL_brain_out .* needs CL_interstitial"):
        drug.replace(CL_interstitial=None)


def test_issue10_calibrated_methotrexate_keeps_drug_in_the_csf():
    """Before issue 10, 12 mg by lumbar puncture left 1.4e-5 µM in lumbar CSF at 48 h, the plasma peak came
    at 2.0–2.1 h, and after an Ommaya dose lumbar CSF at 4 h was 1.8 % of the ventricular peak."""
    drug, phys = csfpk.load_drug("methotrexate"), csfpk.load_physiology("adult")
    model = csfpk.build_model(drug, phys, "regional")
    t = np.linspace(0.01, 72, 7200)
    to_uM = 1e3 / drug.molecular_weight

    def conc(out, name):
        i, v, s = model.outputs[name]
        return s * out[:, i] / v * to_uM

    lp, _, _ = solve(model, Regimen.every(12, 24, 1, route="it_lumbar"), t)
    lumbar = conc(lp, "csf_lumbar")
    assert lumbar[np.searchsorted(t, 48.0)] > 0.05  # Bleyer 1973: 0.17 µM at 48 h after 12-15 mg/m2
    plasma = conc(lp, "plasma")
    assert 3.0 <= t[np.argmax(plasma)] <= 12.0  # Bleyer & Dedrick 1977: plasma peak 3-12 h after 12 mg/m2 IT
    late = np.log(lumbar[np.searchsorted(t, 24.0)] / lumbar[np.searchsorted(t, 72.0)]) / 48.0
    assert math.log(2) / late > 6.0  # a slow terminal phase, not bulk-flow washout
    om, _, _ = solve(model, Regimen.every(12, 24, 1, route="it_ventricular"), t)
    assert conc(om, "csf_lumbar")[np.searchsorted(t, 4.0)] / conc(om, "csf_ventricles").max() > 0.03


def test_ventricles_are_not_flushed_by_fresh_csf():
    """With the aqueduct/foramen-magnum tidal exchange (adult.toml, Enzmann & Pelc 1993) the ventricles stay
    mixed with the cranial CSF. Two published ventricular values, both check rows (never fitted), within
    2-fold: the peak after an Ommaya dose of 6.25 mg/m2 (Shapiro 1975, 200 uM; maximum over 0.5-2 h; 2.7x
    over without the exchange) and the level at the end of a 6-h IV infusion of 750-1500 mg/m2 (Rinsho
    Ketsueki 1980, 0.755 uM; 0.39x without it)."""
    from csfpk import observations

    df = observations.load().set_index("row_id", drop=False)
    phys, drug = csfpk.load_physiology("adult"), csfpk.load_drug("methotrexate")
    for row_id in ("MTX-05", "MTX-14"):
        r = df.loc[row_id]
        assert r.site == "csf_ventricular"
        fold = observations.predict(r, drug, phys) / r.value
        assert 0.5 <= fold <= 2.0, (row_id, fold)


def test_observation_set_fit_rows_within_twofold():
    """Every fit row, CSF and plasma (MTX-06, the Bleyer & Dedrick 1977 plasma peak, since the delayed drainage)."""
    from csfpk import observations

    df = observations.load()
    phys = csfpk.load_physiology("adult")
    rows = df[df.use == "fit"]
    assert len(rows) >= 5 and (rows.site == "plasma").any()
    for _, r in rows.iterrows():
        pred = observations.predict(r, csfpk.load_drug(r.drug), phys)
        assert 0.5 <= pred / r.value <= 2.0, (r.row_id, pred, r.value)


def test_observation_set_is_checked(tmp_path):
    from csfpk import observations
    from csfpk.errors import ObservationError

    df = observations.load()
    assert set(df.use) == {"fit", "check"} and df.row_id.is_unique
    bad = df.copy()
    bad.loc[0, "use"] = "maybe"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ObservationError, match="use = 'maybe' is not allowed"):
        observations.load(tmp_path / "bad.csv")
    half = df[df.statistic == "half_life"].head(1).assign(use="fit")
    with pytest.raises(ObservationError, match="cannot be fitted"):
        observations.fit_frame(half, csfpk.load_drug("methotrexate"), csfpk.load_physiology("adult"))


def test_methotrexate_file_carries_the_calibration_it_validation_reproduces():
    """The fitted values in methotrexate.toml are what examples/it_validation.py --refit estimates."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "it_validation.py"
    spec = importlib.util.spec_from_file_location("it_validation", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.refit(profile=False)
    drug = csfpk.load_drug("methotrexate")
    for key in mod.FITTED:
        assert res.estimates[key] == pytest.approx(getattr(drug.csf, key.split(".")[1]), rel=0.01), key


def test_methotrexate_marrow_slope_reproduces_its_derivation():
    """params/pd/NOTES.md section 7: the MTX slope is the one at which a typical adult on 15 mg MTX weekly (IV/SC
    bolus, 26 weeks) has a WBC nadir of f x baseline, f chosen so that the share of virtual patients below the LLN
    rises by the 1.17 points of leucopenia in the RA meta-analysis (Vanni 2019). Recomputed here from the PD file's
    baseline, its IIV and its LLN, so an edited slope, CV or threshold that breaks the derivation fails."""
    from scipy.stats import norm

    pd = load_myelosuppression()
    leu = pd.lineages["leukocytes"]
    omega = math.sqrt(math.log1p(pd.iiv["leukocytes"]["Circ0"] ** 2))
    lln = leu.thresholds[0]
    below = norm.cdf(math.log(lln / leu.circ0) / omega)
    f = lln / (leu.circ0 * math.exp(norm.ppf(below + 0.0117) * omega))
    assert 0.95 < f < 0.97
    res = csfpk.simulate("methotrexate", Regimen.every(15, 168, 26, route="iv"), t_end=26 * 168, dt=0.25,
                         csf_layout="none")
    nadir = counts_along(res.times, res.conc("plasma"), leu, pd.slope("methotrexate")).min() / leu.circ0
    assert nadir == pytest.approx(f, abs=0.002)


def test_observation_row_with_measured_plasma_clearance(tmp_path):
    """A row's plasma_cl_L_h_m2 (the study's own measured clearance) replaces the BSA-scaled CL of the drug file,
    and a bad value is refused in one line naming the row and the column."""
    from csfpk import observations
    from csfpk.errors import ObservationError

    df = observations.load().set_index("row_id", drop=False)
    phys, drug = csfpk.load_physiology("adult"), csfpk.load_drug("methotrexate")
    row = df.loc["MTX-03"]  # Evans 1983: 98.3 mL/min/m2 in the same children
    assert row.plasma_cl_L_h_m2 == pytest.approx(98.3 * 60 / 1000, rel=1e-3)
    assert observations.covariates(row, drug, phys)["plasma.CL"] == pytest.approx(row.plasma_cl_L_h_m2 * row.bsa_m2)
    scaled = observations.covariates(row.drop("plasma_cl_L_h_m2"), drug, phys)["plasma.CL"]
    assert scaled == pytest.approx(drug.plasma.CL * row.bsa_m2 / phys.bsa_m2)
    # CSF at the end of a 24-h IV infusion follows the plasma steady state: 1/CL
    pred, pred_scaled = (observations.predict(r, drug, phys) for r in (row, row.drop("plasma_cl_L_h_m2")))
    assert pred / pred_scaled == pytest.approx(scaled / (row.plasma_cl_L_h_m2 * row.bsa_m2), rel=0.05)
    bad = df.reset_index(drop=True)
    bad.loc[bad.row_id == "MTX-03", "plasma_cl_L_h_m2"] = -1.0
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ObservationError, match="row MTX-03: plasma_cl_L_h_m2 = -1.0 is not allowed"):
        observations.load(tmp_path / "bad.csv")


# ---------------------------------------------------------------- delayed CSF drainage (issue 10, third pass)
def test_drainage_matches_the_closed_form():
    """Single layout, no influx from plasma: the CSF and the drainage compartment form an autonomous 2-state
    block (CSF → drainage at φ·Q_bulk/V, → plasma directly at (CL_out + (1 − φ)·Q_bulk)/V; drainage → plasma
    at ln2/t½_d) whose exact solution is scipy's expm of the 2×2 matrix written from the module docstring."""
    phys = csfpk.load_physiology("adult").replace(drainage_fraction=0.6, drainage_half_life=5.0)
    drug = csfpk.load_drug("methotrexate").replace(CL_in=0.0, CL_out=0.01, CL_interstitial=None, CL_brain_out=None)
    model = csfpk.build_model(drug, phys, "single")
    vc, qb, kd = phys.csf_volume, phys.bulk_flow, math.log(2) / 5.0
    k = np.array([[-(qb + 0.01) / vc, 0.0], [0.6 * qb / vc, -kd]])
    assert_two_states_follow(model, k, ("csf", "csf_drainage"))


@pytest.mark.parametrize("name", ["erlotinib", "osimertinib"])
def test_drainage_leaves_steady_state_penetration_unchanged(name):
    """The drainage compartment is downstream of the CSF: CSF/plasma at steady state is the same with and
    without it, in both layouts (the TKI files are parameterised by that ratio)."""
    phys = csfpk.load_physiology("adult")
    drug = csfpk.load_drug(name)
    reg = Regimen.every(amt=30_000, ii=0, n=1, route="iv", rate=10.0)  # a 3000-h constant infusion
    for layout, site in (("single", "csf"), ("regional", "csf_lumbar")):
        ratios = []
        for p in (phys.replace(drainage_fraction=None, drainage_half_life=None), phys):
            m = csfpk.build_model(drug, p, layout)
            a, _, _ = solve(m, reg, np.array([2999.0]))
            ratios.append(a[0, m.outputs[site][0]] / m.outputs[site][1] / (a[0, m.outputs["plasma"][0]] / m.outputs["plasma"][1]))
        assert "csf_drainage" in csfpk.build_model(drug, phys, layout).states
        assert ratios[1] == pytest.approx(ratios[0], rel=1e-9)


def test_drainage_reproduces_the_gadobutrol_blood_peak_it_was_set_from():
    """params/physiology/adult.toml: drainage_fraction is the smallest share for which a bulk-flow tracer
    (gadobutrol: plasma CL 7.2 L/h, V 15.6 L, Staks 1994) given by lumbar puncture peaks in blood at 10 h
    (Eide 2021), at the drainage half-life where that peak is latest. Recomputed here: the file's values give
    10 h, a share 0.06 lower peaks before 9.7 h whatever the half-life, and without the drainage the peak is
    before 7 h."""
    from scipy.linalg import expm

    from csfpk.drug import CSFExchange

    tracer = Drug("gadobutrol", 604.7, PlasmaPK(CL=7.2, V1=15.6), csf=CSFExchange(CL_in=0.0, CL_out=0.0))
    phys = csfpk.load_physiology("adult")
    t = np.arange(0.02, 30.0, 0.02)

    def blood_tmax(p):
        m = csfpk.build_model(tracer, p, "regional")
        x = np.zeros(m.n)
        x[m.routes["it_lumbar"]] = 1.0
        step = expm(m.K * 0.02)
        c = m.states.index("central")
        amounts = []
        for _ in t:
            x = step @ x
            amounts.append(x[c])
        return t[int(np.argmax(amounts))]

    assert blood_tmax(phys) == pytest.approx(10.0, abs=0.3)
    f = phys.drainage_fraction - 0.06
    assert max(blood_tmax(phys.replace(drainage_fraction=f, drainage_half_life=h)) for h in (4.0, 6.0, 8.0, 12.0)) < 9.7
    assert blood_tmax(phys.replace(drainage_fraction=None, drainage_half_life=None)) < 7.0


def test_drainage_lowers_the_plasma_peak_after_an_it_dose():
    """The point of the drainage: after 12 mg by lumbar puncture the plasma peak is lower than with all bulk
    outflow going straight into venous blood (same drug file), the drug held in the drainage compartment
    comes back later (plasma higher at 24 h), and the lumbar CSF is unchanged but for the
    plasma → CSF influx (< 0.1 %)."""
    drug, phys = csfpk.load_drug("methotrexate"), csfpk.load_physiology("adult")
    reg = Regimen.every(12, 24, 1, route="it_lumbar")
    curves = {}
    for label, p in (("direct", phys.replace(drainage_fraction=None, drainage_half_life=None)), ("drained", phys)):
        res = csfpk.simulate(drug, reg, t_end=72, dt=0.05, physiology=p, csf_layout="regional")
        curves[label] = (res.conc("plasma"), res.conc("csf_lumbar"))
    (p0, l0), (p1, l1) = curves["direct"], curves["drained"]
    assert p1.max() < 0.85 * p0.max()
    i24 = np.searchsorted(res.times, 24.0)
    assert p1[i24] > 1.5 * p0[i24]
    assert l1[1:] == pytest.approx(l0[1:], rel=2e-3)  # CSF differs only through the small plasma → CSF influx


def test_drainage_errors():
    phys = csfpk.load_physiology("adult")
    with pytest.raises(ParameterError, match="drainage_fraction and drainage_half_life .* go together"):
        phys.replace(drainage_half_life=None)
    with pytest.raises(ParameterError, match="drainage_fraction"):
        phys.replace(drainage_fraction=1.5)
    with pytest.raises(ParameterError, match="drainage_half_life"):
        phys.replace(drainage_half_life=0.0)
