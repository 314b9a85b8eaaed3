"""Simulate one subject: validate, compile the schedule, run a kernel, wrap the result.

``simulate`` is the public entry point (DESIGN §1); ``solve`` is the lower-level call on a
compiled ``Model`` with arbitrary output times and NONMEM-style per-record outputs.
"""

import math

import numpy as np

from . import limits
from ._kernels import codes
from .drug import Drug, load_drug
from .errors import ParameterError, ScheduleError, SolverError
from .model import Model, build_model
from .regimen import Record, Regimen
from .result import SimulationResult
from .schedule import build_timeline
from .status import Status
from .units import body_size, hours

METHODS = ("auto", "exact", "adaptive", "stiff", "switching")
# the adaptive driver's method code (``_kernels.adaptive.run_subject``) of each adaptive method name
ADAPTIVE_CODES = {"adaptive": codes.DOPRI5, "stiff": codes.RODAS, "switching": codes.AUTO}
RTOL, ATOL = 1e-8, 1e-12  # default tolerances of the adaptive methods (relative; absolute, mg)
MAX_STEPS = 1_000_000  # steps attempted per segment between two discontinuities
_DEFAULT_TAIL_H = 168.0
MAX_OUTPUT_ROWS = limits.MAX_OUTPUT_ROWS


def as_model(drug, *, csf_layout="single", physiology=None):
    """A ``Model`` from a ``Model``, a ``Drug`` or a drug name."""
    if isinstance(drug, Model):
        return drug
    if isinstance(drug, str):
        drug = load_drug(drug)
    if not isinstance(drug, Drug):
        raise ParameterError(f"drug = {drug!r} is not a drug; pass csfpk.load_drug(name), a name or a Model")
    return build_model(drug, physiology, csf_layout)


def as_regimen(regimen):
    if isinstance(regimen, Regimen):
        return regimen
    if isinstance(regimen, Record):
        return Regimen((regimen,))
    if isinstance(regimen, (list, tuple)) and all(isinstance(r, Record) for r in regimen):
        return Regimen(tuple(regimen))
    raise ScheduleError(f"regimen = {regimen!r} is not a Regimen; build one with csfpk.Regimen.every(...)")


def output_grid(t_end, dt):
    """Regular output times 0, dt, 2·dt, … up to t_end (t_end itself included)."""
    if not dt > 0:
        raise ScheduleError(f"dt = {dt!r} is not allowed; expected an output step > 0 h")
    if not t_end > 0:
        raise ScheduleError(f"t_end = {t_end!r} is not allowed; expected > 0 h")
    n = int(math.floor(t_end / dt + 1e-9))
    if n > MAX_OUTPUT_ROWS:
        raise ScheduleError(f"t_end/dt = {t_end:g} h / {dt:g} h gives {t_end / dt:.3g} output rows; expected at most "
                            f"{MAX_OUTPUT_ROWS:.0e}: raise dt or end earlier")
    grid = dt * np.arange(n + 1)
    if grid[-1] < t_end - 1e-9 * max(1.0, t_end):
        grid = np.append(grid, t_end)
    return grid


def choose_method(model, method):
    """The method that runs: ``"auto"`` is ``"exact"`` for a linear model, else ``"switching"`` (Dormand–Prince
    with stiffness detection, Rodas4 only while the problem is stiff: ``csfpk._kernels.autoswitch``)."""
    if method not in METHODS:
        raise ParameterError(f"method = {method!r} is not allowed; expected one of {METHODS}")
    if method == "auto":
        return "exact" if model.linear else "switching"
    if method == "exact" and not model.linear:
        raise ParameterError(
            f"method = 'exact' needs a linear time-invariant model; {model.name} has Michaelis–Menten or "
            "time-dependent clearance or saturable CSF uptake: use method='stiff' or 'adaptive'"
        )
    return method


def solve(model, regimen, times, *, method="auto", record_outputs=False, rtol=RTOL, atol=ATOL,
          max_steps=MAX_STEPS):
    """Run one subject and return (amounts[n_out, n_states], timeline, method used).

    ``times`` are the regular output times; with ``record_outputs`` one more row per record
    follows them, as NONMEM's table rows (state after the record is processed).
    """
    out, tl, method, _ = _solve(model, regimen, times, method=method, record_outputs=record_outputs, rtol=rtol,
                                atol=atol, max_steps=max_steps)
    return out, tl, method


def _solve(model, regimen, times, *, method, record_outputs, rtol, atol, max_steps):
    """``solve`` plus the step counts of the adaptive methods (``{name: int}``, None for exact)."""
    method = choose_method(model, method)
    tl = build_timeline(model, as_regimen(regimen), times, record_outputs=record_outputs)
    out = np.zeros((tl.n_out, model.n))
    K = np.ascontiguousarray(model.K, dtype=np.float64)
    if method == "exact":
        from ._kernels import exact

        stats = None
        code = exact.run_subject(K, np.int64(model.n_dynamic), tl.kind, tl.time, tl.cmt, tl.value, tl.aux,
                                 float(tl.grid_step), out)
    else:
        if tl.has_ss:
            raise ScheduleError("steady-state records (ss = 1 or 2) need a linear model and method='exact'; "
                                "simulate the dosing history instead")
        from ._kernels import adaptive

        check_tolerances(rtol, atol)
        counts = np.zeros(codes.N_STATS, dtype=np.int64)
        code = adaptive.run_subject(np.int64(ADAPTIVE_CODES[method]), K,
                                    model.nl.astype(np.float64), tl.kind, tl.time, tl.cmt, tl.value, float(rtol),
                                    float(atol), np.int64(max_steps), out, counts)
        stats = {name: int(counts[slot]) for name, slot in codes.STATS.items()}
    status = Status(int(code))
    if status != Status.OK:
        raise SolverError(f"{model.name}: {status.name}: {status.message}")
    if not np.all(np.isfinite(out)):
        raise SolverError(f"{model.name}: the amounts overflowed to inf/NaN (largest dose "
                          f"{max((d[2] for d in tl.doses), default=0.0):g} mg); check the doses and the model")
    return out, tl, method, stats


def check_size(t_end, dt, model, where=("t_end", "dt")):
    """Refuse, before any work, an output grid too long or a result too large (``csfpk.limits``)."""
    limits.check_size(t_end, dt, model.n, len(model.outputs), where)


def check_tolerances(rtol, atol):
    """Refuse tolerances the adaptive methods cannot use (one line naming the value)."""
    if not (isinstance(rtol, (int, float)) and 1e-14 <= rtol <= 0.1):
        raise ParameterError(f"rtol = {rtol!r} is not allowed; expected a number in [1e-14, 0.1]")
    if not (isinstance(atol, (int, float)) and 0 < atol <= 1.0):
        raise ParameterError(f"atol = {atol!r} is not allowed; expected a number in (0, 1] mg")


def simulate(drug, regimen, t_end=None, dt=1.0, *, method="auto", csf_layout="single", physiology=None,
             rtol=RTOL, atol=ATOL, covariates=None):
    """Simulate one typical subject.

    Parameters
    ----------
    drug : a ``Drug`` (``csfpk.load_drug``), a drug name, or a compiled ``Model``.
    regimen : a ``Regimen`` (``csfpk.Regimen.every(...)``) or a list of ``Record``.
    t_end : end of the simulation, h or a duration string (``"8w"``); default: last dose + 7 days.
        Doses after ``t_end`` are not expanded (they change no output). The output size is checked
        before any work (``check_size``).
    dt : output step, h or a duration string. A sample at a dose time is the pre-dose value.
    method : ``"auto"`` (exact for linear models, else switching), ``"exact"`` (matrix exponential),
        ``"adaptive"`` (Dormand–Prince 5(4)), ``"stiff"`` (Rodas4, Rosenbrock), ``"switching"`` (Dormand–Prince
        5(4) with Hairer's stiffness test, handing over to Rodas4 while the problem is stiff and back).
    csf_layout : ``"single"``, ``"regional"`` or ``"none"`` (ignored when ``drug`` is a Model).
    physiology : a ``Physiology``; default ``load_physiology("adult")``.
    rtol, atol : tolerances of the adaptive methods (relative; absolute in mg).
    covariates : ``{"weight_kg": …, "bsa_m2": …, "crcl_mL_min": …}`` of the subject: the drug file's
        ``[covariates]`` models are applied (``Drug.for_subject``); None: the typical subject.

    Returns
    -------
    SimulationResult, with ``to_frame()`` giving time_h, compartment, conc_mg_L, conc_nM, conc_ng_mL, and
    ``stats``, the step counts of the adaptive methods (None for ``exact``).

    Examples
    --------
    >>> import csfpk
    >>> res = csfpk.simulate("erlotinib", csfpk.Regimen.every(amt=150, ii=24, n=28), t_end=672, dt=1)
    >>> sorted(set(res.to_frame().compartment))
    ['csf', 'plasma', 'plasma_unbound']
    """
    if covariates is not None:
        if isinstance(drug, Model):
            raise ParameterError("covariates need a Drug (or a drug name), not a compiled Model: its parameters "
                                 "are fixed")
        drug = load_drug(drug) if isinstance(drug, str) else drug
        if not isinstance(covariates, dict):
            raise ParameterError(f"covariates = {covariates!r} is not allowed; expected a dict such as "
                                 "{'weight_kg': 70, 'crcl_mL_min': 90}")
        unknown = sorted(set(covariates) - {"weight_kg", "bsa_m2", "crcl_mL_min"})
        if unknown:
            raise ParameterError(f"covariates {unknown} are not allowed; expected weight_kg, bsa_m2, crcl_mL_min")
        drug = drug.for_subject(**{k: body_size(v, k, k) for k, v in covariates.items()})
    model = as_model(drug, csf_layout=csf_layout, physiology=physiology)
    regimen = as_regimen(regimen)
    dt = hours(dt, "dt")
    t_end = regimen.end + _DEFAULT_TAIL_H if t_end is None else hours(t_end, "t_end")
    if dt > 0 and t_end > 0:
        check_size(t_end, dt, model)
    grid = output_grid(t_end, dt)
    amounts, tl, used, stats = _solve(model, regimen, grid, method=method, record_outputs=False, rtol=rtol, atol=atol,
                                      max_steps=MAX_STEPS)
    return SimulationResult(times=grid, amounts=amounts, model=model, method=used, doses=tl.doses, regimen=regimen,
                            stats=stats)
