"""The batch engine: scenarios × virtual populations, simulated in chunks, on this machine or Dask (DESIGN §7).

Each scenario's subjects (``csfpk.scenario.Scenario``) are split into chunks of ``chunk``
subjects; each chunk is simulated by the population kernel (``csfpk._kernels.batch``: blocks
of subjects on threads, ``on_threads``; exposure metrics computed on the fly, memory bounded by the chunk) and yields
one table of per-subject metrics with a ``status`` per subject (0 = ok; a failed subject keeps its
row, with NaN metrics, and the others keep their results). Nonlinear models (Michaelis–Menten,
autoinduction, saturable CSF uptake) run through the adaptive solvers instead
(``csfpk._kernels.batch.run_adaptive``: the driver ``simulate`` uses, blocks of subjects on the same
threads, each subject with its own rate matrix and nonlinear terms), with the scenario's method and tolerances, so subject
i's numbers are those of ``simulate`` for its parameters; their metrics are read off the solver's
output grid (``_adaptive_block``). Because every subject's parameters
depend only on (seed, subject index), a chunk's rows do not depend on the chunk size, the thread
count or the machine that computed it.

A scenario with an ``escalation`` (toxicity-guided dose escalation, or a fixed dose with
myelosuppression) runs through the escalation kernel instead (``csfpk.escalation_population``):
its rows are per-subject doses, decisions, nadirs and CTCAE grades, and each chunk also yields the
per-subject dose timeline (subject, injection, time, dose, decision) that the run folder stores
beside the rows. The same invariance holds: marrow draws depend only on (seed, subject index).

With ``out`` the chunks go to a run folder (``csfpk.runfolder``: the format, the lock, resume and
overwrite); without, they stay in memory. Either way ``run`` returns a ``csfpk.runresult.RunResult``.
With ``scheduler="tcp://host:8786"`` (or ``client=`` a ``distributed.Client``) chunks run on a Dask
cluster (``pip install csfpk[distributed]``); the driver writes the files, so workers need no
shared file system. The numbers are identical either way.
"""

import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import metrics, plot
from ._kernels.codes import N_METRICS, N_STATS
from .errors import CsfpkError, ParameterError
from .escalation_population import escalation_model, run_escalation_subjects
from .model import LAYOUT_PHYSIOLOGY, PHYSIOLOGY_VARYING, VARYING, nonlinear_parameters
from .population import Population, build_rate_matrices, marrow_parameters, reachable
from .progress import Progress
from .io import atomic_path
from .runfolder import CURVES_SUMMARY, SUMMARY, SUMMARY_PNG, RunWriter, chunk_plan
from .runresult import RunResult
from .scenario import Scenario, digest
from .schedule import build_timeline
from .simulation import ADAPTIVE_CODES, MAX_STEPS, output_grid
from .status import Status
from .threads import on_threads

DEFAULT_CHUNK = 10_000
ADAPTIVE_BLOCK = 16  # subjects per thread task of the adaptive path (milliseconds each: small tasks balance)
MAX_CURVE_POINTS = 200
_BLOCK_VALUES = 4_000_000  # float64 state values (32 MB) held at once by the adaptive path (subjects × samples × states)


class DistributedError(CsfpkError):
    """Dask is missing or the cluster could not be reached."""


@dataclass(frozen=True, eq=False)
class _Prepared:
    """What every chunk of a scenario shares: the typical model, the timeline, the window.

    ``w0``, ``w1``, ``trough_index``: grid indices of the metric window (per injection: the whole
    span; w0 > w1 when the metrics are exact); ``exact_win``: (t0, t1, t_trough) h of that window for
    exact metrics, empty for grid metrics; ``window_kind``/``window_bounds``: the resolved window
    (``metrics.resolve_window``); ``injections``: (w0, w1, trough index, exact_win) of each injection's
    window when the kind is per injection.

    Adaptive solvers (``solver`` ≠ "exact"): ``samples`` are the output times of the timeline (the
    regular grid, plus, for exact metrics, a grid of ``Scenario.metrics_grid_h`` inside each window and
    its dose times), ``grid_rows`` the rows of the regular grid among them (curves), ``dose_times`` the
    timeline's dose times (h).
    """

    model: object
    timeline: object
    times: np.ndarray
    out_names: tuple
    out_state: np.ndarray
    w0: int
    w1: int
    trough_index: int
    target: np.ndarray
    curve_stride: int
    curve_rows: int
    exact_win: np.ndarray
    window_kind: str = "span"
    window_bounds: object = None
    injections: tuple = ()
    solver: str = "exact"
    samples: np.ndarray = None
    grid_rows: np.ndarray = None
    dose_times: tuple = ()

    @property
    def suffix(self):
        """Column suffix of the main window's metrics (``span``, ``ss`` or ``win``)."""
        return metrics.SUFFIX["span" if self.window_kind == "per_injection" else self.window_kind]


def _grid_window(scn, times, dose_times, window):
    try:
        w0, w1 = metrics.window_indices(times, window)
    except ValueError as exc:
        raise ParameterError(f"{scn.id}: {exc}") from None
    return w0, w1, metrics.trough_index(times, dose_times, window)


def _exact_window(window, dose_times, t_end):
    """(t0, t1, t_trough) h of a window for the exact metrics: the trough is the pre-dose value of the last
    dose in (t0, t1], else the value at t1 (``csfpk.metrics``, exact metrics)."""
    t0, t1 = (0.0, t_end) if window is None else (float(window[0]), float(window[1]))
    dosed = [d for d in dose_times if t0 < d <= t1]
    return np.array([t0, t1, max(dosed) if dosed else t1])


def prepare(scn: Scenario, curves=False):
    """Validate a scenario and compile its shared parts (raises before any work is done)."""
    if scn.escalation is not None:
        return _prepare_escalation(scn, curves)
    small = scn.population.sample(scn.drug, 0, 1, scn.physiology)
    _, _, _, model = build_rate_matrices(scn.drug, small, scn.physiology, scn.csf_layout)
    times = output_grid(scn.t_end, scn.dt)
    if scn.solver != "exact":
        return _prepare_adaptive(scn, model, times, curves)
    # exact metrics without curves need no output grid in the timeline, only its end: cost per event, not per sample
    exact = scn.metrics == "exact"
    tl = build_timeline(model, scn.regimen, np.array([float(times[-1])]) if exact and not curves else times)
    dose_times = [d[0] for d in tl.doses]
    try:
        kind, bounds = metrics.resolve_window(scn.window, dose_times, float(times[-1]))
    except ValueError as exc:
        raise ParameterError(f"{scn.id}: {exc}") from None
    main = None if kind == "per_injection" else bounds  # per injection: the main metrics cover the span
    windows = bounds if kind == "per_injection" else ()
    if exact:
        no_grid = (1, 0, 0)  # w0 > w1: the kernel computes no grid metrics
        exact_win = _exact_window(main, dose_times, float(times[-1]))
        injections = tuple(no_grid + (_exact_window(w, dose_times, float(times[-1])),) for w in windows)
        w0, w1, trough = no_grid
    else:
        exact_win = np.empty(0)
        injections = tuple(_grid_window(scn, times, dose_times, w) + (exact_win,) for w in windows)
        w0, w1, trough = _grid_window(scn, times, dose_times, main)
    names = tuple(model.outputs)
    out_state = np.array([model.outputs[o][0] for o in names], dtype=np.int64)
    target = np.full(len(names), np.inf if scn.target_nM is None else float(scn.target_nM))  # nM, all outputs
    stride, rows = 0, 0
    if curves:
        stride = max(1, math.ceil(times.size / MAX_CURVE_POINTS))
        rows = (times.size - 1) // stride + 1
    return _Prepared(model, tl, times, names, out_state, w0, w1, trough, target, stride, rows, exact_win, kind, bounds,
                     injections)


def _prepare_adaptive(scn, model, times, curves):
    """``prepare`` for a model the adaptive solvers run (``_Prepared``): metrics are read off output samples."""
    tl = build_timeline(model, scn.regimen, times)
    if tl.has_ss:
        raise ParameterError(f"{scn.id}: steady-state records (ss = 1 or 2) need a linear model and the exact solver; "
                             f"{scn.drug.name} runs with method {scn.solver!r}: simulate the dosing history instead")
    dose_times = tuple(d[0] for d in tl.doses)
    t_end = float(times[-1])
    try:
        kind, bounds = metrics.resolve_window(scn.window, dose_times, t_end)
    except ValueError as exc:
        raise ParameterError(f"{scn.id}: {exc}") from None
    windows = list(bounds) if kind == "per_injection" else [bounds]
    samples = times
    if scn.metrics == "exact":  # no exact metrics for a nonlinear model: a fine grid inside each window
        step = scn.metrics_grid_h
        parts = [times]
        for a, b in ([(0.0, t_end)] if kind == "per_injection" else []) + windows:
            parts.append(np.linspace(a, b, max(2, math.ceil((b - a) / step - 1e-9) + 1)))
            parts.append([d for d in dose_times if a <= d <= b])
        merged = np.sort(np.concatenate(parts))
        keep = np.concatenate(([True], np.diff(merged) > 1e-9 * max(1.0, t_end)))
        samples = merged[keep]
        tl = build_timeline(model, scn.regimen, samples)
    for w in windows + [None]:
        try:
            metrics.window_indices(samples, w)
        except ValueError as exc:
            raise ParameterError(f"{scn.id}: {exc}") from None
    grid_rows = np.searchsorted(samples, times - 1e-9 * max(1.0, t_end))
    names = tuple(model.outputs)
    out_state = np.array([model.outputs[o][0] for o in names], dtype=np.int64)
    target = np.full(len(names), np.inf if scn.target_nM is None else float(scn.target_nM))
    stride, rows = 0, 0
    if curves:
        stride = max(1, math.ceil(times.size / MAX_CURVE_POINTS))
        rows = (times.size - 1) // stride + 1
    no_grid = (1, 0, 0)
    injections = tuple(no_grid + (np.empty(0),) for _ in windows) if kind == "per_injection" else ()
    return _Prepared(model, tl, times, names, out_state, *no_grid, target, stride, rows, np.empty(0), kind, bounds,
                     injections, scn.solver, samples, grid_rows, dose_times)


def _adaptive_block(prep, scn, Ks, nls, f, dose_scale, status, m, inj, curves_arr):
    """Run subjects of one block with the adaptive solver and fill their metrics (rows of the arguments).

    Metrics are the grid formulas of ``csfpk.metrics`` (the module ``simulate``'s results are measured
    with) on the output samples ``prep.samples``, over the scenario's window; per injection, the mean of
    each injection's peak, time above target and C×T.
    """
    from ._kernels.batch import run_adaptive

    tl = prep.timeline
    B, n = Ks.shape[0], Ks.shape[1]
    states = np.zeros((B, prep.samples.size, n))
    stats = np.zeros((B, N_STATS), dtype=np.int64)
    ds = np.ascontiguousarray(dose_scale, dtype=np.float64)

    def block(a, b):
        run_adaptive(np.int64(ADAPTIVE_CODES[prep.solver]), Ks[a:b], nls[a:b], tl.kind, tl.time, tl.cmt, tl.value,
                     ds[a:b], float(scn.rtol), float(scn.atol), np.int64(MAX_STEPS), states[a:b], status[a:b],
                     stats[a:b])

    on_threads(block, B, size=ADAPTIVE_BLOCK)
    conc = f[:, :, None] * np.transpose(states[:, :, prep.out_state], (0, 2, 1))  # (B, n_out, samples), nM
    status[(status == Status.OK) & ~np.isfinite(conc).all(axis=(1, 2))] = Status.NONFINITE
    target = float(prep.target[0]) if prep.target.size else np.inf
    main = None if prep.window_kind == "per_injection" else prep.window_bounds
    got = metrics.exposure(conc, prep.samples, target, main, prep.dose_times)
    for i, name in enumerate(metrics.NAMES):
        m[:, :, i] = got[name]
    if inj is not None:
        per = metrics.per_injection(conc, prep.samples, target, prep.window_bounds)
        inj["peak"][:], inj["time_above"][:], inj["cxt"][:] = per["peak"], per["time_above"], per["cxt"] / 1000.0
    if prep.curve_rows:
        rows = prep.grid_rows[::prep.curve_stride][:prep.curve_rows]
        curves_arr[:] = np.transpose(conc[:, :, rows], (0, 2, 1))


def run_chunk(scn: Scenario, start, stop, curves=False, prep=None):
    """Simulate subjects ``start … stop−1`` of ``scn``; return (metrics DataFrame, curves float32 or None).

    Deterministic: the same subjects give the same rows whatever process or thread runs them.
    A subject whose simulation fails (non-finite parameters, kernel status ≠ 0) keeps its row with
    its ``status`` and NaN metrics.
    """
    from ._kernels.batch import run_metrics

    prep = prep or prepare(scn, curves)
    if isinstance(prep, _EscalationPrepared):
        return _run_escalation_chunk(scn, start, stop, prep)[:2]
    params = scn.population.sample(scn.drug, start, stop, scn.physiology)
    # the table keeps the physiology draws this layout uses (a single-layout run has no regional volumes)
    unused = set(PHYSIOLOGY_VARYING) - set(LAYOUT_PHYSIOLOGY.get(scn.csf_layout, PHYSIOLOGY_VARYING))
    params = {k: v for k, v in params.items() if k not in unused}
    S = stop - start
    invalid = np.zeros(S, dtype=bool)  # non-finite or non-positive parameters: the subject fails alone
    for k in VARYING:
        if k in params:
            invalid |= ~(np.isfinite(params[k]) & (params[k] > 0))
    with np.errstate(invalid="ignore", divide="ignore"):  # and a CSF too small or fast for the drug's half-life
        invalid |= ~reachable(scn.drug, params, scn.physiology, scn.csf_layout)
    if invalid.all():
        return _failed_chunk(params, prep, Status.NONFINITE)
    sim = params
    if invalid.any():  # simulate a valid stand-in in their place; their rows are blanked below
        stand_in = np.flatnonzero(~invalid)[0]
        sim = {k: np.where(invalid, v[stand_in], v) if k in VARYING else v for k, v in params.items()}
    Ks, volume, scale, model = build_rate_matrices(scn.drug, sim, scn.physiology, scn.csf_layout)
    f = scale / volume * (1e6 / scn.drug.molecular_weight)  # A (mg) → nM
    if scn.dose_basis == "bsa":
        dose_scale = params["bsa_m2"] / scn.physiology.bsa_m2
    elif scn.dose_basis == "weight":
        dose_scale = params["weight_kg"] / scn.physiology.weight_kg
    else:
        dose_scale = np.ones(S)
    tl = prep.timeline
    status = np.zeros(S, dtype=np.int64)
    curves_arr = np.zeros((S, prep.curve_rows, len(prep.out_names)))
    if prep.solver != "exact":
        n_out = len(prep.out_names)
        nls = nonlinear_parameters(scn.drug, scn.csf_layout, model.states, Ks, {k: sim[k] for k in VARYING if k in sim})
        m = np.empty((S, n_out, N_METRICS))
        inj = {k: np.empty((S, n_out)) for k in metrics.INJECTION_NAMES} if prep.injections else None
        block = max(1, _BLOCK_VALUES // (prep.samples.size * Ks.shape[1]))
        for a in range(0, S, block):  # blocks bound the memory; each subject's numbers do not depend on them
            b = min(S, a + block)
            _adaptive_block(prep, scn, Ks[a:b], nls[a:b], f[a:b], dose_scale[a:b], status[a:b], m[a:b],
                            None if inj is None else {k: v[a:b] for k, v in inj.items()}, curves_arr[a:b])
        status[invalid] = Status.NONFINITE
        return _frame(params, prep, m, status, curves_arr, inj)

    def kernel(w0, w1, trough, exact_win, stride, cur):
        """Metrics over one window (grid samples w0 … w1, or exact over ``exact_win``); worst status kept."""
        m = np.empty((S, len(prep.out_names), N_METRICS))
        st = np.zeros(S, dtype=np.int64)
        ds = np.ascontiguousarray(dose_scale, dtype=np.float64)
        fs = np.ascontiguousarray(f)

        def block(a, b):
            run_metrics(Ks[a:b], np.int64(model.n_dynamic), tl.kind, tl.time, tl.cmt, tl.value, tl.aux,
                        float(tl.grid_step), ds[a:b], prep.out_state, fs[a:b], np.int64(w0), np.int64(w1),
                        np.int64(trough), prep.target, np.int64(stride), cur[a:b], m[a:b], st[a:b], exact_win)

        on_threads(block, S)
        np.maximum(status, st, out=status)
        return m

    m = kernel(prep.w0, prep.w1, prep.trough_index, prep.exact_win, prep.curve_stride, curves_arr)
    inj = None
    if prep.injections:  # one walk per injection window, the same metrics over each
        per = [kernel(a, b, g, e, 0, np.zeros((S, 0, len(prep.out_names)))) for a, b, g, e in prep.injections]
        inj = {"peak": np.mean([p[..., metrics.NAMES.index("cmax")] for p in per], axis=0),
               "time_above": np.mean([p[..., metrics.NAMES.index("time_above")] for p in per], axis=0),
               "cxt": np.mean([p[..., metrics.NAMES.index("auc")] for p in per], axis=0) / 1000.0}  # nM·h → µM·h
    status[invalid] = Status.NONFINITE
    return _frame(params, prep, m, status, curves_arr, inj)


def _failed_chunk(params, prep, code):
    """A chunk in which every subject failed: rows with their parameters, ``status`` = ``code``, NaN metrics."""
    S = params["subject"].size
    n_out = len(prep.out_names)
    m = np.full((S, n_out, len(metrics.NAMES)), np.nan)
    inj = {k: np.full((S, n_out), np.nan) for k in metrics.INJECTION_NAMES} if prep.injections else None
    return _frame(params, prep, m, np.full(S, int(code), dtype=np.int64), np.zeros((S, prep.curve_rows, n_out)), inj)


def metric_columns(prep):
    """Per-subject metric columns of a prepared scenario, in table order: ``<output>_<metric>_<window>``."""
    sfx = prep.suffix
    cols = []
    for o in prep.out_names:
        if prep.injections:
            cols += [f"{o}_{name}_{metrics.SUFFIX['per_injection']}" for name in metrics.INJECTION_NAMES]
        cols += [f"{o}_{name}_{sfx}" for name in metrics.NAMES]
        if o.startswith("csf"):
            cols.append(f"{o}_plasma_auc_ratio_{sfx}")
    return cols


def _frame(params, prep, m, status, curves_arr, inj=None):
    """Per-subject table (subject, status, parameters, ``<output>_<metric>_<window>``) and float32 curves or None."""
    import pandas as pd

    bad = status != 0
    m[bad] = np.nan
    curves_arr[bad] = np.nan
    cols = {"subject": params["subject"], "status": status.astype(np.int8)}
    for k, v in params.items():
        if k != "subject":
            cols[k] = v
    sfx = prep.suffix
    p = prep.out_names.index("plasma")
    for j, o in enumerate(prep.out_names):
        if inj is not None:
            for name in metrics.INJECTION_NAMES:
                cols[f"{o}_{name}_{metrics.SUFFIX['per_injection']}"] = np.where(bad, np.nan, inj[name][:, j])
        for i, name in enumerate(metrics.NAMES):
            cols[f"{o}_{name}_{sfx}"] = m[:, j, i]
        if o.startswith("csf"):
            with np.errstate(divide="ignore", invalid="ignore"):
                cols[f"{o}_plasma_auc_ratio_{sfx}"] = (m[:, j, metrics.NAMES.index("auc")]
                                                       / m[:, p, metrics.NAMES.index("auc")])
    frame = pd.DataFrame(cols)
    return frame, (curves_arr.astype(np.float32) if prep.curve_rows else None)


class Chunk(NamedTuple):
    """What one chunk yields: per-subject rows, float32 curves or None, and the per-subject dose timeline
    (escalation scenarios) or None."""

    frame: object
    curves: object = None
    doses: object = None


def simulate_chunk(scn, start, stop, curves=False, prep=None):
    """Subjects ``start … stop−1`` of ``scn`` as a ``Chunk`` (``run_chunk`` plus an escalation's dose timeline)."""
    prep = prep or prepare(scn, curves)
    if isinstance(prep, _EscalationPrepared):
        return _run_escalation_chunk(scn, start, stop, prep)
    return Chunk(*run_chunk(scn, start, stop, curves, prep))


def _run_chunk_task(scn, start, stop, curves):
    """Dask task: a chunk's rows as an Arrow-friendly DataFrame (and curves or the dose timeline)."""
    return simulate_chunk(scn, start, stop, curves)


# ----------------------------------------------------------------------------- escalation scenarios (issue 11)
@dataclass(frozen=True, eq=False)
class _EscalationPrepared:
    """What every chunk of an escalation scenario shares (the checks are done): the window (whole span),
    the lineages and the dose levels."""

    window_bounds: tuple
    lineages: tuple
    levels: tuple
    window_kind: str = "span"
    injections: tuple = ()


def _prepare_escalation(scn, curves):
    if curves:
        raise ParameterError(f"{scn.id}: curves are not kept for escalation scenarios (the escalation kernel "
                             "records doses, nadirs and grades); run without --curves")
    small = scn.population.sample(scn.drug, 0, 1, scn.physiology)  # a bad population or drug fails here, before work
    build_rate_matrices(scn.drug, small, scn.physiology, scn.csf_layout)
    try:
        escalation_model(scn.drug, scn.escalation, scn.physiology, scn.csf_layout)
    except CsfpkError as exc:
        raise ParameterError(f"{scn.id}: {exc}") from None
    return _EscalationPrepared((0.0, float(scn.t_end)), tuple(scn.pd.lineages), tuple(scn.escalation.levels))


def _run_escalation_chunk(scn, start, stop, prep):
    """Rows (subject, status, PK and marrow parameters, escalation outputs) and the dose timeline of a chunk."""
    import pandas as pd

    params = scn.population.sample(scn.drug, start, stop, scn.physiology)
    marrow = marrow_parameters(scn.pd, scn.drug.name, scn.population.seed, params["subject"], iiv=scn.marrow_iiv)
    res = run_escalation_subjects(scn.drug, scn.escalation, params, marrow, t_end=scn.t_end, dt=scn.dt,
                                  csf_layout=scn.csf_layout, physiology=scn.physiology, pd=scn.pd,
                                  dose_basis=scn.dose_basis, substeps=scn.substeps, chunk_size=max(1, stop - start))
    out = res.subjects
    cols = {"subject": out["subject"].to_numpy(), "status": out["status"].to_numpy()}
    for k, v in params.items():
        if k not in cols:
            cols[k] = v
    cols["slope_L_mg"] = marrow["slope"]
    for j, lin in enumerate(marrow["lineages"]):
        cols[f"circ0_{lin}_1e9_L"] = marrow["circ0"][:, j]
        cols[f"mtt_{lin}_h"] = marrow["mtt"][:, j]
    for c in out.columns:
        if c not in cols:
            cols[c] = out[c].to_numpy()
    given = res.doses.dose_mg.to_numpy().reshape(len(out), -1)
    cols["total_dose_mg"] = given.sum(axis=1)  # NaN for a failed subject
    return Chunk(pd.DataFrame(cols), None, res.doses)


def escalation_row(scn, prep, df, typ):
    """Summary columns of an escalation scenario from its per-subject rows ``df`` (``typ``: the typical subject's).

    Over the whole span (the grades and nadirs of every output step from 0 to ``t_end``), ok subjects
    only: ``grade3_<lineage>_pct`` and ``grade3_any_pct`` (% of subjects whose worst CTCAE grade is ≥ 3),
    ``final_dose_mg_{median,p05,p95,typical}``, ``final_dose_at_cap_pct``, ``final_dose_at_start_pct``,
    ``final_dose_levels`` (text: "50 mg 99.7 %; 45 mg 0.3 %"), ``step_back_pct`` (% with at least one
    step-back), ``n_step_backs_mean``, and median/p05/p95/typical of each lineage's nadir and of the total dose.
    """
    ok = df[df.status == 0]
    esc = scn.escalation
    unit = {"bsa": " mg/m²", "weight": " mg/kg"}.get(scn.dose_basis, " mg")
    kind = "fixed dose" if len(prep.levels) == 1 else (
        "escalation with step-back" if esc.step_back else "escalation without step-back")
    row = {"escalation": kind, "levels_text": ", ".join(f"{x:g}" for x in prep.levels) + unit,
           "grade_text": f"CTCAE v4.03 grade >= 3, worst over the whole span 0–{scn.t_end:g} h; "
                         "% of subjects",
           "target_text": "no concentration target: escalation scenarios report doses, nadirs and grades"}
    for lin in prep.lineages + ("any",):
        g = ok[f"worst_grade_{lin}"]
        row[f"grade3_{lin}_pct"] = float(100.0 * (g >= 3).mean()) if len(ok) else math.nan
    cols = ["final_dose_mg", "total_dose_mg", "n_step_backs"] + [f"nadir_{lin}_1e9_L" for lin in prep.lineages]
    for col in cols:
        p05, med, p95 = metrics.summarize(ok[col].to_numpy(dtype=float))
        row[f"{col}_median"], row[f"{col}_p05"], row[f"{col}_p95"] = med, p05, p95
        row[f"{col}_typical"] = float(typ[col].iloc[0])
    final = ok.final_dose_mg.to_numpy(dtype=float)
    scale = ok.dose_scale.to_numpy(dtype=float)
    level = final / scale  # the level in the escalation's own unit (mg, mg/kg or mg/m²)
    top, low = prep.levels[-1], prep.levels[0]
    n = max(len(ok), 1)
    row["final_dose_at_cap_pct"] = float(100.0 * np.isclose(level, top, rtol=1e-9).sum() / n) if len(ok) else math.nan
    row["final_dose_at_start_pct"] = (float(100.0 * np.isclose(level, low, rtol=1e-9).sum() / n)
                                      if len(ok) else math.nan)
    share = [(x, 100.0 * np.isclose(level, x, rtol=1e-9).sum() / n) for x in prep.levels]
    row["final_dose_levels"] = "; ".join(f"{x:g}{unit} {p:.1f} %" for x, p in sorted(share, key=lambda t: -t[0])
                                         if p > 0)
    row["step_back_pct"] = float(100.0 * (ok.n_step_backs >= 1).mean()) if len(ok) else math.nan
    row["n_step_backs_mean"] = float(ok.n_step_backs.mean()) if len(ok) else math.nan
    return row


def run(scenarios, out=None, *, chunk=None, curves=False, client=None, scheduler=None, overwrite=False,
        progress=None, spec=None):
    """Run ``scenarios`` and return a ``RunResult``.

    Parameters
    ----------
    scenarios : sequence of ``Scenario``.
    out : run folder (``csfpk.runfolder``), or None to keep everything in memory.
    chunk : subjects per chunk (default 10 000; a resumed run keeps its manifest's).
    curves : also keep downsampled concentration curves (≤ 200 points per subject).
    client, scheduler : a ``distributed.Client`` or a scheduler address to run chunks on Dask.
    overwrite : replace a finished (or different) run in ``out``: the new run is built beside it
        and swapped in when complete.
    progress : show the progress line (None: when stderr is a terminal).
    spec : plain-data description stored in the manifest (e.g. the sweep file's text).
    """
    scenarios = tuple(scenarios)
    if not scenarios:
        raise ParameterError("the sweep has no scenarios (empty grid); add drugs, regimens and populations")
    ids = [s.id for s in scenarios]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ParameterError(f"scenario labels repeat: {dup}; give regimens/populations distinct names")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1):
        raise ParameterError(f"chunk = {chunk!r} is not allowed; expected an integer >= 1 subjects")
    if scheduler is not None and client is None and not (isinstance(scheduler, str) and "://" in scheduler):
        raise DistributedError(f"scheduler = {scheduler!r} is not allowed; expected a Dask address such as "
                               "'tcp://10.0.0.5:8786'")
    kinds = {s.escalation is not None for s in scenarios}
    if len(kinds) > 1:
        raise ParameterError("the scenarios mix escalation/myelosuppression regimens with exposure-only regimens; "
                             "their rows and summaries differ, so run them as two sweeps")
    preps = {s.id: prepare(s, curves) for s in scenarios}  # validates everything before any file appears
    records = [s.record() for s in scenarios]
    own = client is None and scheduler is not None
    if own:
        client = _connect(scheduler)  # before the folder exists: an unreachable cluster leaves nothing behind
    try:
        if out is None:
            return _run_in_memory(scenarios, records, preps, chunk or DEFAULT_CHUNK, curves, client, progress)
        return _run_to_folder(scenarios, records, preps, out, chunk, curves, client, overwrite, progress, spec)
    finally:
        if own:
            client.close()


def _run_to_folder(scenarios, records, preps, out, chunk, curves, client, overwrite, progress, spec):
    ids = [s.id for s in scenarios]
    with RunWriter.open(out, spec=spec, spec_hash=digest(records), scenarios=records,
                        chunk=None if chunk is None else int(chunk), default_chunk=DEFAULT_CHUNK, curves=curves,
                        overwrite=overwrite) as writer:
        recs = dict(zip(ids, writer.manifest["scenarios"]))
        todo = []
        for s in scenarios:
            done = writer.done_chunks(recs[s.id])
            todo += [(s, i, a, b) for i, a, b in chunk_plan(s.population.n, writer.chunk) if i not in done]

        written = {s.id: {} for s in scenarios}  # this session's chunks (Arrow, summary columns): not read back

        def store(s, i, a, b, chunk):
            table = writer.write_chunk(recs[s.id], i, a, b, chunk.frame, chunk.curves, chunk.doses)
            cols = _summary_columns(preps[s.id])
            written[s.id][i] = table if cols is None else table.select(cols)

        _execute(todo, preps, curves, store, client, progress)
        summary, bands = _summaries(scenarios, preps, curves,
                                    lambda s, cols: writer.read_metrics(recs[s.id], cols, written[s.id]),
                                    lambda s: writer.read_curves(recs[s.id]))
        with atomic_path(writer.summary_path(SUMMARY)) as tmp:
            summary.to_csv(tmp, index=False)
        if bands is not None:
            with atomic_path(writer.summary_path(CURVES_SUMMARY)) as tmp:
                bands.to_csv(tmp, index=False)
        draft = RunResult(scenarios=writer.manifest["scenarios"], summary=summary, curves_summary=bands,
                          folder=writer.path, manifest=writer.manifest)
        plot.save(plot.summary_figure(draft), writer.summary_path(SUMMARY_PNG))
        writer.complete()  # the manifest is completed last
        return RunResult(scenarios=writer.manifest["scenarios"], summary=summary, curves_summary=bands,
                         folder=writer.out, manifest=writer.manifest)


def _run_in_memory(scenarios, records, preps, chunk, curves, client, progress):
    import pandas as pd

    frames = {s.id: {} for s in scenarios}
    curve_parts = {s.id: {} for s in scenarios}
    dose_parts = {s.id: {} for s in scenarios}

    def store(s, i, a, b, chunk):
        frames[s.id][i] = chunk.frame
        if chunk.curves is not None:
            curve_parts[s.id][i] = chunk.curves
        if chunk.doses is not None:
            dose_parts[s.id][i] = chunk.doses

    todo = [(s, i, a, b) for s in scenarios for i, a, b in chunk_plan(s.population.n, chunk)]
    _execute(todo, preps, curves, store, client, progress)
    kept = {s.id: pd.concat([frames[s.id][i] for i in sorted(frames[s.id])], ignore_index=True) for s in scenarios}
    summary, bands = _summaries(scenarios, preps, curves, lambda s, cols: kept[s.id],
                                lambda s: np.concatenate([curve_parts[s.id][i] for i in sorted(curve_parts[s.id])]))
    timelines = {r["key"]: pd.concat([dose_parts[s.id][i] for i in sorted(dose_parts[s.id])], ignore_index=True)
                 for s, r in zip(scenarios, records) if dose_parts[s.id]}
    return RunResult(scenarios=records, summary=summary, curves_summary=bands,
                     frames={r["key"]: kept[s.id] for s, r in zip(scenarios, records)}, timelines=timelines)


def _execute(todo, preps, curves, store, client, progress):
    bar = Progress(sum(b - a for _, _, a, b in todo), enabled=progress)
    if client is not None:
        _run_dask(todo, curves, store, client, bar)
    elif all(getattr(preps[s.id], "solver", None) == "exact" for s, _, _, _ in todo):
        _run_ahead(todo, preps, curves, store, bar)
    else:
        for s, i, a, b in todo:
            chunk = simulate_chunk(s, a, b, curves, preps[s.id])
            store(s, i, a, b, chunk)
            bar.update(len(chunk.frame))
    bar.close()


def _run_ahead(todo, preps, curves, store, bar):
    """Chunks of the exact solver, each simulated on a helper thread while this thread stores the one before.

    The kernel's threads would otherwise wait for the Parquet write, the checksum and the sidecar of each
    chunk. Chunks are still simulated one after the other and stored in order, here (where Ctrl-C and SIGTERM
    arrive): a stop keeps every finished chunk and waits at most for the chunk being simulated, a fraction
    of a second for this solver (the adaptive solvers and escalation scenarios, whose chunks can take
    minutes, run in line).
    """
    import numba

    # numba's thread count is per thread: the helper uses the caller's
    with ThreadPoolExecutor(1, thread_name_prefix="csfpk-chunk", initializer=numba.set_num_threads,
                            initargs=(numba.get_num_threads(),)) as ahead:
        def submit(k):  # chunk k on the helper thread (None past the last)
            if k == len(todo):
                return None
            s, _, a, b = todo[k]
            return ahead.submit(simulate_chunk, s, a, b, curves, preps[s.id])

        nxt = submit(0)
        for k, (s, i, a, b) in enumerate(todo):
            chunk = nxt.result()
            nxt = submit(k + 1)
            store(s, i, a, b, chunk)
            bar.update(len(chunk.frame))


def _connect(scheduler):
    """A ``distributed.Client`` for ``scheduler``; ``DistributedError`` (one line) when that is not possible."""
    try:
        from distributed import Client
    except ImportError:
        raise DistributedError("running on a Dask cluster needs dask.distributed: pip install 'csfpk[distributed]'") from None
    try:
        return Client(scheduler, timeout="20s")
    except (OSError, ValueError, TypeError) as exc:
        raise DistributedError(f"cannot reach the Dask scheduler at {scheduler!r}: {exc}") from None


def _run_dask(todo, curves, store, client, bar):
    from distributed import as_completed

    futures = {}
    for s, i, a, b in todo:
        fut = client.submit(_run_chunk_task, s, a, b, curves, pure=False)
        futures[fut] = (s, i, a, b)
    for fut in as_completed(futures):
        s, i, a, b = futures[fut]
        chunk = fut.result()
        store(s, i, a, b, chunk)
        bar.update(len(chunk.frame))


def typical_scenario(scn):
    """``scn`` for its typical subject: one subject, no IIV, covariates at their medians, nominal penetration."""
    pop = scn.population
    typ = Population(n=1, seed=pop.seed, iiv={k: 0.0 for k in pop.cv(scn.drug, scn.physiology)},
                     covariates={k: (med, 0.0) for k, (med, _) in pop.covariates.items()}, penetration="nominal",
                     name="typical")
    if scn.escalation is not None:  # and the typical marrow
        return dataclasses.replace(scn, population=typ, marrow_iiv=False)
    return dataclasses.replace(scn, population=typ)


def describe(scn, prep):
    """Plain-words columns of a scenario's summary row: window, target and its source, percentiles, ranges."""
    d = scn.drug
    kind, bounds = prep.window_kind, prep.window_bounds
    row = {"window": kind, "window_text": metrics.window_text(kind, bounds)}
    if kind == "per_injection":
        row["window_start_h"], row["window_end_h"] = bounds[0][0], bounds[-1][1]
        row["n_injections"] = len(bounds)
    else:
        row["window_start_h"], row["window_end_h"] = bounds
    q = d.quantities.get("potency.target")
    if scn.target_nM is None:
        row["target_text"] = "no target (the drug file has no [potency] target)"
    elif q is not None and d.potency_target_nM is not None and float(scn.target_nM) == float(d.potency_target_nM):
        row["target_text"] = f"{d.name} [potency] target {scn.target_nM:g} nM ({q.source})"
    else:
        row["target_text"] = f"target {scn.target_nM:g} nM set by the sweep or caller (target_nM)"
    row["percentiles"] = "median [5th–95th percentile] over subjects; typical = one typical subject"
    if scn.solver == "exact":
        row["solver_text"] = "exact (matrix exponential)"
    else:
        row["solver_text"] = (f"{scn.solver} (method {scn.method!r}: nonlinear model), rtol {scn.rtol:g}, "
                              f"atol {scn.atol:g} mg")
    if scn.metrics_grid_h is None:
        row["metrics_text"] = "exact (grid-free)"
    elif scn.metrics == "grid":
        row["metrics_text"] = f"grid every {scn.metrics_grid_h:g} h"
    else:
        row["metrics_text"] = (f"grid every {scn.metrics_grid_h:g} h inside the window (a nonlinear model has no "
                               "grid-free metrics)")
    row["drawn_from_range"] = ""
    if d.csf is not None and scn.population.penetration == "range":
        key = "CL_in" if d.csf.mechanistic else "penetration_ratio"
        rq = d.quantities.get(f"csf.{key}")
        if rq is not None and rq.range is not None and rq.range[1] > rq.range[0] > 0:
            unit = "" if rq.unit in ("1", "") else f" {rq.unit}"
            row["drawn_from_range"] = (f"csf.{key} drawn log-uniformly per subject in {rq.range[0]:g}–{rq.range[1]:g}"
                                       f"{unit} (the drug file's range; the typical subject has "
                                       f"{getattr(d.csf, key):g}{unit})")
    return row


def _failures(status):
    """Failed subjects counted by status, in words: "MAX_STEPS 2, NONFINITE 1" ("" when none failed)."""
    codes, counts = np.unique(status[status != Status.OK], return_counts=True)
    return ", ".join(f"{Status(int(c)).name} {int(k)}" for c, k in zip(codes, counts))


def _summary_columns(prep):
    """The per-subject columns a summary reads: status and the metric columns (None: all, for escalation rows)."""
    return None if isinstance(prep, _EscalationPrepared) else ["status"] + metric_columns(prep)


def _summaries(scenarios, preps, curves, frame_of, curves_of):
    """Summary (one row per scenario) and curve bands, from each scenario's per-subject frame.

    Each metric column gets its median, 5th and 95th percentile and the value of the typical subject
    (``typical_scenario``, same regimen and window); the row names its window, target and ranges.
    ``frame_of(s, columns)`` gives the frame (only ``columns`` are needed; None: all of them).
    """
    import pandas as pd

    rows, bands = [], []
    for s in scenarios:
        prep = preps[s.id]
        df = frame_of(s, _summary_columns(prep))
        typ, _ = run_chunk(typical_scenario(s), 0, 1, False, prep)
        if isinstance(prep, _EscalationPrepared):
            rows.append({"scenario": s.id, "drug": s.drug.name, "regimen": s.regimen_name,
                         "population": s.population_name, "override": s.override_name, "source": s.source,
                         "n": len(df), "n_failed": int((df.status != 0).sum()),
                         "failed_by_status": _failures(df.status.to_numpy()), "target_nM": s.target_nM,
                         "molecular_weight": s.drug.molecular_weight, **describe(s, prep),
                         **escalation_row(s, prep, df, typ)})
            continue
        row = {"scenario": s.id, "drug": s.drug.name, "regimen": s.regimen_name, "population": s.population_name,
               "override": s.override_name, "source": s.source, "n": len(df), "n_failed": int((df.status != 0).sum()),
               "failed_by_status": _failures(df.status.to_numpy()),
               "target_nM": s.target_nM, "molecular_weight": s.drug.molecular_weight, **describe(s, prep)}
        for col in metric_columns(prep):
            p05, med, p95 = metrics.summarize(df[col].to_numpy())
            row[f"{col}_median"], row[f"{col}_p05"], row[f"{col}_p95"] = med, p05, p95
            row[f"{col}_typical"] = float(typ[col].iloc[0])
        if s.target_nM is not None and not prep.injections:  # a trough of bolus pulses has no meaning
            for o in prep.out_names:
                row[f"{o}_pta_trough_{prep.suffix}"] = metrics.pta(df[f"{o}_trough_{prep.suffix}"].to_numpy(),
                                                                   s.target_nM)
                row[f"{o}_pta_cavg_{prep.suffix}"] = metrics.pta(df[f"{o}_cavg_{prep.suffix}"].to_numpy(), s.target_nM)
        rows.append(row)
        if curves:
            cur = curves_of(s)
            t = prep.times[::prep.curve_stride][:prep.curve_rows]
            with np.errstate(invalid="ignore"):
                q = np.nanpercentile(cur, [5, 50, 95], axis=0)  # (3, rows, n_out)
            for j, o in enumerate(prep.out_names):
                bands.append(pd.DataFrame({"scenario": s.id, "compartment": o, "time_h": t,
                                           "p05_nM": q[0, :, j], "median_nM": q[1, :, j], "p95_nM": q[2, :, j]}))
    return pd.DataFrame(rows), (pd.concat(bands, ignore_index=True) if bands else None)

