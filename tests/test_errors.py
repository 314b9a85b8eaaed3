"""Every kind of bad input raises a clear error naming the field, the value and what is allowed."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import csfpk
from csfpk.errors import ParameterError, ScheduleError, SolverError
from csfpk.regimen import Record, Regimen

ERLOTINIB = Path(csfpk.load_drug("erlotinib").path).read_text()


def drug_file(tmp_path, text, name="erlotinib"):
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


def edit(old, new):
    assert old in ERLOTINIB
    return ERLOTINIB.replace(old, new, 1)


# ---------------------------------------------------------------- drug files
def test_unknown_drug_lists_known_ones():
    with pytest.raises(ParameterError, match=r"unknown drug 'aspirin'; known: .*erlotinib"):
        csfpk.load_drug("aspirin")


def test_missing_parameter_named(tmp_path):
    text = "\n".join(line for line in ERLOTINIB.splitlines() if not line.startswith("CL "))
    with pytest.raises(ParameterError, match=r"\[plasma\]: missing required key\(s\) \['CL'\]"):
        csfpk.load_drug(drug_file(tmp_path, text))


def test_misspelled_parameter_named(tmp_path):
    with pytest.raises(ParameterError, match=r"unknown key\(s\) \['Cl'\]"):
        csfpk.load_drug(drug_file(tmp_path, edit("\nCL ", "\nCl ")))


def test_wrong_unit_named(tmp_path):
    with pytest.raises(ParameterError, match=r"CL.unit = 'mL/min' is not allowed; expected 'L/h'"):
        csfpk.load_drug(drug_file(tmp_path, edit('value = 3.95, unit = "L/h"', 'value = 3.95, unit = "mL/min"')))


def test_text_instead_of_number(tmp_path):
    with pytest.raises(ParameterError, match=r"CL.value = '3.95' is not a number"):
        csfpk.load_drug(drug_file(tmp_path, edit("value = 3.95,", 'value = "3.95",')))


def test_nan_value(tmp_path):
    with pytest.raises(ParameterError, match=r"CL.value = nan is not allowed; expected a number in \(0, inf\] L/h"):
        csfpk.load_drug(drug_file(tmp_path, edit("value = 3.95,", "value = nan,")))


def test_negative_volume(tmp_path):
    with pytest.raises(ParameterError, match=r"V1.value = -233 is not allowed"):
        csfpk.load_drug(drug_file(tmp_path, edit("value = 233,", "value = -233,")))


def test_fraction_out_of_range(tmp_path):
    with pytest.raises(ParameterError, match=r"fu.value = 1.07 is not allowed; expected a number in \(0, 1\]"):
        csfpk.load_drug(drug_file(tmp_path, edit("value = 0.07,", "value = 1.07,")))


def test_missing_source(tmp_path):
    text = edit('ka   = { value = 0.95, unit = "1/h", source = "Lu 2006 Clin Pharmacol Ther 80:136, abstract (final single-agent model)" }',
                'ka   = { value = 0.95, unit = "1/h" }')
    with pytest.raises(ParameterError, match=r"ka is missing 'source'"):
        csfpk.load_drug(drug_file(tmp_path, text))


def test_malformed_toml(tmp_path):
    with pytest.raises(ParameterError, match=r"not valid TOML"):
        csfpk.load_drug(drug_file(tmp_path, ERLOTINIB.replace("[plasma]", "[plasma")))


def test_name_must_match_file(tmp_path):
    with pytest.raises(ParameterError, match=r"name = 'erlotinib' must equal the file name 'other'"):
        csfpk.load_drug(drug_file(tmp_path, ERLOTINIB, name="other"))


def test_half_life_longer_than_bulk_flow_allows():
    drug = csfpk.load_drug("erlotinib").replace(equilibration_half_life=10.0)
    with pytest.raises(ParameterError, match=r"equilibration_half_life = 10 h is longer than CSF bulk flow alone allows"):
        csfpk.build_model(drug)


def test_replace_unknown_parameter():
    with pytest.raises(ParameterError, match=r"cannot replace unknown parameter\(s\) \['clearance'\]"):
        csfpk.load_drug("erlotinib").replace(clearance=3.0)


def test_python_construction_is_checked_too():
    with pytest.raises(ParameterError, match=r"CL = -1 is not allowed"):
        csfpk.PlasmaPK(CL=-1, V1=10)
    with pytest.raises(ParameterError, match=r"\['Q'\] given without \['V2'\]"):
        csfpk.PlasmaPK(CL=1, V1=10, Q=2)


# ---------------------------------------------------------------- doses and schedules
@pytest.mark.parametrize("kwargs,pattern", [
    (dict(amt=-150, ii=24, n=2), r"amt = -150 is not allowed; expected a finite dose > 0 mg"),
    (dict(amt=math.nan, ii=24, n=2), r"amt = nan is not allowed"),
    (dict(amt=150, ii=0, n=3), r"ii = 0.0 is not allowed for n = 3 doses"),
    (dict(amt=150, ii="3 fortnights", n=2), r"ii = '3 fortnights' is not a duration"),
    (dict(amt=150, ii=24, n=0), r"n = 0 is not allowed; expected an integer number of doses >= 1"),
    (dict(amt=150, ii=24, n=2.5), r"n = 2.5 is not allowed"),
    (dict(amt="40 mg/m2", ii=24, n=2), r"needs a body-surface area"),
    (dict(amt="12 mL", ii=24, n=2), r"amt = '12 mL' is not a dose"),
])
def test_bad_regimen_builder(kwargs, pattern):
    with pytest.raises(ScheduleError, match=pattern):
        Regimen.every(**kwargs)


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(time=0, amt=10, addl=3), r"addl = 3 additional doses need ii > 0 h"),
    (dict(time=0, amt=10, ss=1), r"ss = 1 needs ii > 0 h"),
    (dict(time=-1, amt=10), r"time = -1 is not allowed"),
    (dict(time=0, amt=10, evid=7), r"evid = 7 is not allowed; expected 0, 1, 2, 3 or 4"),
    (dict(time=0, amt=10, rate=-3), r"rate = -3 is not allowed; expected a rate in \[0, 1e6\] mg/h, -1 .* or -2"),
    (dict(time=0, amt=10, addl=1.5, ii=12), r"addl = 1.5 is not allowed"),
    (dict(time=0, amt=0), r"needs amt > 0 mg"),
])
def test_bad_record(kwargs, pattern):
    with pytest.raises(ScheduleError, match=pattern):
        Record(**kwargs)


def test_unknown_route_for_model():
    model = csfpk.build_model(csfpk.load_drug("erlotinib"), csf_layout="none")
    with pytest.raises(ScheduleError, match=r"route not available .* allowed routes: \['iv', 'oral'\]"):
        csfpk.simulate(model, Regimen.every(amt=10, ii=24, n=1, route="it_lumbar"), t_end=24)


def test_dose_into_unknown_compartment():
    with pytest.raises(ScheduleError, match=r"cmt = 'brain' is not a compartment of this model"):
        csfpk.simulate("erlotinib", Regimen((Record(time=0, amt=10, cmt="brain"),)), t_end=24)
    with pytest.raises(ScheduleError, match=r"cmt = 9 is not allowed; expected 1..4 \(depot, central, csf, csf_drainage\)"):
        csfpk.simulate("erlotinib", Regimen((Record(time=0, amt=10, cmt=9),)), t_end=24)


def test_modelled_rate_without_model_rate():
    with pytest.raises(ScheduleError, match=r"rate = -1 needs a modelled infusion rate for compartment 'central'"):
        csfpk.simulate("erlotinib", Regimen((Record(time=0, amt=10, cmt="iv", rate=-1),)), t_end=24)


def test_csv_out_of_order_and_bad_values(tmp_path):
    p = tmp_path / "doses.csv"
    p.write_text("time,amt,cmt\n24,150,oral\n0,150,oral\n")
    with pytest.raises(ScheduleError, match=r"line 3: time = 0 is before the previous record's 24"):
        Regimen.from_csv(p)
    p.write_text("time,amt,cmt\n0,-5,oral\n")
    with pytest.raises(ScheduleError, match=r"line 2: .*amt = -5 is not allowed"):
        Regimen.from_csv(p)
    p.write_text("amt,cmt\n5,oral\n")
    with pytest.raises(ScheduleError, match=r"missing column 'time'"):
        Regimen.from_csv(p)


def test_bad_simulate_arguments():
    reg = Regimen.every(amt=150, ii=24, n=2)
    with pytest.raises(ScheduleError, match=r"dt = 0.0 is not allowed"):
        csfpk.simulate("erlotinib", reg, t_end=48, dt=0)
    with pytest.raises(ParameterError, match=r"method = 'rk4' is not allowed"):
        csfpk.simulate("erlotinib", reg, t_end=48, method="rk4")
    with pytest.raises(ParameterError, match=r"csf_layout = 'brain' is not allowed"):
        csfpk.simulate("erlotinib", reg, t_end=48, csf_layout="brain")
    with pytest.raises(ParameterError, match=r"method = 'exact' needs a linear time-invariant model"):
        csfpk.simulate("lorlatinib", reg, t_end=48, method="exact")
    with pytest.raises(ScheduleError, match=r"regimen = .* is not a Regimen"):
        csfpk.simulate("erlotinib", {"amt": 150}, t_end=48)


def test_steady_state_on_nonlinear_model_refused():
    reg = Regimen((Record(time=0, amt=100, ii=24, ss=1),))
    with pytest.raises(ScheduleError, match=r"steady-state records .* need a linear model"):
        csfpk.simulate("lorlatinib", reg, t_end=48)


def test_solver_failure_reports_status():
    with pytest.raises(SolverError, match=r"MAX_STEPS: the adaptive solver hit its step limit"):
        csfpk.solve(csfpk.build_model(csfpk.load_drug("erlotinib")), Regimen.every(amt=150, ii=24, n=3),
                    np.arange(0, 72.0), method="adaptive", max_steps=3)


def test_csv_export_roundtrip_and_atomic(tmp_path):
    reg = Regimen.phases((12, "3.5d", "4w"), (12, "1w", "4w"), route="it_lumbar")
    p = tmp_path / "reg.csv"
    reg.to_csv(p)
    back = Regimen.from_csv(p)
    assert [(r.time, r.amt, r.cmt, r.ii, r.addl) for r in back.records] == \
        [(r.time, r.amt, r.cmt, r.ii, r.addl) for r in reg.records]
    assert [f.name for f in tmp_path.iterdir()] == ["reg.csv"]  # no temporary file left
    # NONMEM's columns, one row per record: 12 mg twice weekly for 4 weeks (8 doses = 1 + addl 7), then weekly
    frame = pd.read_csv(p)
    assert list(frame.columns) == ["time", "evid", "amt", "cmt", "rate", "ii", "addl", "ss"]
    assert frame[["time", "amt", "ii", "addl"]].values.tolist() == [[0.0, 12.0, 84.0, 7], [672.0, 12.0, 168.0, 3]]
    assert set(frame["cmt"]) == {"it_lumbar"} and set(frame["evid"]) == {1}
