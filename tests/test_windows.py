"""Every metric names its window; steady state is the default for repeated doses, per injection for
intrathecal regimens; the summary says percentiles, target, ranges and the typical subject (issue 14,
items 2 and 5)."""

import numpy as np
import pytest

import csfpk
from csfpk import figures, metrics, plot
from csfpk.model import VARYING
from csfpk.physiology import load_physiology
from csfpk.population import subject_inputs
from csfpk.units import mg_per_L_to_nM


def _nM(res, drug, compartment="csf"):
    return mg_per_L_to_nM(res.conc(compartment), drug.molecular_weight)


def _trapz(c, t):
    """Trapezoid written out (not csfpk.metrics), the hand computation the runner must match."""
    return float(sum(0.5 * (t[k + 1] - t[k]) * (c[k] + c[k + 1]) for k in range(len(t) - 1)))


@pytest.fixture(scope="module")
def osi():
    drug = csfpk.load_drug("osimertinib")
    reg = csfpk.Regimen.every(amt=80, ii=24, n=7)  # t½ ≈ 48 h: a week of daily doses still accumulates
    pop = csfpk.Population(n=4, seed=3, penetration="range")
    both = {w: csfpk.compare(drug, {"80 mg qd": reg}, population=pop, t_end="7d", window=w, progress=False,
                             metrics="grid")  # checked against trapezoids on the grid by hand
            for w in (None, "span")}
    return drug, reg, pop, both


def test_every_metric_column_and_table_header_names_its_window(osi):
    _, _, _, both = osi
    res = both[None]
    df = res.scenario_metrics(res.scenarios[0]["id"])
    metric_cols = [c for c in df.columns if c.startswith(("csf_", "plasma_")) and c not in VARYING]
    assert metric_cols and all(c.endswith("_ss") for c in metric_cols), metric_cols
    assert {"csf_cavg_ss", "csf_trough_ss", "csf_cmax_ss", "plasma_auc_ss"} <= set(df.columns)
    row = res.summary.iloc[0]
    assert row["window"] == "ss" and row["window_text"] == "last dosing interval 144–168 h"
    assert (row["window_start_h"], row["window_end_h"]) == (144.0, 168.0)
    t = res.table
    assert {"window", "CSF Cavg,ss nM", "CSF Cmin,ss nM", "plasma AUCτ µM·h", "P(CSF Cmin,ss ≥ target)"} <= set(t.columns)
    assert t.loc[0, "window"] == "last dosing interval 144–168 h"
    span = both["span"]
    assert "CSF Cavg (span) nM" in span.table.columns and span.summary.iloc[0]["window_text"] == "whole span 0–168 h"
    notes = "\n".join(res.notes)
    assert "median [5th–95th percentile]" in notes and "last complete dosing interval" in notes
    # the target: value, unit, what it is and its source, from the drug file
    q = osi[0].quantities["potency.target"]
    assert f"osimertinib [potency] target 15 nM ({q.source})" in notes
    assert row["target_text"].startswith("osimertinib [potency] target 15 nM") and row["percentiles"].startswith("median")


def test_steady_state_default_is_the_last_interval_by_hand_and_differs_from_the_span(osi):
    drug, reg, pop, both = osi
    ss = both[None].scenario_metrics(both[None].scenarios[0]["id"])
    span = both["span"].scenario_metrics(both["span"].scenarios[0]["id"])
    p = pop.sample(drug, 0, 4)
    for i in range(4):
        drug_i, phys_i = subject_inputs(drug, load_physiology("adult"), p, i)
        res = csfpk.simulate(drug_i, reg, t_end=168, dt=1, physiology=phys_i)
        c, t = _nM(res, drug), res.times
        last = (t >= 144 - 1e-9) & (t <= 168 + 1e-9)
        auc_tau = _trapz(c[last], t[last])
        assert ss.csf_auc_ss[i] == pytest.approx(auc_tau, rel=1e-9)
        assert ss.csf_cavg_ss[i] == pytest.approx(auc_tau / 24.0, rel=1e-9)
        assert ss.csf_trough_ss[i] == pytest.approx(c[-1], rel=1e-9)  # Cmin,ss: pre-dose at the interval's end
        assert ss.csf_cmax_ss[i] == pytest.approx(c[last].max(), rel=1e-9)
        assert span.csf_cavg_span[i] == pytest.approx(_trapz(c, t) / 168.0, rel=1e-9)
        # accumulation: the whole-span average (with the climb) is well below the last interval's
        assert span.csf_cavg_span[i] < 0.85 * ss.csf_cavg_ss[i]
        assert ss.csf_trough_ss[i] <= ss.csf_cavg_ss[i]


def test_last_interval_skips_an_interval_that_ends_after_the_span():
    assert metrics.last_interval([0, 72, 144, 216], 240.0) == (144.0, 216.0)
    assert metrics.last_interval([0, 24, 48], 72.0) == (48.0, 72.0)
    assert metrics.last_interval([0.0], 72.0) is None
    assert metrics.injection_windows([0, 72], 144.0) == [(0.0, 72.0), (72.0, 144.0)]


def _time_above_by_hand(c, t, target, a, b):
    """Hours ≥ target between a and b: the linear interpolant on a 1e-4 h grid."""
    fine = np.arange(a, b, 1e-4) + 0.5e-4
    return float(np.sum(np.interp(fine, t, c) >= target) * 1e-4)


def test_intrathecal_per_injection_metrics_by_hand_on_two_injections():
    drug = csfpk.load_drug("methotrexate")
    reg = csfpk.Regimen.every(amt=12, ii=72, n=2, route="it_lumbar")
    pop = csfpk.Population(n=3, seed=5)
    res = csfpk.compare(drug, {"12 mg x2": reg}, population=pop, t_end="6d", dt=0.25, progress=False, metrics="grid")
    exact = csfpk.compare(drug, {"12 mg x2": reg}, population=pop, t_end="6d", dt=0.25, progress=False)
    row = res.summary.iloc[0]
    assert row["window"] == "per_injection" and row["n_injections"] == 2
    df = res.scenario_metrics(res.scenarios[0]["id"])
    p = pop.sample(drug, 0, 3)
    target = drug.potency_target_nM
    for i in range(3):
        drug_i, phys_i = subject_inputs(drug, load_physiology("adult"), p, i)
        sim = csfpk.simulate(drug_i, reg, t_end=144, dt=0.25, physiology=phys_i)
        c, t = _nM(sim, drug), sim.times
        peaks, above, cxt = [], [], []
        for a, b in ((0.0, 72.0), (72.0, 144.0)):
            w = (t >= a - 1e-9) & (t <= b + 1e-9)
            peaks.append(c[w].max())
            above.append(_time_above_by_hand(c, t, target, a, b))
            cxt.append(_trapz(c[w], t[w]) / 1000.0)  # nM·h → µM·h
        assert df.csf_peak_inj[i] == pytest.approx(np.mean(peaks), rel=1e-9)
        assert df.csf_cxt_inj[i] == pytest.approx(np.mean(cxt), rel=1e-9)
        assert df.csf_time_above_inj[i] == pytest.approx(np.mean(above), abs=2e-3)
        assert 1.0 < df.csf_time_above_inj[i] < 72.0  # a real pulse above 1 µM, not the whole interval
    # exact (the default) per injection: the true peak just after each bolus, which the 15-min grid misses,
    # and C×T within the trapezoid's error
    ex = exact.scenario_metrics(exact.scenarios[0]["id"])
    just_after = [_nM(csfpk.simulate(drug, csfpk.Regimen.every(amt=12, ii=72, n=1, route="it_lumbar"), t_end=1e-7,
                                     dt=1e-7, physiology=subject_inputs(drug, load_physiology("adult"), p, i)[1]),
                      drug)[-1] for i in range(3)]  # 12 mg in the subject's CSF volume, 1e-7 h after the bolus
    np.testing.assert_allclose(ex.csf_peak_inj, just_after, rtol=1e-3)  # the second pulse adds a small residue
    assert np.all(ex.csf_peak_inj > 1.05 * df.csf_peak_inj)
    np.testing.assert_allclose(ex.csf_cxt_inj, df.csf_cxt_inj, rtol=0.05)
    # the numpy reference agrees with the runner
    ref = metrics.per_injection(c, t, target, [(0.0, 72.0), (72.0, 144.0)])
    assert df.csf_peak_inj[2] == pytest.approx(ref["peak"], rel=1e-9)
    # no trough-based PTA and no CSF Cavg headline for bolus pulses
    assert not [c for c in res.summary.columns if "pta" in c]
    assert not [c for c in res.table.columns if c.startswith("P(")]
    assert {"CSF peak per injection nM", "CSF h ≥ target per injection", "CSF C×T per injection µM·h"} <= set(res.table)
    assert "csf_cavg" not in " ".join(figures.main_metrics(res))
    fig = plot.summary_figure(res)
    assert fig.axes[0].get_xlabel() == "CSF time ≥ target per injection (h)"
    assert "per injection" in fig._suptitle.get_text()
    # peaks of ~160 µM against a 1 µM target: the target is off the axis, the panel title points to it and no
    # label or line sits on the data
    peak = plot.comparison(res, "csf_peak_inj")
    assert peak.axes[0].get_title(loc="right") == "target 1000 nM ←"
    assert not [ln for ln in peak.axes[0].get_lines() if ln.get_gid() == "target"] and not peak.axes[0].texts
    for f in (fig, peak):
        plot._plt().close(f)


def test_range_flag_and_typical_subject_sit_beside_the_median(osi):
    drug, reg, _, both = osi
    res = both[None]
    row = res.summary.iloc[0]
    lo, hi = drug.quantities["csf.penetration_ratio"].range
    assert row["drawn_from_range"].startswith(f"csf.penetration_ratio drawn log-uniformly per subject in {lo:g}–{hi:g}")
    assert any(n.startswith("drawn from a range: osimertinib") for n in res.notes)
    # the typical subject: one simulation with the file's values, same regimen and window
    typ = csfpk.simulate(drug, reg, t_end=168, dt=1)
    c, t = _nM(typ, drug), typ.times
    last = t >= 144 - 1e-9
    assert row["csf_trough_ss_typical"] == pytest.approx(c[-1], rel=1e-9)
    assert row["csf_cavg_ss_typical"] == pytest.approx(_trapz(c[last], t[last]) / 24, rel=1e-9)
    assert f"typ {metrics_fmt(row['csf_cavg_ss_typical'])}" in res.table.loc[0, "CSF Cavg,ss nM"]
    nominal = csfpk.compare(drug, {"80 mg qd": reg}, population=csfpk.Population(n=2, seed=3), t_end="7d",
                            progress=False)
    assert nominal.summary.iloc[0]["drawn_from_range"] == ""
    assert not any(n.startswith("drawn from a range") for n in nominal.notes)


def metrics_fmt(x):
    from csfpk.runresult import _fmt

    return _fmt(x)


def test_figures_name_metric_window_and_use_the_table_auc_unit(osi):
    res = osi[3][None]
    fig = plot.comparison(res, "csf_trough")
    title = fig._suptitle.get_text()
    assert "CSF Cmin,ss, by regimen" in title and "window: last complete dosing interval" in title
    auc = plot.comparison(res, "plasma_auc")
    assert auc.axes[0].get_xlabel() == "plasma AUCτ (µM·h)" and "plasma AUCτ µM·h" in res.table.columns
    span = plot.comparison(osi[3]["span"], "csf_cavg")
    assert "window: the whole simulated span" in span._suptitle.get_text()
    for f in (fig, auc, span):
        plot._plt().close(f)


def test_window_choices_are_checked():
    drug = csfpk.load_drug("erlotinib")
    reg = csfpk.Regimen.every(amt=150, ii=24, n=3)
    with pytest.raises(csfpk.ParameterError, match="window = 'steady'"):
        csfpk.compare(drug, {"a": reg}, population=csfpk.Population(n=2), t_end="3d", window="steady")
    one = csfpk.Regimen.every(amt=150, ii=24, n=1)
    res = csfpk.compare(drug, {"single": one}, population=csfpk.Population(n=2), t_end="3d", progress=False)
    assert res.summary.iloc[0]["window"] == "span"  # one dose: no dosing interval, the whole span
    with pytest.raises(csfpk.ParameterError, match="window = 'ss' needs two doses"):
        csfpk.compare(drug, {"single": one}, population=csfpk.Population(n=2), t_end="3d", window="ss")


def test_sweep_window_key_takes_a_kind_or_bounds(tmp_path):
    base = ('schema = "csfpk.sweep/1"\nname = "w"\nt_end = "4d"\n{window}\n[populations.p]\nn = 2\n'
            '[regimens.qd]\namt = 150\nii = "24h"\nsource = "assumed: test"\n[[grid]]\ndrugs = ["erlotinib"]\n'
            'regimens = ["qd"]\n')
    for line, want in (("", "ss"), ('window = "span"', "span"), ('window = ["1d", "2d"]', (24.0, 48.0))):
        path = tmp_path / "w.toml"
        path.write_text(base.format(window=line))
        assert csfpk.load_sweep(str(path)).scenarios[0].window == want
    path.write_text(base.format(window='window = "trough"'))
    with pytest.raises(csfpk.sweep.SweepError, match="window = 'trough' is not allowed"):
        csfpk.load_sweep(str(path))


def test_comparison_marks_the_typical_subject_and_the_range(osi):
    res = osi[3][None]
    fig = plot.comparison(res, "csf_cavg")
    (typ,) = [ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "typical"]
    assert typ.get_xdata()[0] == pytest.approx(res.summary.iloc[0]["csf_cavg_ss_typical"])
    assert "penetration ratio drawn per subject from the drug file's range" in fig._suptitle.get_text()
    plot._plt().close(fig)


def test_percent_axes_span_0_to_100_and_plasma_figures_do_not_claim_the_csf_range(osi):
    res = osi[3][None]
    fig = plot.comparison(res, "csf_pct_above")
    assert fig.axes[0].get_xlim() == (-3, 103) and fig.axes[0].get_xlabel() == "CSF time ≥ target (% of τ)"
    plasma = plot.comparison(res, "plasma_cavg")
    assert "range" not in plasma._suptitle.get_text() and "plasma Cavg,ss" in plasma._suptitle.get_text()
    for f in (fig, plasma):
        plot._plt().close(f)
