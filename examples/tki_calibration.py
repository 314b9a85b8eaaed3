"""Calibrate dose-dependent TKI bioavailability to published exposure, and check every observation.

Reads ``params/observations/tki.csv`` (format in ``params/observations/README.md``), predicts each
row with the shipped drug file (``predict``), prints observed, predicted and the fold error
(predicted / observed, shown as ≥ 1 with its direction), and with ``--fit`` re-estimates the fitted
parameters of ``FITS`` (``F_dose_half`` of F(D) = F / (1 + max(D − threshold, 0) / half); gefitinib's
CL), one at a time, by least squares on the log scale over their ``fit`` rows (scipy
``minimize_scalar``, bounded). ``csfpk.fit`` (the intrathecal-kinetics issue) did not exist on
this branch when this was written; with one parameter per drug and one informative row each, a
bounded scalar search is the whole estimation problem.

    python examples/tki_calibration.py            # table of every row with the shipped files
    python examples/tki_calibration.py --fit      # also re-estimate the fitted parameters (prints them)
    python examples/tki_calibration.py --osimertinib   # the 80 vs 160 mg CSF rows: what could explain the gap

A row that gives its spread as an SD and its number of patients also gets the 95 % confidence
interval of its published mean (Student t, n − 1 degrees of freedom): a mean of three patients with an
SD as large as the mean says little, and the table says whether the prediction lies inside it.

It writes ``OUT/fold_errors.csv`` (one line per row) and ``OUT/dose_exposure_<drug>.png`` for
erlotinib, gefitinib and osimertinib (``csfpk.plot.dose_exposure``, 28 days of daily dosing; the
README's copies live in ``docs/figures/``).

Regimen strings: ``AMT@II*N`` segments (mg, h, doses) separated by ``;`` run one after another,
e.g. ``150@24*7; 1500@168*2`` = 150 mg daily for 7 days, then 1500 mg on days 8 and 15.
"""

import argparse
import math
import os

import numpy as np

import csfpk
from csfpk import Regimen, params_dir

DT_H = 0.25
SITES = {"plasma": "plasma", "plasma_unbound": "plasma_unbound", "csf_lumbar": "csf"}
# drug -> [(parameter, the fit rows that inform it, bounds)], estimated in this order. "CL" of
# gefitinib is a concentration row and goes through csfpk.fit; the fold-change rows (a ratio of two
# arms, no absolute level) have no place in its concentration likelihood and use fit_parameter.
FITS = {
    "erlotinib": [("F_dose_half", ["erl_shr20_csf_fold"], (50.0, 1e5))],
    "gefitinib": [("CL", ["gef_tog12_csf"], (5.0, 100.0)),
                  ("F_dose_half", ["gef_shr20_plasma_fold"], (50.0, 1e5))],
}
CSFPK_FIT = {("gefitinib", "CL")}


# Saturable CSF uptake of gefitinib (csf.uptake_half_saturation, csfpk/_kernels/rhs.py): the rows
# fit_saturable_uptake() estimates the low-concentration ratio and the half-saturation from, Togashi 2012
# (1.13 % at 250 mg) and Shriyan 2020 (ratio halved at 1250 mg). The estimates are in
# params/drugs/gefitinib.toml (a nonlinear model: simulate and csfpk compare use the adaptive solvers).
SATURABLE_UPTAKE_ROWS = {"penetration_ratio": "gef_tog12_ratio", "uptake_half_saturation": "gef_shr20_ratio_fold"}

# doses of the exposure-vs-dose figures (mg, daily): the phase I and high-dose ranges of each drug
DOSE_RANGES = {"erlotinib": [25, 50, 100, 150, 300, 600, 1000, 1500, 2000],
               "gefitinib": [50, 100, 250, 500, 750, 1000, 1250],
               "osimertinib": [20, 40, 80, 160, 240]}


def observations_path():
    return params_dir() / "observations" / "tki.csv"


def load_rows(path=None):
    """The observation rows as a list of dicts (csv module; numbers converted)."""
    import csv

    with open(path or observations_path(), newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k in ("dose_mg", "time_h", "value", "ref_time_h"):
            r[k] = float(r[k]) if r.get(k) not in (None, "") else None
    return rows


def parse_regimen(text):
    """``"150@24*7; 1500@168*2"`` → a Regimen whose segments follow one another (mg, h)."""
    reg, start = None, 0.0
    for seg in text.split(";"):
        amt, rest = seg.strip().split("@")
        ii, n = rest.split("*")
        amt, ii, n = float(amt), float(ii), int(n)
        part = Regimen.every(amt=amt, ii=ii, n=n, start=start)
        reg = part if reg is None else reg + part
        start += ii * n
    return reg


def _interval(text, t):
    """Dosing interval (h) of the segment active at time t."""
    start = 0.0
    for seg in text.split(";"):
        amt, rest = seg.strip().split("@")
        ii, n = rest.split("*")
        ii, n = float(ii), int(n)
        if t < start + ii * n - 1e-9:
            return ii
        start += ii * n
    return ii


def _curve(drug, regimen_text, t_end):
    res = csfpk.simulate(drug, parse_regimen(regimen_text), t_end=t_end, dt=DT_H)
    return res


def _at(res, comp, t):
    return float(res.conc(comp)[int(round(t / DT_H))])


def _window(res, comp, t0, width):
    i0, i1 = int(round(t0 / DT_H)), int(round((t0 + width) / DT_H))
    return res.times[i0:i1 + 1], res.conc(comp)[i0:i1 + 1]


def predict(row, drug=None):
    """Model prediction of one observation row, in the row's unit."""
    drug = drug or csfpk.load_drug(row["drug"])
    comp = SITES[row["site"]]
    t, metric, reg = row["time_h"], row["metric"], row["regimen"]
    tau = _interval(reg, t)
    res = _curve(drug, reg, t + max(tau, 24.0) + 1.0)
    if metric == "conc":
        mg_L = _at(res, comp, t)
    elif metric in ("cmax", "auc_tau", "cavg_ss", "auc_0_24"):
        width = 24.0 if metric == "auc_0_24" else tau
        tt, cc = _window(res, comp, t, width)
        if metric == "cmax":
            mg_L = float(cc.max())
        else:
            auc = float(np.trapezoid(cc, tt))
            if metric == "cavg_ss":
                mg_L = auc / width
            else:
                return _convert(auc, row["unit"], drug)  # mg·h/L
    elif metric == "css_ratio":
        return _at(res, comp, t) / _at(res, "plasma", t)
    elif metric in ("fold_conc", "fold_css_ratio"):
        ref = _curve(drug, row["ref_regimen"], row["ref_time_h"] + 2.0)
        if metric == "fold_conc":
            return _at(res, comp, t) / _at(ref, comp, row["ref_time_h"])
        return (_at(res, comp, t) / _at(res, "plasma", t)) / (
            _at(ref, comp, row["ref_time_h"]) / _at(ref, "plasma", row["ref_time_h"]))
    else:
        raise ValueError(f"row {row['row_id']}: metric = {metric!r} is not known")
    return _convert(mg_L, row["unit"], drug)


def _convert(mg_L, unit, drug):
    factors = {"mg/L": 1.0, "ng/mL": 1000.0, "nM": 1e6 / drug.molecular_weight, "mg*h/L": 1.0, "1": 1.0}
    if unit not in factors:
        raise ValueError(f"unit = {unit!r} is not known; expected one of {sorted(factors)}")
    return mg_L * factors[unit]


def fold_error(predicted, observed):
    """max(p/o, o/p) ≥ 1: how many times off the prediction is, whichever direction."""
    r = predicted / observed
    return max(r, 1.0 / r)


def mean_ci95(row):
    """95 % confidence interval (low, high) of a published mean from its SD and n (Student t with n − 1
    degrees of freedom), or None when the row gives no SD or fewer than two patients."""
    from scipy.stats import t as student_t

    if row.get("spread_kind") != "SD" or not row.get("spread") or not row.get("n"):
        return None
    n, sd = int(float(row["n"])), float(row["spread"])
    if n < 2:
        return None
    half = float(student_t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return row["value"] - half, row["value"] + half


def table(rows=None, drugs=None, drug=None):
    """One line per row: (row, predicted, fold error); ``drug`` replaces the rows' drug files."""
    out = []
    cache = {}
    for row in rows or load_rows():
        if drugs is not None and row["drug"] not in drugs:
            continue
        d = drug or cache.setdefault(row["drug"], csfpk.load_drug(row["drug"]))
        p = predict(row, d)
        out.append((row, p, fold_error(p, row["value"])))
    return out


def fit_parameter(drug, name, row_ids, bounds, rows=None):
    """Least-squares (log scale) estimate of one drug parameter over the given fit rows.

    Returns (estimate, sum of squared log residuals). ``drug`` is a Drug; the search is bounded
    (scipy ``minimize_scalar``) on the log of the parameter.
    """
    from scipy.optimize import minimize_scalar

    rows = [r for r in (rows or load_rows()) if r["row_id"] in row_ids]
    if len(rows) != len(row_ids):
        raise ValueError(f"{drug.name}: fit rows {row_ids} not all found in the observation file")

    def loss(log_v):
        d = drug.replace(**{name: math.exp(log_v)})
        return sum(math.log(predict(r, d) / r["value"]) ** 2 for r in rows)

    opt = minimize_scalar(loss, bounds=tuple(math.log(b) for b in bounds), method="bounded",
                          options={"xatol": 1e-6})
    return math.exp(opt.x), opt.fun


def fit_with_csfpk_fit(drug, name, row_ids, bounds, rows=None):
    """``csfpk.fit`` of one plasma parameter to steady-state average rows (``cavg_ss``).

    A Cavg over the dosing interval becomes 24 equally spaced samples of that value, each with
    weight 1/24 and the row's SD, so the log-scale likelihood sees one observation's worth of
    information. Returns (estimate, FitResult).
    """
    import pandas as pd

    by_id = {r["row_id"]: r for r in (rows or load_rows())}
    frames, dosing = [], {}
    for i, rid in enumerate(row_ids, start=1):
        r = by_id[rid]
        if r["metric"] != "cavg_ss":
            raise ValueError(f"{rid}: csfpk.fit here takes cavg_ss rows; got {r['metric']!r}")
        tau = _interval(r["regimen"], r["time_h"])
        times = [r["time_h"] + tau * (k + 0.5) / 24 for k in range(24)]
        sd = float(r["spread"]) if r["spread_kind"] == "SD" else None
        frames.append(pd.DataFrame({"id": i, "time_h": times, "compartment": SITES[r["site"]], "conc": r["value"],
                                    "unit": r["unit"], "weight": 1.0 / 24, "sd": sd}))
        dosing[i] = parse_regimen(r["regimen"])
    res = csfpk.fit(pd.concat(frames, ignore_index=True), dosing, {f"plasma.{name}": bounds}, drug=drug,
                    profile=True)
    return res.estimates[f"plasma.{name}"], res


def fit_drug(drug_name, rows=None):
    """Estimate the drug's ``FITS`` parameters in order; returns {name: (estimate, loss or FitResult)}."""
    drug = csfpk.load_drug(drug_name)
    out = {}
    for name, row_ids, bounds in FITS[drug_name]:
        if (drug_name, name) in CSFPK_FIT:
            value, loss = fit_with_csfpk_fit(drug, name, row_ids, bounds, rows)
        else:
            value, loss = fit_parameter(drug, name, row_ids, bounds, rows)
        drug = drug.replace(**{name: value})
        out[name] = (value, loss)
    return out


def fit_saturable_uptake(drug_name="gefitinib", rows=None):
    """Joint least-squares (log scale) estimate of the low-concentration CSF/plasma ratio and the
    unbound half-saturation concentration (mg/L) of CSF uptake; returns ({name: value}, cost).

    Two parameters, two rows (ratio at the standard dose, ratio fold at the high dose): scipy
    ``least_squares`` on the logs, started from the ratio observed at the standard dose and about its
    steady-state unbound average.
    """
    from scipy.optimize import least_squares

    drug = csfpk.load_drug(drug_name)
    by_id = {r["row_id"]: r for r in (rows or load_rows())}
    fit_rows = [by_id[SATURABLE_UPTAKE_ROWS[k]] for k in ("penetration_ratio", "uptake_half_saturation")]

    def residuals(logs):
        d = drug.replace(penetration_ratio=math.exp(logs[0]), uptake_half_saturation=math.exp(logs[1]))
        return [math.log(predict(r, d) / r["value"]) for r in fit_rows]

    x0 = [math.log(0.0113), math.log(drug.plasma.fu * 0.3)]  # start: the 250 mg ratio, linear uptake
    opt = least_squares(residuals, x0, xtol=1e-10, ftol=1e-12, diff_step=1e-4)
    return {"penetration_ratio": math.exp(opt.x[0]), "uptake_half_saturation": math.exp(opt.x[1])}, opt.cost


def _steady_state(drug, dose, dt=0.25):
    """Day 28 of ``dose`` mg daily: (plasma Cavg nM, CSF Cavg nM, lowest and highest CSF/plasma ratio over the day)."""
    res = csfpk.simulate(drug, Regimen.every(amt=dose, ii=24, n=28), t_end=672, dt=dt)
    w = res.times >= 648 - 1e-9
    t, p, c = res.times[w], res.conc("plasma")[w], res.conc("csf")[w]
    to_nM = 1e6 / drug.molecular_weight
    return (float(np.trapezoid(p, t)) / 24 * to_nM, float(np.trapezoid(c, t)) / 24 * to_nM,
            float((c / p).min()), float((c / p).max()))


def osimertinib_diagnosis(rows=None):
    """What could make the osimertinib rows 3-fold apart (issue 13): sampling time, the study patients'
    plasma, the basis of the ratio, saturable CSF uptake, and which study the 7.51 nM belongs to. Text."""
    by_id = {r["row_id"]: r for r in (rows or load_rows())}
    bloom, nanjo = by_id["osi_bloom_csf"], by_id["osi_nanjo_ratio"]
    drug = csfpk.load_drug("osimertinib")
    out = ["osimertinib: osi_bloom_csf (7.51 nM CSF, Table 1 prints 160 mg) against osi_nanjo_ratio (2.5 % of total "
           "plasma at 80 mg, Nanjo 2018)"]
    ss = {dose: _steady_state(drug, dose) for dose in (80, 160)}
    for dose, (pl, csf, lo, hi) in ss.items():
        out.append(f"  model, typical patient, {dose} mg daily, day 28: plasma Cavg {pl:.0f} nM, CSF Cavg {csf:.2f} nM, "
                   f"CSF/plasma {100 * lo:.2f}-{100 * hi:.2f} % over the day")
    ratio_fold = nanjo["value"] / ss[80][3]
    out.append(f"  sampling time: the ratio moves {100 * (ss[80][3] / ss[80][2] - 1):.0f} % over the dosing interval, "
               f"against the {ratio_fold:.2f}-fold gap")
    out.append(f"  7.51 nM is {100 * bloom['value'] / ss[160][0]:.2f} % of the model plasma at 160 mg; at 2.5 % the "
               f"patients' plasma would be {bloom['value'] / nanjo['value']:.0f} nM = "
               f"{bloom['value'] / nanjo['value'] / ss[160][0]:.2f} x the typical 160 mg level "
               f"({bloom['value'] / nanjo['value'] / ss[80][0]:.2f} x the 80 mg level)")
    fu = drug.plasma.fu
    out.append(f"  basis: 16 % of unbound (BLOOM, the file's reading) equals 2.5 % of total only if fu = "
               f"{nanjo['value'] / drug.csf.penetration_ratio:.3f} (the file assumes {fu})")
    strong = drug.replace(uptake_half_saturation=1e-6 * fu)  # K_u far below every unbound level: influx saturated
    sat = {dose: _steady_state(strong, dose, dt=1.0) for dose in (80, 160)}
    out.append(f"  saturable CSF uptake, saturated far below the 80 mg level: the ratio falls "
               f"{(sat[80][3] / sat[160][3]):.2f}-fold from 80 to 160 mg (a Michaelis-Menten influx cannot do more than "
               f"2-fold for a doubled concentration, and the CSF level cannot fall as the dose rises); the gap needs "
               f"{nanjo['value'] / (bloom['value'] / ss[160][0]):.2f}-fold")
    alt = dict(bloom, dose_mg=80.0, regimen="80@24*28")
    r_alt, _ = fit_parameter(drug, "penetration_ratio", [alt["row_id"]], (1e-3, 1.0), rows=[alt])
    d_alt = drug.replace(penetration_ratio=r_alt)
    out.append(f"  if 7.51 nM were Nanjo's 80 mg level (the review's row cites both studies): penetration ratio "
               f"{r_alt:.4f} of unbound ({100 * r_alt * fu:.2f} % of total), 7.51 nM met "
               f"({fold_error(predict(alt, d_alt), alt['value']):.2f}x), Nanjo's 2.5 % "
               f"{fold_error(predict(nanjo, d_alt), nanjo['value']):.2f}x under; not adopted: the primary sources "
               f"were not read")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", action="store_true", help="re-estimate the FITS parameters (prints them; edit the drug files by hand)")
    ap.add_argument("--out", default="tki_calibration", help="folder for fold_errors.csv and the figures")
    ap.add_argument("--osimertinib", action="store_true",
                    help="print what could explain the gap between the osimertinib CSF rows (80 vs 160 mg)")
    args = ap.parse_args(argv)
    if args.fit:
        for drug_name in FITS:
            for name, (value, loss) in fit_drug(drug_name).items():
                if isinstance(loss, float):
                    print(f"{drug_name}: {name} = {value:.4g} (sum of squared log residuals {loss:.2e})")
                else:
                    print(f"{drug_name}: {name} = {value:.4g} (csfpk.fit)\n{loss.table().to_string(index=False)}")
        values, cost = fit_saturable_uptake()
        print(f"gefitinib saturable CSF uptake: {values} (cost {cost:.2e})")
    import csv

    os.makedirs(args.out, exist_ok=True)
    if args.osimertinib:
        print(osimertinib_diagnosis())
    print(f"{'row':24s} {'use':5s} {'observed':>10s} {'predicted':>10s} {'unit':7s} fold error   95 % CI of the mean")
    lines = []
    for row, p, fe in table():
        direction = "over" if p > row["value"] else "under"
        ci = mean_ci95(row)
        ci_text = "" if ci is None else (f"{ci[0]:.4g} to {ci[1]:.4g} "
                                         f"({'prediction inside' if ci[0] <= p <= ci[1] else 'prediction outside'})")
        print(f"{row['row_id']:24s} {row['use']:5s} {row['value']:10.4g} {p:10.4g} {row['unit']:7s} "
              f"{fe:.2f}x {direction:5s}  {ci_text}")
        lines.append({"row_id": row["row_id"], "use": row["use"], "drug": row["drug"], "metric": row["metric"],
                      "observed": row["value"], "predicted": p, "unit": row["unit"], "fold_error": fe,
                      "direction": direction, "ci95_low": "" if ci is None else ci[0],
                      "ci95_high": "" if ci is None else ci[1],
                      "inside_ci95": "" if ci is None else ci[0] <= p <= ci[1]})
    with open(os.path.join(args.out, "fold_errors.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(lines[0]))
        w.writeheader()
        w.writerows(lines)
    written = [os.path.join(args.out, "fold_errors.csv")]
    for name, doses in DOSE_RANGES.items():
        fig = csfpk.plot.dose_exposure(name, doses, lambda d: Regimen.every(amt=d, ii=24, n=28))
        path = os.path.join(args.out, f"dose_exposure_{name}.png")
        csfpk.plot.save(fig, path)
        written.append(path)
    print("wrote " + ", ".join(written))


if __name__ == "__main__":
    main()
