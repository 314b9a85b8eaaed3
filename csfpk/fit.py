r"""Parameter estimation on the exact kernel (DESIGN §10): ``csfpk.fit(observations, dosing, parameters, drug=...)``.

Named parameters of the drug or physiology file (``plasma.CL``, ``csf.CL_out``,
``physiology.csf.regional.mixing_cranial_lumbar``…) are estimated from concentrations by
maximum likelihood with a proportional (log-normal) residual error, or as maximum a posteriori
(MAP) estimates when priors are given. Every prediction is a call of ``simulation.solve`` on the
model ``model.build_model`` compiles, so a fit sees exactly what ``simulate`` does.

Objective (Beal 2001 J Pharmacokinet Pharmacodyn 28:481 for the M3 censored term)::

    −2 log L = Σ_obs [(ln y_i − ln f_i)/σ_i]²·w_i                       (quantified rows)
             − 2 Σ_blq ln Φ((ln LLOQ_i − ln f_i)/σ_i)                     (BLQ rows, M3)
             + Σ_k [(ln θ_k − ln θ_k,prior)/ω_k]²                        (priors, MAP)
             (+ 2 Σ ln σ_i when σ is estimated, constants dropped)

with f_i the prediction, σ_i the log-scale residual SD: from the row's ``sd`` as
σ_i = √ln(1 + (sd/y)²) (the log-normal SD of a value with that coefficient of variation), else
the ``sigma`` argument, else one common σ estimated from the data. Priors are log-normal with
ω² = ln(1 + CV²) (the drug file's [iiv]; Sheiner & Beal 1982 for MAP Bayesian forecasting).

Parameters are estimated on the log scale (θ = e^x), so they stay positive and their Wald
intervals exp(x̂ ± z·SE_x) are asymmetric in natural units. Without BLQ rows the fit is
``scipy.optimize.least_squares`` (trust-region reflective) on the weighted residual vector; with
BLQ rows the M3 term is written as a residual √(−2 ln Φ(z)) (exact, since Φ ≤ 1), and when σ is
unknown it is estimated jointly by ``scipy.optimize.minimize`` (L-BFGS-B). Covariance is the
Gauss–Newton (JᵀJ)⁻¹ of the residual vector at the estimate, scaled by the residual variance
when σ was estimated without censored rows (as ``curve_fit`` with ``absolute_sigma=False``);
95 % intervals from it, or from the profile likelihood (Venzon & Moolgavkar 1988) on request or
when the Wald interval is wide (SE on the log scale > ``PROFILE_SE``) or reaches a bound.

Examples
--------
>>> import csfpk, pandas as pd
>>> from csfpk.drug import Drug, PlasmaPK
>>> drug = Drug("one", 100.0, PlasmaPK(CL=2.0, V1=10.0))
>>> obs = pd.DataFrame({"id": 1, "time_h": [1.0, 2, 4, 8], "compartment": "plasma",
...                     "conc_mg_L": [8.187, 6.703, 4.493, 2.019]})
>>> res = csfpk.fit(obs, csfpk.Regimen.every(100, 24, 1, route="iv"), {"plasma.CL": (0.1, 20)},
...                 drug=drug, csf_layout="none")
>>> round(res.estimates["plasma.CL"], 2)
2.0
"""

import math
import sys
import types
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from .drug import CSF_SPECS, PLASMA_SPECS, Drug, load_drug
from .errors import ObservationError, ParameterError
from .model import build_model
from .physiology import BODY_SPECS, CSF_SPECS as PHYS_CSF_SPECS, REGIONAL_SPECS, Physiology, load_physiology
from .regimen import Record, Regimen
from .simulation import as_regimen, solve
from .units import CONC_MASS_UNITS, CONC_MOLAR_UNITS, mg_per_L_per_unit

PROFILE_SE = 0.5  # SE of ln θ above which the Wald interval (> e^{±0.98}, ~7-fold wide) is replaced by the profile
_Z95 = 1.959963984540054
_BODY_FIELD = {"weight": "weight_kg", "bsa": "bsa_m2", "crcl": "crcl_mL_min"}


# ------------------------------------------------------------------ parameter names
def parameter_keys(drug: Drug, physiology: Physiology):
    """The names ``fit`` accepts: drug-file keys (``plasma.CL``, ``csf.CL_out``) and physiology-file
    keys prefixed ``physiology.`` (``physiology.csf.volume``, ``physiology.csf.regional.*``,
    ``physiology.body.bsa``)."""
    keys = [f"plasma.{k}" for k in PLASMA_SPECS if k != "n_transit"]
    if drug.csf is not None:
        keys += [f"csf.{k}" for k in CSF_SPECS]
    keys += [f"physiology.csf.{k}" for k in PHYS_CSF_SPECS]
    keys += [f"physiology.csf.regional.{k}" for k in REGIONAL_SPECS]
    keys += [f"physiology.body.{k}" for k in BODY_SPECS]
    return keys


def _field(key):
    """(target 'drug'|'physiology', attribute name) of a file key, or None."""
    parts = key.split(".")
    if len(parts) == 2 and parts[0] in ("plasma", "csf"):
        specs = PLASMA_SPECS if parts[0] == "plasma" else CSF_SPECS
        if parts[1] in specs and parts[1] != "n_transit":
            return "drug", parts[1]
        return None
    if parts[0] != "physiology":
        return None
    rest = parts[1:]
    if rest[:1] == ["csf"] and len(rest) == 2 and rest[1] in PHYS_CSF_SPECS:
        return "physiology", "csf_volume" if rest[1] == "volume" else rest[1]
    if rest[:2] == ["csf", "regional"] and len(rest) == 3 and rest[2] in REGIONAL_SPECS:
        return "physiology", rest[2]
    if rest[:1] == ["body"] and len(rest) == 2 and rest[1] in BODY_SPECS:
        return "physiology", _BODY_FIELD[rest[1]]
    return None


def _check_key(key, drug, physiology, what="parameter"):
    if not isinstance(key, str) or _field(key) is None or (key.startswith("csf.") and drug.csf is None):
        raise ParameterError(f"{what} {key!r} is not a parameter of {drug.name} or the physiology; allowed: "
                             f"{', '.join(parameter_keys(drug, physiology))}")


def get_value(drug: Drug, physiology: Physiology, key):
    """Current value of a file key (None if the file does not set it)."""
    _check_key(key, drug, physiology)
    target, name = _field(key)
    if target == "physiology":
        return getattr(physiology, name)
    section = drug.plasma if key.startswith("plasma.") else drug.csf
    return getattr(section, name)


def apply_values(drug: Drug, physiology: Physiology, values):
    """(drug, physiology) with ``values`` ({file key: value}) applied, as checked copies."""
    d_changes, p_changes = {}, {}
    for key, v in values.items():
        _check_key(key, drug, physiology)
        target, name = _field(key)
        (d_changes if target == "drug" else p_changes)[name] = float(v)
    if d_changes:
        drug = drug.replace(**d_changes)
    if p_changes:
        physiology = physiology.replace(**p_changes)
    return drug, physiology


# ------------------------------------------------------------------ observations
def _to_mg_L(values, unit, mw, where):
    factor = mg_per_L_per_unit(unit, mw)
    if factor is None:
        raise ObservationError(f"{where}: unit = {unit!r} is not allowed; expected one of "
                               f"{sorted(CONC_MASS_UNITS) + sorted(CONC_MOLAR_UNITS)}")
    return values * factor


def read_observations(observations, molecular_weight):
    """Tidy observations → frame with ``id, time_h, compartment, conc_mg_L, sd_mg_L, weight, blq, lloq_mg_L``.

    Accepts a DataFrame or a CSV path with ``id``, ``time_h``, ``compartment`` and either ``conc``
    with a ``unit`` column or one ``conc_<unit>`` column (``conc_mg_L``, ``conc_ng_mL``,
    ``conc_uM``, ``conc_nM``); optional ``sd`` (same unit as conc), ``weight`` (> 0), ``blq``
    (true for a sample below the limit of quantification) and ``lloq`` (same unit).
    """
    import pandas as pd

    where = "observations"
    if isinstance(observations, (str, bytes)) or hasattr(observations, "__fspath__"):
        where = str(observations)
        try:
            df = pd.read_csv(observations)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise ObservationError(f"{where}: cannot read as CSV ({exc})") from None
    elif isinstance(observations, pd.DataFrame):
        df = observations
    else:
        raise ObservationError(f"observations = {type(observations).__name__} is not allowed; expected a "
                               "pandas DataFrame or a CSV path")
    for need in ("id", "time_h", "compartment"):
        if need not in df.columns:
            raise ObservationError(f"{where}: missing column {need!r}; columns are {list(df.columns)}")
    if len(df) == 0:
        raise ObservationError(f"{where}: no observations (0 rows); expected at least one")
    conc_cols = [c for c in df.columns if c.startswith("conc_")]
    if "conc" in df.columns:
        if "unit" not in df.columns:
            raise ObservationError(f"{where}: column 'conc' needs a 'unit' column (or name it conc_mg_L, conc_nM...)")
        units = df["unit"].astype(str).to_numpy()
        raw = pd.to_numeric(df["conc"], errors="coerce").to_numpy(float)
    elif len(conc_cols) == 1:
        units = np.full(len(df), conc_cols[0][5:], dtype=object)
        raw = pd.to_numeric(df[conc_cols[0]], errors="coerce").to_numpy(float)
    else:
        raise ObservationError(f"{where}: expected one concentration column ('conc' + 'unit', or conc_<unit>); "
                               f"found {conc_cols or 'none'}")
    blq = np.zeros(len(df), bool)
    if "blq" in df.columns:
        b = df["blq"]
        if b.dtype == object:
            b = b.astype(str).str.strip().str.lower().map({"true": True, "1": True, "false": False, "0": False,
                                                          "nan": False, "": False})
            if b.isna().any():
                i = int(np.flatnonzero(b.isna().to_numpy())[0])
                raise ObservationError(f"{where}, row {i}: blq = {df['blq'].iloc[i]!r} is not allowed; expected true/false")
        blq = b.fillna(False).to_numpy(bool)
    out = pd.DataFrame({"id": df["id"].to_numpy(), "compartment": df["compartment"].astype(str).to_numpy()})
    out["time_h"] = pd.to_numeric(df["time_h"], errors="coerce").to_numpy(float)
    conc = np.empty(len(df))
    sd = np.full(len(df), np.nan)
    lloq = np.full(len(df), np.nan)
    for u in pd.unique(units):
        m = units == u
        conc[m] = _to_mg_L(raw[m], u, molecular_weight, where)
        if "sd" in df.columns:
            sd[m] = _to_mg_L(pd.to_numeric(df["sd"], errors="coerce").to_numpy(float)[m], u, molecular_weight, where)
        if "lloq" in df.columns:
            lloq[m] = _to_mg_L(pd.to_numeric(df["lloq"], errors="coerce").to_numpy(float)[m], u, molecular_weight,
                               where)
    weight = (pd.to_numeric(df["weight"], errors="coerce").to_numpy(float) if "weight" in df.columns
              else np.ones(len(df)))
    for i in range(len(df)):
        row = f"{where}, row {i}"
        if not (math.isfinite(out["time_h"].iat[i]) and out["time_h"].iat[i] >= 0):
            raise ObservationError(f"{row}: time_h = {df['time_h'].iloc[i]!r} is not allowed; expected a time >= 0 h")
        if blq[i]:
            if not (math.isfinite(lloq[i]) and lloq[i] > 0):
                raise ObservationError(f"{row}: a BLQ row needs lloq > 0, got {float(lloq[i])!r}")
            continue
        if not (math.isfinite(conc[i]) and conc[i] > 0):
            raise ObservationError(f"{row}: conc = {float(raw[i])!r} is not allowed; expected a concentration > 0 "
                                   "(mark values below the limit of quantification blq = true with lloq)")
        if "sd" in df.columns and not (math.isnan(sd[i]) or sd[i] > 0):
            raise ObservationError(f"{row}: sd = {float(sd[i])!r} is not allowed; expected > 0 or empty")
        if not (math.isfinite(weight[i]) and weight[i] > 0):
            raise ObservationError(f"{row}: weight = {float(weight[i])!r} is not allowed; expected a finite value > 0")
    out["conc_mg_L"], out["sd_mg_L"], out["weight"], out["blq"], out["lloq_mg_L"] = conc, sd, weight, blq, lloq
    out["unit"] = units
    return out


def _regimens(dosing, ids):
    """{id: Regimen} from a Regimen (every id), a {id: Regimen | [Record]} mapping, or NONMEM records
    with an ``id`` column (a DataFrame or a CSV path)."""
    import pandas as pd

    if isinstance(dosing, (Regimen, Record)) or (isinstance(dosing, (list, tuple)) and dosing
                                                 and all(isinstance(r, Record) for r in dosing)):
        reg = as_regimen(dosing)
        return {i: reg for i in ids}
    if isinstance(dosing, (str, bytes)) or hasattr(dosing, "__fspath__"):
        try:
            dosing = pd.read_csv(dosing)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise ObservationError(f"dosing: cannot read {dosing!s} as CSV ({exc})") from None
    if isinstance(dosing, pd.DataFrame):
        cols = {c.lower(): c for c in dosing.columns}
        if "id" not in cols:
            raise ObservationError(f"dosing: NONMEM records need an 'id' column; columns are {list(dosing.columns)}")
        dosing = {k: Regimen.from_frame(g.drop(columns=[cols["id"]]), where=f"dosing id {k}")
                  for k, g in dosing.groupby(cols["id"], sort=False)}
    if not isinstance(dosing, dict):
        raise ObservationError(f"dosing = {type(dosing).__name__} is not allowed; expected a Regimen, "
                               "{id: Regimen} or NONMEM records with an id column")
    missing = [i for i in ids if i not in dosing]
    if missing:
        raise ObservationError(f"dosing: no regimen for id {missing[0]!r}; every observed id needs one")
    return {i: as_regimen(dosing[i]) for i in ids}


# ------------------------------------------------------------------ result
@dataclass(frozen=True, eq=False)
class FitResult:
    """What ``fit`` returns (frozen).

    Attributes
    ----------
    estimates, se : {file key: value} in the file's units; SE by the delta method, θ̂·SE(ln θ).
    ci : {file key: (low, high)} 95 % interval; ``ci_method`` says ``"wald-log"`` or ``"profile"``.
    covariance : covariance of the log-parameters (order of ``names``).
    objective : −2 log-likelihood (+ prior term), constants dropped (module docstring).
    sigma : log-scale residual SD used (estimated when ``sigma_estimated``; None when every row had sd).
    residuals : frame per observation: id, time_h, compartment, observed_mg_L, predicted_mg_L,
        residual (ln obs − ln pred; for BLQ rows ln LLOQ − ln pred), weighted (residual/σ), blq.
    drug, physiology : copies with the estimates applied, ready for ``simulate``.
    """

    names: tuple
    estimates: MappingProxyType
    se: MappingProxyType
    ci: MappingProxyType
    ci_method: MappingProxyType
    covariance: np.ndarray
    objective: float
    sigma: float | None
    sigma_estimated: bool
    n_obs: int
    n_blq: int
    residuals: object
    drug: Drug
    physiology: Physiology
    csf_layout: str
    success: bool
    message: str
    nfev: int
    _problem: object = field(default=None, repr=False)

    @property
    def correlation(self):
        sd = np.sqrt(np.diag(self.covariance))
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.covariance / np.outer(sd, sd)

    def table(self):
        """Parameters as a frame: name, estimate, se, rse_pct, ci_low, ci_high, ci_method."""
        import pandas as pd

        return pd.DataFrame([{"name": k, "estimate": self.estimates[k], "se": self.se[k],
                              "rse_pct": 100 * self.se[k] / self.estimates[k], "ci_low": self.ci[k][0],
                              "ci_high": self.ci[k][1], "ci_method": self.ci_method[k]} for k in self.names])

    def profile(self, name):
        """Profile-likelihood 95 % interval of ``name`` (file key), re-fitting the others."""
        if name not in self.names:
            raise ParameterError(f"profile: {name!r} was not estimated; estimated: {list(self.names)}")
        return self._problem.profile(self.names.index(name), np.log([self.estimates[k] for k in self.names]),
                                     self.covariance, self.sigma)

    def predict(self, dosing, times, *, compartment="plasma", id=None):
        """Concentration (mg/L) at ``times`` (h) under ``dosing`` with the fitted parameters
        (and the per-id ``covariates`` of ``id``, if given)."""
        drug, phys = self.drug, self.physiology
        if id is not None:
            drug, phys = apply_values(drug, phys, self._problem.covariates.get(id, {}))
        return predict_mg_L(drug, phys, self.csf_layout, as_regimen(dosing), np.asarray(times, float),
                        np.full(len(times), compartment, dtype=object))


def predict_mg_L(drug, physiology, layout, regimen, times, compartments):
    """Concentrations (mg/L) of ``compartments[i]`` at ``times[i]`` (h, any order) under ``regimen``, on the
    exact kernel: the predictions ``fit`` compares with observations (also used by ``csfpk.observations``)."""
    model = build_model(drug, physiology, layout)
    order = np.argsort(times, kind="stable")
    t_sorted = times[order]
    out, _, _ = solve(model, regimen, t_sorted, method="auto")
    pred = np.empty(len(times))
    for name in np.unique(compartments):
        if name not in model.outputs:
            raise ObservationError(f"compartment = {name!r} is not an output of {drug.name} with csf_layout "
                                   f"{layout!r}; allowed: {list(model.outputs)}")
        idx, vol, scale = model.outputs[name]
        m = compartments[order] == name
        pred[order[m]] = scale * out[m, idx] / vol
    return pred


# ------------------------------------------------------------------ the problem
class _Problem:
    """Data, model and objective of one fit (internal)."""

    def __init__(self, obs, regimens, names, lo, hi, drug, physiology, layout, covariates, prior_mu, prior_sd,
                 sigma_estimated):
        from scipy.stats import norm

        self.norm = norm
        self.obs, self.regimens, self.names = obs, regimens, names
        self.lo, self.hi = lo, hi
        self.drug, self.physiology, self.layout = drug, physiology, layout
        self.covariates = covariates
        self.prior_mu, self.prior_sd = prior_mu, prior_sd  # log-scale, NaN where no prior
        self.blq = obs["blq"].to_numpy(bool)
        self.y = np.log(np.where(self.blq, obs["lloq_mg_L"].to_numpy(float), obs["conc_mg_L"].to_numpy(float)))
        self.sqrt_w = np.sqrt(obs["weight"].to_numpy(float))
        sd, conc = obs["sd_mg_L"].to_numpy(float), obs["conc_mg_L"].to_numpy(float)
        with np.errstate(invalid="ignore"):
            self.row_sigma = np.sqrt(np.log1p((sd / conc) ** 2))  # NaN where no sd
        self.sigma_estimated = sigma_estimated
        self.groups = [(i, np.flatnonzero(obs["id"].to_numpy() == i)) for i in _unique(obs["id"])]
        self.nfev = 0

    def predictions(self, x):
        values = dict(zip(self.names, np.exp(x)))
        drug, phys = apply_values(self.drug, self.physiology, values)
        pred = np.empty(len(self.obs))
        t, cmt = self.obs["time_h"].to_numpy(float), self.obs["compartment"].to_numpy(object)
        for i, rows in self.groups:
            d_i, p_i = apply_values(drug, phys, self.covariates.get(i, {}))
            pred[rows] = predict_mg_L(d_i, p_i, self.layout, self.regimens[i], t[rows], cmt[rows])
        self.nfev += 1
        return pred

    def sigmas(self, sigma):
        s = np.where(np.isnan(self.row_sigma), np.nan if sigma is None else sigma, self.row_sigma)
        return s

    def residuals(self, x, sigma):
        """Residual vector whose sum of squares is −2 log L (+ prior) without the σ terms."""
        pred = np.log(np.maximum(self.predictions(x), 1e-300))
        s = self.sigmas(1.0 if sigma is None else sigma)
        r = (self.y - pred) / s * self.sqrt_w
        if self.blq.any():
            z = r[self.blq]
            r[self.blq] = np.sqrt(-2.0 * self.norm.logcdf(z))
        prior = np.isfinite(self.prior_sd)
        rp = (x[prior] - self.prior_mu[prior]) / self.prior_sd[prior]
        return np.concatenate([r, rp]), pred

    def jacobian(self, x, sigma, h=1e-5):
        """Central-difference Jacobian of the residual vector in x (log parameters)."""
        cols = []
        for k in range(len(x)):
            step = np.zeros_like(x)
            step[k] = h
            up = np.minimum(x + step, self.hi)
            dn = np.maximum(x - step, self.lo)
            cols.append((self.residuals(up, sigma)[0] - self.residuals(dn, sigma)[0]) / (up[k] - dn[k]))
        return np.column_stack(cols)

    def neg2ll(self, x, log_sigma):
        """Full −2 log L with σ = exp(log_sigma) for rows without sd (used when σ is estimated with BLQ)."""
        sigma = math.exp(log_sigma)
        r, _ = self.residuals(x, sigma)
        s = self.sigmas(sigma)
        return float(r @ r + 2.0 * np.sum(np.log(s[~self.blq])))

    def optimise(self, x0, free, sigma, fixed_sigma):
        """Minimise over the free entries of x (the rest held); returns (x, sigma, success, message)."""
        from scipy.optimize import least_squares, minimize

        x0 = np.array(x0, float)

        def full(z):
            x = x0.copy()
            x[free] = z
            return x

        lo, hi = self.lo[free], self.hi[free]
        z0 = np.clip(x0[free], lo, hi)
        if self.blq.any() and not fixed_sigma:
            ls0 = math.log(sigma if sigma else 0.3)

            def f(v):
                return self.neg2ll(full(v[:-1]), v[-1])

            bounds = list(zip(lo, hi)) + [(math.log(1e-4), math.log(10.0))]
            res = minimize(f, np.append(z0, ls0), method="L-BFGS-B", bounds=bounds,
                           options={"maxiter": 500, "ftol": 1e-12, "gtol": 1e-8})
            return full(res.x[:-1]), math.exp(res.x[-1]), bool(res.success), str(res.message)
        if not free.any():
            return x0, sigma, True, "nothing free"
        res = least_squares(lambda z: self.residuals(full(z), sigma if fixed_sigma else None)[0], z0,
                            bounds=(lo, hi), method="trf", x_scale=1.0, xtol=1e-10, ftol=1e-12, gtol=1e-10,
                            diff_step=1e-6, max_nfev=2000)
        return full(res.x), sigma, bool(res.success), str(res.message)

    def profile(self, k, x_hat, cov, sigma, level=3.841458820694124):
        """95 % profile-likelihood interval of parameter k (natural units): the values of θ_k where
        −2 log L, re-minimised over the other parameters, rises by χ²₁(0.95) = 3.84 (σ held at its
        estimate; with σ estimated from the residuals the rise is measured in units of σ̂²)."""
        from scipy.optimize import brentq

        scaled = self.sigma_estimated and not self.blq.any()
        s_res = None if scaled else sigma
        scale = sigma ** 2 if scaled else 1.0
        free = np.ones(len(x_hat), bool)
        free[k] = False

        def obj(xk):
            x0 = x_hat.copy()
            x0[k] = xk
            x = self.optimise(x0, free, s_res, True)[0] if free.any() else x0
            r = self.residuals(x, s_res)[0]
            return float(r @ r) / scale

        base = obj(x_hat[k])
        se = math.sqrt(max(cov[k, k], 1e-12))
        ends = []
        for sign, bound in ((-1, self.lo[k]), (1, self.hi[k])):
            step, prev, found = max(se, 0.05), x_hat[k], None
            for _ in range(40):
                xk = x_hat[k] + sign * step
                if (xk - bound) * sign >= 0:
                    xk = bound
                if obj(xk) - base > level:
                    found = brentq(lambda v: obj(v) - base - level, min(prev, xk), max(prev, xk), xtol=1e-4)
                    break
                if xk == bound:
                    break
                prev, step = xk, step * 1.6
            ends.append(math.exp(found) if found is not None else math.exp(bound))
        return tuple(ends)


def _unique(values):
    import pandas as pd

    return [v.item() if hasattr(v, "item") else v for v in pd.unique(values)]


# ------------------------------------------------------------------ public entry point
def fit(observations, dosing, parameters, *, drug, physiology=None, csf_layout="single", covariates=None,
        start=None, priors=None, sigma=None, profile=None):
    """Estimate named parameters from concentrations (module docstring for the objective).

    Parameters
    ----------
    observations : tidy frame or CSV path (``read_observations``): id, time_h, compartment
        (a model output: ``plasma``, ``csf``, ``csf_lumbar``…), conc + unit, optional sd, weight,
        blq, lloq.
    dosing : a ``Regimen`` for every id, ``{id: Regimen}``, or NONMEM records with an id column.
    parameters : ``{file key: (low, high)}`` bounds (file units, > 0: estimated on the log scale).
    drug : a ``Drug`` or a drug name. physiology : a ``Physiology`` or name; default ``"adult"``.
    csf_layout : ``"single"``, ``"regional"`` or ``"none"``.
    covariates : ``{id: {file key: value}}`` fixed per-id differences (body size, CSF volume, a
        known CL…) for pooled fits of several studies; a key cannot be both fixed here and estimated.
    start : ``{file key: value}`` start values; default the drug/physiology value.
    priors : ``"iiv"`` (log-normal prior at the file value with the drug file's IIV CV on each
        estimated plasma parameter that has one → MAP, the TDM use) or ``{file key: (centre, cv)}``.
    sigma : residual SD on the log scale (≈ proportional CV); required with priors unless every
        row has an sd; default: estimated.
    profile : None (profile intervals only where the Wald interval is wide, SE of ln θ >
        ``PROFILE_SE``, or reaches a bound), True (all), False (none), or a list of keys.

    Returns
    -------
    FitResult
    """
    drug = load_drug(drug) if isinstance(drug, str) else drug
    if not isinstance(drug, Drug):
        raise ParameterError(f"drug = {drug!r} is not a drug; pass csfpk.load_drug(name) or a name")
    physiology = load_physiology(physiology or "adult") if not isinstance(physiology, Physiology) else physiology
    if not isinstance(parameters, dict) or not parameters:
        raise ParameterError(f"parameters = {parameters!r} is not allowed; expected {{file key: (low, high)}} "
                             "with at least one parameter")
    names = tuple(parameters)
    start = dict(start or {})
    for key in list(names) + list(start):
        _check_key(key, drug, physiology)
    lo, hi, x0 = [], [], []
    for key in names:
        b = parameters[key]
        if not (isinstance(b, (tuple, list)) and len(b) == 2 and all(isinstance(v, (int, float)) for v in b)
                and 0 < b[0] < b[1] < math.inf):
            raise ParameterError(f"parameters[{key!r}] = {b!r} is not allowed; expected bounds (low, high) "
                                 "with 0 < low < high (parameters are estimated on the log scale)")
        v0 = start.get(key, get_value(drug, physiology, key))
        if v0 is None:
            raise ParameterError(f"{key} has no value in {drug.name}'s files; give start={{{key!r}: value}}")
        if not b[0] <= v0 <= b[1]:
            raise ParameterError(f"start value of {key} = {v0:g} is outside its bounds [{b[0]:g}, {b[1]:g}]; "
                                 "widen the bounds or give another start")
        lo.append(math.log(b[0]))
        hi.append(math.log(b[1]))
        x0.append(math.log(v0))
    obs = read_observations(observations, drug.molecular_weight)
    ids = _unique(obs["id"])
    regimens = _regimens(dosing, ids)
    covariates = {k: dict(v) for k, v in (covariates or {}).items()}
    for i, cov in covariates.items():
        for key in cov:
            _check_key(key, drug, physiology, what=f"covariates[{i!r}] key")
            if key in names:
                raise ParameterError(f"covariates[{i!r}] sets {key}, which is estimated; estimate it or fix it, not both")
    for i in ids:
        doses = regimens[i].doses()
        if not doses:
            raise ObservationError(f"dosing of id {i!r} has no dose")
        first = doses[0].time
        t = obs.loc[obs["id"] == i, "time_h"].to_numpy(float)
        if np.any(t <= first):
            raise ObservationError(f"observations: id {i!r} has a sample at time_h = {t[t <= first].min():g}, not "
                                   f"after its first dose at {first:g} h; samples must follow the first dose")
    prior_mu, prior_sd = np.full(len(names), np.nan), np.full(len(names), np.nan)
    if priors is not None:
        if priors == "iiv":
            priors = {k: (get_value(drug, physiology, k), drug.iiv[k.split(".", 1)[1]]) for k in names
                      if k.startswith("plasma.") and k.split(".", 1)[1] in drug.iiv}
            if not priors:
                raise ParameterError(f"priors = 'iiv': none of {list(names)} has IIV in {drug.name}'s [iiv] "
                                     f"(has: {sorted(drug.iiv)})")
        for key, pr in priors.items():
            if key not in names:
                raise ParameterError(f"priors[{key!r}]: not an estimated parameter; estimated: {list(names)}")
            if not (isinstance(pr, (tuple, list)) and len(pr) == 2 and pr[0] > 0 and pr[1] > 0):
                raise ParameterError(f"priors[{key!r}] = {pr!r} is not allowed; expected (centre > 0, cv > 0)")
            j = names.index(key)
            prior_mu[j], prior_sd[j] = math.log(pr[0]), math.sqrt(math.log1p(pr[1] ** 2))
    has_sd = obs["sd_mg_L"].notna().to_numpy()
    if sigma is not None and not (isinstance(sigma, (int, float)) and 0 < sigma < 10):
        raise ParameterError(f"sigma = {sigma!r} is not allowed; expected a log-scale residual SD in (0, 10)")
    if priors is not None and sigma is None and not has_sd.all():
        raise ParameterError("priors need a known residual error: give sigma= (log-scale SD, ≈ proportional CV) "
                             "or an sd for every observation")
    sigma_estimated = sigma is None and not has_sd.all()
    prob = _Problem(obs, regimens, names, np.array(lo), np.array(hi), drug, physiology, csf_layout, covariates,
                    prior_mu, prior_sd, sigma_estimated)
    x, s, ok, msg = prob.optimise(np.array(x0), np.ones(len(names), bool), sigma, not sigma_estimated)
    n_q, p = int((~prob.blq).sum()), len(names)
    scaled = sigma_estimated and not prob.blq.any()
    if scaled:  # σ̂² = RSS/(n − p) on the unit-σ residuals (curve_fit's absolute_sigma=False)
        rq = prob.residuals(x, None)[0][: len(obs)]
        s = math.sqrt(float(rq @ rq) / max(n_q - p, 1))
    s_res = None if scaled else s
    J = prob.jacobian(x, s_res)
    cov = np.linalg.pinv(J.T @ J) * (s ** 2 if scaled else 1.0)
    se_x = np.sqrt(np.clip(np.diag(cov), 0, None))
    if scaled:
        from scipy.stats import t as student_t

        q = float(student_t.ppf(0.975, max(n_q - p, 1)))
    else:
        q = _Z95
    est = np.exp(x)
    ci, how = {}, {}
    want = set(names) if profile is True else set() if profile in (None, False) else set(profile)
    unknown = want - set(names)
    if unknown:
        raise ParameterError(f"profile = {sorted(unknown)} names no estimated parameter; estimated: {list(names)}")
    for k, key in enumerate(names):
        low, high = x[k] - q * se_x[k], x[k] + q * se_x[k]
        wide = se_x[k] > PROFILE_SE or low <= prob.lo[k] or high >= prob.hi[k]
        if key in want or (profile is None and wide):
            ci[key], how[key] = prob.profile(k, x, cov, s), "profile"
        else:
            # clipped to the bounds (also keeps an unidentifiable parameter's interval finite)
            ci[key], how[key] = (math.exp(max(low, prob.lo[k])), math.exp(min(high, prob.hi[k]))), "wald-log"
    r, logpred = prob.residuals(x, 1.0 if s is None else s)
    sv = prob.sigmas(1.0 if s is None else s)
    objective = float(r @ r + 2.0 * np.sum(np.log(sv[~prob.blq])))
    import pandas as pd

    pred = np.exp(logpred)
    resid = pd.DataFrame({"id": obs["id"], "time_h": obs["time_h"], "compartment": obs["compartment"],
                          "observed_mg_L": np.where(prob.blq, np.nan, obs["conc_mg_L"]),
                          "lloq_mg_L": obs["lloq_mg_L"], "predicted_mg_L": pred,
                          "residual": prob.y - logpred, "weighted": (prob.y - logpred) / sv * prob.sqrt_w,
                          "blq": prob.blq})
    fitted_drug, fitted_phys = apply_values(drug, physiology, dict(zip(names, est)))
    return FitResult(
        names=names, estimates=MappingProxyType(dict(zip(names, est.tolist()))),
        se=MappingProxyType(dict(zip(names, (est * se_x).tolist()))), ci=MappingProxyType(ci),
        ci_method=MappingProxyType(how), covariance=cov, objective=objective,
        sigma=None if s is None else float(s), sigma_estimated=sigma_estimated, n_obs=len(obs),
        n_blq=int(prob.blq.sum()), residuals=resid, drug=fitted_drug, physiology=fitted_phys, csf_layout=csf_layout,
        success=ok, message=msg, nfev=prob.nfev, _problem=prob,
    )


class _CallableModule(types.ModuleType):
    """``csfpk.fit`` is this module and ``csfpk.fit(...)`` calls ``fit``: both spellings stay valid
    whichever way the module was first imported."""

    def __call__(self, *args, **kwargs):
        return fit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
