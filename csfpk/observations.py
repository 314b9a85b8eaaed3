"""Published observation sets (``params/observations/*.csv``): rows → dosing, fit data, predictions.

One row is one published number (format in ``params/observations/README.md``): a concentration at
a time (``statistic = conc``), a peak over a time window (``cmax``), the time of that peak
(``tmax``) or a half-life over a window (``half_life``), at a sampling ``site`` after a dose by a
``route``, with ``use = fit`` (may be used to estimate parameters) or ``check`` (never fitted).

Body size: a row's ``bsa_m2`` scales the plasma clearances and volumes linearly from the
physiology's reference BSA (the mg/m² assumption behind BSA-based dosing); CSF volumes stay
adult, as IT methotrexate dosing by age assumes for children older than about three years.
Where the study measured its patients' plasma clearance, the optional column ``plasma_cl_L_h_m2``
(L/h per m²) replaces the scaled CL for that row (CL = value × ``bsa_m2``).
"""

import math
import re

import numpy as np

from .errors import ObservationError
from .fit import apply_values, predict_mg_L
from .paths import params_dir
from .regimen import Regimen
from .units import dose_mg, hours, mg_per_L_per_unit

COLUMNS = ("row_id", "use", "drug", "study", "route", "dose_mg", "dose_basis", "bsa_m2", "infusion_h", "n_doses",
           "ii_h", "also_given", "site", "statistic", "time_h", "time_low_h", "time_high_h", "value", "unit",
           "central", "spread", "spread_kind", "range_low", "range_high", "n", "age_group", "population",
           "citation", "doi", "read_from", "note")
USES = ("fit", "check")
STATISTICS = ("conc", "cmax", "tmax", "half_life")
SITES = {"plasma": ("plasma", "plasma"), "serum": ("plasma", "plasma"), "plasma_unbound": ("plasma_unbound", "plasma_unbound"),
         "csf_lumbar": ("csf_lumbar", "csf"), "csf_ventricular": ("csf_ventricles", "csf"),
         "csf_cisternal": ("csf_cisterna", "csf"), "csf": ("csf_lumbar", "csf"), "brain_ecf": ("brain_ecf", "brain_ecf")}
_ALSO = re.compile(r"^\s*(?P<dose>[0-9.]+\s*(?:mg|mg/m2|mg/kg))\s+(?P<route>\w+)"
                   r"(?:\s+over\s+(?P<over>\S+))?(?:\s+at\s+(?P<at>\S+))?\s*$")
_SCALED = ("CL", "V1", "Q", "V2", "Q3", "V3")


def load(name_or_path="intrathecal"):
    """The observation set as a DataFrame (checked: columns, use, statistic, site, numbers)."""
    import pandas as pd

    path = params_dir() / "observations" / f"{name_or_path}.csv" if "/" not in str(name_or_path) and not str(
        name_or_path).endswith(".csv") else name_or_path
    try:
        df = pd.read_csv(path, dtype={"row_id": str, "doi": str, "also_given": str}, keep_default_na=True)
    except (OSError, pd.errors.ParserError) as exc:
        raise ObservationError(f"{path}: cannot read the observation set ({exc})") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ObservationError(f"{path}: missing column(s) {missing}; the format is in params/observations/README.md")
    for i, r in df.iterrows():
        where = f"{path}, row {r.row_id}"
        if r.use not in USES:
            raise ObservationError(f"{where}: use = {r.use!r} is not allowed; expected one of {USES}")
        if r.statistic not in STATISTICS:
            raise ObservationError(f"{where}: statistic = {r.statistic!r} is not allowed; expected one of {STATISTICS}")
        if r.site not in SITES:
            raise ObservationError(f"{where}: site = {r.site!r} is not allowed; expected one of {sorted(SITES)}")
        if not (math.isfinite(r.value) and r.value > 0):
            raise ObservationError(f"{where}: value = {r.value!r} is not allowed; expected > 0")
        try:
            cl = _num(r.get("plasma_cl_L_h_m2"))
        except (TypeError, ValueError):
            cl = math.nan
        if cl is not None and not (math.isfinite(cl) and cl > 0):
            raise ObservationError(f"{where}: plasma_cl_L_h_m2 = {cl!r} is not allowed; expected > 0 L/h/m2 or empty")
    if df.row_id.duplicated().any():
        raise ObservationError(f"{path}: row_id {df.row_id[df.row_id.duplicated()].iloc[0]!r} appears twice")
    return df


def _num(v, default=None):
    return default if v is None or (isinstance(v, float) and math.isnan(v)) or v == "" else float(v)


def regimen(row):
    """The dosing a row describes: ``n_doses`` of ``dose_mg`` every ``ii_h`` by ``route``
    (over ``infusion_h``), plus ``also_given`` items ``"<dose> <route> [over <duration>] [at <time>]"``."""
    n = int(_num(row.n_doses, 1))
    inf = _num(row.infusion_h)
    reg = Regimen.every(float(row.dose_mg), _num(row.ii_h, 24.0), n, route=row.route,
                        duration=inf if inf else None)
    also = row.also_given if isinstance(row.also_given, str) else ""
    for item in filter(None, (s.strip() for s in also.split(";"))):
        m = _ALSO.match(item)
        if not m:
            raise ObservationError(f"row {row.row_id}: also_given item {item!r} is not '<dose> <route> [over <h>] [at <h>]'")
        amt = dose_mg(m["dose"], "also_given", bsa_m2=float(row.bsa_m2))
        reg = reg + Regimen.every(amt, 24.0, 1, route=m["route"], start=_duration(m["at"] or "0h", "also_given at"),
                                  duration=_duration(m["over"], "also_given over") if m["over"] else None)
    return reg


def _duration(text, field):
    """Hours from "24h", "3d" or a bare number of hours."""
    try:
        return float(text)
    except ValueError:
        return hours(text, field)


def last_dose_time(row):
    n = int(_num(row.n_doses, 1))
    return (n - 1) * _num(row.ii_h, 24.0)


def covariates(row, drug, physiology):
    """Per-row fixed values ({file key: value}): plasma CL, Q, Q3, V1, V2, V3 scaled by bsa_m2 / the
    physiology's BSA (CL = ``plasma_cl_L_h_m2`` × bsa_m2 where the row gives the study's measured
    clearance); ``physiology.body.bsa`` set to the row's BSA."""
    ratio = float(row.bsa_m2) / physiology.bsa_m2
    out = {f"plasma.{k}": getattr(drug.plasma, k) * ratio for k in _SCALED if getattr(drug.plasma, k) is not None}
    cl = _num(row.get("plasma_cl_L_h_m2"))
    if cl is not None:
        out["plasma.CL"] = cl * float(row.bsa_m2)
    out["physiology.body.bsa"] = float(row.bsa_m2)
    return out


def output(row, layout):
    """Model output name of a row's site for a CSF layout."""
    regional, single = SITES[row.site]
    return regional if layout == "regional" else single


def fit_frame(df, drug, physiology, layout="regional"):
    """The ``use = fit`` concentration rows as ``csfpk.fit`` observations (one id per row): ``cmax``
    rows enter as a concentration at ``time_h`` (the file says where); ``tmax``/``half_life`` rows
    cannot be fitted and raise. Returns (observations frame, {id: Regimen}, {id: covariates})."""
    import pandas as pd

    rows = df[df.use == "fit"]
    bad = rows[~rows.statistic.isin(("conc", "cmax"))]
    if len(bad):
        raise ObservationError(f"row {bad.row_id.iloc[0]}: statistic {bad.statistic.iloc[0]!r} cannot be fitted; "
                               "mark it use = check")
    obs, dosing, covs = [], {}, {}
    for _, r in rows.iterrows():
        sd = r.spread if r.spread_kind == "sd" else np.nan
        obs.append({"id": r.row_id, "time_h": last_dose_time(r) + float(r.time_h), "compartment": output(r, layout),
                    "conc": float(r.value), "unit": r.unit, "sd": sd})
        dosing[r.row_id] = regimen(r)
        covs[r.row_id] = covariates(r, drug, physiology)
    return pd.DataFrame(obs), dosing, covs


def predict(row, drug, physiology, layout="regional"):
    """The model's value of a row's statistic (in the row's unit) with ``drug`` and ``physiology``
    (body size from the row's BSA)."""
    d, p = apply_values(drug, physiology, covariates(row, drug, physiology))
    t0 = last_dose_time(row)
    reg = regimen(row)
    name = output(row, layout)
    if row.statistic == "conc":
        times = np.array([t0 + float(row.time_h)])
    else:
        lo = _num(row.time_low_h, 0.01) or 0.01
        hi = _num(row.time_high_h, 96.0 if row.statistic == "tmax" else None)
        if row.statistic == "tmax":
            lo, hi = 0.01, 96.0
        times = t0 + np.linspace(lo, hi, 2000)
    c = predict_mg_L(d, p, layout, reg, times, np.full(len(times), name, dtype=object))  # mg/L
    if row.statistic == "tmax":
        return float(times[np.argmax(c)] - t0)
    if row.statistic == "half_life":
        return float(math.log(2) * (times[-1] - times[0]) / math.log(c[0] / c[-1]))
    value = float(c.max() if row.statistic == "cmax" else c[0])
    return value / mg_per_L_per_unit(row.unit, d.molecular_weight)
