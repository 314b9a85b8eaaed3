"""Dosing records with NONMEM meaning, and friendly builders on top (DESIGN §4).

A ``Regimen`` is an immutable, time-ordered tuple of ``Record`` s with NONMEM's fields::

    time (h), evid, amt (mg), cmt, rate (mg/h), ii (h), addl, ss

``evid``: 0 observation, 1 dose, 2 other (output only), 3 reset, 4 reset and dose.
``cmt``: a route (``"oral"``, ``"iv"``, ``"it_lumbar"``, ``"it_ventricular"``), a state name
(``"central"``) or a 1-based compartment number, resolved against the model when simulated.
``rate``: 0 bolus; > 0 infusion at that rate; −1 rate and −2 duration modelled (``Model.with_dosing``).
``ii``/``addl``: ``addl`` additional doses every ``ii`` h. ``ss``: 1 steady state (reset first),
2 steady state added to the current state. Same-time records keep their order.

Examples
--------
>>> import csfpk
>>> daily = csfpk.Regimen.every(amt=150, ii=24, n=28, route="oral")
>>> weekly = csfpk.Regimen.every(amt=1500, ii="7d", n=4, route="oral")
>>> len((daily + weekly).doses())
32
"""

import csv
import math
from dataclasses import dataclass, fields

from .errors import ScheduleError
from .io import atomic_path
from .units import dose_mg, hours

ROUTES = ("oral", "iv", "it_lumbar", "it_ventricular")
FIELDS = ("time", "evid", "amt", "cmt", "rate", "ii", "addl", "ss")


@dataclass(frozen=True)
class Record:
    """One NONMEM-style event record (see module docstring for the fields)."""

    time: float
    evid: int = 1
    amt: float = 0.0
    cmt: object = "oral"
    rate: float = 0.0
    ii: float = 0.0
    addl: int = 0
    ss: int = 0

    def __post_init__(self):
        where = f"record at time {self.time!r}"
        _set(self, "time", _finite(where, "time", self.time, 0.0, "a time >= 0 h"))
        if self.evid not in (0, 1, 2, 3, 4) or isinstance(self.evid, bool):
            raise ScheduleError(f"{where}: evid = {self.evid!r} is not allowed; expected 0, 1, 2, 3 or 4")
        _set(self, "evid", int(self.evid))
        _set(self, "amt", _finite(where, "amt", self.amt, 0.0, "a dose >= 0 mg"))
        rate = float(self.rate) if not isinstance(self.rate, bool) else math.nan
        if not (rate in (-1.0, -2.0) or (math.isfinite(rate) and rate >= 0)):
            raise ScheduleError(f"{where}: rate = {self.rate!r} is not allowed; expected >= 0 mg/h, -1 or -2")
        _set(self, "rate", rate)
        _set(self, "ii", _finite(where, "ii", self.ii, 0.0, "an interval >= 0 h"))
        addl = self.addl
        if isinstance(addl, bool) or not float(addl).is_integer() or addl < 0:
            raise ScheduleError(f"{where}: addl = {addl!r} is not allowed; expected an integer >= 0")
        _set(self, "addl", int(addl))
        if self.ss not in (0, 1, 2) or isinstance(self.ss, bool):
            raise ScheduleError(f"{where}: ss = {self.ss!r} is not allowed; expected 0, 1 or 2")
        _set(self, "ss", int(self.ss))
        if not (isinstance(self.cmt, str) or (isinstance(self.cmt, (int, float)) and float(self.cmt).is_integer()
                                              and self.cmt >= 1)):
            raise ScheduleError(f"{where}: cmt = {self.cmt!r} is not allowed; expected a route {ROUTES}, "
                                "a compartment name or a number >= 1")
        if isinstance(self.cmt, float):
            _set(self, "cmt", int(self.cmt))
        dosing = self.evid in (1, 4)
        if dosing and self.addl > 0 and self.ii <= 0:
            raise ScheduleError(f"{where}: addl = {self.addl} additional doses need ii > 0 h, got ii = {self.ii:g}")
        if dosing and self.ss and self.ii <= 0 and not (self.rate > 0 and self.amt == 0):
            raise ScheduleError(f"{where}: ss = {self.ss} needs ii > 0 h (or amt = 0 with rate > 0 for a "
                                "steady-state constant infusion)")
        if dosing and self.amt == 0 and not (self.ss and self.rate > 0):
            raise ScheduleError(f"{where}: a dose record (evid {self.evid}) needs amt > 0 mg")

    @property
    def is_dose(self):
        return self.evid in (1, 4)


def _set(obj, name, value):
    object.__setattr__(obj, name, value)


def _finite(where, name, value, low, allowed):
    if isinstance(value, bool):
        raise ScheduleError(f"{where}: {name} = {value!r} is not allowed; expected {allowed}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ScheduleError(f"{where}: {name} = {value!r} is not a number; expected {allowed}") from None
    if not math.isfinite(v) or v < low:
        raise ScheduleError(f"{where}: {name} = {value!r} is not allowed; expected {allowed}")
    return v


@dataclass(frozen=True)
class Regimen:
    """An immutable, time-ordered sequence of NONMEM-style records (see module docstring)."""

    records: tuple = ()
    name: str = ""

    def __post_init__(self):
        recs = tuple(self.records)
        for r in recs:
            if not isinstance(r, Record):
                raise ScheduleError(f"a regimen holds Record objects, got {type(r).__name__}")
        # stable: same-time records keep their order
        _set(self, "records", tuple(sorted(recs, key=lambda r: r.time)))

    # ------------------------------------------------------------------ builders
    @classmethod
    def every(cls, amt, ii, n, route="oral", *, start=0.0, rate=0.0, duration=None, bsa_m2=None,
              weight_kg=None):
        """``n`` doses of ``amt`` every ``ii``, from ``start``, by ``route``.

        Parameters
        ----------
        amt : dose, mg (or ``"40 mg/m2"`` with ``bsa_m2``, ``"10 mg/kg"`` with ``weight_kg``).
        ii : dosing interval, h or a duration string (``"7d"``).
        n : number of doses, integer >= 1.
        route : ``"oral"``, ``"iv"``, ``"it_lumbar"`` or ``"it_ventricular"`` (or a compartment).
        rate, duration : for an infusion, its rate (mg/h) or its duration (h or string).

        Examples
        --------
        >>> r = Regimen.every(amt=150, ii=24, n=3)
        >>> [d.time for d in r.doses()]
        [0.0, 24.0, 48.0]
        """
        if isinstance(n, bool) or not isinstance(n, (int, float)) or not float(n).is_integer() or n < 1:
            raise ScheduleError(f"n = {n!r} is not allowed; expected an integer number of doses >= 1")
        amt = dose_mg(amt, "amt", bsa_m2=bsa_m2, weight_kg=weight_kg)
        if amt <= 0:
            raise ScheduleError(f"amt = {amt!r} is not allowed; expected a dose > 0 mg")
        ii = hours(ii, "ii")
        if n > 1 and ii <= 0:
            raise ScheduleError(f"ii = {ii!r} is not allowed for n = {n} doses; expected an interval > 0 h")
        if duration is not None:
            if rate:
                raise ScheduleError("give rate or duration for an infusion, not both")
            d = hours(duration, "duration")
            if d <= 0:
                raise ScheduleError(f"duration = {duration!r} is not allowed; expected > 0 h")
            rate = amt / d
        _check_route(route)
        rec = Record(time=hours(start, "start"), evid=1, amt=amt, cmt=route, rate=rate, ii=ii if n > 1 else 0.0,
                     addl=int(n) - 1)
        return cls((rec,))

    @classmethod
    def phases(cls, *phases, route="oral", start=0.0):
        """Consecutive phases, each ``(amt, ii, length)``: dose every ``ii`` for ``length``.

        The seed protocol: ``Regimen.phases((12, "3.5d", "4w"), (12, "1w", "4w"), (12, "4w", "16w"),
        route="it_lumbar")`` — twice weekly for a month, weekly for a month, then every four weeks.
        Each phase starts where the previous one ended; doses within a phase fall at
        ``phase start + k·ii`` strictly before the phase end.
        """
        if not phases:
            raise ScheduleError("phases() needs at least one (amt, ii, length) phase")
        out = cls()
        t = hours(start, "start")
        for i, ph in enumerate(phases):
            if len(ph) != 3:
                raise ScheduleError(f"phase {i + 1} = {ph!r} must be (amt, ii, length)")
            amt, ii, length = ph
            ii_h, len_h = hours(ii, f"phase {i + 1} ii"), hours(length, f"phase {i + 1} length")
            if ii_h <= 0 or len_h <= 0:
                raise ScheduleError(f"phase {i + 1}: ii = {ii!r} and length = {length!r} must both be > 0")
            n = max(1, math.ceil(len_h / ii_h - 1e-9))
            out = out + cls.every(amt, ii_h, n, route, start=t)
            t += len_h
        return out

    def __add__(self, other):
        if not isinstance(other, Regimen):
            return NotImplemented
        return Regimen(self.records + other.records, name=self.name or other.name)

    def shift(self, dt):
        """Return the regimen moved later by ``dt`` (h or a duration string)."""
        dt = hours(dt, "dt")
        return Regimen(tuple(_replace(r, time=r.time + dt) for r in self.records), self.name)

    # ------------------------------------------------------------------ views
    def doses(self):
        """All doses with ADDL expanded, as records with addl = 0 (ss records kept as they are)."""
        out = []
        for r in self.records:
            if not r.is_dose:
                continue
            for k in range(r.addl + 1):
                out.append(_replace(r, time=r.time + k * r.ii, addl=0, ii=r.ii if r.ss else 0.0,
                                    ss=r.ss if k == 0 else 0))
        return sorted(out, key=lambda r: r.time)

    @property
    def end(self):
        """Time of the last dose (h), 0 for an empty regimen."""
        d = self.doses()
        return d[-1].time if d else 0.0

    def to_frame(self):
        """The records as a pandas DataFrame with NONMEM columns."""
        import pandas as pd

        return pd.DataFrame([{f: getattr(r, f) for f in FIELDS} for r in self.records], columns=list(FIELDS))

    def to_csv(self, path):
        """Write the records as a NONMEM-style CSV (atomically: no partial file on failure)."""
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(FIELDS)
            for r in self.records:
                w.writerow([getattr(r, f) for f in FIELDS])

    @classmethod
    def from_csv(cls, path):
        """Read a NONMEM-style CSV with at least ``time, amt`` (case-insensitive column names).

        Missing optional columns take NONMEM defaults (evid 1 where amt > 0 else 0, cmt "oral",
        rate/ii/addl/ss 0). Errors name the line and column.
        """
        import pandas as pd

        try:
            df = pd.read_csv(path)
        except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise ScheduleError(f"{path}: cannot read as CSV ({exc})") from None
        return cls.from_frame(df, where=str(path))

    @classmethod
    def from_frame(cls, df, where="data"):
        cols = {c.lower(): c for c in df.columns}
        for need in ("time", "amt"):
            if need not in cols:
                raise ScheduleError(f"{where}: missing column {need!r}; columns are {list(df.columns)}")
        recs = []
        prev = -math.inf
        for i, row in enumerate(df.itertuples(index=False)):
            get = dict(zip(df.columns, row))
            val = {f: get[cols[f]] for f in FIELDS if f in cols}
            val.setdefault("evid", 1 if float(val.get("amt", 0) or 0) > 0 else 0)
            val.setdefault("cmt", "oral")
            cmt = val["cmt"]
            if isinstance(cmt, str) and cmt.strip().isdigit():
                val["cmt"] = int(cmt)
            try:
                rec = Record(**{k: _num(v) if k != "cmt" else v for k, v in val.items()})
            except ScheduleError as exc:
                raise ScheduleError(f"{where}, line {i + 2}: {exc}") from None
            if rec.time < prev:
                raise ScheduleError(f"{where}, line {i + 2}: time = {rec.time:g} is before the previous record's "
                                    f"{prev:g}; records must be in time order")
            prev = rec.time
            recs.append(rec)
        return cls(tuple(recs))


def _num(v):
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v) if abs(v) < 2**53 else v
    return v


def _replace(rec, **changes):
    vals = {f.name: getattr(rec, f.name) for f in fields(rec)}
    vals.update(changes)
    return Record(**vals)


def _check_route(route):
    if isinstance(route, str) and route not in ROUTES and not route.isidentifier():
        raise ScheduleError(f"route = {route!r} is not allowed; expected one of {ROUTES} or a compartment name")
