"""Grade >= 3 myelosuppression and final dose levels over virtual patients on the seed IT protocols.

Seed 000 (Fan et al., BMC Cancer 2023): intrathecal injections twice weekly in month one, weekly in
month two, then every four weeks; pemetrexed from 10 mg up by 5 mg per injection to 50 mg, one level
back after grade >= 3 myelosuppression; methotrexate 12 mg per injection. Observed in the 41 patients
(7 on MTX, 34 on pemetrexed, pooled): 11 with grade >= 3 myelosuppression, 7 leukopenia, 4
thrombocytopenia (CTCAE v4.03; neutropenia not reported separately).

Each virtual patient has the drug file's PK variability and the PD file's marrow variability (Circ0,
MTT, slope; ``params/pd/myelosuppression.toml``); the myelosuppression parameters are NOT fitted to
the seed's counts, which are shown as a check only. Single CSF compartment, lumbar route.

Writes to the output folder (default ``runs/escalation_population``): ``grade3_shares.csv`` (one row
per arm plus the seed's observation), ``final_dose_levels.csv``, ``doses_given.csv`` (per subject and
injection) and ``escalation_population.png``.

Run: ``python examples/escalation_population.py [--n 1000] [--seed 1] [--out DIR] [--dt 0.25]``
"""

import argparse
import os

import pandas as pd

import csfpk
from csfpk import Escalation, load_regimen, run_escalation_population

SEED_OBSERVED = {"arm": "seed 000 observed (41 patients, pooled)", "n": 41, "grade3_leukocytes_pct": 100 * 7 / 41,
                 "grade3_neutrophils_pct": float("nan"), "grade3_platelets_pct": 100 * 4 / 41,
                 "grade3_any_pct": 100 * 11 / 41}


def arms():
    """(label, drug, Escalation) of the two seed arms, from the regimen files."""
    pem = load_regimen("it_pemetrexed_seed")
    mtx = load_regimen("it_mtx_seed")
    fixed = Escalation.from_schedule(mtx.regimen, start=12, step=0, cap=12, name="MTX 12 mg")  # one level: fixed
    return [("pemetrexed 10 -> 50 mg escalation", pem.drug, pem.regimen), ("MTX 12 mg", mtx.drug, fixed)]


def run(out, n=1000, seed=1, dt=0.25):
    os.makedirs(out, exist_ok=True)
    rows, levels, doses = [], [], []
    for label, drug, esc in arms():
        res = run_escalation_population(drug, esc, csfpk.Population(n=n, seed=seed), dt=dt)
        s = res.summary()
        ok = res.subjects[res.subjects.status == 0]
        rows.append({"arm": label, "n": n, "n_failed": s["n_failed"],
                     **{k: v for k, v in s.items() if k.startswith("grade3_")},
                     **{f"nadir_{lin}_median_1e9_L": float(ok[f"nadir_{lin}_1e9_L"].median()) for lin in res.lineages},
                     "n_step_backs_mean": float(ok.n_step_backs.mean()),
                     "final_dose_mg_median": s["final_dose_mg_median"]})
        for dose, count in s["final_dose_mg_counts"].items():
            levels.append({"arm": label, "final_dose_mg": dose, "n": count, "pct": 100 * count / max(s["n_ok"], 1)})
        doses.append(res.doses.assign(arm=label))
    table = pd.DataFrame(rows + [SEED_OBSERVED])
    level_table = pd.DataFrame(levels)
    table.to_csv(os.path.join(out, "grade3_shares.csv"), index=False)
    level_table.to_csv(os.path.join(out, "final_dose_levels.csv"), index=False)
    pd.concat(doses, ignore_index=True).to_csv(os.path.join(out, "doses_given.csv"), index=False)
    _figure(table, level_table, os.path.join(out, "escalation_population.png"), n)
    return table, level_table


def _figure(table, level_table, path, n):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1.1, 1]})
    pem = level_table[level_table.arm.str.startswith("pemetrexed")].set_index("final_dose_mg").pct
    all_levels = [float(x) for x in load_regimen("it_pemetrexed_seed").regimen.levels]
    pct = [float(pem.get(x, 0.0)) for x in all_levels]
    bars = a.bar([f"{x:g}" for x in all_levels], pct, color="#4C72B0")
    for rect, v in zip(bars, pct):
        a.text(rect.get_x() + rect.get_width() / 2, rect.get_height() + 1, f"{v:.1f}", ha="center", fontsize=7)
    a.set_ylim(0, 110)
    a.set_xlabel("final dose (mg) at the last injection")
    a.set_ylabel(f"share of virtual patients (%), n = {n}")
    a.set_title("IT pemetrexed, seed escalation: final dose level")
    lins = [("leukocytes", "leukopenia"), ("neutrophils", "neutropenia"), ("platelets", "thrombocytopenia"),
            ("any", "any lineage")]
    x = np.arange(len(lins))
    w = 0.8 / len(table)
    for i, row in enumerate(table.itertuples()):
        vals = [getattr(row, f"grade3_{k}_pct") for k, _ in lins]
        bars = b.bar(x + (i - (len(table) - 1) / 2) * w, np.nan_to_num(vals), w, label=row.arm,
                     hatch="//" if row.arm.startswith("seed") else None, alpha=0.9)
        for rect, v in zip(bars, vals):
            b.text(rect.get_x() + rect.get_width() / 2, rect.get_height() + 0.5,
                   "n/a" if v != v else f"{v:.1f}", ha="center", fontsize=7)
    b.set_xticks(x, [lab for _, lab in lins])
    b.set_ylabel("patients with CTCAE grade >= 3 (%)")
    b.set_title("Grade >= 3 myelosuppression: predicted vs seed")
    top = np.nanmax(table[[f"grade3_{k}_pct" for k, _ in lins]].to_numpy())
    b.set_ylim(0, max(top, 1.0) * 1.45)
    b.legend(fontsize=7, loc="upper center", ncol=1)
    fig.text(0.01, 0.01, "Marrow parameters not fitted to the seed; seed counts pooled over both drugs (7 MTX, 34 "
             "pemetrexed) and include systemic therapy.", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="virtual patients per arm")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dt", type=float, default=0.25, help="output step (h) driving the marrow model")
    ap.add_argument("--out", default=os.path.join("runs", "escalation_population"))
    args = ap.parse_args(argv)
    table, levels = run(args.out, n=args.n, seed=args.seed, dt=args.dt)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(2).to_string(index=False))
        print(levels.round(1).to_string(index=False))
    print(f"wrote {args.out}/grade3_shares.csv, final_dose_levels.csv, doses_given.csv, escalation_population.png")


if __name__ == "__main__":
    main()
