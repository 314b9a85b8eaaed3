"""Fuzzing the error contract (issue 14): ``csfpk simulate`` arguments, regimen and drug TOML files and
NONMEM-style CSV files, mutated by hypothesis.

For every input: exit 0, or exit 2 with exactly one line on stderr; never a traceback or a hang
(each run is stopped by SIGALRM after ``LIMIT_S``); no output left on exit 2; no NaN in the table
of an exit-0 run. The inputs that broke the contract before are replayed as named cases
(``tests/test_errors_cli.py`` CASES) through the same checker. Bounded to run in seconds.
"""

import contextlib
import io
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import csfpk
from csfpk.cli import main

from test_errors_cli import CASES

ROOT = Path(csfpk.__file__).parent.parent
ERLOTINIB = (ROOT / "params" / "drugs" / "erlotinib.toml").read_text()
REGIMEN = (ROOT / "params" / "regimens" / "it_mtx_seed.toml").read_text()
SWEEP = (ROOT / "params" / "sweeps" / "it_frequency.toml").read_text()
LIMIT_S = 30
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"no answer within {LIMIT_S} s")


FILE = object()  # stands for the input file in the argv of ``contract_with_file``


def contract_with_file(name, data, argv):
    """Write ``data`` (bytes) to ``in/<name>`` of a fresh folder and run ``contract`` there, ``FILE`` in ``argv``
    replaced by that file's path."""
    with tempfile.TemporaryDirectory() as folder:
        p = Path(folder) / "in" / name
        p.parent.mkdir()
        p.write_bytes(data)
        return contract([p if a is FILE else a for a in argv], folder)


def contract(argv, folder):
    """Run ``csfpk ARGV`` in-process in ``folder`` and check the error contract; return (rc, stdout)."""
    before = sorted(p.name for p in Path(folder).rglob("*"))
    out, err = io.StringIO(), io.StringIO()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(LIMIT_S)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in argv])
            except SystemExit as exc:
                rc = exc.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        os.chdir(cwd)
    err = err.getvalue()
    assert rc in (0, 2), (argv, rc, err[-2000:])
    assert "Traceback" not in err, (argv, err)
    if rc == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].strip(), (argv, err)
        assert sorted(p.name for p in Path(folder).rglob("*")) == before, argv  # no partial output
    else:
        assert err == "", (argv, err)
        for p in Path(folder).rglob("*.csv"):
            if p.name.startswith("out"):
                frame = pd.read_csv(p, na_values=".")
                conc = frame[[c for c in frame.columns if c.startswith("conc") or c.endswith(("_MG_L", "_NM"))]]
                assert not conc.isna().any().any(), (argv, p)
    return rc, out.getvalue()


# ------------------------------------------------------------------ the values the fuzzer draws from
WEIRD = ["", " ", "0", "-0", "-1", "1e308", "-1e308", "1e-308", "1e-12", "nan", "inf", "-inf", "true", "abc",
         "12 mL", "½", "\u00e9", "9" * 30, str(2**63 - 1), str(2**63), "0x10", "1,5", "None", "[]", "3 fortnights"]
DOSES = ["150", "0.15 g", "150000 ug", "40 mg/m2", "10 mg/kg", "1500", "5e5"]
DURATIONS = ["24h", "1 day", "q12h", "bid", "qw", "0.5", "7d", "36", "30min", "4 weeks"]
TOML_VALUES = ["true", "false", "1e308", "-1e308", "1e-308", "0", "-1", "nan", "inf", '"abc"', '""', "[1, [2]]",
               "[]", "{}", '"12 mg"', '"1e400 mg"', '"3.5d"', "1.5", str(2**63 - 1), '"q24h"', '"\u00e9"']


def optional(values):
    return st.one_of(st.none(), st.sampled_from(values))


@FUZZ
@given(amt=optional(DOSES + WEIRD), ii=optional(DURATIONS + WEIRD), n=optional(["1", "3", "28", "100000000"] + WEIRD),
       route=optional(["oral", "iv", "it_lumbar", "it_ventricular", "brain"] + WEIRD),
       duration=optional(["30min", "2h"] + WEIRD), ss=st.booleans(), label=st.booleans(),
       t_end=optional(["1d", "8w", "48", "1e6"] + WEIRD), dt=optional(["1h", "15min", "6h", "1000"] + WEIRD),
       bsa=optional(["1.8", "180"] + WEIRD), weight=optional(["70", "7000"] + WEIRD),
       layout=st.sampled_from(["single", "regional"]), csv=st.booleans())
def test_fuzz_simulate_arguments(amt, ii, n, route, duration, ss, label, t_end, dt, bsa, weight, layout, csv):
    argv = ["simulate", "erlotinib", "--layout", layout]
    for flag, v in (("--amt", amt), ("--ii", ii), ("--n", n), ("--route", route), ("--duration", duration),
                    ("--t-end", t_end), ("--dt", dt), ("--bsa", bsa), ("--weight", weight)):
        if v is not None:
            argv.append(f"{flag}={v}")
    argv += ["--ss"] * ss + ["--label-dose"] * label
    with tempfile.TemporaryDirectory() as folder:
        if csv:
            argv += ["--csv", "out.csv"]
        contract(argv, folder)


def _mutate_toml(text, key, value):
    """Replace the first ``key = ...`` value (to the end of its line or inline-table field) by ``value``."""
    import re

    m = re.search(rf"(^|[{{,\s]){re.escape(key)}\s*=\s*", text, flags=re.M)
    if not m:
        return text
    start = m.end()
    depth, i = 0, start
    while i < len(text):
        ch = text[i]
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            if depth == 0:
                break
            depth -= 1
        elif ch == "," and depth == 0 or ch == "\n":
            break
        elif ch == '"':
            i = text.index('"', i + 1) if '"' in text[i + 1:] else len(text)
        i += 1
    return text[:start] + value + text[i:]


@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(["amt", "ii", "length", "route", "drug", "name", "schema", "phases",
                                                 "source"]),
                                st.sampled_from(TOML_VALUES)), min_size=1, max_size=3),
       latin1=st.booleans())
def test_fuzz_regimen_toml(edits, latin1):
    text = REGIMEN
    for key, value in edits:
        text = _mutate_toml(text, key, value)
    contract_with_file("it_mtx_seed.toml", text.encode("latin-1", "replace") if latin1 else text.encode(),
                       ["simulate", "methotrexate", "--regimen", FILE, "--dt", "6h", "--csv", "out.csv"])


@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(["t_end", "dt", "window", "csf_layout", "n", "seed", "label", "route",
                                                 "amt", "ii", "phases", "schema", "name", "source"]),
                                st.sampled_from(TOML_VALUES + ['"span"', '"ss"', '["0d", "1e9d"]', '"regional"'])),
                      min_size=1, max_size=3),
       grid=st.sampled_from(["", '\n[grid]\ndrugs = ["methotrexate"]\n', '\n[grid]\ndrugs = [""]\n',
                             '\n[grid]\nregimens = [["weekly_12"]]\n', '\n[grid]\nregimens = ["nope"]\n']))
def test_fuzz_sweep_toml(edits, grid):
    """Sweep files (issue 14 lists drug, sweep and regimen TOML): loaded and checked by ``csfpk validate FILE``,
    the same loader ``csfpk compare`` uses before any work."""
    text = SWEEP
    for key, value in edits:
        text = _mutate_toml(text, key, value)
    text += grid
    contract_with_file("it_frequency.toml", text.encode(), ["validate", FILE])


@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(["value", "unit", "source", "CL", "V1", "ka", "F", "fu", "tlag",
                                                 "molecular_weight", "penetration_ratio", "equilibration_half_life",
                                                 "range", "name", "amt", "ii"]),
                                st.sampled_from(TOML_VALUES + ['"L/h"', '"mL/min"'])), min_size=1, max_size=3),
       covariates=st.sampled_from(["", "\n[covariates.CL]\nweight = { model = \"power\", coefficient = 0.75, "
                                       "reference = 70, unit = \"kg\", source = \"assumed: Holford 1996\" }\n",
                                   "\n[covariates.CL]\nweight = { model = \"cubic\", coefficient = 1, reference = 70, "
                                   "unit = \"kg\", source = \"x\" }\n",
                                   "\n[covariates.XX]\ncrcl = 3\n", "\n[covariates]\nCL = 3\n"]))
def test_fuzz_drug_toml(edits, covariates):
    text = ERLOTINIB
    for key, value in edits:
        text = _mutate_toml(text, key, value)
    text += covariates
    contract_with_file("erlotinib.toml", text.encode(), ["simulate", FILE, "--amt", "150", "--ii", "24h", "--n", "3",
                                                         "--weight", "90", "--csv", "out.csv"])


GOOD_CELLS = {"ID": ["1", "2"], "TIME": ["0", "1", "12", "24", "48"], "EVID": ["0", "1", "2", "3", "4"],
              "AMT": ["0", "100", "150", "."], "CMT": ["1", "2", "oral", "iv", "central", "."],
              "RATE": ["0", "50", "-1", "-2", "."], "II": ["0", "12", "24", "."], "ADDL": ["0", "1", "3", "."],
              "SS": ["0", "1", "2", "."], "DV": [".", "1.5", "0"], "MDV": ["0", "1"], "WT": ["70", "45"],
              "HT": ["170"], "CRCL": ["90", "30"], "BSA": ["1.8"], "AGE": ["60"], "rtae": ["5"], "Time": ["0"],
              "C": [".", "C"]}
BAD_CELLS = ["", "-1", "1e308", "1e-12", "abc", "nan", "inf", "1e400", str(2**63), "0.5"]
RECORD = ["EVID", "CMT", "RATE", "II", "ADDL", "SS"]
OPTIONAL = RECORD + ["DV", "MDV", "WT", "HT", "CRCL", "BSA", "AGE"]
RARE = ["rtae", "Time", "C"]


@st.composite
def csv_tables(draw, dataset):
    cols = ["TIME", "AMT"] + draw(st.lists(st.sampled_from(OPTIONAL if dataset else RECORD), max_size=6, unique=True))
    if draw(st.integers(0, 9)) == 0:
        cols.append(draw(st.sampled_from(RARE)))
    if draw(st.integers(0, 9)) == 0:
        cols.remove(draw(st.sampled_from(["TIME", "AMT"])))
    n = draw(st.integers(0, 5))
    rows = []
    for _ in range(n):
        rows.append([draw(st.sampled_from(GOOD_CELLS[c])) if draw(st.integers(0, 4)) else
                     draw(st.sampled_from(BAD_CELLS)) for c in cols])
    rows.sort(key=lambda r: r[0])  # mostly in time order (text sorts, so not always)
    return cols, rows


@FUZZ
@given(data=st.data(), as_dataset=st.booleans(), encoding_bad=st.integers(0, 9))
def test_fuzz_csv(data, as_dataset, encoding_bad):
    cols, rows = data.draw(csv_tables(as_dataset))
    if as_dataset:
        cols = ["ID"] + [c for c in cols if c != "ID"]
        rows = [["1"] + r[: len(cols) - 1] for r in rows]
    lines = [",".join(cols)] + [",".join(r) for r in rows]
    raw = ("\n".join(lines) + "\n").encode()
    if encoding_bad == 0:
        raw += b"\xff\xfe"
    flag = "--data" if as_dataset else "--regimen"
    extra = [] if as_dataset else ["--dt", "1h"]
    contract_with_file("data.csv", raw, ["simulate", "erlotinib", flag, FILE, "--csv", "out.csv"] + extra)


@pytest.mark.parametrize("args, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_named_cases_through_the_contract(args, message, tmp_path):
    """Each input class of the issue, replayed through the fuzzer's checker."""
    if "/proc/" in " ".join(map(str, args(tmp_path))) and not Path("/proc").is_dir():
        pytest.skip("needs Linux /proc")  # pragma: no cover
    rc, _ = contract(args(tmp_path), tmp_path)
    assert rc == 2


@pytest.mark.parametrize("text", [
    "ID,TIME,AMT,RATE,CMT\n1,0,100,1e308,iv\n",
    "ID,TIME,AMT,II,ADDL\n1,0,100,24,9223372036854775807\n",
    "ID,TIME,AMT,II,SS\n1,0,100,0.01,1\n",
])
def test_subprocess_dataset_contract(text, tmp_path):
    p = tmp_path / "d.csv"
    p.write_text(text)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "csfpk.cli", "simulate", "erlotinib", "--data", str(p), "--csv",
                        str(tmp_path / "out.csv")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode in (0, 2) and "Traceback" not in r.stderr
    if r.returncode == 2:
        assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "out.csv").exists()
    else:
        assert not pd.read_csv(tmp_path / "out.csv", na_values=".").filter(like="_NM").isna().any().any()


def test_sweep_phases_that_are_not_lists_are_one_line(tmp_path):
    """Found by fuzzing the sweep file: ``phases = [1, [2]]`` ended in a TypeError traceback."""
    p = tmp_path / "in" / "it_frequency.toml"
    p.parent.mkdir()
    p.write_text(_mutate_toml(SWEEP, "phases", "[1, [2]]"))
    assert contract(["validate", p], tmp_path)[0] == 2
