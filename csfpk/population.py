r"""Virtual populations: inter-individual variability, covariates and parameter uncertainty (DESIGN §6).

Inter-individual variability (IIV) is log-normal, from the coefficient of variation (fraction)
of the drug file's ``[iiv]`` table (Holford & Sheiner, the NONMEM exponential error model)::

    ω² = ln(1 + CV²),    θ_i = θ · exp(η_i),    η_i ~ N(0, ω²)

With ``correlations`` the η of two parameters have correlation ρ (applied through the Cholesky
factor of the correlation matrix of all drawn quantities, in sorted name order).

Covariates (optional, ``covariates={"weight": (median, CV), ...}``) are log-normal too:
``weight`` (kg), ``bsa`` (m²) and ``crcl`` (creatinine clearance, mL/min). Without them every
subject has the physiology file's reference body size. They act in two ways:

* doses written per m² or per kg scale with the subject's BSA or weight (the sweep runner passes
  the ratio to the reference as a per-subject dose factor; exact for linear models);
* a drug's covariate models (the drug file's ``[covariates.<parameter>]`` tables, ``Drug.covariates``,
  the forms in ``csfpk.drug.CovariateEffect``) change its typical parameters (additive effects first,
  then the factors), then the result is multiplied by exp(η). Methotrexate (Joerger 2006 Br J Clin Pharmacol 62:71, Table 2, sign as corrected
  in the nlmixr2lib errata): ``CL = 8.85 + 0.0423·(CrCl − 87)`` L/h.

CSF-side variability: the physiology's ``[iiv]`` table (``Physiology.iiv``, overridden by ``iiv``
as the drug's) gives log-normal IIV on the CSF volume (``csf_volume`` in the single layout; each
regional volume in the regional one), the bulk flow (production), the cranial–spinal mixing and
the CSF efflux clearance ``CL_out`` of drugs in the mechanistic mode. A drawn physiology value
appears in the sample under its ``Physiology`` name; subject i is then simulated with
``physiology.replace(**subject_physiology_changes(params, i))``.

Parameter uncertainty: with ``penetration="range"`` each subject's CSF/plasma penetration ratio is
drawn log-uniformly within the drug file's range (the review's Table 1 span),
``R_i = exp(U(ln R_lo, ln R_hi))``; for a drug in the mechanistic mode, CL_in is drawn the same way
from its range.

Reproducibility: every random number is a function of (seed, subject index, name of the quantity)
only — a counter-based generator (SplitMix64 finaliser, Steele, Lea & Flood 2014, OOPSLA) hashes
the triple to a uniform in (0, 1), and ``scipy.special.ndtri`` turns it into a standard normal. A
subject therefore gets the same parameters whatever the chunk size, thread count or Dask worker,
and adding a covariate does not change the other draws.

Examples
--------
>>> import csfpk
>>> pop = csfpk.Population(n=1000, seed=1)
>>> p = pop.sample(csfpk.load_drug("osimertinib"), 0, 3)
>>> sorted(k for k in p if k in ("CL", "V1", "ka"))
['CL', 'V1', 'ka']
"""

import math
import zlib
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from .errors import ParameterError
from .model import (DRUG_VARYING, OUTPUT_VOLUME, PHYSIOLOGY_VARYING, VARYING, build_model, rate_matrices,
                    reachable_exchange)
from .physiology import IIV_KEYS, load_physiology
from .quantity import PicklesMappings

PENETRATION = ("nominal", "range")
COVARIATES = {"weight": "weight_kg", "bsa": "bsa_m2", "crcl": "crcl_mL_min"}
_PLASMA_VARIABLE = ("CL", "V1", "ka", "Q", "V2", "Q3", "V3", "mtt", "fu")  # drug-file IIV supported in populations
_VARIABLE = _PLASMA_VARIABLE + IIV_KEYS  # and the physiology file's (CSF side)
_MAX_N = 10**10

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(z):
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    z = z ^ (z >> np.uint64(30))
    z = z * _M1
    z = z ^ (z >> np.uint64(27))
    z = z * _M2
    return z ^ (z >> np.uint64(31))


def uniforms(seed, subjects, name):
    """Uniform numbers in (0, 1), one per subject index, from (seed, subject index, ``name``) only."""
    key = _mix(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    slot = np.uint64(zlib.crc32(name.encode()))
    with np.errstate(over="ignore"):
        z = _mix(np.asarray(subjects, dtype=np.uint64) * _GOLDEN + key)
        z = _mix(z ^ (slot * _GOLDEN + _M2))
    return ((z >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


def normals(seed, subjects, name):
    """Standard normal numbers, one per subject index (inverse CDF of ``uniforms``)."""
    from scipy.special import ndtri

    return ndtri(uniforms(seed, subjects, name))


def _pair(key):
    parts = key.split(":") if isinstance(key, str) else list(key)
    if len(parts) != 2 or not all(isinstance(p, str) and p for p in parts):
        raise ParameterError(f"correlations key {key!r} is not allowed; expected 'A:B' naming two parameters")
    return tuple(parts)


@dataclass(frozen=True)
class Population(PicklesMappings):
    """A virtual population: size, seed, variability, covariates and uncertainty.

    Parameters
    ----------
    n : number of subjects, integer >= 1.
    seed : integer >= 0; subject i's draws depend only on (seed, i).
    iiv : ``{parameter: CV fraction}`` added to (or replacing entries of) the drug file's and the
        physiology file's ``[iiv]``; ``None`` uses the files' alone. A CV of 0 switches a parameter's
        IIV off. Keys: plasma parameters and the physiology keys ``csfpk.physiology.IIV_KEYS``.
    covariates : ``{"weight" | "bsa" | "crcl": (median, CV fraction)}`` drawn log-normally.
    correlations : ``{"CL:V1": ρ, "weight:bsa": ρ, ...}`` between drawn quantities, |ρ| < 1.
    penetration : ``"nominal"`` (the file's value) or ``"range"`` (log-uniform in the file's range).
    name : label used in tables.

    Examples
    --------
    >>> Population(n=2000, seed=1, covariates={"weight": (70, 0.2)}).n
    2000
    """

    n: int
    seed: int = 1
    iiv: MappingProxyType | None = None
    covariates: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    correlations: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    penetration: str = "nominal"
    name: str = "population"

    def __post_init__(self):
        if isinstance(self.n, bool) or not isinstance(self.n, (int, np.integer)) or not 1 <= self.n <= _MAX_N:
            raise ParameterError(f"population n = {self.n!r} is not allowed; expected an integer in [1, {_MAX_N:g}]")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or not 0 <= self.seed < 2**63:
            raise ParameterError(f"population seed = {self.seed!r} is not allowed; expected an integer in [0, 2**63)")
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "seed", int(self.seed))
        if self.penetration not in PENETRATION:
            raise ParameterError(f"population penetration = {self.penetration!r} is not allowed; expected one of {PENETRATION}")
        if self.iiv is not None:
            iiv = {}
            for k, cv in dict(self.iiv).items():
                if k not in _VARIABLE:
                    raise ParameterError(f"population iiv.{k} is not allowed; IIV is supported on {list(_VARIABLE)}")
                iiv[k] = _fraction(f"population iiv.{k}", cv, 3.0)
            object.__setattr__(self, "iiv", MappingProxyType(iiv))
        cov = {}
        for k, v in dict(self.covariates).items():
            if k not in COVARIATES:
                raise ParameterError(f"population covariates.{k} is not allowed; expected one of {sorted(COVARIATES)}")
            if not (isinstance(v, (tuple, list)) and len(v) == 2):
                raise ParameterError(f"population covariates.{k} = {v!r} is not allowed; expected (median, CV fraction)")
            med = float(v[0])
            if not (math.isfinite(med) and med > 0):
                raise ParameterError(f"population covariates.{k} median = {v[0]!r} is not allowed; expected > 0")
            cov[k] = (med, _fraction(f"population covariates.{k} CV", v[1], 3.0))
        object.__setattr__(self, "covariates", MappingProxyType(cov))
        cor = {}
        for key, rho in dict(self.correlations).items():
            a, b = _pair(key)
            rho = float(rho)
            if not (math.isfinite(rho) and -1 < rho < 1) or a == b:
                raise ParameterError(f"population correlations[{key!r}] = {rho!r} is not allowed; expected two "
                                     "different names and -1 < ρ < 1")
            cor[f"{a}:{b}"] = rho
        object.__setattr__(self, "correlations", MappingProxyType(cor))

    def replace(self, **changes):
        """Return a copy with ``changes`` applied (re-validated)."""
        from dataclasses import replace

        return replace(self, **changes)

    def to_dict(self):
        """Plain-data form (for manifests)."""
        return {"n": self.n, "seed": self.seed, "iiv": None if self.iiv is None else dict(self.iiv),
                "covariates": {k: list(v) for k, v in self.covariates.items()},
                "correlations": dict(self.correlations), "penetration": self.penetration, "name": self.name}

    def cv(self, drug, physiology=None):
        """The CV fraction per parameter used for ``drug`` with ``physiology`` (default adult): the drug
        file's and the physiology file's ``[iiv]`` merged with ``iiv``, zeros and keys that do not
        apply dropped (regional volumes without a regional physiology, ``CL_out`` of a drug in the
        ratio mode: its efflux follows from its half-life)."""
        if physiology is None:
            physiology = load_physiology("adult")
        cv = dict(drug.iiv)
        for k in cv:
            if k not in _PLASMA_VARIABLE:
                raise ParameterError(f"{drug.name}: iiv.{k} is not supported in populations; supported: "
                                     f"{list(_PLASMA_VARIABLE)}")
        cv.update(physiology.iiv)
        cv.update(self.iiv or {})
        mechanistic = drug.csf is not None and drug.csf.mechanistic
        if (self.iiv or {}).get("CL_out", 0) > 0 and not mechanistic:
            raise ParameterError(f"population iiv.CL_out: {drug.name} has no CL_out (its CSF exchange is given by "
                                 "penetration ratio and half-life); CL_out IIV needs a drug in the mechanistic mode")
        applies = {k for k in cv if k in _PLASMA_VARIABLE or (k == "CL_out" and mechanistic)
                   or (k in PHYSIOLOGY_VARYING and getattr(physiology, k) is not None)}
        return {k: v for k, v in cv.items() if v > 0 and k in applies}

    def sample(self, drug, start=0, stop=None, physiology=None):
        """Parameters of subjects ``start … stop−1``: ``{name: float64 array}``.

        Keys: every plasma parameter of the model (``CL``, ``V1``, ``ka``, …, ``fu``; ``CL_induced``, scaled
        with CL, for a drug with autoinduction), the CSF parameter that may vary (``penetration_ratio`` or
        ``CL_in``) and ``weight_kg``, ``bsa_m2``, ``crcl_mL_min``; ``subject`` holds the indices; each
        physiology value with IIV (``csf_volume``, ``bulk_flow``, ``volume_lumbar``, …) and ``CL_out`` when
        it varies.
        """
        stop = self.n if stop is None else stop
        if not 0 <= start <= stop <= self.n:
            raise ParameterError(f"subjects {start}..{stop} are outside the population of n = {self.n}")
        if physiology is None:
            physiology = load_physiology("adult")
        idx = np.arange(start, stop, dtype=np.int64)
        cv = self.cv(drug, physiology)
        scale = {k: math.sqrt(math.log1p(c * c)) for k, c in cv.items()}  # ω
        scale.update({k: math.sqrt(math.log1p(c * c)) for k, (_, c) in self.covariates.items()})
        names = sorted(scale)
        for key in self.correlations:
            for nm in key.split(":"):
                if nm not in scale:
                    raise ParameterError(f"population correlations[{key!r}]: {nm!r} is not drawn for {drug.name}; "
                                         f"drawn: {names}")
        z = {nm: normals(self.seed, idx, nm) for nm in names}
        if self.correlations:
            R = np.eye(len(names))
            for key, rho in self.correlations.items():
                a, b = (names.index(x) for x in key.split(":"))
                R[a, b] = R[b, a] = rho
            try:
                L = np.linalg.cholesky(R)
            except np.linalg.LinAlgError:
                raise ParameterError(f"population correlations {dict(self.correlations)} do not form a positive "
                                     "definite correlation matrix") from None
            Z = np.stack([z[nm] for nm in names])
            Z = L @ Z
            z = {nm: Z[i] for i, nm in enumerate(names)}
        out = {"subject": idx}
        for k, attr in COVARIATES.items():
            if k in self.covariates:
                out[attr] = self.covariates[k][0] * np.exp(scale[k] * z[k])
            else:
                out[attr] = np.full(idx.size, float(getattr(physiology, attr)))
        p = drug.plasma
        for k in ("CL", "V1", "ka", "Q", "V2", "Q3", "V3", "mtt", "fu"):
            typ = getattr(p, k)
            if typ is None:
                if k in cv:
                    raise ParameterError(f"{drug.name}: iiv.{k} given but the drug has no {k}")
                continue
            val = np.full(idx.size, float(typ))
            effects = [e for e in drug.covariates.get(k, ()) if e.covariate in self.covariates]
            for e in sorted(effects, key=lambda e: e.model != "linear"):  # additive first, as Drug.for_subject
                val = e.apply(val, out[COVARIATES[e.covariate]])
            if effects and np.any(val <= 0):
                raise ParameterError(f"{drug.name}: the covariate models give {k} <= 0 for some subjects; "
                                     f"narrow covariates {sorted(e.covariate for e in effects)}")
            if k in cv:
                val = val * np.exp(scale[k] * z[k])
            if k == "fu":
                val = np.minimum(val, 1.0)  # an unbound fraction cannot exceed 1
            out[k] = val
        if p.CL_induced is not None:
            # autoinduction: the induced clearance moves with the subject's CL by the same factor (one η on both,
            # as lorlatinib's source model has it: Chen 2021 CPT Pharmacometrics Syst Pharmacol 10:148, Table 4)
            out["CL_induced"] = p.CL_induced * (out["CL"] / p.CL)
        if drug.csf is not None:
            key = "CL_in" if drug.csf.mechanistic else "penetration_ratio"
            nominal = getattr(drug.csf, key)
            rng = drug.quantities.get(f"csf.{key}").range if f"csf.{key}" in drug.quantities else None
            if self.penetration == "range" and rng is not None and rng[1] > rng[0] and rng[0] > 0:
                u = uniforms(self.seed, idx, key)
                lo, hi = math.log(rng[0]), math.log(rng[1])
                out[key] = np.exp(lo + (hi - lo) * u)
            else:
                out[key] = np.full(idx.size, float(nominal))
        for k in PHYSIOLOGY_VARYING + ("CL_out",):
            if k in cv:
                typ = drug.csf.CL_out if k == "CL_out" else getattr(physiology, k)
                out[k] = typ * np.exp(scale[k] * z[k])
        return out

    def frame(self, drug, start=0, stop=None, physiology=None):
        """``sample`` as a pandas DataFrame indexed by subject."""
        import pandas as pd

        d = self.sample(drug, start, stop, physiology)
        return pd.DataFrame(d).set_index("subject")


def _fraction(where, v, high):
    if isinstance(v, bool):
        raise ParameterError(f"{where} = {v!r} is not allowed; expected a fraction in [0, {high:g}]")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ParameterError(f"{where} = {v!r} is not a number; expected a fraction in [0, {high:g}]") from None
    if not (math.isfinite(x) and 0 <= x <= high):
        raise ParameterError(f"{where} = {v!r} is not allowed; expected a fraction in [0, {high:g}] (0.3 = 30 %CV)")
    return x


def subject_drug_changes(params, i):
    """The ``Drug.replace`` keyword arguments that give subject ``i`` (row i of ``params``)."""
    return {k: float(params[k][i]) for k in DRUG_VARYING if k in params}


def subject_physiology_changes(params, i):
    """The ``Physiology.replace`` keyword arguments that give subject ``i`` (row i of ``params``)."""
    return {k: float(params[k][i]) for k in PHYSIOLOGY_VARYING if k in params}


def subject_inputs(drug, physiology, params, i):
    """(drug, physiology) of subject ``i``: what ``csfpk.simulate`` needs to reproduce row i of ``params``."""
    return drug.replace(**subject_drug_changes(params, i)), physiology.replace(**subject_physiology_changes(params, i))


def reachable(drug, params, physiology, csf_layout="single"):
    """bool[S]: False for the subjects whose CSF volume and bulk flow make the drug's CSF equilibration
    half-life impossible (t½ > ln2·V_csf/Q_bulk); ``build_model`` refuses such a subject."""
    return reachable_exchange(drug, physiology, csf_layout, {k: params[k] for k in VARYING if k in params})


def build_rate_matrices(drug, params, physiology, csf_layout="single"):
    """Rate matrices of many subjects at once (``csfpk.model.rate_matrices``: the same code as
    ``build_model``, so ``Ks[i]`` equals ``build_model(drug.replace(**subject_drug_changes(params, i)),
    physiology.replace(**subject_physiology_changes(params, i)), csf_layout).K``).

    Returns
    -------
    (Ks float64[S, n, n], volume float64[S, n_outputs], scale float64[S, n_outputs], model of the
    typical subject). Concentration of output o = scale·A[state]/volume (mg/L).
    """
    model = build_model(drug, physiology, csf_layout)
    Ks = rate_matrices(drug, physiology, csf_layout, {k: params[k] for k in VARYING if k in params})
    S = Ks.shape[0]
    central = model.states.index("central")
    volume = np.empty((S, len(model.outputs)))
    scale = np.empty((S, len(model.outputs)))
    for o, (name, (idx, vol, sc)) in enumerate(model.outputs.items()):
        # the plasma outputs scale with each V1, the CSF outputs with the subject's CSF volumes
        volume[:, o] = params["V1"] if idx == central else params.get(OUTPUT_VOLUME.get(name), vol)
        scale[:, o] = params["fu"] if name == "plasma_unbound" else sc
    return Ks, volume, scale, model


def marrow_parameters(pd, drug_name, seed, subjects, iiv=True):
    r"""Per-subject Friberg parameters of the lineages of ``pd`` (a ``csfpk.myelosuppression.Myelosuppression``).

    Log-normal IIV from the PD file's ``[iiv]`` CVs (ω² = ln(1 + CV²)) on Circ0 and MTT of each lineage
    and on the drug-effect slope (Friberg et al. 2002, J Clin Oncol 20:4713, estimated IIV on exactly
    these three). One standard normal per subject and parameter is shared by every lineage (one marrow
    per patient), scaled by each lineage's ω::

        Circ0_i,l = Circ0_l·exp(ω_Circ0,l·z_Circ0,i),   MTT_i,l = MTT_l·exp(ω_MTT,l·z_MTT,i),
        slope_i   = slope·exp(ω_slope·z_slope,i)

    The z depend only on (seed, subject index, name), as every draw of ``Population``.

    Returns
    -------
    dict: ``circ0`` (S, L) 10⁹/L, ``mtt`` (S, L) h, ``slope`` (S,) L/mg, and the lineage names ``lineages``.
    """
    idx = np.asarray(subjects, dtype=np.int64)
    names = tuple(pd.lineages)
    slope = np.full(idx.size, float(pd.slope(drug_name)))
    circ0 = np.array([[pd.lineages[n].circ0 for n in names]] * idx.size, dtype=float).reshape(idx.size, len(names))
    mtt = np.array([[pd.lineages[n].mtt for n in names]] * idx.size, dtype=float).reshape(idx.size, len(names))
    if iiv:
        z_c = normals(seed, idx, "marrow.Circ0")
        z_m = normals(seed, idx, "marrow.MTT")
        for j, n in enumerate(names):
            cv = pd.iiv.get(n, {})
            if cv.get("Circ0", 0.0) > 0:
                circ0[:, j] *= np.exp(math.sqrt(math.log1p(cv["Circ0"] ** 2)) * z_c)
            if cv.get("MTT", 0.0) > 0:
                mtt[:, j] *= np.exp(math.sqrt(math.log1p(cv["MTT"] ** 2)) * z_m)
        if pd.iiv.get("slope", 0.0) > 0:
            slope = slope * np.exp(math.sqrt(math.log1p(pd.iiv["slope"] ** 2)) * normals(seed, idx, "marrow.slope"))
    return {"circ0": circ0, "mtt": mtt, "slope": slope, "lineages": names}
