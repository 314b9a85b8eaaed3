"""Sweep files: the shipped sweeps load; bad files fail before any work and leave no folder."""

import subprocess
import sys

import pytest

import csfpk
from csfpk.sweep import SweepError, load_sweep

GOOD = """
schema = "csfpk.sweep/1"
name = "tiny"
t_end = "{t_end}"
[populations.default]
n = {n}
seed = 1
[regimens.a]
amt = 80
ii = "24h"
source = "test"
[[grid]]
drugs = [{drugs}]
regimens = ["a"]
"""


def write(tmp_path, **kw):
    vals = {"t_end": "3d", "n": 5, "drugs": '"osimertinib"'}
    vals.update(kw)
    p = tmp_path / "sweep.toml"
    p.write_text(GOOD.format(**vals))
    return p


def test_shipped_high_dose_tki_sweep():
    sw = load_sweep("high_dose_tki", n=3, seed=2)
    labels = {(s.drug.name, s.regimen_name) for s in sw.scenarios}
    assert ("erlotinib", "1500 mg weekly") in labels and ("alectinib", "900 mg bid") in labels
    assert len(sw.scenarios) == 16  # gefitinib 1250 mg added (issue 13), lorlatinib 100 mg (issue 11)
    solvers = {s.drug.name: s.solver for s in sw.scenarios}
    assert "exact" not in (solvers["lorlatinib"], solvers["gefitinib"]) and solvers["erlotinib"] == "exact"
    assert all(s.population.n == 3 and s.population.seed == 2 and s.source for s in sw.scenarios)
    assert all(s.target_nM == s.drug.potency_target_nM for s in sw.scenarios)


@pytest.mark.parametrize("kw, match", [
    ({"drugs": '"erlotinibb"'}, "erlotinibb"),
    ({"t_end": "-3d"}, "t_end"),
    ({"t_end": "3 fortnights"}, "t_end"),
    ({"n": -4}, "n = -4"),
    ({"drugs": ""}, "drugs"),
])
def test_bad_sweep_clear_error_and_no_folder(tmp_path, kw, match):
    path = write(tmp_path, **kw)
    out = tmp_path / "run"
    with pytest.raises(SweepError, match=match):
        csfpk.run_sweep(str(path), out)
    assert not out.exists()
    r = subprocess.run([sys.executable, "-m", "csfpk", "compare", str(path), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "error:" in r.stderr
    assert not out.exists()


def test_empty_grid_and_unknown_key(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text(GOOD.format(t_end="3d", n=5, drugs='"osimertinib"').replace(
        '[[grid]]\ndrugs = ["osimertinib"]\nregimens = ["a"]\n', "").replace('name = "tiny"', 'name = "tiny"\ngrid = []'))
    with pytest.raises(SweepError, match="grid is empty"):
        load_sweep(str(p))
    p.write_text(GOOD.format(t_end="3d", n=5, drugs='"osimertinib"') + "colour = 'red'\n")
    with pytest.raises(SweepError, match="colour"):
        load_sweep(str(p))


def test_small_sweep_runs(tmp_path):
    res = csfpk.run_sweep(str(write(tmp_path)), tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "summary.csv").is_file()
    assert len(res.metrics) == 5
