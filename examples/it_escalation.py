"""The it_escalation sweep: intrathecal pemetrexed escalation vs fixed doses, and MTX 12 mg, over virtual patients.

Runs ``params/sweeps/it_escalation.toml`` (seed 000's schedule over 26 weeks: pemetrexed start 10 or 15 mg,
cap 30 or 50 mg, with or without the step-back after grade >= 3 myelosuppression; fixed 10 and 15 mg; MTX
12 mg) into a run folder, then writes the share of patients with CTCAE grade >= 3 per lineage and the final
dose levels per arm beside the seed's observation (41 patients, both drugs pooled: 11 with grade >= 3
myelosuppression, 7 leukopenia, 4 thrombocytopenia; neutropenia not reported). The marrow parameters are
not fitted to these counts: the comparison is a check.

Writes to the output folder (default ``runs/it_escalation_example``): the run folder's files
(manifest.json, scenarios/*/metrics-*.parquet and doses-*.parquet, summary.csv, summary.png),
``grade3_vs_seed.csv`` and ``grade3_vs_seed.png``.

Run: ``python examples/it_escalation.py [--n 1000] [--seed 1] [--out DIR]``
(the same run from the command line: ``csfpk compare it_escalation --out DIR``)
"""

import argparse
import os

import pandas as pd

import csfpk

SEED = {"label": "seed 000 observed, 41 patients pooled", "leukocytes": 100 * 7 / 41, "neutrophils": None,
        "platelets": 100 * 4 / 41, "any": 100 * 11 / 41}
COLUMNS = ["grade3_leukocytes_pct", "grade3_neutrophils_pct", "grade3_platelets_pct", "grade3_any_pct",
           "final_dose_mg_median", "final_dose_at_cap_pct", "step_back_pct", "final_dose_levels"]


def run(out, n=1000, seed=1):
    res = csfpk.run_sweep("it_escalation", out, n=n, seed=seed, overwrite=True, progress=False)
    table = res.summary[["drug", "regimen", "n", "n_failed"] + COLUMNS]
    observed = {"drug": "pemetrexed + MTX", "regimen": SEED["label"], "n": 41, "n_failed": 0,
                "grade3_leukocytes_pct": SEED["leukocytes"], "grade3_neutrophils_pct": float("nan"),
                "grade3_platelets_pct": SEED["platelets"], "grade3_any_pct": SEED["any"]}
    table = pd.concat([table, pd.DataFrame([observed])], ignore_index=True)
    table.to_csv(os.path.join(out, "grade3_vs_seed.csv"), index=False)
    fig = csfpk.plot.escalation_summary(res, reference=SEED)
    csfpk.plot.save(fig, os.path.join(out, "grade3_vs_seed.png"))
    return res, table


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="virtual patients per arm")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=os.path.join("runs", "it_escalation_example"))
    args = ap.parse_args(argv)
    res, table = run(args.out, n=args.n, seed=args.seed)
    for line in res.notes:
        print(line)
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 60):
        print(table.round(1).to_string(index=False))
    print(f"wrote {args.out}/: run folder, grade3_vs_seed.csv, grade3_vs_seed.png")


if __name__ == "__main__":
    main()
