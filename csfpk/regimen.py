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
import numbers
from dataclasses import dataclass, fields

from .errors import ScheduleError
from .io import atomic_path
from .units import dose_mg, hours

ROUTES = ("oral", "iv", "it_lumbar", "it_ventricular")
FIELDS = ("time", "evid", "amt", "cmt", "rate", "ii", "addl", "ss")
# Bounds that catch typing errors and keep every later number finite (a dose of 1e308 mg overflows the
# concentrations to inf − inf = NaN; a dose at t = 1e308 h overflows the kernel's step count).
# assumed: far beyond any human regimen (114 years; 1 kg of drug in one dose; one dose per 36 s)
MAX_TIME_H = 1e6
MAX_AMT_MG = 1e6
MAX_RATE_MG_H = 1e6
MIN_II_H = 0.01
MAX_ADDL = 2**63 - 1
# most doses a regimen may expand to in Python (each is a few hundred bytes and a few µs)
MAX_EXPANDED_DOSES = 1_000_000


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
        _set(self, "time", _finite(where, "time", self.time, 0.0, MAX_TIME_H, "a time in [0, 1e6] h"))
        if self.evid not in (0, 1, 2, 3, 4) or isinstance(self.evid, (bool, str)):
            raise ScheduleError(f"{where}: evid = {self.evid!r} is not allowed; expected 0, 1, 2, 3 or 4")
        _set(self, "evid", int(self.evid))
        _set(self, "amt", _finite(where, "amt", self.amt, 0.0, MAX_AMT_MG, "a dose in [0, 1e6] mg"))
        rate_allowed = "a rate in [0, 1e6] mg/h, -1 (rate modelled) or -2 (duration modelled)"
        if isinstance(self.rate, numbers.Real) and not isinstance(self.rate, bool) and self.rate in (-1, -2):
            _set(self, "rate", float(self.rate))
        else:
            _set(self, "rate", _finite(where, "rate", self.rate, 0.0, MAX_RATE_MG_H, rate_allowed))
        ii = _finite(where, "ii", self.ii, 0.0, MAX_TIME_H, "0 or an interval in [0.01, 1e6] h")
        if 0 < ii < MIN_II_H:
            raise ScheduleError(f"{where}: ii = {self.ii!r} is not allowed; expected 0 or an interval in [0.01, 1e6] h")
        _set(self, "ii", ii)
        addl = self.addl
        if (isinstance(addl, (bool, str)) or not isinstance(addl, numbers.Real) or not math.isfinite(addl)
                or not float(addl).is_integer() or not 0 <= addl <= MAX_ADDL):
            raise ScheduleError(f"{where}: addl = {addl!r} is not allowed; expected an integer in [0, 2**63 - 1]")
        _set(self, "addl", int(addl))
        if self.ss not in (0, 1, 2) or isinstance(self.ss, (bool, str)):
            raise ScheduleError(f"{where}: ss = {self.ss!r} is not allowed; expected 0, 1 or 2")
        _set(self, "ss", int(self.ss))
        cmt = self.cmt
        if not ((isinstance(cmt, str) and cmt) or (isinstance(cmt, numbers.Real) and not isinstance(cmt, bool)
                                                   and math.isfinite(cmt) and float(cmt).is_integer() and cmt >= 1)):
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
    def last_time(self):
        """Time of this record's last dose, ADDL included (h), without expanding them."""
        return self.time + self.addl * self.ii

    def doses_until(self, t_end):
        """How many of this record's doses (1 + ADDL) start at or before ``t_end`` h."""
        if not self.is_dose or self.time > t_end:
            return 0
        if self.addl == 0 or self.ii <= 0 or math.isinf(t_end):
            return 1 + (self.addl if self.ii > 0 else 0)
        return 1 + min(self.addl, int(math.floor((t_end - self.time) / self.ii + 1e-9)))

    @property
    def is_dose(self):
        return self.evid in (1, 4)


def _set(obj, name, value):
    object.__setattr__(obj, name, value)


def _finite(where, name, value, low, high, allowed):
    if isinstance(value, (bool, str)):  # True is not 1 mg, and "150" in a record is a typing slip
        raise ScheduleError(f"{where}: {name} = {value!r} is not a number; expected {allowed}")
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ScheduleError(f"{where}: {name} = {value!r} is not a number; expected {allowed}") from None
    if not math.isfinite(v) or v < low or v > high:
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
              weight_kg=None, ss=0, names=None):
        """``n`` doses of ``amt`` every ``ii``, from ``start``, by ``route``.

        Parameters
        ----------
        amt : dose, mg (or ``"40 mg/m2"`` with ``bsa_m2``, ``"10 mg/kg"`` with ``weight_kg``).
        ii : dosing interval, h or a duration string (``"7d"``).
        n : number of doses, integer >= 1.
        route : ``"oral"``, ``"iv"``, ``"it_lumbar"`` or ``"it_ventricular"`` (or a compartment).
        rate, duration : for an infusion, its rate (mg/h) or its duration (h or string).
        ss : 1 to start at steady state (NONMEM SS=1: the dose at ``start`` follows an infinite
            history of the same doses every ``ii``).
        names : how errors name the arguments (the CLI passes ``{"bsa_m2": "--bsa", ...}``).

        Examples
        --------
        >>> r = Regimen.every(amt=150, ii=24, n=3)
        >>> [d.time for d in r.doses()]
        [0.0, 24.0, 48.0]
        """
        if (isinstance(n, bool) or not isinstance(n, numbers.Real) or not math.isfinite(n)
                or not float(n).is_integer() or not 1 <= n <= MAX_ADDL):
            raise ScheduleError(f"n = {n!r} is not allowed; expected an integer number of doses >= 1")
        amt = dose_mg(amt, "amt", bsa_m2=bsa_m2, weight_kg=weight_kg, positive=True, names=names)
        ii = hours(ii, names.get("ii", "ii") if names else "ii")
        if n > 1 and ii <= 0:
            raise ScheduleError(f"ii = {ii!r} is not allowed for n = {n} doses; expected an interval > 0 h")
        if duration is not None:
            if rate:
                raise ScheduleError("give rate or duration for an infusion, not both")
            d = hours(duration, names.get("duration", "duration") if names else "duration")
            if d <= 0:
                raise ScheduleError(f"duration = {duration!r} is not allowed; expected > 0 h")
            rate = amt / d
        _check_route(route)
        if ss not in (0, 1) or isinstance(ss, bool):
            raise ScheduleError(f"ss = {ss!r} is not allowed; expected 0 or 1")
        if ss and ii <= 0:
            raise ScheduleError(f"ss = 1 needs the dosing interval ii > 0 h, got ii = {ii:g}")
        rec = Record(time=hours(start, "start"), evid=1, amt=amt, cmt=route, rate=rate,
                     ii=ii if (n > 1 or ss) else 0.0, addl=int(n) - 1, ss=ss)
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
            if not (MIN_II_H <= ii_h <= MAX_TIME_H and len_h <= MAX_TIME_H):
                raise ScheduleError(f"phase {i + 1}: ii = {ii!r}, length = {length!r} are not allowed; expected ii in "
                                    "[0.01, 1e6] h and length <= 1e6 h")
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
    def doses(self, until=None):
        """Doses with ADDL expanded (up to ``until`` h if given), as records with addl = 0 (ss kept).

        Refuses (``ScheduleError``) before expanding more than ``MAX_EXPANDED_DOSES``.
        """
        horizon = math.inf if until is None else float(until)
        count = sum(r.doses_until(horizon) for r in self.records)
        if count > MAX_EXPANDED_DOSES:
            span = "" if until is None else f" up to {horizon:g} h"
            raise ScheduleError(f"regimen has {count:.3g} doses{span}; expected at most {MAX_EXPANDED_DOSES:.0e} "
                                "(give fewer doses or an earlier end)")
        out = []
        for r in self.records:
            for k in range(r.doses_until(horizon)):
                out.append(_replace(r, time=r.time + k * r.ii, addl=0, ii=r.ii if r.ss else 0.0,
                                    ss=r.ss if k == 0 else 0))
        return sorted(out, key=lambda r: r.time)

    @property
    def end(self):
        """Time of the last dose (h), ADDL included, 0 for an empty regimen (computed, not expanded)."""
        return max((r.last_time for r in self.records if r.is_dose), default=0.0)

    @property
    def n_doses(self):
        """Number of doses, ADDL included (computed, not expanded)."""
        return sum(r.addl + 1 for r in self.records if r.is_dose)

    def describe(self):
        """A short text for titles and summaries, e.g. ``"150 mg oral every 24 h × 28"``.

        Examples
        --------
        >>> Regimen.every(amt=150, ii=24, n=28).describe()
        '150 mg oral every 24 h × 28'
        """
        doses = [r for r in self.records if r.is_dose]
        if not doses:
            return "no doses"
        parts = []
        for r in doses[:3]:
            what = f"{r.amt:g} mg {r.cmt}" if r.amt else f"{r.rate:g} mg/h {r.cmt}"
            if r.rate > 0 and r.amt:
                what += f" over {r.amt / r.rate:.3g} h"
            if r.addl:
                what += f" every {r.ii:g} h × {r.addl + 1}"
            if r.ss:
                what += f" at steady state (ii {r.ii:g} h)" if not r.addl else " from steady state"
            if r.time:
                what += f" from {r.time:g} h"
            parts.append(what)
        more = f" + {len(doses) - 3} more records" if len(doses) > 3 else ""
        return "; ".join(parts) + more

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
        """Read one subject's NONMEM-style CSV with at least ``time, amt`` (column names in any case).

        Missing optional columns take NONMEM defaults (evid 1 where amt > 0 else 0, cmt "oral",
        rate/ii/addl/ss 0); "." and empty cells are 0 as in NONMEM. Errors name the line and column.
        A file with several IDs, observations (DV, MDV) or covariates is a dataset: read it with
        ``csfpk.read_dataset`` (this reader refuses it rather than dropping those columns).
        """
        return cls.from_frame(read_table(path), where=str(path))

    @classmethod
    def from_frame(cls, df, where="data"):
        """The records of a one-subject frame with NONMEM columns (see ``from_csv``)."""
        cols = columns(df, where)
        extra = [cols[c] for c in cols if c not in FIELDS and c != "id"]
        if extra:
            known = [c for c in extra if c.lower() in ("dv", "mdv")]
            hint = (f"{known} hold observations, which a Regimen cannot keep; read the file with "
                    "csfpk.read_dataset (or 'csfpk simulate DRUG --data FILE')" if known else None)
            raise ScheduleError(unknown_columns(where, extra, FIELDS + ("id",), hint))
        if "id" in cols and df[cols["id"]].nunique(dropna=False) > 1:
            ids = list(dict.fromkeys(df[cols["id"]].tolist()))
            shown = ", ".join(map(str, ids[:5])) + (", …" if len(ids) > 5 else "")
            raise ScheduleError(f"{where}: column {cols['id']!r} holds {len(ids)} subjects ({shown}); a Regimen is "
                                "one subject: read the file with csfpk.read_dataset (or 'csfpk simulate DRUG --data "
                                "FILE')")
        return cls(tuple(records(df, cols, where)))


def read_table(path):
    """Read a CSV file (path or open file) as a DataFrame of text cells, one per line; errors name the file."""
    import pandas as pd

    if hasattr(path, "read"):  # an open file or io.StringIO
        where = str(getattr(path, "name", "data"))
        raw = path.read()
        raw = raw.encode() if isinstance(raw, str) else raw
    else:
        where = str(path)
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            raise ScheduleError(f"{where}: cannot read ({exc.strerror or exc})") from None
    try:
        raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ScheduleError(f"{where}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); save the "
                            "file as UTF-8 CSV") from None
    if not raw.strip():
        raise ScheduleError(f"{where}: the file is empty; expected a header line (e.g. ID,TIME,AMT) and records")
    import io

    try:
        df = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, skipinitialspace=True,
                         encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise ScheduleError(f"{where}: cannot read as CSV ({str(exc).strip().splitlines()[0]})") from None
    if df.empty:
        raise ScheduleError(f"{where}: no records below the header {list(df.columns)}; expected at least one record")
    return df


def columns(df, where):
    """``{lower-case name: column}`` of ``df``; two columns differing only in case are refused."""
    cols = {}
    for c in df.columns:
        key = str(c).strip().lower()
        if key in cols:
            raise ScheduleError(f"{where}: columns {cols[key]!r} and {c!r} name the same field; keep one")
        cols[key] = c
    for need in ("time", "amt"):
        if need not in cols:
            raise ScheduleError(f"{where}: missing column {need!r}; columns are {list(df.columns)}")
    return cols


def unknown_columns(where, extra, allowed, hint=None):
    """The message for columns a reader does not know, with a spelling suggestion when one is close."""
    import difflib

    first = extra[0]
    close = difflib.get_close_matches(str(first).lower(), allowed, n=1, cutoff=0.6)
    guess = f" (did you mean {close[0].upper()!r}?)" if close else ""
    tail = hint or f"allowed: {', '.join(a.upper() for a in allowed)}"
    return f"{where}: unknown column(s) {extra}{guess}; {tail}"


_BLANK = ("", ".")


def cell_number(where, line, name, text, default=0.0):
    """A numeric cell: a number, or ``default`` for "." or an empty cell (NONMEM's missing value)."""
    t = str(text).strip()
    if t in _BLANK:
        return default
    try:
        v = float(t)
    except ValueError:
        raise ScheduleError(f"{where}, line {line}: {name.upper()} = {t!r} is not a number") from None
    if not math.isfinite(v):
        raise ScheduleError(f"{where}, line {line}: {name.upper()} = {t!r} is not allowed; expected a finite number")
    return int(v) if v.is_integer() and abs(v) < 2**53 else v


def records(df, cols, where, lines=None):
    """Records of the rows of ``df`` (text cells) in file order, each checked; time must not decrease.

    ``df`` is a DataFrame or a ``{column: list of cells}`` mapping. ``lines`` gives each row's line
    number in the file (default: row position + 2, after the header).
    """
    out = []
    prev = -math.inf
    names = [f for f in FIELDS if f in cols]
    data = [list(df[cols[f]]) for f in names]
    times = data[names.index("time")]
    lines = range(2, len(times) + 2) if lines is None else lines
    for j, line in enumerate(lines):
        val = {}
        for f, colvals in zip(names, data):
            text = colvals[j]
            if f == "cmt":
                t = str(text).strip()
                if t in _BLANK:
                    continue
                val["cmt"] = cell_number(where, line, f, t) if _is_number(t) else t
            else:
                val[f] = cell_number(where, line, f, text)
        if "time" not in val or str(times[j]).strip() in _BLANK:
            raise ScheduleError(f"{where}, line {line}: TIME is missing; expected a time >= 0 h")
        val.setdefault("evid", 1 if val.get("amt", 0) > 0 else 0)
        val.setdefault("cmt", "oral")
        try:
            rec = Record(**val)
        except ScheduleError as exc:
            raise ScheduleError(f"{where}, line {line}: {exc}") from None
        if rec.time < prev:
            raise ScheduleError(f"{where}, line {line}: time = {rec.time:g} is before the previous record's "
                                f"{prev:g}; records must be in time order")
        prev = rec.time
        out.append(rec)
    return out


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


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
