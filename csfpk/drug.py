"""Drugs: plasma PK, CSF exchange, variability and provenance, loaded strictly from TOML.

A drug is data (``params/drugs/<name>.toml``, schema in ``params/README.md``), never code. The
dataclasses below are frozen; ``dataclasses.replace`` (or ``Drug.replace``) makes changed copies
and re-runs every check.
"""

import functools
import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType

from .errors import ParameterError
from .paths import file_key, params_dir, resolve
from .quantity import (FRACTION, NONNEG, POSITIVE, PicklesMappings, Quantity, Spec, check_value, read_document,
                       read_entry, require_keys)
from .regimen import ROUTES

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
    "uptake_half_saturation": Spec("mg/L", **POSITIVE),
    "CL_interstitial": Spec("L/h", **NONNEG),
    "CL_brain_out": Spec("L/h", **NONNEG),
}
# covariate name -> (keyword of Drug.for_subject, unit as written in [covariates] entries)
COVARIATES = {"weight": ("weight_kg", "kg"), "bsa": ("bsa_m2", "m2"), "crcl": ("crcl_mL_min", "mL/min")}
COVARIATE_FORMS = ("power", "linear", "exponential")
BASES = ("total", "unbound")
SITES = ("lumbar", "ventricular", "cisternal")


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
    ``uptake_half_saturation`` (mg/L, unbound plasma) makes the influx saturable: CL_in,eff =
    CL_in / (1 + fu·C_p / uptake_half_saturation) (Michaelis–Menten carrier-mediated uptake; the
    penetration ratio is then the low-concentration limit). It makes the model nonlinear (adaptive
    solvers; the population runner refuses it) and needs the ``single`` CSF layout.
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
    uptake_half_saturation: float | None = None
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
class CovariateEffect:
    """How one covariate changes one plasma parameter (a ``[covariates.<parameter>]`` entry).

    With P the drug file's value, c the subject's covariate and c_ref = ``reference``:

    * ``power``:       P · (c / c_ref)^coefficient   (allometry: 0.75 on clearances, 1 on volumes,
      Holford 1996 Clin Pharmacokinet 30:329; Anderson & Holford 2008 Annu Rev Pharmacol Toxicol 48:303)
    * ``linear``:      P + coefficient · (c − c_ref) (coefficient in P's unit per covariate unit)
    * ``exponential``: P · exp(coefficient · (c − c_ref))

    Additive (``linear``) effects are applied first, then the multiplicative ones, as in the usual
    NONMEM coding TVCL = (θ1 + θ2·(CRCL − ref)) · (WT/70)^0.75.
    """

    parameter: str
    covariate: str
    model: str
    coefficient: float
    reference: float
    source: str

    def apply(self, value, c):
        if self.model == "linear":
            return value + self.coefficient * (c - self.reference)
        if self.model == "power":
            return value * (c / self.reference) ** self.coefficient
        return value * math.e ** (self.coefficient * (c - self.reference))  # c may be an array (populations)


def bsa_du_bois(weight_kg, height_cm):
    """Body-surface area (m²) by Du Bois & Du Bois 1916 (Arch Intern Med 17:863):
    BSA = 0.007184 · W^0.425 · H^0.725 (W kg, H cm).

    Examples
    --------
    >>> round(bsa_du_bois(70, 175), 2)
    1.85
    """
    return 0.007184 * weight_kg**0.425 * height_cm**0.725


def bsa_mosteller(weight_kg, height_cm):
    """Body-surface area (m²) by Mosteller 1987 (N Engl J Med 317:1098): BSA = √(W·H / 3600).

    Examples
    --------
    >>> round(bsa_mosteller(70, 175), 3)
    1.845
    """
    return math.sqrt(weight_kg * height_cm / 3600.0)


@dataclass(frozen=True)
class LabelDose:
    """The labelled regimen: ``amt`` mg every ``ii`` h by ``route``."""

    amt: float
    ii: float
    route: str = "oral"


@dataclass(frozen=True)
class Drug(PicklesMappings):
    """A drug: molecular weight, plasma PK, CSF exchange, IIV and provenance.

    ``iiv`` maps a plasma parameter name to its coefficient of variation (fraction, not %).
    ``quantities`` maps ``section.key`` to the sourced ``Quantity`` read from the file.
    ``molecular_targets`` names what the drug inhibits (gene or enzyme names, from the file).
    ``covariates`` maps a plasma parameter to its ``CovariateEffect`` tuple (``for_subject``, ``csfpk.population``).

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
    molecular_targets: tuple = ()
    path: str | None = None
    covariates: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))

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
        cov = {}
        for k, effects in dict(self.covariates).items():
            if k not in PLASMA_SPECS or getattr(self.plasma, k) is None:
                raise ParameterError(f"{self.name}: covariates.{k} names no plasma parameter of this drug")
            effects = tuple(effects)
            if not all(isinstance(e, CovariateEffect) for e in effects):
                raise ParameterError(f"{self.name}: covariates.{k} must hold CovariateEffect objects")
            cov[k] = effects
        object.__setattr__(self, "covariates", MappingProxyType(cov))

    @property
    def covariates_used(self):
        """Keywords of ``for_subject`` that change this drug's parameters (``"weight_kg"`` …), sorted."""
        return sorted({COVARIATES[e.covariate][0] for effects in self.covariates.values() for e in effects})

    def for_subject(self, *, weight_kg=None, bsa_m2=None, crcl_mL_min=None):
        """The drug with its covariate models applied to one subject's covariates.

        A covariate not given (None) leaves its effects out, i.e. the subject is at the reference
        value the drug file's parameters belong to. Raises ``ParameterError`` when a model gives an
        impossible parameter (e.g. CL <= 0 for a very low CrCl under a linear model).

        Examples
        --------
        >>> import csfpk
        >>> pem = csfpk.load_drug("pemetrexed")
        >>> pem.for_subject(crcl_mL_min=45).plasma.CL < pem.plasma.CL
        True
        """
        given = {"weight_kg": weight_kg, "bsa_m2": bsa_m2, "crcl_mL_min": crcl_mL_min}
        changes = {}
        for k, effects in self.covariates.items():
            value = getattr(self.plasma, k)
            ordered = sorted(effects, key=lambda e: e.model != "linear")  # additive first, then factors
            for e in ordered:
                c = given[COVARIATES[e.covariate][0]]
                if c is None:
                    continue
                value = e.apply(value, float(c))
            if value != getattr(self.plasma, k):
                spec = PLASMA_SPECS[k]
                if not spec.accepts(value):
                    used = ", ".join(f"{n} = {v:g}" for n, v in given.items() if v is not None)
                    raise ParameterError(f"{self.name}: the covariate model gives {k} = {value:.4g} {spec.unit} for "
                                         f"{used}; expected {spec.allowed()}")
                changes[k] = value
        return self.replace(**changes) if changes else self

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
                               ("molecular_targets", "csf", "table1", "iiv", "label_dose", "potency", "covariates"))
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

    molecular = doc.get("molecular_targets", [])
    if not isinstance(molecular, list) or not all(isinstance(t, str) and t.strip() for t in molecular):
        raise ParameterError(f"{where}: molecular_targets = {molecular!r}; expected a list of names, e.g. [\"EGFR\", \"HER2\"]")
    covariates = _read_covariates(where, doc.get("covariates", {}), plasma, quantities)

    table1 = doc.get("table1", {})
    require_keys(f"{where} [table1]", table1, (),
                 ("dose", "csf_level_nM", "penetration_percent", "reference", "erratum"))
    try:
        return Drug(
            name=doc["name"], molecular_weight=mw.value, plasma=plasma, csf=csf, iiv=iiv, label_dose=label,
            potency_target_nM=target, table1=MappingProxyType(dict(table1)),
            quantities=MappingProxyType(quantities), molecular_targets=tuple(molecular), path=where,
            covariates=covariates,
        )
    except ParameterError as exc:
        raise ParameterError(f"{where}: {exc}") from None


def _read_covariates(where, table, plasma, quantities):
    """``[covariates.<parameter>]`` tables of ``<covariate> = { model, coefficient, reference, unit, source }``."""
    if not isinstance(table, dict):
        raise ParameterError(f"{where}: covariates = {table!r} must be a table of [covariates.<parameter>] tables")
    out = {}
    allowed = [k for k in PLASMA_SPECS if k != "n_transit"]
    for param, entries in table.items():
        w = f"{where} [covariates.{param}]"
        if param not in allowed or getattr(plasma, param) is None:
            raise ParameterError(f"{w}: {param!r} is not a plasma parameter of this drug; allowed: "
                                 f"{[k for k in allowed if getattr(plasma, k) is not None]}")
        require_keys(w, entries, (), tuple(COVARIATES))
        effects = []
        for cov, e in entries.items():
            unit = COVARIATES[cov][1]
            require_keys(f"{w} {cov}", e, ("model", "coefficient", "reference", "unit", "source"), ("note",))
            if e["model"] not in COVARIATE_FORMS:
                raise ParameterError(f"{w}: {cov}.model = {e['model']!r} is not allowed; expected one of "
                                     f"{COVARIATE_FORMS}")
            if e["unit"] != unit:
                raise ParameterError(f"{w}: {cov}.unit = {e['unit']!r} is not allowed; expected {unit!r}")
            coef = check_value(w, f"{cov}.coefficient", e["coefficient"], Spec("1", low=-1e3, high=1e3))
            ref = check_value(w, f"{cov}.reference", e["reference"], Spec(unit, **POSITIVE))
            source = e["source"]
            if not isinstance(source, str) or not source.strip():
                raise ParameterError(f"{w}: {cov}.source = {source!r} must be a non-empty citation or "
                                     "'assumed: reason'")
            punit = PLASMA_SPECS[param].unit
            qunit = f"{punit} per {unit}" if e["model"] == "linear" else ("1" if e["model"] == "power" else f"1/{unit}")
            quantities[f"covariates.{param}.{cov}"] = Quantity(coef, qunit, source, None, e.get("note"))
            effects.append(CovariateEffect(param, cov, e["model"], coef, ref, source))
        out[param] = tuple(effects)
    return MappingProxyType(out)


def list_drugs():
    """Return the names of the drug files in ``params/drugs/``, sorted."""
    return sorted(p.stem for p in (params_dir() / "drugs").glob("*.toml"))
