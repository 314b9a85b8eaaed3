"""The batch engine: scenarios × virtual populations, simulated in chunks, on this machine or Dask (DESIGN §7).

Each scenario's subjects (``csfpk.scenario.Scenario``) are split into chunks of ``chunk``
subjects; each chunk is simulated by the population kernel (``csfpk._kernels.batch``: numba
threads over subjects, exposure metrics computed on the fly, memory bounded by the chunk) and yields
one table of per-subject metrics with a ``status`` per subject (0 = ok; a failed subject keeps its
row, with NaN metrics, and the others keep their results). Because every subject's parameters
depend only on (seed, subject index), a chunk's rows do not depend on the chunk size, the thread
count or the machine that computed it.

With ``out`` the chunks go to a run folder (``csfpk.runfolder``: the format, the lock, resume and
overwrite); without, they stay in memory. Either way ``run`` returns a ``csfpk.runresult.RunResult``.
With ``scheduler="tcp://host:8786"`` (or ``client=`` a ``distributed.Client``) chunks run on a Dask
cluster (``pip install csfpk[distributed]``); the driver writes the files, so workers need no
shared file system. The numbers are identical either way.
"""

import math
from dataclasses import dataclass

import numpy as np

from . import metrics, plot
from .errors import CsfpkError, ParameterError
from .model import VARYING
from .population import build_rate_matrices
from .progress import Progress
from .io import atomic_path
from .runfolder import CURVES_SUMMARY, SUMMARY, SUMMARY_PNG, RunWriter, chunk_plan
from .runresult import RunResult
from .scenario import Scenario, digest
from .schedule import build_timeline
from .simulation import choose_method, output_grid
from .status import Status

DEFAULT_CHUNK = 10_000
MAX_CURVE_POINTS = 200


class DistributedError(CsfpkError):
    """Dask is missing or the cluster could not be reached."""


@dataclass(frozen=True, eq=False)
class _Prepared:
    """What every chunk of a scenario shares: the typical model, the timeline, the window."""

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
    exact_win: np.ndarray  # (t0, t1, t_trough) h for exact metrics, empty for grid metrics


def prepare(scn: Scenario, curves=False):
    """Validate a scenario and compile its shared parts (raises before any work is done)."""
    small = scn.population.sample(scn.drug, 0, 1, scn.physiology)
    _, _, _, model = build_rate_matrices(scn.drug, small, scn.physiology, scn.csf_layout)
    if choose_method(model, "auto") != "exact":
        raise ParameterError(f"{scn.drug.name}: populations need a linear model (the exact kernel); this drug has "
                             "Michaelis–Menten or time-dependent clearance or saturable CSF uptake")
    times = output_grid(scn.t_end, scn.dt)
    try:
        w0, w1 = metrics.window_indices(times, scn.window)
    except ValueError as exc:
        raise ParameterError(f"{scn.id}: {exc}") from None
    exact_win = np.empty(0)
    if scn.metrics == "exact":
        t0, t1 = (0.0, float(times[-1])) if scn.window is None else (float(scn.window[0]), float(scn.window[1]))
        # metrics only: the timeline needs no output grid, only the window's end (cost per event, not per sample)
        tl = build_timeline(model, scn.regimen, times if curves else np.array([t1]))
        dosed = [d[0] for d in tl.doses if t0 < d[0] <= t1]  # the trough: pre-dose value of the last dose in (t0, t1]
        exact_win = np.array([t0, t1, max(dosed) if dosed else t1])
        w0, w1 = 1, 0  # no grid metrics
    else:
        tl = build_timeline(model, scn.regimen, times)
    trough = metrics.trough_index(times, [d[0] for d in tl.doses], scn.window)
    names = tuple(model.outputs)
    out_state = np.array([model.outputs[o][0] for o in names], dtype=np.int64)
    target = np.full(len(names), np.inf if scn.target_nM is None else float(scn.target_nM))  # nM, all outputs
    stride, rows = 0, 0
    if curves:
        stride = max(1, math.ceil(times.size / MAX_CURVE_POINTS))
        rows = (times.size - 1) // stride + 1
    return _Prepared(model, tl, times, names, out_state, w0, w1, trough, target, stride, rows, exact_win)


def run_chunk(scn: Scenario, start, stop, curves=False, prep=None):
    """Simulate subjects ``start … stop−1`` of ``scn``; return (metrics DataFrame, curves float32 or None).

    Deterministic: the same subjects give the same rows whatever process or thread runs them.
    A subject whose simulation fails (non-finite parameters, kernel status ≠ 0) keeps its row with
    its ``status`` and NaN metrics.
    """
    from ._kernels.batch import N_METRICS, run_metrics

    prep = prep or prepare(scn, curves)
    params = scn.population.sample(scn.drug, start, stop, scn.physiology)
    S = stop - start
    invalid = np.zeros(S, dtype=bool)  # non-finite or non-positive parameters: the subject fails alone
    for k in VARYING:
        if k in params:
            invalid |= ~(np.isfinite(params[k]) & (params[k] > 0))
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
    m = np.empty((S, len(prep.out_names), N_METRICS))
    status = np.zeros(S, dtype=np.int64)
    curves_arr = np.zeros((S, prep.curve_rows, len(prep.out_names)))
    run_metrics(Ks, np.int64(model.n_dynamic), tl.kind, tl.time, tl.cmt, tl.value, tl.aux, float(tl.grid_step),
                np.ascontiguousarray(dose_scale, dtype=np.float64), prep.out_state, np.ascontiguousarray(f),
                np.int64(prep.w0), np.int64(prep.w1), np.int64(prep.trough_index), prep.target,
                np.int64(prep.curve_stride), curves_arr, m, status, prep.exact_win)
    status[invalid] = Status.NONFINITE
    return _frame(params, prep, m, status, curves_arr)


def _failed_chunk(params, prep, code):
    """A chunk in which every subject failed: rows with their parameters, ``status`` = ``code``, NaN metrics."""
    S = params["subject"].size
    m = np.full((S, len(prep.out_names), len(metrics.NAMES)), np.nan)
    return _frame(params, prep, m, np.full(S, int(code), dtype=np.int64), np.zeros((S, prep.curve_rows,
                                                                                     len(prep.out_names))))


def _frame(params, prep, m, status, curves_arr):
    """Per-subject table (subject, status, parameters, ``<output>_<metric>``) and float32 curves or None."""
    import pandas as pd

    bad = status != 0
    m[bad] = np.nan
    curves_arr[bad] = np.nan
    cols = {"subject": params["subject"], "status": status.astype(np.int8)}
    for k, v in params.items():
        if k != "subject":
            cols[k] = v
    for j, o in enumerate(prep.out_names):
        for i, name in enumerate(metrics.NAMES):
            cols[f"{o}_{name}"] = m[:, j, i]
    p = prep.out_names.index("plasma")
    for j, o in enumerate(prep.out_names):
        if o.startswith("csf"):
            with np.errstate(divide="ignore", invalid="ignore"):
                cols[f"{o}_plasma_auc_ratio"] = (m[:, j, metrics.NAMES.index("auc")]
                                                 / m[:, p, metrics.NAMES.index("auc")])
    frame = pd.DataFrame(cols)
    return frame, (curves_arr.astype(np.float32) if prep.curve_rows else None)


def _run_chunk_task(scn, start, stop, curves):
    """Dask task: a chunk's rows as an Arrow-friendly DataFrame (and curves)."""
    return run_chunk(scn, start, stop, curves)


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

        def store(s, i, a, b, frame, cur):
            writer.write_chunk(recs[s.id], i, a, b, frame, cur)

        _execute(todo, preps, curves, store, client, progress)
        summary, bands = _summaries(scenarios, preps, curves, lambda s: writer.read_metrics(recs[s.id]),
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

    def store(s, i, a, b, frame, cur):
        frames[s.id][i] = frame
        if cur is not None:
            curve_parts[s.id][i] = cur

    todo = [(s, i, a, b) for s in scenarios for i, a, b in chunk_plan(s.population.n, chunk)]
    _execute(todo, preps, curves, store, client, progress)
    kept = {s.id: pd.concat([frames[s.id][i] for i in sorted(frames[s.id])], ignore_index=True) for s in scenarios}
    summary, bands = _summaries(scenarios, preps, curves, lambda s: kept[s.id],
                                lambda s: np.concatenate([curve_parts[s.id][i] for i in sorted(curve_parts[s.id])]))
    return RunResult(scenarios=records, summary=summary, curves_summary=bands,
                     frames={r["key"]: kept[s.id] for s, r in zip(scenarios, records)})


def _execute(todo, preps, curves, store, client, progress):
    bar = Progress(sum(b - a for _, _, a, b in todo), enabled=progress)
    if client is not None:
        _run_dask(todo, curves, store, client, bar)
    else:
        for s, i, a, b in todo:
            frame, cur = run_chunk(s, a, b, curves, preps[s.id])
            store(s, i, a, b, frame, cur)
            bar.update(len(frame))
    bar.close()


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
        frame, cur = fut.result()
        store(s, i, a, b, frame, cur)
        bar.update(len(frame))


def _summaries(scenarios, preps, curves, frame_of, curves_of):
    """Summary (one row per scenario) and curve bands, from each scenario's per-subject frame."""
    import pandas as pd

    rows, bands = [], []
    for s in scenarios:
        prep = preps[s.id]
        df = frame_of(s)
        row = {"scenario": s.id, "drug": s.drug.name, "regimen": s.regimen_name, "population": s.population_name,
               "override": s.override_name, "source": s.source, "n": len(df), "n_failed": int((df.status != 0).sum()),
               "target_nM": s.target_nM, "molecular_weight": s.drug.molecular_weight}
        for o in prep.out_names:
            for name in metrics.NAMES:
                p05, med, p95 = metrics.summarize(df[f"{o}_{name}"].to_numpy())
                row[f"{o}_{name}_median"], row[f"{o}_{name}_p05"], row[f"{o}_{name}_p95"] = med, p05, p95
            if s.target_nM is not None:
                row[f"{o}_pta_trough"] = metrics.pta(df[f"{o}_trough"].to_numpy(), s.target_nM)
                row[f"{o}_pta_cavg"] = metrics.pta(df[f"{o}_cavg"].to_numpy(), s.target_nM)
            col = f"{o}_plasma_auc_ratio"
            if col in df:
                p05, med, p95 = metrics.summarize(df[col].to_numpy())
                row[f"{col}_median"], row[f"{col}_p05"], row[f"{col}_p95"] = med, p05, p95
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

