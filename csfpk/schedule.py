"""NONMEM event semantics: from records to the kernel's timeline of actions (DESIGN §4).

The kernels know only a handful of actions, each at a time ``t``:

==========  ============================================================================
OBS         write the state to output row ``value``
BOLUS       x[cmt] += value (mg)
RATE        r[cmt] += value (mg/h): an infusion starts (value > 0) or ends (value < 0)
RESET       x = 0, r = 0
SS_TRAIN    x_dyn += E(u0)·(I − E(ii))⁻¹·v,  v = value·e_cmt (bolus) or Φ(D)·value·e_cmt (infusion)
INF_PART    x += Φ(u)·value·e_cmt     (the part delivered so far by an infusion still running)
SS_CONST    x_dyn += −K_dyn⁻¹·value·e_cmt  (steady state of a constant infusion)
==========  ============================================================================

with E(h) = exp(K·h), Φ(h) = ∫₀ʰ exp(K·s) ds and ``_dyn`` the non-sink states. Everything NONMEM
means by a record is resolved here, in Python, where it can be tested:

* bioavailability F (per compartment; dose-dependent for oral doses if the drug says so) scales
  the amount; for an infusion with a given rate it lengthens the duration D = F·amt/rate
  (rate = −1: rate modelled, D = F·amt/R; rate = −2: duration modelled, rate = F·amt/D);
* lag time ALAG moves the dose (and an infusion's start) to t + ALAG;
* ADDL gives ``addl`` more doses at t + k·ii;
* SS = 1 resets then sets the periodic steady state of the train of past doses at
  t + ALAG − j·ii (j ≥ 1) — completed doses by ``SS_TRAIN``, infusions still running at t by
  ``INF_PART`` plus their remaining ``RATE`` on/off — and then gives the record's own dose;
  SS = 2 does the same without the reset; SS with ii = 0 and amt = 0 sets the steady state of a
  constant infusion, which (as in NONMEM) does not continue after the record;
* EVID 3 resets, EVID 4 resets then doses; a reset cancels what earlier records left pending
  (infusion ends, lagged and additional doses).

Same-time order: regular output-grid samples first (a sample at a dose time is the pre-dose
value), then records in record order, each record's own immediate actions before its output row.
At the time of a steady-state record the grid sample is the steady-state pre-dose value (the
trough of the train), not the state before the record: NONMEM's output at an SS dose time shows
the steady state (nmtests scenarios 9–15 give CP at t = 0 equal to the steady state).

Doses are expanded only up to the last time that can be seen: the end of the grid or the last
record (ADDL doses after it change no output), and their number is checked before expansion.
"""

import math
from dataclasses import dataclass

import numpy as np

from ._kernels.codes import BOLUS, INF_PART, OBS, RATE, RESET, SS_CONST, SS_TRAIN
from .errors import ScheduleError
from .regimen import Regimen

_MAX_RUNNING = 100_000
# most doses one timeline may hold; counted before any is expanded (each costs a few hundred bytes)
MAX_TIMELINE_DOSES = 2_000_000


@dataclass(frozen=True)
class Timeline:
    """The kernel's input: actions sorted by time (arrays of equal length m)."""

    time: np.ndarray  # float64[m], h
    kind: np.ndarray  # int64[m]
    cmt: np.ndarray  # int64[m], 0-based state index
    value: np.ndarray  # float64[m]
    aux: np.ndarray  # float64[m, 3]: SS_TRAIN (u0, ii, D), INF_PART (u, 0, 0)
    n_out: int  # number of output rows
    grid_step: float  # regular output step (h), 0 if none
    doses: tuple  # (time, cmt index, amount given mg) per dose actually given, for reports

    @property
    def has_ss(self):
        return bool(np.any((self.kind == SS_TRAIN) | (self.kind == SS_CONST)))


def resolve_cmt(model, cmt):
    """0-based state index of a record's ``cmt`` (route, state name or 1-based number)."""
    if isinstance(cmt, str) and cmt in model.routes:
        return model.routes[cmt]
    if isinstance(cmt, str) and cmt in ("oral", "iv", "it_lumbar", "it_ventricular"):
        raise ScheduleError(
            f"cmt = {cmt!r}: route not available for {model.name} with csf_layout {model.layout!r}; "
            f"allowed routes: {sorted(model.routes)}"
        )
    return model.index(cmt)


def build_timeline(model, regimen: Regimen, grid=None, record_outputs=False):
    """Compile ``regimen`` for ``model`` into a ``Timeline``.

    Parameters
    ----------
    grid : sorted output times (h), or None. A grid sample at a dose time is the pre-dose value.
    record_outputs : also write one output row per record, after the record is processed (as
        NONMEM's table rows); these rows follow the grid rows.
    """
    acts = []  # (time, group, seq, sub, kind, cmt, value, aux, source_record)
    n_grid = 0
    step = 0.0
    if grid is not None:
        grid = np.asarray(grid, dtype=float)
        if grid.ndim != 1 or not np.all(np.isfinite(grid)) or np.any(np.diff(grid) < 0) or (grid.size and grid[0] < 0):
            raise ScheduleError("output times must be finite, >= 0 and sorted")
        n_grid = grid.size
        acts.extend((t, 0, i, 0, OBS, 0, float(i), None, -1) for i, t in enumerate(grid))
        if n_grid > 1:
            d = np.diff(grid)
            if np.allclose(d, d[0], rtol=0, atol=1e-9 * max(1.0, d[0])):
                step = float(d[0])
    n_out = n_grid
    doses = []
    # the last time any output can see: the end of the grid or the last record (with no grid and no
    # record outputs the caller wants the whole regimen: no horizon)
    if grid is None and not record_outputs:
        horizon = math.inf
    else:
        horizon = max(float(grid[-1]) if n_grid else 0.0, max((r.time for r in regimen.records), default=0.0))
    count = sum(r.doses_until(horizon) for r in regimen.records)
    if count > MAX_TIMELINE_DOSES:
        raise ScheduleError(f"the regimen gives {count:.3g} doses up to t = {horizon:g} h; expected at most "
                            f"{MAX_TIMELINE_DOSES:.0e}: give fewer doses, a longer interval or an earlier end")
    ss_grid = {}  # grid index -> sort key placing it after a steady-state record's set-up
    for i, rec in enumerate(regimen.records):
        sub = [0]

        def emit(t, kind, cmt=0, value=0.0, aux=None, rec_i=i, sub=sub):
            sub[0] += 1
            acts.append((t, 1, rec_i, sub[0], kind, cmt, value, aux, rec_i))

        reset = rec.evid in (3, 4) or (rec.is_dose and rec.ss == 1)
        if reset:
            key = (rec.time, 1, i, 0)
            acts[:] = [a for a in acts if a[8] < 0 or a[8] >= i or a[:4] <= key]
            doses[:] = [d for d in doses if d[0] <= rec.time]
            emit(rec.time, RESET)
        if rec.is_dose:
            c = resolve_cmt(model, rec.cmt)
            if c >= model.n_dynamic:
                raise ScheduleError(f"record at time {rec.time:g}: cmt = {rec.cmt!r} is a sink; doses go elsewhere")
            f = model.bioavailability[c]
            if model.dose_bioavailability is not None and c == model.routes.get("oral"):
                f = model.dose_bioavailability(rec.amt)
            lag = model.lag[c]
            amount = f * rec.amt
            rate, dur = _rate_and_duration(model, rec, c, amount)
            if rec.ss:
                _steady_state(emit, rec, c, amount, rate, dur, lag, doses)
                if n_grid:
                    lo, hi = np.searchsorted(grid, rec.time, "left"), np.searchsorted(grid, rec.time, "right")
                    for g in range(int(lo), int(hi)):
                        ss_grid[g] = (rec.time, 1, i, sub[0] + 0.5)
            # doses starting after the horizon change no output: expand only those before it
            for k in range(rec.doses_until(horizon - lag)):
                if rec.ss and rec.ii == 0:
                    break  # a constant infusion at steady state has no discrete doses
                t0 = rec.time + k * rec.ii + lag
                _dose(emit, t0, c, amount, rate, dur)
                doses.append((t0, c, amount))
        if record_outputs:
            emit(rec.time, OBS, 0, float(n_out))
            n_out += 1
    if ss_grid:
        acts = [a if not (a[4] == OBS and a[8] < 0 and int(a[6]) in ss_grid) else ss_grid[int(a[6])] + a[4:]
                for a in acts]
    acts.sort(key=lambda a: a[:4])
    m = len(acts)
    aux = np.zeros((m, 3))
    for j, a in enumerate(acts):
        if a[7] is not None:
            aux[j] = a[7]
    doses.sort(key=lambda d: d[0])
    return Timeline(
        time=np.array([a[0] for a in acts], dtype=float),
        kind=np.array([a[4] for a in acts], dtype=np.int64),
        cmt=np.array([a[5] for a in acts], dtype=np.int64),
        value=np.array([a[6] for a in acts], dtype=float),
        aux=aux,
        n_out=n_out,
        grid_step=step,
        doses=tuple(doses),
    )


def _rate_and_duration(model, rec, c, amount):
    """(rate mg/h, duration h) of a record's infusion, or (0, 0) for a bolus."""
    if rec.rate == 0:
        return 0.0, 0.0
    where = f"record at time {rec.time:g}"
    if rec.rate > 0:
        rate = rec.rate
    elif rec.rate == -1:
        rate = model.rate[c]
        if not rate > 0:
            raise ScheduleError(f"{where}: rate = -1 needs a modelled infusion rate for compartment "
                                f"{model.states[c]!r} (Model.with_dosing(rate={{...}})), got {rate:g}")
    else:
        dur = model.duration[c]
        if not dur > 0:
            raise ScheduleError(f"{where}: rate = -2 needs a modelled infusion duration for compartment "
                                f"{model.states[c]!r} (Model.with_dosing(duration={{...}})), got {dur:g}")
        return amount / dur, dur
    return rate, (amount / rate if amount > 0 else math.inf)


def _dose(emit, t0, c, amount, rate, dur):
    if rate == 0:
        emit(t0, BOLUS, c, amount)
    elif amount > 0:
        emit(t0, RATE, c, rate)
        emit(t0 + dur, RATE, c, -rate)


def _steady_state(emit, rec, c, amount, rate, dur, lag, doses):
    t, ii = rec.time, rec.ii
    if ii == 0:
        # constant infusion at steady state (amt = 0, rate > 0): NONMEM sets the steady state and
        # does not continue the infusion past the record (nmtests scenario 29)
        emit(t, SS_CONST, c, rec.rate)
        return
    # past doses of the train start at s_j = t + lag − j·ii, j >= 1; those not yet started are pending
    j = 1
    while t + lag - j * ii >= t:
        _dose(emit, t + lag - j * ii, c, amount, rate, dur)
        doses.append((t + lag - j * ii, c, amount))
        j += 1
    if rate == 0:
        emit(t, SS_TRAIN, c, amount, (j * ii - lag, ii, 0.0))
        return
    # infusions of the train still running at t: u = time since their start < D
    running = 0
    while j * ii - lag < dur:
        u = j * ii - lag
        emit(t, INF_PART, c, rate, (u, 0.0, 0.0))
        emit(t, RATE, c, rate)
        emit(t + dur - u, RATE, c, -rate)
        j += 1
        running += 1
        if running > _MAX_RUNNING:
            raise ScheduleError(f"record at time {t:g}: infusion duration {dur:g} h over ii = {ii:g} h leaves more "
                                f"than {_MAX_RUNNING} infusions running at steady state")
    emit(t, SS_TRAIN, c, rate, (j * ii - lag - dur, ii, dur))
