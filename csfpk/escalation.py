"""Toxicity-guided intrathecal dose escalation: the next dose depends on the simulated marrow.

The seed study's pemetrexed rule (Fan et al., BMC Cancer 2023, seed 000): start at 10 mg, add 5 mg
per injection up to 50 mg, and return to the previous dose level when the patient develops grade
≥ 3 myelosuppression, then continue. csfpk reads it as, at each injection k > 1:

* a grade ≥ ``step_back_grade`` episode (any lineage of the PD file: leukocytes, neutrophils or
  platelets, CTCAE v4.03) that began since
  the previous injection → one level back (never below ``start``); the decision is taken once per
  injection, so several dips between two injections are one event and one step back;
* an episode still going on from before → hold the level (one step back per episode, not per
  injection);
* otherwise → one level up (``at_cap`` once the dose is ``cap``).

With ``step_back=False`` the counts never change the dose: it rises by ``step`` at every injection
up to ``cap`` (no step-back, no hold). A fixed dose with myelosuppression is the one-level case
``start = cap`` (``Escalation.fixed``).

The runner is interval by interval and plain Python: before each injection it simulates the PK
(exact, linear) with the doses given so far, drives the Friberg model with the plasma curve and
reads the grades since the previous injection. The result records the dose actually given.
``csfpk.escalation_population`` runs the same rule for many subjects at once in numba.
"""

from dataclasses import dataclass

import numpy as np

from ._kernels.codes import NO_STEP_BACK_GRADE
from .errors import ScheduleError
from .myelosuppression import counts_along, load_myelosuppression
from .regimen import ROUTES, Record, Regimen
from .result import SimulationResult
from .simulation import as_model, output_grid, solve
from .units import dose_mg, hours


@dataclass(frozen=True)
class Escalation:
    """An escalating regimen: injection ``times`` (h), dose ``start`` + k·``step`` (mg) up to ``cap``.

    Examples
    --------
    >>> esc = Escalation.seed_pemetrexed()
    >>> esc.start, esc.step, esc.cap, len(esc.times)
    (10.0, 5.0, 50.0, 17)
    """

    times: tuple
    start: float = 10.0
    step: float = 5.0
    cap: float = 50.0
    route: str = "it_lumbar"
    step_back_grade: int = 3
    name: str = "escalation"
    step_back: bool = True

    def __post_init__(self):
        object.__setattr__(self, "start", dose_mg(self.start, "start"))
        object.__setattr__(self, "step", dose_mg(self.step, "step"))
        object.__setattr__(self, "cap", dose_mg(self.cap, "cap"))
        if self.start <= 0:
            raise ScheduleError(f"start = {self.start:g} mg is not allowed; expected a first dose > 0 mg")
        if self.cap < self.start:
            raise ScheduleError(f"cap = {self.cap:g} mg is below start = {self.start:g} mg; expected cap >= start")
        if self.step <= 0 and self.cap > self.start:
            raise ScheduleError(f"step = {self.step:g} mg is not allowed; expected > 0 mg when cap > start")
        if self.route not in ROUTES:
            raise ScheduleError(f"route = {self.route!r} is not allowed; expected one of {ROUTES}")
        if not isinstance(self.step_back, bool):
            raise ScheduleError(f"step_back = {self.step_back!r} is not allowed; expected true or false")
        if self.step_back_grade not in (1, 2, 3, 4) or isinstance(self.step_back_grade, bool):
            raise ScheduleError(f"step_back_grade = {self.step_back_grade!r} is not allowed; expected 1, 2, 3 or 4")
        times = tuple(float(t) for t in self.times)
        if not times:
            raise ScheduleError("times: an escalation needs at least one injection time")
        if any(b <= a for a, b in zip(times, times[1:])) or times[0] < 0:
            raise ScheduleError("times: injection times must be >= 0 h and strictly increasing")
        object.__setattr__(self, "times", times)

    @property
    def decision_grade(self):
        """Grade at which an episode counts as severe for the rule (``NO_STEP_BACK_GRADE`` without step-back)."""
        return self.step_back_grade if self.step_back else NO_STEP_BACK_GRADE

    @property
    def levels(self):
        """Dose levels (mg): start, start + step, …, cap."""
        n = int(np.floor((self.cap - self.start) / self.step + 1e-9)) + 1 if self.step > 0 else 1
        return tuple(min(self.start + k * self.step, self.cap) for k in range(n)) + (
            (self.cap,) if self.step > 0 and self.start + (n - 1) * self.step < self.cap - 1e-9 else ())

    def schedule(self):
        """The injection times as a ``Regimen`` at the start dose (what a scenario's ``regimen`` holds)."""
        return Regimen(tuple(Record(time=t, evid=1, amt=self.start, cmt=self.route) for t in self.times),
                       name=self.name)

    def to_dict(self):
        """Plain data: every field (times in h, doses in mg or per kg/m² as given)."""
        return {"times": list(self.times), "start": self.start, "step": self.step, "cap": self.cap,
                "route": self.route, "step_back": self.step_back, "step_back_grade": self.step_back_grade,
                "name": self.name}

    @classmethod
    def from_schedule(cls, schedule: Regimen, **kwargs):
        """Injection times from a regimen's dose times (e.g. ``Regimen.phases(...)``)."""
        return cls(times=tuple(d.time for d in schedule.doses()), **kwargs)

    @classmethod
    def fixed(cls, schedule: Regimen, dose, **kwargs):
        """The same ``dose`` at every dose time of ``schedule``, with the marrow simulated (one level, no
        step-back): a fixed-dose regimen for the escalation kernel."""
        return cls.from_schedule(schedule, start=dose, step=0.0, cap=dose, step_back=False, **kwargs)

    @classmethod
    def seed_pemetrexed(cls, route="it_lumbar", weeks=26):
        """The seed protocol over ``weeks``: twice weekly for 4 weeks, weekly for 4, then every 4 weeks."""
        if weeks <= 8:
            raise ScheduleError(f"weeks = {weeks!r} is not allowed; expected > 8 (the first two phases)")
        rest = hours(f"{weeks}w") - hours("8w")
        schedule = Regimen.phases((1, "3.5d", "4w"), (1, "1w", "4w"), (1, "4w", rest), route=route)
        return cls.from_schedule(schedule, start=10, step=5, cap=50, route=route, name="pemetrexed seed escalation")


@dataclass(frozen=True, eq=False)
class EscalationResult:
    """The simulation with the doses actually given, the blood counts and the dose decisions."""

    result: object  # SimulationResult with every dose given
    counts: object  # tidy frame: time_h, lineage, count_1e9_L, grade
    decisions: object  # frame: injection, time_h, dose_mg, worst_grade_since_last, action

    @property
    def doses_given(self):
        return self.decisions.dose_mg.to_numpy()


def run_escalation(drug, escalation: Escalation, t_end=None, dt=0.25, *, csf_layout="single", physiology=None,
                   pd=None):
    """Simulate ``escalation`` for ``drug``, choosing each dose from the simulated blood counts.

    Parameters
    ----------
    drug : drug name, ``Drug`` or ``Model`` (its plasma drives the marrow).
    escalation : the rule and its injection times.
    t_end : end (h or duration string); default last injection + 4 weeks.
    dt : output step (h); the Friberg model is driven by the plasma curve on this grid.
    pd : a ``Myelosuppression`` parameter set (default ``params/pd/myelosuppression.toml``).
    """
    import pandas as pd_

    pd = pd or load_myelosuppression()
    model = as_model(drug, csf_layout=csf_layout, physiology=physiology)
    slope = pd.slope(model.name)
    levels = escalation.levels
    t_end = escalation.times[-1] + hours("4w") if t_end is None else hours(t_end, "t_end")
    if t_end <= escalation.times[-1]:
        raise ScheduleError(f"t_end = {t_end:g} h must be after the last injection at {escalation.times[-1]:g} h")
    dt = hours(dt, "dt")
    grid = output_grid(t_end, dt)
    c_idx, v1, _ = model.outputs["plasma"]

    def worst_grades(upto, regimen):
        g = grid[grid <= upto]
        if g.size < 2:
            return g, np.zeros(g.size, dtype=np.int64)
        amounts, _, _ = solve(model, regimen, g, method="exact")
        cp = amounts[:, c_idx] / v1
        worst = np.zeros(g.size, dtype=np.int64)
        for lin in pd.lineages.values():
            worst = np.maximum(worst, lin.grade(counts_along(g, cp, lin, slope)))
        return g, worst

    level = 0
    records, rows = [], []
    for k, tk in enumerate(escalation.times):
        action, worst_since = "start", 0
        if k > 0:
            g, worst = worst_grades(tk, Regimen(tuple(records)))
            window = (g > escalation.times[k - 1]) & (g <= tk)
            severe = worst >= escalation.decision_grade
            worst_since = int(worst[window].max()) if window.any() else 0
            # an episode "began" in the window if a severe sample follows a non-severe one there
            onset = np.flatnonzero(severe[1:] & ~severe[:-1]) + 1
            began = bool(np.any(window[onset]))
            ongoing = bool(severe[window][-1]) if window.any() else False
            if began:
                level, action = max(level - 1, 0), "step_back"
            elif ongoing:
                action = "hold"
            elif level == len(levels) - 1:
                action = "at_cap"
            else:
                level, action = level + 1, "escalate"
        dose = levels[level]
        records.append(Record(time=tk, evid=1, amt=dose, cmt=escalation.route))
        rows.append({"injection": k + 1, "time_h": tk, "dose_mg": dose, "worst_grade_since_last": worst_since,
                     "action": action})
    regimen = Regimen(tuple(records), name=escalation.name)
    amounts, tl, used = solve(model, regimen, grid, method="exact")
    res = SimulationResult(times=grid, amounts=amounts, model=model, method=used, doses=tl.doses, regimen=regimen)
    cp = res.conc("plasma")
    frames = []
    for lin in pd.lineages.values():
        c = counts_along(grid, cp, lin, slope)
        frames.append(pd_.DataFrame({"time_h": grid, "lineage": lin.name, "count_1e9_L": c, "grade": lin.grade(c)}))
    return EscalationResult(res, pd_.concat(frames, ignore_index=True), pd_.DataFrame(rows))
