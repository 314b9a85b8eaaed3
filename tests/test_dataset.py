"""NONMEM-style datasets: many subjects in, each simulated with its own records and covariates, out again."""

import io

import numpy as np
import pandas as pd
import pytest

import csfpk
from csfpk.dataset import read_dataset, simulate_dataset, write_dataset
from csfpk.drug import bsa_du_bois, bsa_mosteller
from csfpk.errors import ParameterError, ScheduleError
from csfpk.regimen import Record, Regimen

ERLOTINIB = open(csfpk.load_drug("erlotinib").path).read()
ALLOMETRY = """
[covariates.CL]
weight = { model = "power", coefficient = 0.75, reference = 70, unit = "kg", source = "assumed: standard allometric exponents, Holford 1996" }
[covariates.V1]
weight = { model = "power", coefficient = 1.0, reference = 70, unit = "kg", source = "assumed: standard allometric exponents, Holford 1996" }
"""

TWO = """ID,TIME,EVID,AMT,CMT,RATE,II,ADDL,SS,DV,MDV,WT,HT,AGE
1,0,1,150,1,0,24,2,0,.,1,50,160,61
1,12,0,0,2,0,0,0,0,1.1,0,50,160,61
1,60,0,0,2,0,0,0,0,1.9,0,50,160,61
2,0,1,150,1,0,24,2,0,.,1,100,185,47
2,12,0,0,2,0,0,0,0,0.8,0,100,185,47
2,60,0,0,2,0,0,0,0,1.2,0,100,185,47
"""


@pytest.fixture
def allometric_erlotinib(tmp_path):
    p = tmp_path / "erlotinib.toml"
    p.write_text(ERLOTINIB + ALLOMETRY)
    return csfpk.load_drug(p)


def test_two_subjects_different_weight_give_different_cl(allometric_erlotinib):
    drug = allometric_erlotinib
    data = read_dataset(io.StringIO(TWO))
    assert [s.id for s in data.subjects] == [1, 2]
    assert [s.covariates["weight_kg"] for s in data.subjects] == [50.0, 100.0]
    cl = [drug.for_subject(**s.covariates).plasma.CL for s in data.subjects]
    assert cl[0] == pytest.approx(drug.plasma.CL * (50 / 70) ** 0.75, rel=1e-12)
    assert cl[1] == pytest.approx(drug.plasma.CL * (100 / 70) ** 0.75, rel=1e-12)
    summary = data.summary(drug)
    assert summary.CL_L_h.tolist() == [round(c, 4) for c in cl]
    out = simulate_dataset(drug, data)
    plasma = out[(out.compartment == "plasma") & (out.EVID == 0)]
    # same doses, the heavier subject has the larger V and CL: lower concentrations at every sample
    c1 = plasma[plasma.ID == 1].conc_mg_L.to_numpy()
    c2 = plasma[plasma.ID == 2].conc_mg_L.to_numpy()
    assert np.all(c2 < c1)
    # and each subject equals a one-subject simulation of the drug changed by its covariates
    for s in data.subjects:
        d = drug.for_subject(**s.covariates)
        ref = csfpk.simulate(d, s.regimen, t_end=60, dt=12).conc("plasma")
        got = plasma[plasma.ID == s.id].conc_mg_L.to_numpy()
        np.testing.assert_allclose(got, ref[[1, 5]], rtol=1e-12)


def test_file_drug_without_weight_model_ignores_weight():
    data = read_dataset(io.StringIO(TWO))
    out = simulate_dataset("erlotinib", data)
    plasma = out[(out.compartment == "plasma") & (out.EVID == 0)]
    np.testing.assert_array_equal(plasma[plasma.ID == 1].conc_mg_L.to_numpy(),
                                  plasma[plasma.ID == 2].conc_mg_L.to_numpy())


def test_pemetrexed_crcl_on_cl():
    drug = csfpk.load_drug("pemetrexed")
    assert drug.covariates_used == ["crcl_mL_min"]
    q = drug.quantities["covariates.CL.crcl"]
    assert q.value == 0.0292 and "Ouellet2000" in q.source
    assert drug.for_subject(crcl_mL_min=90).plasma.CL == pytest.approx(5.496)
    assert drug.for_subject(crcl_mL_min=45).plasma.CL == pytest.approx(5.496 - 0.0292 * 45)
    assert drug.for_subject().plasma.CL == drug.plasma.CL
    with pytest.raises(ParameterError, match=r"covariate model gives CL = -.* for crcl_mL_min = 0"):
        drug.replace(CL=2.0).for_subject(crcl_mL_min=0)


def test_round_trip_ids_covariates_observations(tmp_path, allometric_erlotinib):
    data = read_dataset(io.StringIO(TWO))
    out = simulate_dataset(allometric_erlotinib, data)
    # DV and predictions side by side on the same rows
    obs = out[(out.compartment == "plasma") & (out.MDV == 0)]
    assert obs.DV.tolist() == [1.1, 1.9, 0.8, 1.2] and (obs.conc_mg_L > 0).all()
    path = tmp_path / "pred.csv"
    write_dataset(out, path)
    written = pd.read_csv(path, na_values=".")
    assert list(written.columns[:11]) == ["ID", "TIME", "EVID", "AMT", "CMT", "RATE", "II", "ADDL", "SS", "DV", "MDV"]
    assert {"PLASMA_MG_L", "PLASMA_NM", "CSF_NM"} <= set(written.columns) and len(written) == 6
    back = read_dataset(path)
    assert [s.id for s in back.subjects] == [s.id for s in data.subjects]
    assert [s.covariates for s in back.subjects] == [s.covariates for s in data.subjects]
    assert [s.regimen.records for s in back.subjects] == [s.regimen.records for s in data.subjects]
    assert back.table.AGE.tolist() == ["61"] * 3 + ["47"] * 3  # other columns are carried through
    np.testing.assert_allclose(written.PLASMA_MG_L[written.MDV == 0], obs.conc_mg_L, rtol=1e-12)
    # simulating the written file again gives the same predictions
    again = simulate_dataset(allometric_erlotinib, back)
    np.testing.assert_allclose(again.conc_mg_L, out.conc_mg_L, rtol=0, atol=0)


def test_bsa_derived_from_weight_and_height():
    data = read_dataset(io.StringIO(TWO))
    assert data.subjects[0].covariates["bsa_m2"] == pytest.approx(bsa_du_bois(50, 160))
    # the published formulas: Du Bois 1916 and Mosteller 1987 agree within ~2 % for adults
    assert bsa_du_bois(70, 175) == pytest.approx(0.007184 * 70**0.425 * 175**0.725)
    assert bsa_mosteller(70, 175) == pytest.approx((70 * 175 / 3600) ** 0.5)
    assert abs(bsa_du_bois(70, 175) / bsa_mosteller(70, 175) - 1) < 0.02
    given = read_dataset(io.StringIO("ID,TIME,AMT,WT,HT,BSA\n1,0,100,70,175,2.0\n"))
    assert given.subjects[0].covariates["bsa_m2"] == 2.0  # a given BSA wins


def test_column_names_any_case_and_nonmem_missing_values():
    text = "id,Time,amt,cmt,Ii,addl,Dv,wt\n7,0,100,1,24,1,.,70\n7,30,.,2,.,.,4.5,70\n"
    data = read_dataset(io.StringIO(text))
    s = data.subjects[0]
    assert s.id == 7 and s.regimen.records[0].addl == 1 and s.regimen.records[1].evid == 0
    assert data.table.MDV.tolist() == [1, 0]


def test_regimen_from_csv_refuses_dataset_and_keeps_one_subject(tmp_path):
    p = tmp_path / "two.csv"
    p.write_text(TWO)
    with pytest.raises(ScheduleError, match=r"unknown column\(s\) \['DV', 'MDV', 'WT', 'HT', 'AGE'\]"):
        Regimen.from_csv(p)
    p.write_text("ID,TIME,AMT\n1,0,100\n2,0,100\n")
    with pytest.raises(ScheduleError, match=r"holds 2 subjects \(1, 2\); a Regimen is one subject: read the file "
                                            r"with csfpk.read_dataset"):
        Regimen.from_csv(p)
    p.write_text("ID,TIME,AMT\n1,0,100\n1,24,100\n")
    assert Regimen.from_csv(p).records == (Record(time=0, amt=100), Record(time=24, amt=100))


@pytest.mark.parametrize("text, message", [
    ("TIME,AMT\n0,100\n", "missing column 'ID'"),
    ("ID,TIME,AMT,RTAE\n1,0,100,5\n", "unknown column(s) ['RTAE'] (did you mean 'RATE'?)"),
    ("ID,TIME,AMT\n1,0,100\n2,0,100\n1,24,100\n", "line 4: ID 1 appears again after other subjects' records"),
    ("ID,TIME,AMT,WT\n1,0,100,7000\n", "line 2: WT = 7000.0 is not allowed; expected a body weight in [0.3, 400] kg"),
    ("ID,TIME,AMT,CRCL\n1,0,100,high\n", "line 2: CRCL = 'high' is not a number"),
    ("ID,TIME,AMT,DV,MDV\n1,0,100,.,1\n1,2,0,.,0\n", "line 3: DV is missing on an observation record"),
    ("ID,TIME,AMT,MDV\n1,0,100,2\n", "line 2: MDV = '2' is not allowed; expected 0 or 1"),
    ("ID,TIME,AMT\n1,24,100\n1,0,100\n", "line 3: time = 0 is before the previous record's 24"),
    ("ID,TIME,AMT\n", "no records below the header"),
    ("ID,TIME,AMT,WT,WEIGHT\n1,0,100,70,70\n", "columns 'WT' and 'WEIGHT' both give weight_kg"),
    ("ID,TIME,AMT\n.,0,100\n", "line 2: ID is missing"),
])
def test_bad_dataset_one_clear_line(text, message):
    with pytest.raises(ScheduleError) as info:
        read_dataset(io.StringIO(text))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_common_columns_near_field_names_are_kept():
    data = read_dataset(io.StringIO("ID,TIME,AMT,DATE,DOSE\n1,0,100,2024-01-01,100\n"))
    assert data.table.DATE.tolist() == ["2024-01-01"]


def test_cli_data(tmp_path, capsys, allometric_erlotinib):
    from csfpk.cli import main

    p = tmp_path / "two.csv"
    p.write_text(TWO)
    drug_path = allometric_erlotinib.path
    assert main(["simulate", drug_path, "--data", str(p), "--csv", str(tmp_path / "pred.csv")]) == 0
    out = capsys.readouterr().out
    assert "2 subject(s), 6 records" in out and "CL_L_h" in out
    back = read_dataset(tmp_path / "pred.csv")
    assert back.n_subjects == 2


def test_additive_effects_before_multiplicative(tmp_path):
    """TVCL = (θ + slope·(CrCl − ref)) · (WT/70)^0.75, the usual NONMEM coding, whatever the order in the file."""
    p = tmp_path / "erlotinib.toml"
    p.write_text(ERLOTINIB + """
[covariates.CL]
weight = { model = "power", coefficient = 0.75, reference = 70, unit = "kg", source = "assumed: Holford 1996" }
crcl = { model = "linear", coefficient = 0.02, reference = 90, unit = "mL/min", source = "assumed: test" }
[covariates.V1]
bsa = { model = "exponential", coefficient = 0.5, reference = 1.8, unit = "m2", source = "assumed: test" }
""")
    drug = csfpk.load_drug(p)
    d = drug.for_subject(weight_kg=35, crcl_mL_min=40, bsa_m2=2.0)
    assert d.plasma.CL == pytest.approx((drug.plasma.CL + 0.02 * (40 - 90)) * 0.5**0.75, rel=1e-12)
    assert d.plasma.V1 == pytest.approx(drug.plasma.V1 * np.exp(0.5 * 0.2), rel=1e-12)
    assert drug.covariates_used == ["bsa_m2", "crcl_mL_min", "weight_kg"]


@pytest.mark.parametrize("table, message", [
    ('[covariates.CL]\nweight = { model = "cubic", coefficient = 1, reference = 70, unit = "kg", source = "x" }',
     "weight.model = 'cubic' is not allowed; expected one of ('power', 'linear', 'exponential')"),
    ('[covariates.CL]\nweight = { model = "power", coefficient = 1, reference = 70, unit = "lb", source = "x" }',
     "weight.unit = 'lb' is not allowed; expected 'kg'"),
    ('[covariates.CL]\nage = { model = "power", coefficient = 1, reference = 70, unit = "y", source = "x" }',
     "unknown key(s) ['age']"),
    ('[covariates.Vmax]\nweight = { model = "power", coefficient = 1, reference = 70, unit = "kg", source = "x" }',
     "'Vmax' is not a plasma parameter of this drug"),
    ('[covariates.CL]\nweight = { model = "power", coefficient = 1, reference = 0, unit = "kg", source = "x" }',
     "weight.reference = 0 is not allowed"),
    ('[covariates.CL]\nweight = { model = "power", coefficient = 1, reference = 70, unit = "kg", source = "" }',
     "weight.source = '' must be a non-empty citation"),
])
def test_bad_covariate_schema(tmp_path, table, message):
    p = tmp_path / "erlotinib.toml"
    p.write_text(ERLOTINIB + "\n" + table + "\n")
    with pytest.raises(ParameterError) as info:
        csfpk.load_drug(p)
    assert message in str(info.value)


def test_time_varying_weight_matches_piecewise_scipy(allometric_erlotinib):
    """WT 50 kg until 24 h, then 100 kg (carried forward); an oral dose at 0 and an infusion running
    across the change (20–30 h). Oracle: scipy Radau with the 50-kg K before 24 h and the 100-kg K after."""
    from scipy.integrate import solve_ivp

    drug = allometric_erlotinib
    text = ("ID,TIME,AMT,CMT,RATE,DV,WT\n1,0,150,1,0,.,50\n1,6,0,2,0,1,.\n1,20,100,2,10,.,50\n"
            "1,24,0,2,0,1,100\n1,26,0,2,0,1,100\n1,48,0,2,0,1,.\n")
    data = read_dataset(io.StringIO(text))
    assert [(j, c["weight_kg"]) for j, c in data.subjects[0].segments] == [(0, 50.0), (3, 100.0)]
    got = simulate_dataset(drug, data)
    got = got[got.compartment == "plasma"].conc_mg_L.to_numpy()
    m1 = csfpk.build_model(drug.for_subject(weight_kg=50))
    m2 = csfpk.build_model(drug.for_subject(weight_kg=100))
    c, d = m1.states.index("central"), m1.states.index("depot")

    def f(t, x, K):
        dx = K @ x
        dx[c] += 10.0 if 20 <= t < 30 else 0.0
        return dx

    x = np.zeros(m1.n)
    x[d] = 150 * m1.bioavailability[d]
    ts, at = [0, 6, 20, 24, 26, 48], {0: x.copy()}
    for a, b, K in [(0, 20, m1.K), (20, 24, m1.K), (24, 30, m2.K), (30, 48, m2.K)]:
        sol = solve_ivp(f, (a, b), x, method="Radau", rtol=1e-11, atol=1e-14, args=(K,), dense_output=True)
        at.update({t: sol.sol(t) for t in ts if a < t <= b})
        x = sol.y[:, -1]
    ref = np.array([at[t][c] / (m1 if t < 24 else m2).outputs["plasma"][1] for t in ts])
    np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-12)
    # constant covariates through the segment machinery give the one-run result
    const = read_dataset(io.StringIO(text.replace(",100\n", ",50\n")))
    assert const.subjects[0].segments == ()


def test_simulate_with_covariates():
    reg = Regimen.every(amt=500, ii=24, n=1, route="iv", duration="10min")
    low = csfpk.simulate("pemetrexed", reg, t_end=24, covariates={"crcl_mL_min": 45})
    ref = csfpk.simulate(csfpk.load_drug("pemetrexed").for_subject(crcl_mL_min=45), reg, t_end=24)
    typical = csfpk.simulate("pemetrexed", reg, t_end=24)
    np.testing.assert_array_equal(low.amounts, ref.amounts)
    assert low.conc("plasma")[-1] > typical.conc("plasma")[-1]  # lower CrCl, lower CL, higher trough
    with pytest.raises(ScheduleError, match=r"crcl_mL_min = -4 is not allowed; expected a creatinine clearance"):
        csfpk.simulate("pemetrexed", reg, t_end=24, covariates={"crcl_mL_min": -4})
    with pytest.raises(ParameterError, match=r"covariates \['age'\] are not allowed"):
        csfpk.simulate("pemetrexed", reg, t_end=24, covariates={"age": 60})
