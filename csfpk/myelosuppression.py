"""Myelosuppression (Friberg model) driven by plasma concentration, with CTCAE v4.03 grading.

Parameters live in ``params/pd/myelosuppression.toml`` (system parameters per lineage, a drug-effect
slope per drug, CTCAE thresholds), each with unit and source. The model equations are in
``csfpk._kernels.friberg``.

Examples
--------
>>> import csfpk
>>> from csfpk.myelosuppression import blood_counts
>>> res = csfpk.simulate("pemetrexed", csfpk.Regimen.every(amt=10, ii="3.5d", n=4, route="it_lumbar"), t_end="4w")
>>> counts = blood_counts(res)
>>> sorted(counts.lineage.unique())
['leukocytes', 'neutrophils']
"""

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from .errors import ParameterError
from .paths import params_dir
from .quantity import POSITIVE, Spec, read_document, read_entry, require_keys

LINEAGES = ("leukocytes", "neutrophils")
_SYSTEM = {"Circ0": Spec("10^9/L", **POSITIVE), "MTT": Spec("h", **POSITIVE), "gamma": Spec("1", low=0.0, high=2.0)}
_GRADES = ("grade1", "grade2", "grade3", "grade4")


@dataclass(frozen=True)
class Lineage:
    """System parameters of one blood lineage: baseline Circ0 (10⁹/L), MTT (h), feedback γ, and
    CTCAE lower bounds of grades 1–4 (10⁹/L; grade k when the count is below ``thresholds[k-1]``)."""

    name: str
    circ0: float
    mtt: float
    gamma: float
    thresholds: tuple

    def grade(self, counts):
        """CTCAE grade (0–4) of each count."""
        counts = np.asarray(counts, dtype=float)
        g = np.zeros(counts.shape, dtype=np.int64)
        for k, lower in enumerate(self.thresholds, start=1):
            g[counts < lower] = k
        return g


@dataclass(frozen=True)
class Myelosuppression:
    """The PD parameter set: lineages and drug-effect slopes (L/mg, on total plasma mg/L)."""

    lineages: MappingProxyType
    slopes: MappingProxyType
    quantities: MappingProxyType

    def slope(self, drug_name):
        if drug_name not in self.slopes:
            raise ParameterError(
                f"no myelosuppression drug effect for {drug_name!r}; params/pd/myelosuppression.toml has "
                f"[drug_effect.*] for {sorted(self.slopes)}"
            )
        return self.slopes[drug_name]


def load_myelosuppression(path=None):
    """Load ``params/pd/myelosuppression.toml`` strictly."""
    path = path or params_dir() / "pd" / "myelosuppression.toml"
    doc, where = read_document(path, "csfpk.pd/1", ("name", "system", "drug_effect", "ctcae"))
    q = {}
    lineages = {}
    require_keys(f"{where} [system]", doc["system"], LINEAGES)
    require_keys(f"{where} [ctcae]", doc["ctcae"], LINEAGES)
    for lin in LINEAGES:
        sys_t = doc["system"][lin]
        require_keys(f"{where} [system.{lin}]", sys_t, tuple(_SYSTEM))
        vals = {k: read_entry(f"{where} [system.{lin}]", k, sys_t[k], spec) for k, spec in _SYSTEM.items()}
        ct = doc["ctcae"][lin]
        require_keys(f"{where} [ctcae.{lin}]", ct, _GRADES)
        thr = [read_entry(f"{where} [ctcae.{lin}]", g, ct[g], Spec("10^9/L", **POSITIVE)) for g in _GRADES]
        if any(a.value <= b.value for a, b in zip(thr, thr[1:])):
            raise ParameterError(f"{where} [ctcae.{lin}]: grade thresholds must decrease from grade1 to grade4")
        for k, v in vals.items():
            q[f"system.{lin}.{k}"] = v
        lineages[lin] = Lineage(lin, vals["Circ0"].value, vals["MTT"].value, vals["gamma"].value,
                                tuple(t.value for t in thr))
    slopes = {}
    for drug, t in doc["drug_effect"].items():
        require_keys(f"{where} [drug_effect.{drug}]", t, ("slope",))
        e = read_entry(f"{where} [drug_effect.{drug}]", "slope", t["slope"], Spec("L/mg", low=0.0))
        q[f"drug_effect.{drug}.slope"] = e
        slopes[drug] = e.value
    return Myelosuppression(MappingProxyType(lineages), MappingProxyType(slopes), MappingProxyType(q))


def counts_along(times, conc_mg_L, lineage: Lineage, slope, substeps=4):
    """Circulating count (10⁹/L) of ``lineage`` along ``times`` (h) for plasma total C_p (mg/L)."""
    from ._kernels import friberg

    times = np.ascontiguousarray(times, dtype=float)
    conc = np.ascontiguousarray(conc_mg_L, dtype=float)
    if times.shape != conc.shape or times.ndim != 1 or times.size < 2:
        raise ParameterError("times and concentrations must be 1-d arrays of the same length >= 2")
    if np.any(np.diff(times) <= 0):
        raise ParameterError("times must increase strictly")
    out = np.empty((times.size, 5))
    friberg.run(times, conc, float(lineage.circ0), float(lineage.mtt), float(lineage.gamma), float(slope),
                np.int64(substeps), out)
    return out[:, 4]


def blood_counts(result, pd=None):
    """Tidy frame of leukocyte and neutrophil counts along a simulation's plasma curve.

    Columns: time_h, lineage, count_1e9_L, grade (CTCAE v4.03).
    """
    import pandas as pd_

    pd = pd or load_myelosuppression()
    slope = pd.slope(result.model.name)
    cp = result.conc("plasma")
    frames = []
    for lin in pd.lineages.values():
        c = counts_along(result.times, cp, lin, slope)
        frames.append(pd_.DataFrame({"time_h": result.times, "lineage": lin.name, "count_1e9_L": c,
                                     "grade": lin.grade(c)}))
    return pd_.concat(frames, ignore_index=True)
