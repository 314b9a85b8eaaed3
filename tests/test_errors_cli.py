"""The error contract of ``csfpk simulate``, regimens, TOML and CSV inputs (issue 14).

Every bad input gives exit status 2 and one line on stderr naming the flag or field, the value and
what is allowed; no traceback, no file left behind. Each case of the issue is one named case here.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import csfpk
from csfpk.cli import main
from csfpk.errors import ScheduleError
from csfpk.regimen import Record, Regimen

REGIMEN_TOML = Path(csfpk.__file__).parent.parent / "params" / "regimens" / "it_mtx_seed.toml"


def run_cli(args, capsys):
    """``csfpk ARGS`` in-process: (exit status, stdout, stderr)."""
    try:
        rc = main(list(args))
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def csv_file(tmp_path, text, name="doses.csv", raw=None):
    p = tmp_path / "in" / name
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(raw if raw is not None else text.encode())
    return str(p)


def regimen_toml(tmp_path, old, new, raw=False):
    text = REGIMEN_TOML.read_text()
    assert old in text
    p = tmp_path / "in" / "it_mtx_seed.toml"
    p.parent.mkdir(exist_ok=True)
    changed = text.replace(old, new, 1)
    p.write_bytes(changed.encode("latin-1") if raw else changed.encode())
    return str(p)


ERLO = ["simulate", "erlotinib"]
# (case name, function of tmp_path giving the argument list, message the one line must contain)
CASES = [
    # silent wrong or empty results
    ("t_end_before_last_dose", lambda t: ERLO + ["--amt", "150", "--ii", "24h", "--n", "28", "--t-end", "48"],
     "--t-end 48 (48 h) ends before the last dose at 648 h"),
    ("dt_1000_zeros_table", lambda t: ERLO + ["--amt", "150", "--dt", "1000"],
     "--dt 1000 (1000 h) is too coarse for the summary window 0–168 h"),
    ("label_dose_and_amt", lambda t: ERLO + ["--label-dose", "--amt", "300"], "--label-dose and --amt conflict"),
    ("bsa_180", lambda t: ERLO + ["--amt", "40 mg/m2", "--bsa", "180"],
     "--bsa = 180.0 is not allowed; expected a body-surface area in [0.1, 4] m2"),
    ("bsa_negative_blames_bsa", lambda t: ERLO + ["--amt", "40 mg/m2", "--bsa", "-1.8"],
     "--bsa = -1.8 is not allowed"),
    ("mg_per_m2_without_bsa", lambda t: ERLO + ["--amt", "40 mg/m2"],
     "--amt = '40 mg/m2' needs a body-surface area: give --bsa (or --weight and --height)"),
    ("weight_out_of_range", lambda t: ERLO + ["--amt", "10 mg/kg", "--weight", "7000"],
     "--weight = 7000.0 is not allowed; expected a body weight in [0.3, 400] kg"),
    # tracebacks before
    ("out_is_existing_file", lambda t: ERLO + ["--amt", "150", "--out", csv_file(t, "x", "taken.txt")],
     "is an existing file; expected a folder"),
    ("csv_into_unwritable_folder", lambda t: ERLO + ["--amt", "150", "--csv", "/proc/csfpk-test/c.csv"],
     "--csv '/proc/csfpk-test/c.csv': folder '/proc' is not writable"),
    ("plot_into_unwritable_folder", lambda t: ERLO + ["--amt", "150", "--plot", "/proc/csfpk-test/c.png"],
     "--plot '/proc/csfpk-test/c.png': folder '/proc' is not writable"),
    ("out_unwritable", lambda t: ERLO + ["--amt", "150", "--out", "/proc/csfpk-test"],
     "--out '/proc/csfpk-test': folder '/proc' is not writable"),
    ("csv_text_in_amt", lambda t: ERLO + ["--regimen", csv_file(t, "TIME,AMT\n0,abc\n")],
     "line 2: AMT = 'abc' is not a number"),
    ("csv_text_in_rate", lambda t: ERLO + ["--regimen", csv_file(t, "TIME,AMT,RATE,CMT\n0,100,fast,iv\n")],
     "line 2: RATE = 'fast' is not a number"),
    ("csv_not_utf8", lambda t: ERLO + ["--regimen", csv_file(t, "", raw=b"TIME,AMT,NOTE\n0,100,caf\xe9\n")],
     "not UTF-8 text (byte 0xe9"),
    ("toml_not_utf8", lambda t: ["simulate", "methotrexate", "--regimen",
                                 regimen_toml(t, 'source = "', 'source = "caf\xe9 ', raw=True)],
     "not UTF-8 text"),
    ("csv_empty", lambda t: ERLO + ["--regimen", csv_file(t, "")], "the file is empty"),
    ("toml_ii_1e-308", lambda t: ["simulate", "methotrexate", "--regimen",
                                  regimen_toml(t, 'ii = "3.5d"', "ii = 1e-308")],
     "phase 1: ii = 1e-308, length = '4w' are not allowed; expected ii in [0.01, 1e6] h"),
    ("ii_1e-308", lambda t: ERLO + ["--amt", "150", "--ii", "1e-308", "--n", "3"],
     "--ii = 1e-308 is not allowed; expected 0 or an interval in [0.01, 1e6] h"),
    ("csv_dose_at_1e308", lambda t: ERLO + ["--regimen", csv_file(t, "TIME,AMT\n1e308,100\n")],
     "time = 1e+308 is not allowed; expected a time in [0, 1e6] h"),
    # silently accepted before
    ("toml_amt_true", lambda t: ["simulate", "methotrexate", "--regimen",
                                 regimen_toml(t, 'amt = "12 mg"', "amt = true")],
     "amt = True is not a dose"),
    ("amt_true_flag", lambda t: ERLO + ["--amt", "true"], "--amt = 'true' is not a dose"),
    ("toml_amt_1e308", lambda t: ["simulate", "methotrexate", "--regimen",
                                  regimen_toml(t, 'amt = "12 mg"', "amt = 1e308")],
     "amt = 1e+308 is not allowed; expected a dose in [0, 1e6] mg"),
    ("amt_1e308_flag", lambda t: ERLO + ["--amt", "1e308"],
     "--amt = 1e+308 is not allowed; expected a dose in [0, 1e6]"),
    ("csv_misspelled_rate", lambda t: ERLO + ["--regimen", csv_file(t, "TIME,AMT,RTAE,CMT\n0,100,50,iv\n")],
     "unknown column(s) ['RTAE'] (did you mean 'RATE'?)"),
    ("csv_header_only", lambda t: ERLO + ["--regimen", csv_file(t, "TIME,AMT,CMT\n")],
     "no records below the header"),
    ("csv_two_subjects_to_regimen", lambda t: ERLO + ["--regimen", csv_file(t, "ID,TIME,AMT\n1,0,100\n2,0,150\n")],
     "holds 2 subjects (1, 2); a Regimen is one subject: read the file with csfpk.read_dataset"),
    ("csv_dv_to_regimen", lambda t: ERLO + ["--regimen", csv_file(t, "TIME,AMT,DV\n0,100,.\n1,0,3.2\n")],
     "['DV'] hold observations, which a Regimen cannot keep"),
    # hangs before (doses expanded in Python regardless of t_end)
    ("n_2_63", lambda t: ERLO + ["--amt", "150", "--ii", "24h", "--n", str(2**63 - 1)], "output times"),
    ("n_1e8", lambda t: ERLO + ["--amt", "150", "--ii", "24h", "--n", "100000000"],
     "the end (last dose + 7 d) = 2.4e+09 h with --dt = 1 h gives 2.4e+09 output times (≈ 115 GB); expected at "
     "most 5e+07"),
    ("csv_addl_1e308", lambda t: ERLO + ["--regimen", csv_file(t, "TIME,AMT,II,ADDL\n0,100,24,1e308\n")],
     "addl = 1e+308 is not allowed; expected an integer in [0, 2**63 - 1]"),
    ("csv_ii_1e-12", lambda t: ERLO + ["--regimen", csv_file(t, "TIME,AMT,II,ADDL\n0,100,1e-12,1000\n")],
     "ii = 1e-12 is not allowed"),
    # conflicting or incomplete flags
    ("data_and_amt", lambda t: ERLO + ["--data", csv_file(t, "ID,TIME,AMT\n1,0,100\n"), "--amt", "5"],
     "--data and --amt conflict"),
    ("regimen_for_other_drug", lambda t: ERLO + ["--regimen", "it_mtx_seed"],
     "--regimen 'it_mtx_seed' is written for 'methotrexate', not 'erlotinib'"),
    ("n_without_ii", lambda t: ERLO + ["--amt", "150", "--n", "3"], "--ii is missing; --n 3 needs a dosing interval"),
    ("ss_without_ii", lambda t: ERLO + ["--amt", "150", "--ss"], "--ii is missing; --ss needs a dosing interval"),
    ("n_text", lambda t: ERLO + ["--amt", "150", "--n", "many"], "--n = 'many' is not allowed"),
    ("bad_duration_unit", lambda t: ERLO + ["--amt", "150", "--ii", "3 fortnights", "--n", "2"],
     "--ii = '3 fortnights' is not a duration"),
    ("bad_infusion_duration", lambda t: ERLO + ["--amt", "150", "--route", "iv", "--duration=-2h"],
     "--duration = '-2h' is not a duration"),
    ("route_not_a_route", lambda t: ERLO + ["--amt", "150", "--route", "brain"],
     "argument --route: invalid choice: 'brain'"),
    ("ss_on_nonlinear_drug", lambda t: ["simulate", "lorlatinib", "--amt", "100", "--ii", "24", "--n", "2", "--ss"],
     "--ss needs a linear model; lorlatinib has saturable or time-dependent clearance"),
    ("unknown_flag", lambda t: ERLO + ["--amt", "150", "--rtae", "5"], "unrecognized arguments: --rtae 5"),
]


@pytest.mark.parametrize("args, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_simulate_error_is_one_line_exit_2(args, message, tmp_path, capsys, monkeypatch):
    if "/proc/" in " ".join(map(str, args(tmp_path))) and not Path("/proc").is_dir():
        pytest.skip("needs Linux /proc as a folder nobody can write into")  # pragma: no cover
    argv = args(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    rc, out, err = run_cli(argv, capsys)
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0], lines[0]
    assert "Traceback" not in err and out == ""
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no partial output


def test_refusals_come_before_work(tmp_path):
    """The 100-million-dose case refuses from the sizes alone (it ran 604 s and took 21 GB before)."""
    with pytest.raises(ScheduleError, match="output times"):
        csfpk.simulate("erlotinib", Regimen.every(amt=150, ii=24, n=100_000_000))
    # the regimen is never expanded: a regimen of 2**63 − 1 doses still answers its end and size at once
    reg = Regimen.every(amt=150, ii=24, n=2**63 - 1)
    assert reg.n_doses == 2**63 - 1 and reg.end == pytest.approx(24.0 * (2**63 - 2))
    with pytest.raises(ScheduleError, match="regimen has 9.22e\\+18 doses; expected at most 1e\\+06"):
        reg.doses()
    assert len(reg.doses(until=48)) == 3
    # simulating its first two days expands only the doses before the end
    res = csfpk.simulate("erlotinib", reg, t_end=48, dt=1)
    assert [d[0] for d in res.doses] == [0.0, 24.0, 48.0]


def test_doses_after_t_end_change_nothing():
    """Expanding only up to t_end is exact: the outputs equal those of the regimen cut at t_end."""
    long = Regimen.every(amt=150, ii=24, n=10_000)
    short = Regimen.every(amt=150, ii=24, n=5)
    a = csfpk.simulate("erlotinib", long, t_end=96, dt=0.5).amounts
    b = csfpk.simulate("erlotinib", short, t_end=96, dt=0.5).amounts
    np.testing.assert_array_equal(a, b)
    # and equal the first 96 h of a longer simulation, which expands more doses
    c = csfpk.simulate("erlotinib", long, t_end=200, dt=0.5).amounts
    np.testing.assert_allclose(a, c[: len(a)], rtol=1e-12, atol=1e-15)


def test_ss_dose_time_shows_steady_state_as_nonmem():
    """NONMEM's output at an SS=1 dose time is the steady state (nmtests scenarios 9–15: CP at t = 0
    equals the next observation's steady-state value), not the empty system before the record."""
    for cmt in ("oral", "iv"):
        reg = Regimen((Record(time=0, amt=100, ii=24, ss=1, addl=3, cmt=cmt),))
        c = csfpk.simulate("erlotinib", reg, t_end=96, dt=1).conc("plasma")
        assert c[0] > 0
        # pre-dose value at a steady-state dose time = the trough one interval later (periodicity)
        assert c[0] == pytest.approx(c[24], rel=1e-9) and c[24] == pytest.approx(c[48], rel=1e-9)


def test_single_layout_it_route_note(capsys):
    rc, out, err = run_cli(["simulate", "methotrexate", "--amt", "12", "--route", "it_ventricular"], capsys)
    assert rc == 0 and err == ""
    assert "note: with --layout single, it_lumbar and it_ventricular both dose the one well-mixed CSF" in out
    rc, out, _ = run_cli(["simulate", "methotrexate", "--amt", "12", "--route", "it_ventricular", "--layout",
                          "regional"], capsys)
    assert rc == 0 and "note:" not in out


def test_label_dose_keeps_n(capsys):
    rc, out, _ = run_cli(["simulate", "erlotinib", "--label-dose", "--n", "3"], capsys)
    assert rc == 0 and "150 mg oral every 24 h × 3 (label dose)" in out


def test_cli_parity_infusion_ss_regimen_file_units(tmp_path, capsys):
    rc, out, _ = run_cli(["simulate", "erlotinib", "--amt", "0.15 g", "--route", "iv", "--duration", "30min",
                          "--csv", str(tmp_path / "a.csv")], capsys)
    assert rc == 0 and "150 mg iv over 0.5 h" in out
    frame = __import__("pandas").read_csv(tmp_path / "a.csv")
    plasma = frame[frame.compartment == "plasma"].set_index("time_h").conc_mg_L
    assert plasma.idxmax() == pytest.approx(0.5, abs=0.5)  # an infusion peaks at its end (1 h grid)
    # --ss: the first interval is already at steady state, so trough at 0 equals trough at 24 h
    rc, out, _ = run_cli(["simulate", "erlotinib", "--amt", "150000 ug", "--ii", "qd", "--n", "2", "--ss",
                          "--t-end", "2 days", "--csv", str(tmp_path / "b.csv")], capsys)
    assert rc == 0
    b = __import__("pandas").read_csv(tmp_path / "b.csv")
    p = b[b.compartment == "plasma"].set_index("time_h").conc_mg_L
    assert p[0.0] == pytest.approx(p[24.0], rel=1e-6) and p[0.0] > 0
    # a regimen file by name
    rc, out, _ = run_cli(["simulate", "methotrexate", "--regimen", "it_mtx_seed", "--dt", "6h"], capsys)
    assert rc == 0 and "it_mtx_seed" in out and "17 dose(s) given" in out


def test_debug_anywhere_and_version(capsys):
    with pytest.raises(ScheduleError):
        main(["simulate", "erlotinib", "--amt", "-5", "--debug"])
    with pytest.raises(ScheduleError):
        main(["--debug", "simulate", "erlotinib", "--amt", "-5"])
    capsys.readouterr()
    rc, out, _ = run_cli(["--version"], capsys)
    assert rc == 0 and out.strip() == f"csfpk {csfpk.__version__}"


def test_plot_title_names_regimen_and_units(tmp_path, capsys, monkeypatch):
    import matplotlib.figure

    saved = {}
    from csfpk import plot

    def keep(fig, path, **kw):
        saved["fig"] = fig

    monkeypatch.setattr(plot, "save", keep)
    rc, _, _ = run_cli(["simulate", "erlotinib", "--amt", "150", "--ii", "24h", "--n", "3", "--plot",
                        str(tmp_path / "c.png")], capsys)
    assert rc == 0 and isinstance(saved["fig"], matplotlib.figure.Figure)
    ax = saved["fig"].axes[0]
    assert ax.get_title() == "erlotinib: 150 mg oral every 24 h × 3"
    assert "(nM)" in ax.get_ylabel() and "(days)" in ax.get_xlabel()


@pytest.mark.parametrize("argv", [
    ["simulate", "erlotinib", "--amt", "150", "--t-end", "1h", "--dt", "1000"],
    ["simulate", "erlotinib", "--amt", "150", "--ii", "24h", "--n", "100000000"],
])
def test_subprocess_one_line_and_fast(argv, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(csfpk.__file__).parent.parent))
    r = subprocess.run([sys.executable, "-m", "csfpk.cli", *argv], capture_output=True, text=True, cwd=tmp_path,
                       env=env, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


SWEEP = """
schema = "csfpk.sweep/1"
name = "tiny"
t_end = "3d"
[populations.default]
n = 5
[regimens.a]
amt = 80
ii = "24h"
source = "test"
{label}
[[grid]]
drugs = {drugs}
regimens = {regimens}
"""


@pytest.mark.parametrize("label, drugs, regimens, message", [
    ("label = 3", '["osimertinib"]', '["a"]', "label = 3 is not allowed; expected non-empty text"),
    ("", '["osimertinib"]', '[""]', "regimens entry '' is not allowed; expected the name of a defined regimen"),
    ("", '[""]', '["a"]', "drugs entry '' is not allowed"),
    ("", '["osimertinib", ["erlotinib"]]', '["a"]', "drugs entry ['erlotinib'] is not allowed"),
])
def test_sweep_label_and_grid_entries(tmp_path, capsys, label, drugs, regimens, message):
    """Fixed in sweep.py's validation (a blank message and a TypeError before)."""
    p = tmp_path / "tiny.toml"
    p.write_text(SWEEP.format(label=label, drugs=drugs, regimens=regimens))
    with pytest.raises(csfpk.CsfpkError, match=message.replace("[", r"\[").replace("(", r"\(")):
        csfpk.load_sweep(p)


def test_timeline_without_grid_keeps_every_dose_and_counts_first():
    from csfpk.schedule import build_timeline

    model = csfpk.build_model(csfpk.load_drug("erlotinib"))
    tl = build_timeline(model, Regimen.every(amt=150, ii=24, n=4), None)  # the whole regimen, no horizon
    assert [d[0] for d in tl.doses] == [0.0, 24.0, 48.0, 72.0]
    with pytest.raises(ScheduleError, match=r"the regimen gives 9.22e\+18 doses up to t = inf h; expected at most"):
        build_timeline(model, Regimen.every(amt=150, ii=24, n=2**63 - 1), None)


def test_validate_user_files(tmp_path, capsys):
    data = tmp_path / "trial.csv"
    data.write_text("ID,TIME,AMT,DV\n1,0,100,.\n1,2,0,3.1\n2,0,100,.\n")
    doses = tmp_path / "doses.csv"
    doses.write_text("TIME,AMT,II,ADDL\n0,150,24,27\n")
    rc, out, _ = run_cli(["validate", str(data), str(doses), str(REGIMEN_TOML)], capsys)
    assert rc == 0
    assert out.splitlines() == [f"ok: {data}: dataset, 2 subject(s), 3 records",
                                f"ok: {doses}: regimen CSV, 28 dose(s)", f"ok: {REGIMEN_TOML}: regimen for methotrexate"]
    bad = tmp_path / "x.toml"
    bad.write_text("x = 1\n")
    rc, out, err = run_cli(["validate", str(data), str(bad)], capsys)
    assert rc == 2 and out == "" and err.strip().endswith("schema = None; expected 'csfpk.drug/1', 'csfpk.regimen/1', "
                                                         "'csfpk.sweep/1' or 'csfpk.physiology/1', or a .csv dataset")


def test_data_with_plot_refused_before_work(tmp_path, capsys):
    data = tmp_path / "trial.csv"
    data.write_text("ID,TIME,AMT\n1,0,100\n")
    rc, out, err = run_cli(["simulate", "erlotinib", "--data", str(data), "--plot", str(tmp_path / "p.png")], capsys)
    assert rc == 2 and "--plot is not available with --data" in err and not (tmp_path / "p.png").exists()


def test_every_help_example_runs(tmp_path, capsys, monkeypatch):
    import shlex

    from csfpk.cli import EPILOG_SIMULATE

    monkeypatch.chdir(tmp_path)
    (tmp_path / "trial.csv").write_text("ID,TIME,AMT,CMT,RATE,DV,CRCL\n1,0,500,2,3000,.,90\n1,2,0,2,0,25,90\n")
    examples = [shlex.split(line.strip())[1:] for line in EPILOG_SIMULATE.splitlines()
                if line.strip().startswith("csfpk")]
    assert len(examples) >= 7
    for argv in examples:
        rc, out, err = run_cli(argv, capsys)
        assert rc == 0 and err == "", (argv, err)


def test_subject_covariates_reported(capsys):
    rc, out, _ = run_cli(["simulate", "pemetrexed", "--amt", "500 mg/m2", "--weight", "70", "--height", "175",
                          "--crcl", "45", "--route", "iv", "--duration", "10min"], capsys)
    assert rc == 0
    assert ("subject: weight 70 kg, CrCl 45 mL/min, BSA 1.848 m2 (Du Bois, from --weight and --height); covariate "
            "models give CL 4.182 L/h (file: 5.496)") in out
    assert "pemetrexed: 924.07" in out  # 500 mg/m2 × 1.848 m2
    rc, out, _ = run_cli(["simulate", "erlotinib", "--amt", "150", "--weight", "90"], capsys)
    assert "subject: weight 90 kg; no covariate model of the drug file uses them" in out
