"""Drugs: plasma PK, CSF exchange, variability and provenance, loaded strictly from TOML.

A drug is data (``params/drugs/<name>.toml``, schema in ``params/README.md``), never code. The
dataclasses below are frozen; ``dataclasses.replace`` (or ``Drug.replace``) makes changed copies
and re-runs every check.
"""

import functools
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType

from .errors import ParameterError
from .paths import file_key, params_dir, resolve
from .quantity import FRACTION, NONNEG, POSITIVE, Spec, check_value, read_document, read_entry, require_keys

PLASMA_SPECS = {
    "F": Spec("1", **FRACTION),
    "ka": Spec("1/h", **POSITIVE),
    "tlag": Spec("h", **NONNEG),
    "CL": Spec("L/h", **POSITIVE),
    "V1": Spec("L", **POSITIVE),
    "fu": Spec("1", **FRACTION),
    "Q": Spec("L/h", **POSITIVE),
    "V2": Spec("L", **POSITIVE),
    "Q3": Spec("L/h", **POSITIVE),
    "V3": Spec("L", **POSITIVE),
    "n_transit": Spec("1", low=1, high=50, integer=True),
    "mtt": Spec("h", **POSITIVE),
    "Vmax": Spec("mg/h", **POSITIVE),
    "Km": Spec("mg/L", **POSITIVE),
    "CL_induced": Spec("L/h", **POSITIVE),
    "k_induction": Spec("1/h", **POSITIVE),
    "F_dose_threshold": Spec("mg", **NONNEG),
    "F_dose_half": Spec("mg", **POSITIVE),
}
PLASMA_REQUIRED = ("F", "ka", "tlag", "CL", "V1", "fu")
PLASMA_GROUPS = (("Q", "V2"), ("Q3", "V3"), ("n_transit", "mtt"), ("Vmax", "Km"),
                 ("CL_induced", "k_induction"), ("F_dose_threshold", "F_dose_half"))
CSF_SPECS = {
    "penetration_ratio": Spec("1", low=0.0, high=5.0, low_open=True),
    "equilibration_half_life": Spec("h", **POSITIVE),
    "CL_in": Spec("L/h", **NONNEG),
    "CL_out": Spec("L/h", **NONNEG),
    "depot_release_half_life": Spec("h", **POSITIVE),
    "CL_interstitial": Spec("L/h", **NONNEG),
    "CL_brain_out": Spec("L/h", **NONNEG),
}
BASES = ("total", "unbound")
SITES = ("lumbar", "ventricular", "cisternal")
ROUTES = ("oral", "iv", "it_lumbar", "it_ventricular")


@dataclass(frozen=True)
class PlasmaPK:
    """Plasma pharmacokinetics (DESIGN §3).

    Parameters (units)
    ------------------
    CL : clearance, L/h;  V1 : central volume, L;  ka : absorption rate constant, 1/h;
    F : oral bioavailability, 1;  tlag : absorption lag, h;  fu : unbound fraction in plasma, 1;
    Q, V2 / Q3, V3 : first / second peripheral clearance (L/h) and volume (L);
    n_transit, mtt : transit chain before the central compartment (count, mean transit time h,
    k_tr = (n_transit + 1) / mtt as in Savic et al. 2007 J Pharmacokinet Pharmacodyn 34:711);
    Vmax (mg/h), Km (mg/L) : Michaelis–Menten elimination added to CL;
    CL_induced (L/h), k_induction (1/h) : CL(t) = CL + (CL_induced − CL)(1 − exp(−k_induction·t));
    F_dose_threshold, F_dose_half (mg) : F(D) = F / (1 + max(D − threshold, 0) / half).
    """

    CL: float
    V1: float
    ka: float = 1.0
    F: float = 1.0
    tlag: float = 0.0
    fu: float = 1.0
    Q: float | None = None
    V2: float | None = None
    Q3: float | None = None
    V3: float | None = None
    n_transit: int | None = None
    mtt: float | None = None
    Vmax: float | None = None
    Km: float | None = None
    CL_induced: float | None = None
    k_induction: float | None = None
    F_dose_threshold: float | None = None
    F_dose_half: float | None = None
    parameterisation: str = "systemic"

    def __post_init__(self):
        where = "plasma"
        for name, spec in PLASMA_SPECS.items():
            v = getattr(self, name)
            if v is None:
                if name in PLASMA_REQUIRED:
                    raise ParameterError(f"{where}: {name} is required ({spec.allowed()})")
                continue
            object.__setattr__(self, name, check_value(where, name, v, spec))
        if self.n_transit is not None:
            object.__setattr__(self, "n_transit", int(self.n_transit))
        for group in PLASMA_GROUPS:
            given = [g for g in group if getattr(self, g) is not None]
            if given and len(given) != len(group):
                missing = [g for g in group if g not in given]
                raise ParameterError(f"{where}: {given} given without {missing}; these go together")
        if self.Q3 is not None and self.Q is None:
            raise ParameterError(f"{where}: Q3/V3 (second peripheral) need Q/V2 (first peripheral)")
        if self.parameterisation not in ("systemic", "apparent"):
            raise ParameterError(f"{where}: parameterisation = {self.parameterisation!r}; expected 'systemic' or 'apparent'")

    @property
    def nonlinear(self):
        """True when elimination is saturable or time-dependent (no exact matrix solution)."""
        return self.Vmax is not None or self.CL_induced is not None

    def bioavailability(self, dose_mg):
        """Oral bioavailability at dose D (mg): F / (1 + max(D − threshold, 0) / half)."""
        if self.F_dose_threshold is None:
            return self.F
        return self.F / (1.0 + max(dose_mg - self.F_dose_threshold, 0.0) / self.F_dose_half)


@dataclass(frozen=True)
class CSFExchange:
    """Plasma ↔ CSF exchange, by penetration ratio and half-life or by clearances (DESIGN §3).

    Either ``penetration_ratio`` (C_CSF/C_plasma at steady state, on the ``basis`` of total or
    unbound plasma, sampled at ``site``) with ``equilibration_half_life`` (h), or the mechanistic
    ``CL_in`` (influx of unbound plasma drug, L/h) with ``CL_out`` (efflux besides bulk flow, L/h).
    ``depot_release_half_life`` (h) adds a slow-release CSF depot (liposomal formulations).
    ``CL_interstitial`` (L/h) adds two-way diffusional exchange between the CSF and the brain
    interstitial fluid (the physiology's ``volume_interstitial``); it leaves steady-state CSF/plasma
    ratios unchanged and shapes the CSF curve after an intrathecal dose (Bleyer & Dedrick 1977).
    ``CL_brain_out`` (L/h) is efflux from the brain interstitial fluid to plasma across the
    blood-brain barrier (needs ``CL_interstitial``).
    """

    penetration_ratio: float | None = None
    equilibration_half_life: float | None = None
    basis: str = "total"
    site: str = "lumbar"
    CL_in: float | None = None
    CL_out: float | None = None
    depot_release_half_life: float | None = None
    ratio_range: tuple | None = None
    CL_interstitial: float | None = None
    CL_brain_out: float | None = None

    def __post_init__(self):
        where = "csf"
        for name, spec in CSF_SPECS.items():
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, check_value(where, name, v, spec))
        by_ratio = self.penetration_ratio is not None or self.equilibration_half_life is not None
        by_cl = self.CL_in is not None or self.CL_out is not None
        if by_ratio == by_cl:
            raise ParameterError(
                f"{where}: give either penetration_ratio with equilibration_half_life, or CL_in with CL_out"
            )
        if by_ratio and (self.penetration_ratio is None or self.equilibration_half_life is None):
            raise ParameterError(f"{where}: penetration_ratio and equilibration_half_life go together")
        if by_cl and (self.CL_in is None or self.CL_out is None):
            raise ParameterError(f"{where}: CL_in and CL_out go together")
        if self.basis not in BASES:
            raise ParameterError(f"{where}: basis = {self.basis!r} is not allowed; expected one of {BASES}")
        if self.CL_brain_out is not None and self.CL_interstitial is None:
            raise ParameterError(f"{where}: CL_brain_out (brain interstitial fluid -> plasma) needs CL_interstitial")
        if self.site not in SITES:
            raise ParameterError(f"{where}: site = {self.site!r} is not allowed; expected one of {SITES}")

    @property
    def mechanistic(self):
        return self.CL_in is not None


@dataclass(frozen=True)
class LabelDose:
    """The labelled regimen: ``amt`` mg every ``ii`` h by ``route``."""

    amt: float
    ii: float
    route: str = "oral"


@dataclass(frozen=True)
class Drug:
    """A drug: molecular weight, plasma PK, CSF exchange, IIV and provenance.

    ``iiv`` maps a plasma parameter name to its coefficient of variation (fraction, not %).
    ``quantities`` maps ``section.key`` to the sourced ``Quantity`` read from the file.

    Examples
    --------
    >>> import csfpk
    >>> drug = csfpk.load_drug("erlotinib")
    >>> round(drug.molecular_weight, 1) > 300
    True
    """

    name: str
    molecular_weight: float
    plasma: PlasmaPK
    csf: CSFExchange | None = None
    iiv: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    label_dose: LabelDose | None = None
    potency_target_nM: float | None = None
    table1: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    quantities: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    targets: str = ""
    path: str | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ParameterError(f"drug name = {self.name!r} must be non-empty text")
        object.__setattr__(
            self, "molecular_weight",
            check_value(self.name, "molecular_weight", self.molecular_weight, Spec("g/mol", low=50, high=5000)),
        )
        for k, cv in self.iiv.items():
            if not hasattr(self.plasma, k) or k == "parameterisation":
                raise ParameterError(f"{self.name}: iiv.{k} names no plasma parameter; allowed: {sorted(PLASMA_SPECS)}")
            check_value(self.name, f"iiv.{k}", cv, Spec("fraction", low=0.0, high=3.0))
        object.__setattr__(self, "iiv", MappingProxyType(dict(self.iiv)))

    def replace(self, **changes):
        """Return a copy with ``changes`` applied (plasma/csf parameters by name are accepted too).

        Examples
        --------
        >>> import csfpk
        >>> csfpk.load_drug("erlotinib").replace(CL=5.0).plasma.CL
        5.0
        """
        own = {f.name for f in fields(self)}
        plasma = {k: changes.pop(k) for k in list(changes) if k in PLASMA_SPECS}
        csf = {k: changes.pop(k) for k in list(changes) if k in CSF_SPECS or k in ("basis", "site")}
        unknown = set(changes) - own
        if unknown:
            raise ParameterError(
                f"{self.name}: cannot replace unknown parameter(s) {sorted(unknown)}; "
                f"plasma: {sorted(PLASMA_SPECS)}, csf: {sorted(CSF_SPECS)}"
            )
        if plasma:
            changes["plasma"] = replace(self.plasma, **plasma)
        if csf:
            if self.csf is None:
                raise ParameterError(f"{self.name}: has no [csf] section to change {sorted(csf)} in")
            changes["csf"] = replace(self.csf, **csf)
        return replace(self, **changes)


def _read_section(where, table, specs, required, quantities, prefix, extra_fields=()):
    optional = [k for k in specs if k not in required]
    require_keys(where, table, required, optional + ["parameterisation"] if prefix == "plasma" else optional)
    values = {}
    for key, entry in table.items():
        if key == "parameterisation":
            continue
        q = read_entry(where, key, entry, specs[key], extra_fields=extra_fields)
        quantities[f"{prefix}.{key}"] = q
        values[key] = q
    return values


def load_drug(name_or_path):
    """Load and validate a drug file by name (``"erlotinib"``) or path.

    Raises ``ParameterError`` naming the file, key, value and allowed range on any problem.

    Examples
    --------
    >>> import csfpk
    >>> csfpk.load_drug("gefitinib").csf.basis
    'total'
    """
    return _load_drug(file_key(resolve("drugs", name_or_path)))


@functools.lru_cache(maxsize=256)
def _load_drug(key):
    # drugs are frozen, so one object per (file, mtime, size) can be shared safely
    path = Path(key[0])
    doc, where = read_document(path, "csfpk.drug/1", ("name", "molecular_weight", "plasma"),
                               ("targets", "csf", "table1", "iiv", "label_dose", "potency"))
    if doc["name"] != path.stem:
        raise ParameterError(f"{where}: name = {doc['name']!r} must equal the file name {path.stem!r}")
    quantities = {}
    mw = read_entry(where, "molecular_weight", doc["molecular_weight"], Spec("g/mol", low=50, high=5000))
    quantities["molecular_weight"] = mw

    plasma_t = doc["plasma"]
    pv = _read_section(f"{where} [plasma]", plasma_t, PLASMA_SPECS, PLASMA_REQUIRED, quantities, "plasma")
    try:
        plasma = PlasmaPK(parameterisation=plasma_t.get("parameterisation", "systemic"),
                          **{k: q.value for k, q in pv.items()})
    except ParameterError as exc:
        raise ParameterError(f"{where}: {exc}") from None

    csf = None
    if "csf" in doc:
        ct = doc["csf"]
        cv = _read_section(f"{where} [csf]", ct, CSF_SPECS, (), quantities, "csf", extra_fields=("basis", "site"))
        ratio_entry = ct.get("penetration_ratio", {})
        try:
            csf = CSFExchange(
                basis=ratio_entry.get("basis", "total"),
                site=ratio_entry.get("site", "lumbar"),
                ratio_range=cv["penetration_ratio"].range if "penetration_ratio" in cv else None,
                **{k: q.value for k, q in cv.items()},
            )
        except ParameterError as exc:
            raise ParameterError(f"{where}: {exc}") from None

    iiv = {}
    for key, entry in doc.get("iiv", {}).items():
        q = read_entry(f"{where} [iiv]", key, entry, Spec("%CV", low=0.0, high=300.0))
        quantities[f"iiv.{key}"] = q
        iiv[key] = q.value / 100.0

    label = None
    if "label_dose" in doc:
        lt = doc["label_dose"]
        require_keys(f"{where} [label_dose]", lt, ("amt", "ii", "route"))
        amt = read_entry(f"{where} [label_dose]", "amt", lt["amt"], Spec("mg", **POSITIVE))
        ii = read_entry(f"{where} [label_dose]", "ii", lt["ii"], Spec("h", **POSITIVE))
        if lt["route"] not in ROUTES:
            raise ParameterError(f"{where} [label_dose]: route = {lt['route']!r}; expected one of {ROUTES}")
        quantities["label_dose.amt"], quantities["label_dose.ii"] = amt, ii
        label = LabelDose(amt.value, ii.value, lt["route"])

    target = None
    if "potency" in doc:
        require_keys(f"{where} [potency]", doc["potency"], ("target",))
        q = read_entry(f"{where} [potency]", "target", doc["potency"]["target"], Spec("nM", **POSITIVE))
        quantities["potency.target"] = q
        target = q.value

    table1 = doc.get("table1", {})
    require_keys(f"{where} [table1]", table1, (),
                 ("dose", "csf_level_nM", "penetration_percent", "reference", "erratum"))
    try:
        return Drug(
            name=doc["name"], molecular_weight=mw.value, plasma=plasma, csf=csf, iiv=iiv, label_dose=label,
            potency_target_nM=target, table1=MappingProxyType(dict(table1)),
            quantities=MappingProxyType(quantities), targets=doc.get("targets", ""), path=where,
        )
    except ParameterError as exc:
        raise ParameterError(f"{where}: {exc}") from None


def list_drugs():
    """Return the names of the drug files in ``params/drugs/``, sorted."""
    return sorted(p.stem for p in (params_dir() / "drugs").glob("*.toml"))
