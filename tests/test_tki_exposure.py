"""High-dose TKI exposure (issue 13): dose-dependent bioavailability, published observations.

The dose-dependent bioavailability F(D) = F / (1 + max(D − threshold, 0) / half) scales each oral
dose record (csfpk.schedule); these tests check its mass accounting, its low-dose limit, the
solvers on the changed drug files at high doses, its parameter checks, and the model against
``params/observations/tki.csv`` (fit rows within 1.5-fold, paired CSF rows within 2-fold, check rows
reported).
"""

import importlib.util
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest

import csfpk
from csfpk.errors import ParameterError
from csfpk.paths import params_dir
from csfpk.simulation import solve

from oracles import radau_reference

ROOT = Path(__file__).resolve().parents[1]
CHANGED = ("erlotinib", "gefitinib", "osimertinib")
NONLINEAR_F = ("erlotinib", "gefitinib")
HIGH = {"erlotinib": (1500.0, 168.0), "gefitinib": (1250.0, 24.0), "osimertinib": (160.0, 24.0)}


def _calibration():
    spec = importlib.util.spec_from_file_location("tki_calibration", ROOT / "examples" / "tki_calibration.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _raw_plasma(name):
    with open(params_dir() / "drugs" / f"{name}.toml", "rb") as fh:
        return {k: v["value"] for k, v in tomllib.load(fh)["plasma"].items() if isinstance(v, dict)}


def _for_method(drug, method):
    """``drug`` as ``method`` can run it: the exact solver needs a linear model, so gefitinib's saturable CSF
    uptake is switched off for it (the F(D) path, which these tests check, stays)."""
    if method == "exact" and drug.csf.uptake_half_saturation is not None:
        return drug.replace(uptake_half_saturation=None)
    return drug


def _f_of_dose(raw, dose):
    """F(D) written out from the raw file values, independently of PlasmaPK.bioavailability."""
    excess = dose - raw["F_dose_threshold"]
    return raw["F"] / (1.0 + (excess if excess > 0 else 0.0) / raw["F_dose_half"])


# ----------------------------------------------------------------------------- mass balance
@pytest.mark.parametrize("name", NONLINEAR_F)
@pytest.mark.parametrize("method", ["exact", "stiff"])
def test_dose_dependent_f_conserves_mass(name, method):
    """dosed = absorbed + unabsorbed + remaining in the depot, absorbed = in the body + eliminated (1e-9)."""
    amt, ii = HIGH[name]
    raw = _raw_plasma(name)
    regimen = csfpk.Regimen.every(amt=150.0, ii=24, n=3) + csfpk.Regimen.every(amt=amt, ii=ii, n=3, start=72.0)
    model = csfpk.build_model(_for_method(csfpk.load_drug(name), method), csf_layout="single")
    times = np.arange(0.0, 72.0 + 3 * ii + 48.0, 1.0)
    amounts, tl, _ = solve(model, regimen, times, method=method, rtol=1e-10, atol=1e-12)
    dosed = np.array([r.amt for r in regimen.records for _ in range(r.addl + 1)])
    given = np.array([d[2] for d in tl.doses])
    np.testing.assert_allclose(given, [_f_of_dose(raw, a) * a for a in dosed], rtol=1e-12)
    unabsorbed = float(np.sum(dosed - given))
    assert unabsorbed > 0.1 * dosed.sum() * (name == "erlotinib")  # the high doses really lose drug
    depot = model.index("depot")
    for t_check in (60.0, times[-1]):
        k = int(np.searchsorted(times, t_check))
        entered = sum(d[2] for d in tl.doses if d[0] < t_check)  # a sample at a dose time is pre-dose
        absorbed = amounts[k].sum() - amounts[k, depot]  # body + eliminated sink
        total_dosed = sum(a for a, d in zip(dosed, tl.doses) if d[0] < t_check)
        total_lost = sum(a - d[2] for a, d in zip(dosed, tl.doses) if d[0] < t_check)
        assert absorbed + total_lost + amounts[k, depot] == pytest.approx(total_dosed, rel=1e-9, abs=1e-9)
        assert amounts[k].sum() == pytest.approx(entered, rel=1e-9, abs=1e-9)


# ----------------------------------------------------------------------------- low-dose limit
@pytest.mark.parametrize("name", NONLINEAR_F)
def test_f_of_dose_reduces_to_linear_at_low_doses(name):
    drug = csfpk.load_drug(name)
    linear = drug.replace(F_dose_threshold=None, F_dose_half=None)
    threshold = drug.plasma.F_dose_threshold
    for dose in (1.0, 0.5 * threshold, threshold):
        assert drug.plasma.bioavailability(dose) == drug.plasma.F
    # continuous at the threshold, and less than proportional above it
    assert drug.plasma.bioavailability(threshold * (1 + 1e-9)) == pytest.approx(drug.plasma.F, rel=1e-8)
    assert drug.plasma.bioavailability(2 * threshold) < drug.plasma.F
    regimen = csfpk.Regimen.every(amt=threshold, ii=24, n=10)
    a = csfpk.simulate(drug, regimen, t_end=300, dt=1)
    b = csfpk.simulate(linear, regimen, t_end=300, dt=1)
    for comp in ("plasma", "csf"):
        np.testing.assert_allclose(a.conc(comp), b.conc(comp), rtol=1e-13, atol=0)
    # and a high dose does lose exposure relative to the linear file
    high = csfpk.Regimen.every(amt=HIGH[name][0], ii=HIGH[name][1], n=3)
    assert csfpk.simulate(drug, high, t_end=400).conc("plasma").max() < \
        0.9 * csfpk.simulate(linear, high, t_end=400).conc("plasma").max()


# ----------------------------------------------------------------------------- solvers vs Radau
@pytest.mark.parametrize("name", CHANGED)
@pytest.mark.parametrize("method", ["adaptive", "stiff", "exact"])
def test_solvers_agree_with_radau_at_high_dose(name, method):
    amt, ii = HIGH[name]
    drug = _for_method(csfpk.load_drug(name), method)
    regimen = csfpk.Regimen.every(amt=amt, ii=ii, n=3)
    model = csfpk.build_model(drug, csf_layout="single")
    times = np.arange(0.0, 3 * ii + 48.0 + 0.5, 0.5)
    ref = radau_reference(model, regimen, times)
    got, _, _ = solve(model, regimen, times, method=method, rtol=1e-10, atol=1e-13)
    for out in ("plasma", "csf"):
        i = model.outputs[out][0]
        scale = np.abs(ref[:, i]).max()
        assert np.max(np.abs(got[:, i] - ref[:, i])) / scale < 1e-7, (name, method, out)


# ----------------------------------------------------------------------------- bad parameters
@pytest.mark.parametrize("key, value, field", [
    ("F_dose_half", -100.0, "F_dose_half"),
    ("F_dose_half", 0.0, "F_dose_half"),
    ("F_dose_threshold", -1.0, "F_dose_threshold"),
    ("F", 1.2, "F"),
    ("F", 0.0, "F"),
])
def test_bad_dose_dependent_parameters_name_the_field(tmp_path, key, value, field):
    text = (params_dir() / "drugs" / "erlotinib.toml").read_text()
    lines = text.splitlines()
    i = next(j for j, line in enumerate(lines) if line.split("=")[0].strip() == key)
    old = lines[i].split("value = ", 1)[1].split(",", 1)[0]
    lines[i] = lines[i].replace(f"value = {old},", f"value = {value},", 1)
    path = tmp_path / "erlotinib.toml"
    path.write_text("\n".join(lines))
    with pytest.raises(ParameterError) as exc:
        csfpk.load_drug(path)
    msg = str(exc.value)
    assert "\n" not in msg and f"{field}.value = {value}" in msg and "expected" in msg, msg


def test_dose_dependent_pair_goes_together():
    with pytest.raises(ParameterError, match="F_dose_threshold"):
        csfpk.load_drug("erlotinib").replace(F_dose_half=None)


# ----------------------------------------------------------------------------- published observations
@pytest.fixture(scope="module")
def observation_table():
    cal = _calibration()
    rows = cal.load_rows()
    table = cal.table(rows)
    print("\nrow                      use    observed  predicted  unit     fold error")
    for row, p, fe in table:
        print(f"{row['row_id']:24s} {row['use']:5s} {row['value']:9.4g} {p:10.4g}  {row['unit']:7s} {fe:5.2f}x "
              f"{'over' if p > row['value'] else 'under'}")
    return table


def test_observation_file_is_well_formed():
    cal = _calibration()
    rows = cal.load_rows()
    ids = [r["row_id"] for r in rows]
    assert len(ids) == len(set(ids))
    for r in rows:
        assert r["use"] in ("fit", "check"), r["row_id"]
        assert r["citation"] and r["read_from"], r["row_id"]
        assert r["value"] > 0 and math.isfinite(r["value"]), r["row_id"]
        assert r["drug"] in csfpk.list_drugs(), r["row_id"]
    assert {r["drug"] for r in rows} >= {"erlotinib", "gefitinib", "osimertinib"}


def test_every_fit_row_within_1_5_fold(observation_table):
    """Shipped files, gefitinib's saturable CSF uptake included (issue 13)."""
    misses = [(r["row_id"], round(fe, 2)) for r, _, fe in observation_table if r["use"] == "fit" and fe > 1.5]
    assert not misses, misses


# paired CSF rows the shipped (linear) files are known to miss by more than 2-fold, and why; the
# test also fails if one of them starts to pass, so that this list is kept honest
KNOWN_CSF_MISSES = {
    "osi_nanjo_ratio": "Nanjo 2018 (2.5 % of total plasma at 80 mg) vs the fit row's 7.51 nM at 160 mg (0.80 % of the "
                       "model plasma): not sampling time, patient plasma or saturable uptake "
                       "(examples/tki_calibration.py --osimertinib); no single ratio meets both",
    "erl_pmid21274533_ratio": "erlotinib CSF/plasma 6.3 +/- 6.1 % (n = 3) vs 2.77 % of Togashi 2012 in the file; the "
                              "prediction lies inside the 95 % CI of that mean (test_mean_ci95_of_a_small_study)",
}


def test_paired_csf_rows_within_2_fold(observation_table):
    csf = [(r, fe) for r, _, fe in observation_table if r["site"].startswith("csf")]
    assert len(csf) >= 10
    misses = {r["row_id"]: round(fe, 2) for r, fe in csf if fe > 2.0}
    print("\nCSF rows missed by more than 2-fold:", misses)
    assert set(misses) == set(KNOWN_CSF_MISSES), misses


def test_mean_ci95_of_a_small_study():
    """The 95 % CI of a published mean uses Student t with n - 1 degrees of freedom: for n = 3 the quantile has the
    closed form t = sqrt(2 q^2 / (1 - q^2)), q = 0.95 (t CDF with 2 df: 1/2 + t / (2 sqrt(2 + t^2)))."""
    cal = _calibration()
    rows = {r["row_id"]: r for r in cal.load_rows()}
    row = rows["erl_pmid21274533_ratio"]
    assert row["n"] == "3" and row["spread_kind"] == "SD"
    t2 = math.sqrt(2 * 0.95 ** 2 / (1 - 0.95 ** 2))
    lo, hi = cal.mean_ci95(row)
    half = t2 * float(row["spread"]) / math.sqrt(3)
    assert lo == pytest.approx(row["value"] - half, rel=1e-12) and hi == pytest.approx(row["value"] + half, rel=1e-12)
    assert lo < 0 < cal.predict(row) < row["value"] / 2 < hi  # more than 2-fold under, yet inside the interval
    assert cal.mean_ci95(rows["osi_nanjo_ratio"]) is None  # no SD, no n
    assert cal.mean_ci95(dict(row, n="1")) is None
    assert cal.mean_ci95(dict(row, spread_kind="range")) is None


def test_saturable_uptake_cannot_explain_the_osimertinib_gap():
    """Even a fully saturated Michaelis-Menten CSF influx lowers the CSF/plasma ratio only 2-fold when the dose
    doubles (80 -> 160 mg) and never lowers the CSF level; the two osimertinib rows need 3-fold."""
    cal = _calibration()
    osi = csfpk.load_drug("osimertinib")
    strong = osi.replace(uptake_half_saturation=1e-6 * osi.plasma.fu)
    p80, c80, _, r80 = cal._steady_state(strong, 80, dt=1.0)
    p160, c160, _, r160 = cal._steady_state(strong, 160, dt=1.0)
    assert 1.9 < r80 / r160 <= 2.0 + 1e-6
    assert c160 >= c80 * (1 - 1e-6)
    rows = {r["row_id"]: r for r in cal.load_rows()}
    needed = rows["osi_nanjo_ratio"]["value"] / (rows["osi_bloom_csf"]["value"] / cal._steady_state(osi, 160)[0])
    assert needed > 3.0


# ----------------------------------------------------------------------------- saturable CSF uptake
def _saturable():
    return csfpk.load_drug("gefitinib")


def test_gefitinib_rows_need_the_saturable_uptake():
    """The shipped file meets every gefitinib fit row (1.5-fold) and CSF row (2-fold); the same file with a
    linear CSF uptake misses Shriyan's CSF fold and ratio fold about 2-fold (issue 13, before issue 11)."""
    cal = _calibration()
    rows = [r for r in cal.load_rows() if r["drug"] == "gefitinib"]
    table = cal.table(rows, drug=_saturable())
    for row, p, fe in table:
        print(f"{row['row_id']:24s} {row['use']:5s} {row['value']:9.4g} {p:10.4g} {fe:5.2f}x")
    assert all(fe <= 1.5 for r, _, fe in table if r["use"] == "fit"), table
    assert all(fe <= 2.0 for r, _, fe in table if r["site"].startswith("csf")), table
    linear = _saturable().replace(penetration_ratio=0.0113, uptake_half_saturation=None)
    shr = [r for r in rows if r["row_id"] in ("gef_shr20_csf_fold", "gef_shr20_ratio_fold")]
    assert all(fe > 1.9 for _, _, fe in cal.table(shr, drug=linear))


def _radau_with_uptake(model, regimen, times):
    """Radau (rtol 1e-10) of dx/dt = K·x + S-correction of _kernels/rhs.py, written out here."""
    from scipy.integrate import solve_ivp

    from csfpk._kernels.codes import BOLUS
    from csfpk._kernels.codes import NL_ASAT, NL_CENTRAL, NL_CSF, NL_KIN
    from csfpk.schedule import build_timeline

    c, q, kin, asat = int(model.nl[NL_CENTRAL]), int(model.nl[NL_CSF]), model.nl[NL_KIN], model.nl[NL_ASAT]
    assert kin > 0 and asat > 0

    def f(t, x):
        dx = model.K @ x
        back = kin * x[c] - kin * x[c] / (1.0 + x[c] / asat)  # saturated influx k_in·x_c/(1 + x_c/A)
        dx[c] += back
        dx[q] -= back
        return dx

    tl = build_timeline(model, regimen, None)
    x, t, out = np.zeros(model.n), 0.0, np.zeros((len(times), model.n))
    for te in sorted(set(tl.time.tolist()) | {float(times[-1])}):
        if te > t:
            seg = times[(times > t) & (times <= te)]
            sol = solve_ivp(f, (t, te), x, method="Radau", rtol=1e-10, atol=1e-13, dense_output=True)
            out[np.searchsorted(times, seg)] = sol.sol(seg).T
            x, t = sol.y[:, -1].copy(), te
        for ta, kind, cmt, val in zip(tl.time, tl.kind, tl.cmt, tl.value):
            if ta == te and kind == BOLUS:
                x[cmt] += val
    return out


@pytest.mark.parametrize("method", ["adaptive", "stiff"])
def test_saturable_uptake_solvers_agree_with_radau_and_conserve_mass(method):
    model = csfpk.build_model(_saturable(), csf_layout="single")
    regimen = csfpk.Regimen.every(amt=250, ii=24, n=3) + csfpk.Regimen.every(amt=1250, ii=24, n=3, start=72)
    times = np.arange(0.0, 192.0 + 0.5, 0.5)
    ref = _radau_with_uptake(model, regimen, times)
    got, tl, _ = solve(model, regimen, times, method=method, rtol=1e-10, atol=1e-13)
    for out in ("plasma", "csf"):
        i = model.outputs[out][0]
        assert np.max(np.abs(got[:, i] - ref[:, i])) / np.abs(ref[:, i]).max() < 1e-7, out
    for k in (100, len(times) - 1):
        entered = sum(d[2] for d in tl.doses if d[0] < times[k])
        assert got[k].sum() == pytest.approx(entered, rel=1e-9)


def test_saturable_uptake_halves_the_ratio_and_vanishes_at_low_concentration():
    drug = _saturable()
    r0 = drug.csf.penetration_ratio

    def ratio(d, amt):
        res = csfpk.simulate(d, csfpk.Regimen.every(amt=amt, ii=24, n=28), t_end=672, dt=1)
        return res.conc("csf")[-1] / res.conc("plasma")[-1]

    linear = drug.replace(uptake_half_saturation=None)
    assert linear.csf.penetration_ratio == r0
    assert ratio(drug, 0.01) == pytest.approx(ratio(linear, 0.01), rel=1e-3)  # C_u << K_u: the linear limit
    assert ratio(drug, 250) < 0.8 * ratio(linear, 250)
    huge = drug.replace(uptake_half_saturation=1e9)
    np.testing.assert_allclose(
        csfpk.simulate(huge, csfpk.Regimen.every(amt=1250, ii=24, n=5), t_end=150, dt=1).conc("csf"),
        csfpk.simulate(huge.replace(uptake_half_saturation=None), csfpk.Regimen.every(amt=1250, ii=24, n=5),
                       t_end=150, dt=1).conc("csf"), rtol=1e-6)
    assert ratio(drug, 1250) / ratio(drug, 250) == pytest.approx(0.5, abs=0.06)  # Shriyan 2020, steady state


def test_saturable_uptake_bad_values_and_layout():
    with pytest.raises(ParameterError) as exc:
        csfpk.load_drug("gefitinib").replace(uptake_half_saturation=-0.05)
    assert "uptake_half_saturation = -0.05" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(ParameterError, match="csf_layout='single'"):
        csfpk.build_model(_saturable(), csf_layout="regional")
    assert not csfpk.build_model(_saturable()).linear
    assert csfpk.build_model(_saturable().replace(uptake_half_saturation=None)).linear


def test_osimertinib_160_mg_csf_level_matches_table_1():
    """Issue 13: the shipped file gave 23.5 nM; Table 1 prints 7.51 nM at 160 mg (its row cites BLOOM and Nanjo)."""
    res = csfpk.simulate("osimertinib", csfpk.Regimen.every(amt=160, ii=24, n=28), t_end=672, dt=1)
    csf = res.to_frame(["csf"]).query("time_h >= 648").conc_nM.mean()
    assert csf == pytest.approx(7.51, rel=0.1)


def test_high_dose_fold_changes_match_shriyan_2020():
    """CSF 4 h after the dose, day 15 (high dose) vs day 7 (standard): 1.4-fold erlotinib (fitted)."""
    cal = _calibration()
    row = next(r for r in cal.load_rows() if r["row_id"] == "erl_shr20_csf_fold")
    assert cal.predict(row) == pytest.approx(1.4, rel=0.05)
    linear = csfpk.load_drug("erlotinib").replace(F_dose_threshold=None, F_dose_half=None)
    assert cal.predict(row, linear) > 3.0  # the linear file's 3.4-fold, issue 13


def test_saturable_uptake_jacobian_matches_finite_differences():
    """The stiff solver's Jacobian of the uptake term (a wrong one only costs steps, so check it directly)."""
    from csfpk._kernels.rhs import jacobian, rhs

    model = csfpk.build_model(_saturable(), csf_layout="single")
    K, nl, n = np.ascontiguousarray(model.K), model.nl.copy(), model.n
    x = np.linspace(5.0, 200.0, n)
    x[model.index("central")] = 300.0  # mg: well into saturation (A_sat is about 800 mg)
    J = np.empty((n, n))
    jacobian(1.0, x, K, nl, J)
    fd = np.empty((n, n))
    f0, f1, r = np.empty(n), np.empty(n), np.zeros(n)
    for j in range(n):
        h = 1e-6 * max(1.0, abs(x[j]))
        xp, xm = x.copy(), x.copy()
        xp[j] += h
        xm[j] -= h
        rhs(1.0, xp, K, r, nl, f1)
        rhs(1.0, xm, K, r, nl, f0)
        fd[:, j] = (f1 - f0) / (2 * h)
    np.testing.assert_allclose(J, fd, rtol=1e-6, atol=1e-12)
    assert not np.allclose(J, K)  # the term is really there
