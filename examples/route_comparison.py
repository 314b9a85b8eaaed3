"""Methotrexate into the CSF three ways: lumbar puncture, Ommaya reservoir, and high-dose IV.

12 mg intrathecally by lumbar puncture (spinal SAS) or through an Ommaya reservoir (ventricles), and
3.5 g/m² IV over 4 h (the high-dose regimen used for CNS disease; BSA from the physiology file), in
the regional CSF layout. Prints CSF exposure by region and plasma exposure, and writes the table
and a figure of the first 48 h. Leucovorin rescue, given with every high-dose IV regimen, is not
modelled: the IV arm's leukocyte nadir is that of unrescued methotrexate and is not a clinical
prediction.

Run: ``python examples/route_comparison.py [--out DIR]``
"""

import argparse
import os

import pandas as pd

import csfpk


def run(out):
    os.makedirs(out, exist_ok=True)
    drug = csfpk.load_drug("methotrexate")
    bsa = csfpk.load_physiology("adult").bsa_m2
    arms = {
        "12 mg lumbar puncture": csfpk.Regimen.every(amt=12, ii=0, n=1, route="it_lumbar"),
        "12 mg Ommaya": csfpk.Regimen.every(amt=12, ii=0, n=1, route="it_ventricular"),
        "3.5 g/m² IV over 4 h": csfpk.Regimen.every(amt="3500 mg/m2", ii=0, n=1, route="iv", duration="4h",
                                                    bsa_m2=bsa),
    }
    results, rows = {}, []
    for label, reg in arms.items():
        res = csfpk.simulate(drug, reg, t_end="3w", dt=0.1, csf_layout="regional")
        counts = csfpk.blood_counts(res)
        rows.append(csfpk.exposure_table(res, counts, drug.potency_target_nM, label))
        results[label] = (res, counts)
    table = pd.DataFrame(rows)
    table.to_csv(os.path.join(out, "route_exposure.csv"), index=False)
    plot = csfpk.plot

    plot.save(plot.csf_regions(results, t_max="48h", time_unit="h", decades=5), os.path.join(out, "routes_csf.png"))
    return table


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/routes", help="output folder (default runs/routes)")
    args = ap.parse_args(argv)
    table = run(args.out)
    cols = ["regimen", "total_dose_mg", "csf_ventricles_auc_uM_h", "csf_lumbar_auc_uM_h", "csf_lumbar_h_above",
            "csf_ventricles_h_above", "plasma_cmax_nM", "plasma_auc_uM_h", "leukocytes_nadir_1e9_L"]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3g}".format):
        print(table[cols].to_string(index=False))
    print(f"\nwrote {args.out}/route_exposure.csv and routes_csf.png")


if __name__ == "__main__":
    main()
