"""The csfpk command: documented commands work, errors are one line with exit code 2."""

import subprocess
import sys

import pandas as pd
import pytest

from csfpk.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "csfpk.cli", *args], capture_output=True, text=True)


def test_simulate_writes_table_and_plot(tmp_path, capsys):
    out = tmp_path / "erl"
    assert main(["simulate", "erlotinib", "--amt", "150", "--ii", "24h", "--n", "28", "--out", str(out)]) == 0
    frame = pd.read_csv(out / "concentrations.csv")
    assert {"time_h", "compartment", "conc_mg_L", "conc_nM"} <= set(frame.columns)
    assert set(frame.compartment) == {"plasma", "plasma_unbound", "csf"}
    assert frame.time_h.max() == 27 * 24 + 168
    assert (out / "curves.png").stat().st_size > 10_000
    assert "last dosing interval" in capsys.readouterr().out


def test_simulate_label_dose_svg(tmp_path):
    svg = tmp_path / "osi.svg"
    assert main(["simulate", "osimertinib", "--label-dose", "--n", "7", "--plot", str(svg)]) == 0
    assert svg.read_text().lstrip().startswith("<?xml")


def test_drugs_lists_ratio_and_source(capsys):
    assert main(["drugs"]) == 0
    text = capsys.readouterr().out
    assert "erlotinib" in text and "0.0277" in text and "Togashi 2012" in text


def test_validate(capsys):
    assert main(["validate"]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


@pytest.mark.parametrize("args,message", [
    (["simulate", "aspirin", "--amt", "100"], "unknown drug 'aspirin'"),
    (["simulate", "erlotinib", "--amt", "-5"], "amt = -5.0 is not allowed"),
    (["simulate", "erlotinib", "--amt", "150", "--ii", "3 weeks", "--n", "2"], "ii = '3 weeks' is not a duration"),
    (["simulate", "erlotinib", "--amt", "150", "--plot", "x.bmp"], "extension not allowed"),
])
def test_errors_are_one_line_exit_2(args, message, tmp_path):
    res = subprocess.run([sys.executable, "-m", "csfpk.cli", *args], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_help_shows_examples():
    for args in (["--help"], ["simulate", "--help"], ["drugs", "--help"]):
        res = run(*args)
        assert res.returncode == 0 and "example" in res.stdout


def test_python_dash_m_csfpk_is_the_cli():
    res = subprocess.run([sys.executable, "-m", "csfpk", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "compare" in res.stdout and "plot" in res.stdout


def test_a_programming_error_is_not_turned_into_a_user_error(monkeypatch):
    """Only CsfpkError is a user error (one line, exit 2); a KeyError is a bug and keeps its traceback."""
    import csfpk.cli

    def broken():
        raise KeyError("bug")

    monkeypatch.setattr(csfpk.cli, "list_drugs", broken)
    with pytest.raises(KeyError, match="bug"):
        main(["drugs"])
