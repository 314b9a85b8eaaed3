"""Units at the edges: duration and dose strings, molar conversion.

Inside csfpk time is in h, amounts in mg, volumes in L, concentrations in mg/L. Users may write
durations as ``"36h"``, ``"3d"``, ``"1 day"``, ``"4 weeks"``, ``"30min"``, dosing intervals also as
``"q24h"``, ``"qd"``, ``"bid"``, ``"tid"``, ``"qw"``, and doses as ``"12 mg"``, ``"1.5 g"``, ``"500 ug"``,
``"40 mg/m2"`` (needs a body-surface area) or ``"10 mg/kg"`` (needs a body weight).

Conversion to molar units uses the free-base molecular weight MW (g/mol)::

    C[nmol/L] = C[mg/L] / MW × 1e6,    C[ng/mL] = C[mg/L] × 1e3
"""

import math
import re

from .errors import ParameterError, ScheduleError

# duration units (h per unit); "1 day", "4 weeks", "36 hours", "90 min" read the same as "1d", "4w", "36h"
_HOURS = {"min": 1 / 60, "h": 1.0, "d": 24.0, "w": 168.0}
_UNIT_WORDS = {"min": "min", "mins": "min", "minute": "min", "minutes": "min", "h": "h", "hr": "h", "hrs": "h",
               "hour": "h", "hours": "h", "d": "d", "day": "d", "days": "d", "w": "w", "wk": "w", "wks": "w",
               "week": "w", "weeks": "w"}
# dosing-interval shorthands as written on prescriptions (hours between doses)
_FREQUENCY = {"qd": 24.0, "od": 24.0, "daily": 24.0, "bid": 12.0, "tid": 8.0, "qid": 6.0, "qw": 168.0,
              "weekly": 168.0, "qod": 48.0}
_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_DURATION = re.compile(r"^\s*" + _NUMBER + r"\s*([a-z]+)\s*$")
_QHOURS = re.compile(r"^\s*q\s*" + _NUMBER + r"\s*([a-z]+)\s*$")  # "q24h", "q3d", "q2w"
# mass units in mg per unit; "per" units: m2 (body-surface area) and kg (body weight)
_MASS = {"g": 1000.0, "mg": 1.0, "ug": 1e-3, "µg": 1e-3, "μg": 1e-3, "mcg": 1e-3, "ng": 1e-6}
_DOSE = re.compile(r"^\s*" + _NUMBER + r"\s*(g|mg|ug|µg|μg|mcg|ng)\s*(?:/\s*(m2|m²|m\^2|kg))?\s*$")
DURATION_EXAMPLES = "'36h', '1 day', '4 weeks', 'q24h', 'bid', 'qw'"
DOSE_EXAMPLES = "'150 mg', '1.5 g', '500 ug', '40 mg/m2', '10 mg/kg'"

# plausible human body size, used to catch typing errors (--bsa 180 is a height, not a BSA);
# assumed: wide enough for neonates to the heaviest adults
BODY_SIZE = {
    "bsa_m2": (0.1, 4.0, "m2", "body-surface area"),
    "weight_kg": (0.3, 400.0, "kg", "body weight"),
    "height_cm": (20.0, 260.0, "cm", "height"),
    "crcl_mL_min": (0.0, 400.0, "mL/min", "creatinine clearance"),
}


def hours(value, field="duration"):
    """Return a duration in hours from a number (h) or a string.

    Strings: a number and a unit (``"36h"``, ``"1 day"``, ``"4 weeks"``, ``"90min"``), ``"q24h"``,
    or a frequency shorthand for a dosing interval (``"qd"`` 24 h, ``"bid"`` 12 h, ``"tid"`` 8 h,
    ``"qid"`` 6 h, ``"qod"`` 48 h, ``"qw"`` 168 h). Raises ``ScheduleError`` naming ``field`` for
    anything else (negative, NaN, infinite, unknown unit).

    Examples
    --------
    >>> hours("2w"), hours(36), hours("90min"), hours("1 day"), hours("q12h"), hours("bid")
    (336.0, 36.0, 1.5, 24.0, 12.0, 12.0)
    """
    bad = f"{field} = {value!r} is not a duration; give hours or a string like {DURATION_EXAMPLES}"
    if isinstance(value, bool):
        raise ScheduleError(bad)
    if isinstance(value, str):
        text = value.strip().lower()
        m = _DURATION.match(text) or _QHOURS.match(text)
        if text in _FREQUENCY:
            out = _FREQUENCY[text]
        elif m and m.group(2) in _UNIT_WORDS:
            out = float(m.group(1)) * _HOURS[_UNIT_WORDS[m.group(2)]]
        else:
            raise ScheduleError(bad)
    else:
        try:
            out = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ScheduleError(bad) from None
    if not math.isfinite(out) or out < 0:
        raise ScheduleError(f"{field} = {value!r} is not allowed; expected a finite duration >= 0 h")
    return out


def body_size(value, field, kind):
    """Return ``value`` as float if it is a plausible ``kind`` (a key of ``BODY_SIZE``), else raise.

    ``field`` is how the caller names it (``"bsa_m2"`` in Python, ``"--bsa"`` on the command line).

    Examples
    --------
    >>> body_size(1.8, "--bsa", "bsa_m2")
    1.8
    """
    low, high, unit, what = BODY_SIZE[kind]
    allowed = f"a {what} in [{low:g}, {high:g}] {unit}"
    if isinstance(value, bool):
        raise ScheduleError(f"{field} = {value!r} is not a number; expected {allowed}")
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ScheduleError(f"{field} = {value!r} is not a number; expected {allowed}") from None
    if not (math.isfinite(v) and low <= v <= high):
        raise ScheduleError(f"{field} = {value!r} is not allowed; expected {allowed}")
    return v


def dose_mg(value, field="amt", *, bsa_m2=None, weight_kg=None, positive=False, names=None):
    """Return a dose in mg from a number (mg) or a string with a unit.

    Units: ``g``, ``mg``, ``µg``/``ug``/``mcg``, ``ng``, each optionally per ``m2`` (needs
    ``bsa_m2``) or per ``kg`` (needs ``weight_kg``). ``positive`` requires a dose > 0 (else >= 0).
    ``names`` maps ``"bsa_m2"``/``"weight_kg"`` to the names the caller shows (``"--bsa"``).

    Examples
    --------
    >>> dose_mg("40 mg/m2", bsa_m2=1.8), dose_mg(150), dose_mg("1.5 g"), dose_mg("150000 ug")
    (72.0, 150.0, 1500.0, 150.0)
    """
    names = {"bsa_m2": "bsa_m2", "weight_kg": "weight_kg", **(names or {})}
    bound = "> 0" if positive else ">= 0"
    allowed = f"a finite dose {bound} mg (or a string like {DOSE_EXAMPLES})"
    if isinstance(value, bool):
        raise ScheduleError(f"{field} = {value!r} is not a dose; expected {allowed}")
    if isinstance(value, str):
        m = _DOSE.match(value.strip().lower().replace("μ", "µ"))
        if not m:
            raise ScheduleError(f"{field} = {value!r} is not a dose; expected {allowed}")
        amount, per = float(m.group(1)) * _MASS[m.group(2)], m.group(3)
        if per in ("m2", "m²", "m^2"):
            if bsa_m2 is None:
                raise ScheduleError(f"{field} = {value!r} needs a body-surface area: give {names['bsa_m2']}")
            amount *= body_size(bsa_m2, names["bsa_m2"], "bsa_m2")
        elif per == "kg":
            if weight_kg is None:
                raise ScheduleError(f"{field} = {value!r} needs a body weight: give {names['weight_kg']}")
            amount *= body_size(weight_kg, names["weight_kg"], "weight_kg")
    else:
        try:
            amount = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ScheduleError(f"{field} = {value!r} is not a dose; expected {allowed}") from None
    if not math.isfinite(amount) or amount < 0 or (positive and amount == 0):
        raise ScheduleError(f"{field} = {value!r} is not allowed; expected {allowed}")
    return amount


def mg_per_L_to_nM(conc_mg_L, molecular_weight):
    """C[nM] = C[mg/L] / MW[g/mol] × 1e6."""
    if not molecular_weight > 0:
        raise ParameterError(f"molecular_weight = {molecular_weight!r} is not allowed; expected > 0 g/mol")
    return conc_mg_L / molecular_weight * 1e6


def nM_to_mg_per_L(conc_nM, molecular_weight):
    """C[mg/L] = C[nM] × MW[g/mol] / 1e6."""
    return conc_nM * molecular_weight / 1e6


# concentration units: factor to mg/L (mass units) or to mol/L (molar units)
CONC_MASS_UNITS = {"mg/L": 1.0, "mg_L": 1.0, "ug/mL": 1.0, "µg/mL": 1.0, "ug_mL": 1.0, "ng/mL": 1e-3, "ng_mL": 1e-3,
                   "ug/L": 1e-3, "µg/L": 1e-3, "ug_L": 1e-3}
CONC_MOLAR_UNITS = {"M": 1.0, "mM": 1e-3, "uM": 1e-6, "µM": 1e-6, "umol/L": 1e-6, "µmol/L": 1e-6, "nM": 1e-9,
                    "nmol/L": 1e-9}


def mg_per_L_per_unit(unit, molecular_weight):
    """How many mg/L one ``unit`` of concentration is (molar units through the molecular weight, g/mol);
    None for a unit that is not a concentration unit.

    Examples
    --------
    >>> mg_per_L_per_unit("ng/mL", 400.0), mg_per_L_per_unit("uM", 400.0)
    (0.001, 0.4)
    """
    if unit in CONC_MASS_UNITS:
        return CONC_MASS_UNITS[unit]
    if unit in CONC_MOLAR_UNITS:
        return CONC_MOLAR_UNITS[unit] * molecular_weight * 1e3
    return None
