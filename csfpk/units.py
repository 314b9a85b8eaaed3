"""Units at the edges: duration and dose strings, molar conversion.

Inside csfpk time is in h, amounts in mg, volumes in L, concentrations in mg/L. Users may write
durations as ``"36h"``, ``"3d"``, ``"2w"``, ``"30min"`` and doses as ``"12 mg"``, ``"40 mg/m2"``
(needs a body-surface area) or ``"10 mg/kg"`` (needs a body weight).

Conversion to molar units uses the free-base molecular weight MW (g/mol)::

    C[nmol/L] = C[mg/L] / MW × 1e6,    C[ng/mL] = C[mg/L] × 1e3
"""

import math
import re

from .errors import ParameterError, ScheduleError

_HOURS = {"min": 1 / 60, "h": 1.0, "d": 24.0, "w": 168.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(min|h|d|w)\s*$")
_DOSE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(mg|mg/m2|mg/kg)\s*$")


def hours(value, field="duration"):
    """Return a duration in hours from a number (h) or a string such as ``"3d"``.

    Raises ``ScheduleError`` naming ``field`` for anything else (negative, NaN, unknown unit).

    Examples
    --------
    >>> hours("2w"), hours(36), hours("90min")
    (336.0, 36.0, 1.5)
    """
    if isinstance(value, bool):
        raise ScheduleError(f"{field} = {value!r} is not a duration; give hours or a string like '36h', '3d', '2w'")
    if isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ScheduleError(
                f"{field} = {value!r} is not a duration; give hours or a string like '30min', '36h', '3d', '2w'"
            )
        out = float(m.group(1)) * _HOURS[m.group(2)]
    else:
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ScheduleError(f"{field} = {value!r} is not a duration; give hours or a string like '36h', '3d'") from None
    if not math.isfinite(out) or out < 0:
        raise ScheduleError(f"{field} = {value!r} is not allowed; expected a finite duration >= 0")
    return out


def dose_mg(value, field="amt", *, bsa_m2=None, weight_kg=None):
    """Return a dose in mg from a number (mg) or a string ``"12 mg"``, ``"40 mg/m2"``, ``"10 mg/kg"``.

    Examples
    --------
    >>> dose_mg("40 mg/m2", bsa_m2=1.8), dose_mg(150)
    (72.0, 150.0)
    """
    if isinstance(value, str):
        m = _DOSE.match(value)
        if not m:
            raise ScheduleError(f"{field} = {value!r} is not a dose; give mg or a string like '12 mg', '40 mg/m2', '10 mg/kg'")
        amount, unit = float(m.group(1)), m.group(2)
        if unit == "mg/m2":
            if bsa_m2 is None:
                raise ScheduleError(f"{field} = {value!r} needs a body-surface area: pass bsa_m2=")
            amount *= bsa_m2
        elif unit == "mg/kg":
            if weight_kg is None:
                raise ScheduleError(f"{field} = {value!r} needs a body weight: pass weight_kg=")
            amount *= weight_kg
    else:
        try:
            amount = float(value)
        except (TypeError, ValueError):
            raise ScheduleError(f"{field} = {value!r} is not a dose in mg") from None
    if not math.isfinite(amount) or amount < 0:
        raise ScheduleError(f"{field} = {value!r} is not allowed; expected a finite dose >= 0 mg")
    return amount


def mg_per_L_to_nM(conc_mg_L, molecular_weight):
    """C[nM] = C[mg/L] / MW[g/mol] × 1e6."""
    if not molecular_weight > 0:
        raise ParameterError(f"molecular_weight = {molecular_weight!r} is not allowed; expected > 0 g/mol")
    return conc_mg_L / molecular_weight * 1e6


def nM_to_mg_per_L(conc_nM, molecular_weight):
    """C[mg/L] = C[nM] × MW[g/mol] / 1e6."""
    return conc_nM * molecular_weight / 1e6
