"""Exposure report of an intrathecal regimen: CSF by region, plasma, and the marrow (issue 3).

For each CSF output (``csf`` or the four regions) and for plasma: Cmax (nM), AUC over the whole
simulation (µM·h, linear trapezoid, ``csfpk.metrics``) and the time with C ≥ the target (h; by
default the drug file's [potency] target: methotrexate 1 µM, Yen 1978); from the Friberg model,
the leukocyte and neutrophil nadirs (10⁹/L), their days and the worst CTCAE grade.
"""

import numpy as np

from . import metrics
from .units import mg_per_L_to_nM


def exposure_table(result, counts, target_nM, label=""):
    """One row of IT exposure metrics (a dict) for a ``SimulationResult`` and its blood counts."""
    row = {"regimen": label, "drug": result.model.name, "doses": len(result.doses),
           "total_dose_mg": float(sum(d[2] for d in result.doses)), "target_nM": target_nM}
    for name in result.compartments:
        if name == "plasma_unbound":
            continue
        c = mg_per_L_to_nM(result.conc(name), result.model.molecular_weight)
        m = metrics.exposure(c, result.times, target=target_nM)
        row[f"{name}_cmax_nM"] = float(m["cmax"])
        row[f"{name}_auc_uM_h"] = float(m["auc"]) / 1000.0
        if name != "plasma":
            row[f"{name}_h_above"] = float(m["time_above"])
    for lineage, sub in counts.groupby("lineage"):
        i = int(np.argmin(sub.count_1e9_L.to_numpy()))
        row[f"{lineage}_nadir_1e9_L"] = float(sub.count_1e9_L.iloc[i])
        row[f"{lineage}_nadir_day"] = float(sub.time_h.iloc[i]) / 24.0
        row[f"{lineage}_worst_grade"] = int(sub.grade.max())
    return row
