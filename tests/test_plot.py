"""Figures render headless and say what they should (issue 5).

Each test draws one plot type to PNG and checks what can go wrong: the file, the axis labels
with units, and one line / ribbon / box per compartment or regimen asked for. The log-axis
test guards the overlapping minor-tick labels ("4×10⁰ 6×10⁰ …") of the first summary.png.
"""

import json
import os

import matplotlib
import numpy as np
import pytest

import csfpk
from csfpk import plot
from csfpk.batch import run
from csfpk.cli import main
from csfpk.errors import ParameterError
from csfpk.figures import write_figures
from csfpk.runfolder import SCHEMA, RunFolderError
from csfpk.scenario import Scenario
from csfpk.physiology import load_physiology
from csfpk.population import subject_inputs

matplotlib.use("Agg")


def gids(ax, gid):
    return [a for a in ax.get_children() if a.get_gid() == gid]


def png(fig, path):
    plot.save(fig, path)
    assert os.path.getsize(path) > 5000  # a real picture, not an empty canvas
    return path


@pytest.fixture(scope="module")
def two_drug_run(tmp_path_factory):
    """Erlotinib (3 regimens) and osimertinib (2 regimens), 40 subjects, with curves, on disk."""
    folder = tmp_path_factory.mktemp("runs") / "two_drugs"
    pop = csfpk.Population(n=40, seed=3, penetration="range")
    erl, osi = csfpk.load_drug("erlotinib"), csfpk.load_drug("osimertinib")
    regs = [(erl, "150 mg qd", csfpk.Regimen.every(amt=150, ii=24, n=14)),
            (erl, "1500 mg weekly", csfpk.Regimen.every(amt=1500, ii="7d", n=2)),
            (erl, "300 mg q2d", csfpk.Regimen.every(amt=300, ii="2d", n=7)),
            (osi, "80 mg qd", csfpk.Regimen.every(amt=80, ii=24, n=14)),
            (osi, "160 mg qd", csfpk.Regimen.every(amt=160, ii=24, n=14))]
    scns = [Scenario(d, r, pop, t_end=336.0, regimen_name=name) for d, name, r in regs]
    res = run(scns, str(folder), curves=True, progress=False)
    return str(folder), res


@pytest.fixture(scope="module")
def in_memory():
    return csfpk.compare("erlotinib", {"150 mg qd": csfpk.Regimen.every(amt=150, ii=24, n=14),
                                       "1500 mg weekly": csfpk.Regimen.every(amt=1500, ii="7d", n=2)},
                         population=csfpk.Population(n=30, seed=2), t_end="14d", curves=True, progress=False)


# ----------------------------------------------------------------------------- curves
def test_curves_one_line_per_compartment_with_units(tmp_path):
    res = csfpk.simulate(csfpk.load_drug("osimertinib"), csfpk.Regimen.every(amt=80, ii=24, n=7), t_end="10d")
    fig = plot.curves(res, ["plasma", "plasma_unbound", "csf"], targets={"target 15 nM": 15.0, "1 µM": 1000.0})
    ax = fig.axes[0]
    labelled = [ln.get_label() for ln in ax.get_lines() if ln.get_label() in plot._LABELS.values()]
    assert labelled == ["plasma (total)", "plasma (unbound)", "CSF"]
    assert len(gids(ax, "target")) == 2
    assert ax.get_ylabel() == "concentration (nM)" and ax.get_xlabel() == "time (days)"
    assert ax.get_yscale() == "log"
    png(fig, tmp_path / "c.png")

    fig = plot.curves(res, ["csf"], units="ng/mL", log=False, time_unit="h")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "concentration (ng/mL)" and ax.get_xlabel() == "time (h)"
    assert ax.get_yscale() == "linear"
    for ext in ("svg", "pdf"):
        plot.save(plot.curves(res), tmp_path / f"c.{ext}")
        assert (tmp_path / f"c.{ext}").stat().st_size > 1000


def test_curves_bad_arguments_name_the_value():
    res = csfpk.simulate(csfpk.load_drug("erlotinib"), csfpk.Regimen.every(amt=150, ii=24, n=2), t_end="2d")
    with pytest.raises(ParameterError, match="units = 'uM'"):
        plot.curves(res, units="uM")
    with pytest.raises(ParameterError, match="time_unit = 'w'"):
        plot.curves(res, time_unit="w")
    with pytest.raises(ParameterError, match="extension '.jpg'"):
        plot.save(plot.curves(res), "x.jpg")


# ----------------------------------------------------------------------------- comparison
def test_comparison_one_box_per_regimen_sorted_with_target(two_drug_run, tmp_path):
    folder, res = two_drug_run
    fig = plot.comparison(folder, "csf_trough")
    axes = fig.axes
    assert [ax.get_title(loc="left") for ax in axes] == ["erlotinib", "osimertinib"]
    assert [len(gids(ax, "box")) for ax in axes] == [3, 2]
    assert all(ax.get_xlabel() == "CSF Cmin,ss (nM)" for ax in axes)
    assert all(len(gids(ax, "target")) == 1 for ax in axes)
    assert "target 7 nM" in axes[0].get_title(loc="right")
    # sorted: the highest median on top (largest y)
    med = res.metrics.groupby("regimen").csf_trough_ss.median()
    shown = [t.get_text() for t in axes[0].get_yticklabels()]  # top to bottom
    assert shown == sorted(shown, key=lambda r: -med[r])
    png(fig, tmp_path / "trough.png")


def test_comparison_other_metrics_and_sources(two_drug_run, in_memory):
    folder, res = two_drug_run
    fig = plot.comparison(res, "plasma_auc")  # RunResult with a folder
    assert fig.axes[0].get_xlabel() == "plasma AUCτ (µM·h)"
    assert not any(gids(ax, "target") for ax in fig.axes)  # the CSF target does not apply to plasma AUC
    fig = plot.comparison(folder, "csf_pct_above", drugs=["osimertinib"])
    assert len(fig.axes) == 1 and fig.axes[0].get_xscale() == "linear"
    assert fig.axes[0].get_xlabel() == "CSF time ≥ target (% of τ)"
    fig = plot.comparison(in_memory, "csf_cavg", sort=False)  # RunResult held in memory
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["150 mg qd", "1500 mg weekly"]  # run order
    fig = plot.comparison(res.summary, "csf_cavg")  # summary only: dot and whiskers
    assert [len(gids(ax, "median")) for ax in fig.axes] == [3, 2]
    assert not any(gids(ax, "box") for ax in fig.axes)


def test_comparison_rejects_unknown_metric_and_drug(two_drug_run):
    folder, _ = two_drug_run
    with pytest.raises(ParameterError, match="metric = 'csf_peak'"):
        plot.comparison(folder, "csf_peak")
    with pytest.raises(ParameterError, match="'csf_lumbar_trough' is not in this run"):
        plot.comparison(folder, "csf_lumbar_trough")
    with pytest.raises(ParameterError, match="drug 'gefitinib' is not in this run"):
        plot.comparison(folder, "csf_trough", drugs=["gefitinib"])


def test_log_axes_label_major_ticks_only_without_overlap(two_drug_run):
    """Regression (issue 5): summary.png had minor tick labels "4×10⁰ 6×10⁰ …" running into each other."""
    folder, _ = two_drug_run
    for metric in ("csf_trough", "csf_cavg", "plasma_auc"):
        fig = plot.comparison(folder, metric)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            assert ax.get_xscale() == "log"
            assert not [t for t in ax.xaxis.get_minorticklabels() if t.get_text()]
            lo, hi = ax.get_xlim()
            boxes = [t.get_window_extent(renderer) for t in ax.xaxis.get_majorticklabels()
                     if t.get_text() and lo <= t.get_position()[0] <= hi]
            assert len(boxes) >= 2, f"{metric}: fewer than two labelled ticks"
            boxes.sort(key=lambda b: b.x0)
            assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:])), f"{metric}: tick labels overlap"
            assert all("times" not in t.get_text() for t in ax.xaxis.get_majorticklabels())
        plot._plt().close(fig)


def test_plot_summary_uses_the_comparison_figure(two_drug_run, tmp_path):
    folder, res = two_drug_run
    assert os.path.getsize(os.path.join(folder, "summary.png")) > 5000  # written by the run
    fig = plot.summary_figure(res)
    assert [len(gids(ax, "box")) for ax in fig.axes] == [3, 2]
    assert fig.axes[0].get_xlabel() == "CSF Cavg,ss (nM)"
    assert not any(ax.get_legend() for ax in fig.axes)  # the target is named in the title, not a legend on the data


# ----------------------------------------------------------------------------- population bands
def test_population_bands_one_panel_and_ribbon_pair_per_regimen(two_drug_run, tmp_path):
    folder, _ = two_drug_run
    fig = plot.population_bands(folder, drug="erlotinib")
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_lines()]
    assert [ax.get_title() for ax in panels] == ["150 mg qd", "1500 mg weekly", "300 mg q2d"]
    for ax in panels:
        assert (len(gids(ax, "median")), len(gids(ax, "band_25_75")), len(gids(ax, "band_5_95"))) == (1, 1, 1)
        assert len(gids(ax, "target")) == 1
    assert panels[0].get_ylabel() == "CSF concentration (nM)"
    assert panels[-1].get_xlabel() == "time (days)"
    # the first panel draws the data: its median line and 5th–95th ribbon equal the percentiles of the 40
    # subjects' CSF curves recomputed here one subject at a time with csfpk.simulate (float32 on disk)
    erl = csfpk.load_drug("erlotinib")
    params = csfpk.Population(n=40, seed=3, penetration="range").sample(erl, 0, 40)
    inputs = [subject_inputs(erl, load_physiology("adult"), params, i) for i in range(40)]
    conc = np.array([csfpk.simulate(d, csfpk.Regimen.every(amt=150, ii=24, n=14), t_end=336.0, dt=1.0,
                                    physiology=ph).conc("csf")
                     for d, ph in inputs]) / erl.molecular_weight * 1e6  # nM
    line = gids(panels[0], "median")[0]
    rows = np.rint(np.asarray(line.get_xdata()) * 24.0).astype(int)  # days → index of the hourly grid
    p5, p50, p95 = np.percentile(conc[:, rows], [5, 50, 95], axis=0)
    assert p50[0] == 0 and np.all(p5[1:] > 0)  # pre-dose zero: not drawn on the log axis
    np.testing.assert_allclose(line.get_ydata()[1:], p50[1:], rtol=1e-5)
    band = gids(panels[0], "band_5_95")[0].get_paths()[0].vertices  # (x, p5) forward, then (x, p95) back
    n = rows.size - 1
    np.testing.assert_allclose(band[1:n + 1, 1], p5[1:], rtol=1e-5)
    np.testing.assert_allclose(band[n + 2:2 * n + 2, 1][::-1], p95[1:], rtol=1e-5)
    png(fig, tmp_path / "bands.png")

    fig = plot.population_bands(folder, drug="osimertinib", compartment="plasma", regimens=["160 mg qd"],
                                units="ng/mL", time_unit="h", width=3.5)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_lines()]
    assert len(panels) == 1 and panels[0].get_ylabel() == "plasma concentration (ng/mL)"


def test_population_bands_in_memory_has_only_the_5_95_ribbon(in_memory):
    fig = plot.population_bands(in_memory)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_lines()]
    assert len(panels) == 2
    assert all(len(gids(ax, "band_5_95")) == 1 and not gids(ax, "band_25_75") for ax in panels)


def test_population_bands_errors(two_drug_run):
    folder, _ = two_drug_run
    with pytest.raises(ParameterError, match="several drugs"):
        plot.population_bands(folder)
    with pytest.raises(ParameterError, match="compartment = 'csf_lumbar' has no curves"):
        plot.population_bands(folder, drug="erlotinib", compartment="csf_lumbar")
    no_curves = csfpk.compare("erlotinib", {"qd": csfpk.Regimen.every(amt=150, ii=24, n=3)},
                              population=csfpk.Population(n=5, seed=1), t_end="3d", progress=False)
    with pytest.raises(ParameterError, match="no curves"):
        plot.population_bands(no_curves)


# ----------------------------------------------------------------------------- intrathecal
@pytest.fixture(scope="module")
def it_arms():
    from csfpk.myelosuppression import blood_counts

    drug = csfpk.load_drug("methotrexate")
    arms = {}
    for label, route in (("lumbar", "it_lumbar"), ("Ommaya", "it_ventricular"), ("lumbar x2", "it_lumbar")):
        n = 2 if label.endswith("x2") else 1
        res = csfpk.simulate(drug, csfpk.Regimen.every(amt=12, ii="3.5d", n=n, route=route), t_end="7d", dt=0.25,
                             csf_layout="regional")
        arms[label] = (res, blood_counts(res))
    return arms


def test_csf_regions_one_line_per_region_per_arm(it_arms, tmp_path):
    fig = plot.csf_regions(it_arms, t_max="4d")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == list(it_arms)
    regions = {plot._LABELS[c] for c in ("csf_ventricles", "csf_cisterna", "csf_cranial", "csf_lumbar")}
    for ax in panels:
        assert {ln.get_label() for ln in ax.get_lines()} & regions == regions
        assert len(gids(ax, "target")) == 1
        assert ax.get_yscale() == "log"
    assert panels[0].get_ylabel() == "CSF concentration (nM)"
    assert len({ax.get_ylim() for ax in panels}) == 1  # one scale: routes compare by eye
    legend_texts = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert "dose" in legend_texts and any(t.startswith("target") for t in legend_texts)
    png(fig, tmp_path / "regions.png")


def test_blood_course_one_line_and_dose_series_per_arm(it_arms, tmp_path):
    fig = plot.blood_course(it_arms)
    top, bottom = fig.axes
    assert [ln.get_label() for ln in top.get_lines() if not ln.get_label().startswith("_")] == list(it_arms)
    assert len([ln for ln in bottom.get_lines() if not ln.get_label().startswith("_")]) == 3
    assert top.get_ylabel() == "leukocytes (10⁹/L)" and bottom.get_ylabel() == "dose given (mg)"
    assert bottom.get_xlabel() == "time (days)"
    png(fig, tmp_path / "blood.png")


# ----------------------------------------------------------------------------- csfpk plot
def test_cli_plot_writes_the_run_figures(two_drug_run, tmp_path, capsys):
    folder, _ = two_drug_run
    out = tmp_path / "figs"
    assert main(["plot", folder, "--out", str(out)]) == 0
    names = sorted(os.listdir(out))
    assert names == sorted(["comparison_csf_trough.png", "comparison_csf_cavg.png", "comparison_csf_pct_above.png",
                            "comparison_plasma_cavg.png", "bands_csf_erlotinib.png", "bands_csf_osimertinib.png"])
    assert all((out / n).stat().st_size > 5000 for n in names)
    assert "wrote 6 figures" in capsys.readouterr().out
    assert main(["plot", folder, "--format", "svg", "--out", str(tmp_path / "svg")]) == 0
    assert len(list((tmp_path / "svg").glob("*.svg"))) == 6


def test_cli_plot_default_folder_and_help(two_drug_run, capsys):
    folder, _ = two_drug_run
    assert main(["plot", folder]) == 0
    assert os.path.isfile(os.path.join(folder, "figures", "comparison_csf_trough.png"))
    with pytest.raises(SystemExit):
        main(["plot", "--help"])
    assert "csfpk plot runs/tki" in capsys.readouterr().out


def test_cli_plot_errors_are_one_line(tmp_path, capsys):
    cases = [(tmp_path / "missing", "is not a folder"), (tmp_path, "has no manifest.json")]
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "manifest.json").write_text(json.dumps({"schema": SCHEMA, "status": "running"}))
    cases.append((unfinished, "unfinished run"))
    for path, message in cases:
        assert main(["plot", str(path)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.startswith("csfpk plot: error:") and err.count("\n") == 1
    with pytest.raises(RunFolderError):
        write_figures(str(tmp_path / "missing"))
    with pytest.raises(SystemExit):
        main(["plot", str(unfinished), "--format", "jpg"])
