"""Myelosuppression (Friberg model) driven by plasma concentration, with CTCAE v4.03 grading.

Parameters live in ``params/pd/myelosuppression.toml`` (system parameters per lineage — leukocytes,
neutrophils, platelets —, a drug-effect slope per drug, CTCAE thresholds and inter-individual
variability), each with unit and source. The model equations are in ``csfpk._kernels.friberg``.

Examples
--------
>>> import csfpk
>>> from csfpk.myelosuppression import blood_counts
>>> res = csfpk.simulate("pemetrexed", csfpk.Regimen.every(amt=10, ii="3.5d", n=4, route="it_lumbar"), t_end="4w")
>>> counts = blood_counts(res)
>>> sorted(counts.lineage.unique())
['leukocytes', 'neutrophils', 'platelets']
"""

from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from .errors import ParameterError
from .paths import params_dir
from .quantity import POSITIVE, Spec, read_document, read_entry, require_keys

LINEAGES = ("leukocytes", "neutrophils", "platelets")
_SYSTEM = {"Circ0": Spec("10^9/L", **POSITIVE), "MTT": Spec("h", **POSITIVE), "gamma": Spec("1", low=0.0, high=2.0)}
_KCIRC = Spec("1/h", **POSITIVE)
_GRADES = ("grade1", "grade2", "grade3", "grade4")
_CV = Spec("%CV", low=0.0, high=300.0)
IIV_SYSTEM = ("Circ0", "MTT")  # per lineage; the drug-effect slope has one CV for every drug


@dataclass(frozen=True)
class Lineage:
    """System parameters of one blood lineage: baseline Circ0 (10⁹/L), MTT (h), feedback γ,
    CTCAE lower bounds of grades 1–4 (10⁹/L; grade k when the count is below ``thresholds[k-1]``)
    and ``kcirc`` (1/h), the loss rate of circulating cells (None: k_tr = 4/MTT, Friberg 2002)."""

    name: str
    circ0: float
    mtt: float
    gamma: float
    thresholds: tuple
    kcirc: float | None = None

    def grade(self, counts):
        """CTCAE grade (0–4) of each count."""
        counts = np.asarray(counts, dtype=float)
        g = np.zeros(counts.shape, dtype=np.int64)
        for k, lower in enumerate(self.thresholds, start=1):
            g[counts < lower] = k
        return g


@dataclass(frozen=True)
class Myelosuppression:
    """The PD parameter set: lineages and drug-effect slopes (L/mg, on total plasma mg/L).

    ``iiv`` holds CV fractions: ``{lineage: {"Circ0": cv, "MTT": cv}, "slope": cv}`` (empty: none).
    """

    lineages: MappingProxyType
    slopes: MappingProxyType
    quantities: MappingProxyType
    iiv: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))

    def __getstate__(self):  # MappingProxyType does not pickle (Dask ships scenarios with their PD set)
        return {"lineages": dict(self.lineages), "slopes": dict(self.slopes), "quantities": dict(self.quantities),
                "iiv": {k: dict(v) if isinstance(v, MappingProxyType) else v for k, v in self.iiv.items()}}

    def __setstate__(self, state):
        for k in ("lineages", "slopes", "quantities"):
            object.__setattr__(self, k, MappingProxyType(state[k]))
        object.__setattr__(self, "iiv", MappingProxyType(
            {k: MappingProxyType(v) if isinstance(v, dict) else v for k, v in state["iiv"].items()}))

    def record(self, drug_name, iiv=True):
        """Plain data of what the marrow simulation of ``drug_name`` uses: lineage system parameters and CTCAE
        thresholds, the drug-effect slope and (with ``iiv``) the CVs (fractions)."""
        lins = {n: {"circ0": x.circ0, "mtt": x.mtt, "gamma": x.gamma, "kcirc": x.kcirc,
                    "thresholds": list(x.thresholds)} for n, x in self.lineages.items()}
        cv = {k: (dict(v) if isinstance(v, MappingProxyType) else v) for k, v in self.iiv.items()} if iiv else {}
        return {"lineages": lins, "slope_L_mg": self.slope(drug_name), "iiv": cv}

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
    doc, where = read_document(path, "csfpk.pd/1", ("name", "system", "drug_effect", "ctcae"), ("iiv",))
    q = {}
    lineages = {}
    require_keys(f"{where} [system]", doc["system"], LINEAGES)
    require_keys(f"{where} [ctcae]", doc["ctcae"], LINEAGES)
    for lin in LINEAGES:
        sys_t = doc["system"][lin]
        require_keys(f"{where} [system.{lin}]", sys_t, tuple(_SYSTEM), ("kcirc",))
        vals = {k: read_entry(f"{where} [system.{lin}]", k, sys_t[k], spec) for k, spec in _SYSTEM.items()}
        kcirc = read_entry(f"{where} [system.{lin}]", "kcirc", sys_t["kcirc"], _KCIRC) if "kcirc" in sys_t else None
        ct = doc["ctcae"][lin]
        require_keys(f"{where} [ctcae.{lin}]", ct, _GRADES)
        thr = [read_entry(f"{where} [ctcae.{lin}]", g, ct[g], Spec("10^9/L", **POSITIVE)) for g in _GRADES]
        if any(a.value <= b.value for a, b in zip(thr, thr[1:])):
            raise ParameterError(f"{where} [ctcae.{lin}]: grade thresholds must decrease from grade1 to grade4")
        for k, v in vals.items():
            q[f"system.{lin}.{k}"] = v
        if kcirc is not None:
            q[f"system.{lin}.kcirc"] = kcirc
        lineages[lin] = Lineage(lin, vals["Circ0"].value, vals["MTT"].value, vals["gamma"].value,
                                tuple(t.value for t in thr), None if kcirc is None else kcirc.value)
    slopes = {}
    for drug, t in doc["drug_effect"].items():
        require_keys(f"{where} [drug_effect.{drug}]", t, ("slope",))
        e = read_entry(f"{where} [drug_effect.{drug}]", "slope", t["slope"], Spec("L/mg", low=0.0))
        q[f"drug_effect.{drug}.slope"] = e
        slopes[drug] = e.value
    iiv = {}
    doc_iiv = doc.get("iiv", {})
    require_keys(f"{where} [iiv]", doc_iiv, (), LINEAGES + ("drug_effect",))
    for lin in LINEAGES:
        if lin in doc_iiv:
            t = doc_iiv[lin]
            require_keys(f"{where} [iiv.{lin}]", t, (), IIV_SYSTEM)
            entries = {k: read_entry(f"{where} [iiv.{lin}]", k, t[k], _CV) for k in t}
            q.update({f"iiv.{lin}.{k}": e for k, e in entries.items()})
            iiv[lin] = MappingProxyType({k: e.value / 100.0 for k, e in entries.items()})
    if "drug_effect" in doc_iiv:
        require_keys(f"{where} [iiv.drug_effect]", doc_iiv["drug_effect"], (), ("slope",))
        if "slope" in doc_iiv["drug_effect"]:
            entry = read_entry(f"{where} [iiv.drug_effect]", "slope", doc_iiv["drug_effect"]["slope"], _CV)
            q["iiv.drug_effect.slope"] = entry
            iiv["slope"] = entry.value / 100.0
    return Myelosuppression(MappingProxyType(lineages), MappingProxyType(slopes), MappingProxyType(q),
                            MappingProxyType(iiv))


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
                float(lineage.kcirc or 0.0), np.int64(substeps), out)
    return out[:, 4]


def blood_counts(result, pd=None):
    """Tidy frame of leukocyte, neutrophil and platelet counts along a simulation's plasma curve.

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
