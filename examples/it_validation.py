"""Predicted vs observed for every row of the published intrathecal observation set (issue 10).

Reads ``params/observations/intrathecal.csv``, predicts each row's statistic (concentration at a
time, peak over a window, time of the peak, half-life over a window) with the shipped drug and
physiology files (regional CSF layout, body size from the row's BSA), and writes to the output
folder (default ``runs/it_validation``):

* ``validation.csv``: row_id, use (fit/check), drug, study, route, site, statistic, time, observed,
  predicted, unit, fold error (predicted/observed) and |fold| = max(pred/obs, obs/pred);
* ``validation.png``: predicted against observed, concentrations and times in two panels, ``fit``
  rows filled, ``check`` rows open, with the line of identity and the 2-fold band.

``--refit`` re-runs the calibration (``csfpk.fit`` on the ``fit`` rows of methotrexate; the
parameters and bounds below) and prints the estimates the drug file carries. ``check`` rows are
never used by the fit.

Run: ``python examples/it_validation.py [--out DIR] [--refit]``
"""

import argparse
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import csfpk
from csfpk import observations, plot

LAYOUT = "regional"
FITTED = {"csf.CL_out": (1e-6, 0.3), "csf.CL_interstitial": (1e-5, 0.2), "csf.CL_brain_out": (1e-5, 0.5),
          "csf.CL_in": (1e-4, 0.05)}
SIGMA = 0.5  # log-scale residual SD for rows without an SD (study means of different cohorts; assumed)


def refit(profile=None):
    """The methotrexate calibration: the four CSF parameters from the ``fit`` rows (start: 0.01 L/h for the
    two interstitial terms, the file's values otherwise)."""
    df = observations.load()
    drug, phys = csfpk.load_drug("methotrexate"), csfpk.load_physiology("adult")
    obs, dosing, covs = observations.fit_frame(df[df.drug == "methotrexate"], drug, phys, LAYOUT)
    start = {"csf.CL_out": 0.066, "csf.CL_in": 0.0041, "csf.CL_interstitial": 0.01, "csf.CL_brain_out": 0.01}
    return csfpk.fit(obs, dosing, FITTED, drug=drug, physiology=phys, csf_layout=LAYOUT, covariates=covs,
                     start=start, sigma=SIGMA, profile=profile)


def table():
    df = observations.load()
    phys = csfpk.load_physiology("adult")
    rows = []
    for _, r in df.iterrows():
        pred = observations.predict(r, csfpk.load_drug(r.drug), phys, LAYOUT)
        fold = pred / r.value
        t = r.time_h if r.statistic == "conc" else f"{r.time_low_h:g}-{r.time_high_h:g}" if r.statistic != "tmax" else ""
        rows.append({"row_id": r.row_id, "use": r.use, "drug": r.drug, "study": r.study, "route": r.route,
                     "site": r.site, "statistic": r.statistic, "time_h": t, "observed": r.value,
                     "predicted": round(pred, 6), "unit": r.unit, "fold_error": round(fold, 3),
                     "abs_fold": round(max(fold, 1 / fold), 3)})
    return pd.DataFrame(rows)


def figure(tab):
    fig, axes = plt.subplots(1, 2, figsize=(plot.DOUBLE_COLUMN_IN, 3.4), layout="constrained",
                             gridspec_kw={"width_ratios": [1.6, 1]})
    for ax, is_time, label in ((axes[0], False, "concentration (µM)"), (axes[1], True, "time (h)")):
        sub = tab[tab.unit.eq("h") == is_time]
        for j, (drug, g) in enumerate(sub.groupby("drug")):
            for use, filled in (("fit", True), ("check", False)):
                q = g[g.use == use]
                if q.empty:  # no legend entry for a group without points (pemetrexed has no fit rows)
                    continue
                ax.plot(q.predicted, q.observed, plot.MARKERS[j], color=plot.PALETTE[j], ms=5,
                        mfc=plot.PALETTE[j] if filled else "none", ls="none", label=f"{drug} ({use})")
                for _, r in q.iterrows():
                    ax.annotate(r.row_id.split("-")[1], (r.predicted, r.observed), xytext=(3, 2), fontsize=5,
                                textcoords="offset points", color="0.3")
        plot.fold_axes(ax, np.concatenate([sub.predicted, sub.observed]), label)
        ax.set_title("concentrations" if not is_time else "half-lives and tmax", fontsize=9)
    for ax in axes:
        ax.legend(loc="upper left", frameon=False, fontsize=7)
    fig.suptitle("Intrathecal observation set: filled = fit rows, open = check rows; dashed = 2-fold", fontsize=9)
    return fig


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/it_validation")
    ap.add_argument("--refit", action="store_true", help="re-run the methotrexate calibration and print it")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    if args.refit:
        res = refit()
        print(res.table().to_string(index=False))
        print(f"objective {res.objective:.3f}, sigma {res.sigma}, {res.nfev} model evaluations")
    tab = table()
    tab.to_csv(os.path.join(args.out, "validation.csv"), index=False)
    plot.save(figure(tab), os.path.join(args.out, "validation.png"))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(tab.drop(columns=["route"]).to_string(index=False))
    fit_rows = tab[tab.use == "fit"]
    print(f"fit rows within 2-fold: {(fit_rows.abs_fold <= 2).sum()}/{len(fit_rows)}; "
          f"check rows within 2-fold: {(tab[tab.use == 'check'].abs_fold <= 2).sum()}/{(tab.use == 'check').sum()}")
    print(f"wrote {args.out}/validation.csv, validation.png")


if __name__ == "__main__":
    main()
