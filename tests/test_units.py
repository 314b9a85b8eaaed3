"""Durations, doses and body size at the edges: what users write, what csfpk reads (issue 14)."""

import math

import pytest

from csfpk.errors import ScheduleError
from csfpk.regimen import Regimen
from csfpk.units import body_size, dose_mg, hours


@pytest.mark.parametrize("text, h", [
    ("36h", 36.0), ("36 h", 36.0), ("1 day", 24.0), ("3.5d", 84.0), ("4 weeks", 672.0), ("2w", 336.0),
    ("90min", 1.5), ("30 minutes", 0.5), ("12 hours", 12.0), ("1 hr", 1.0),
    ("q24h", 24.0), ("q12h", 12.0), ("q3d", 72.0), ("q2w", 336.0),
    ("qd", 24.0), ("bid", 12.0), ("BID", 12.0), ("tid", 8.0), ("qid", 6.0), ("qod", 48.0), ("qw", 168.0),
    (36, 36.0), (0.5, 0.5),
])
def test_durations(text, h):
    assert hours(text) == h


@pytest.mark.parametrize("value", ["3 fortnights", "", "h", "-1h", "1e400h", "abc", True, None, [24], math.nan,
                                   math.inf, -3])
def test_bad_durations_name_field(value):
    with pytest.raises(ScheduleError, match=r"^--ii = .* (is not a duration|is not allowed)"):
        hours(value, "--ii")


@pytest.mark.parametrize("text, mg", [
    ("150 mg", 150.0), ("150mg", 150.0), ("1.5 g", 1500.0), ("150000 ug", 150.0), ("150000 µg", 150.0),
    ("150000 μg", 150.0), ("150000 mcg", 150.0), ("5e6 ng", 5.0), ("40 mg/m2", 72.0), ("40 mg/m²", 72.0),
    ("10 mg/kg", 700.0), ("0.5 g/m2", 900.0), (150, 150.0),
])
def test_doses(text, mg):
    assert dose_mg(text, bsa_m2=1.8, weight_kg=70) == pytest.approx(mg, rel=1e-12)


@pytest.mark.parametrize("value, message", [
    (True, "amt = True is not a dose"),
    ("12 mL", "amt = '12 mL' is not a dose"),
    (-1, "amt = -1 is not allowed"),
    (math.nan, "amt = nan is not allowed"),
    ("1e400 mg", "amt = '1e400 mg' is not allowed"),
])
def test_bad_doses(value, message):
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(")):
        dose_mg(value)


def test_range_messages_agree_with_checks():
    """amt 0 is refused by the builder, so its message says '> 0' (it said '>= 0' and then '> 0')."""
    with pytest.raises(ScheduleError, match=r"amt = 0 is not allowed; expected a finite dose > 0 mg"):
        Regimen.every(amt=0, ii=24, n=1)
    assert dose_mg(0) == 0.0  # a record's amt may be 0 (an observation), so the plain reader allows it
    with pytest.raises(ScheduleError, match=r"expected a finite dose >= 0 mg"):
        dose_mg(-1)


def test_per_body_size_doses_check_body_size_and_name_it():
    with pytest.raises(ScheduleError, match=r"^--bsa = -1.8 is not allowed; expected a body-surface area in \[0.1, 4\]"):
        dose_mg("40 mg/m2", bsa_m2=-1.8, names={"bsa_m2": "--bsa"})
    with pytest.raises(ScheduleError, match=r"^bsa_m2 = 180 is not allowed"):
        dose_mg("40 mg/m2", bsa_m2=180)
    with pytest.raises(ScheduleError, match=r"needs a body weight: give --weight"):
        dose_mg("10 mg/kg", names={"weight_kg": "--weight"})


@pytest.mark.parametrize("kind, ok, bad", [
    ("bsa_m2", 1.8, 180), ("weight_kg", 70, 7000), ("height_cm", 175, 1.75), ("crcl_mL_min", 90, -5),
])
def test_body_size(kind, ok, bad):
    assert body_size(ok, "x", kind) == ok
    with pytest.raises(ScheduleError, match=r"^x = .* is not allowed"):
        body_size(bad, "x", kind)
    with pytest.raises(ScheduleError, match="is not a number"):
        body_size(True, "x", kind)
