"""The batch runner: scenarios × virtual populations, streamed in chunks, resumable (DESIGN §7).

A *scenario* is one drug (with optional parameter overrides), one regimen and one population.
Its subjects are split into chunks of ``chunk`` subjects; each chunk is simulated by the
population kernel (``csfpk._kernels.batch``: numba threads over subjects, exposure metrics
computed on the fly, memory bounded by the chunk) and yields one table of per-subject metrics.
Because every subject's parameters depend only on (seed, subject index), a chunk's rows do not
depend on the chunk size, the thread count or the machine that computed it.

Run folder (``out``)::

    manifest.json                        spec, spec hash, chunk size, package versions, status
    scenarios/<id>/metrics-000000.parquet one file per chunk, written atomically
    scenarios/<id>/curves-000000.npy      downsampled curves (float32, subjects × times × outputs), optional
    summary.csv                          one row per scenario: median, 5th, 95th percentile, PTA
    curves_summary.csv                   percentile bands of the curves (with curves)

Running the same command again on an interrupted folder skips the chunks already on disk
(checked against the manifest's spec hash) and ends with exactly the rows of an uninterrupted run.
A finished folder is never overwritten silently; a folder holding another spec is an error.

With ``scheduler="tcp://host:8786"`` (or ``client=`` a ``distributed.Client``) chunks run on a Dask
cluster (``pip install csfpk[distributed]``); the driver writes the files, so workers need no
shared file system. The numbers are identical either way.
"""

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from .errors import CsfpkError, ParameterError

SCHEMA = "csfpk.run/1"
DEFAULT_CHUNK = 10_000
MAX_CURVE_POINTS = 200


class RunFolderError(CsfpkError):
    """The output folder cannot be used: finished, holding another spec, or not a run folder."""


class DistributedError(CsfpkError):
    """Dask is missing or the cluster could not be reached."""


# ----------------------------------------------------------------------------- scenarios
@dataclass(frozen=True, eq=False)
class Scenario:
    """One cell of a sweep grid: a drug (overrides applied), a regimen and a population.

    Attributes
    ----------
    drug : the ``Drug`` with overrides applied.  regimen : the ``Regimen``.
    population : the ``Population``.  t_end, dt : simulated span and output step (h).
    regimen_name, population_name, override_name : labels (``override_name`` "" for none).
    overrides : the ``Drug.replace`` changes applied.  source : where the regimen comes from.
    dose_basis : None (mg), ``"bsa"`` (mg/m²) or ``"weight"`` (mg/kg): doses scale per subject.
    target_nM : target concentration (nM) for time above target and PTA; None = drug's [potency].
    window : (start, end) h of the metric window; None = the whole simulation.
    """

    drug: object
    regimen: object
    population: object
    t_end: float
    dt: float = 1.0
    regimen_name: str = "regimen"
    population_name: str = "population"
    override_name: str = ""
    overrides: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    source: str = ""
    dose_basis: str | None = None
    target_nM: float | None = None
    window: tuple | None = None
    csf_layout: str = "single"
    physiology: object = None

    def __post_init__(self):
        if self.physiology is None:
            from .physiology import load_physiology

            object.__setattr__(self, "physiology", load_physiology("adult"))
        if self.dose_basis not in (None, "bsa", "weight"):
            raise ParameterError(f"dose_basis = {self.dose_basis!r} is not allowed; expected None, 'bsa' or 'weight'")
        if self.target_nM is None and self.drug.potency_target_nM is not None:
            object.__setattr__(self, "target_nM", float(self.drug.potency_target_nM))
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))

    @property
    def id(self):
        """Readable unique label: drug / regimen / population [/ override]."""
        parts = [self.drug.name, self.regimen_name, self.population_name]
        if self.override_name:
            parts.append(self.override_name)
        return " / ".join(parts)

    @property
    def slug(self):
        """File-system-safe form of ``id``."""
        keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in self.id.replace(" / ", "__"))
        return keep.strip("_")[:120]

    def fingerprint(self):
        """Plain data describing everything that determines the numbers (for the manifest hash)."""
        d = self.drug
        return {
            "drug": {"name": d.name, "molecular_weight": d.molecular_weight,
                     "plasma": dataclasses.asdict(d.plasma),
                     "csf": None if d.csf is None else dataclasses.asdict(d.csf),
                     "iiv": dict(d.iiv), "potency_target_nM": d.potency_target_nM},
            "regimen": [dataclasses.asdict(r) for r in self.regimen.records],
            "population": self.population.to_dict(),
            "t_end": self.t_end, "dt": self.dt, "regimen_name": self.regimen_name,
            "population_name": self.population_name, "override_name": self.override_name,
            "overrides": dict(self.overrides), "source": self.source, "dose_basis": self.dose_basis,
            "target_nM": self.target_nM, "window": None if self.window is None else list(self.window),
            "csf_layout": self.csf_layout,
            "physiology": {f.name: getattr(self.physiology, f.name) for f in dataclasses.fields(self.physiology)
                           if f.name != "quantities"},
        }

    def __getstate__(self):
        # Drug and Physiology hold MappingProxyType (not picklable); ship plain dicts to Dask workers
        state = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        state["drug"] = _plain(self.drug)
        state["physiology"] = _plain(self.physiology)
        state["population"] = _plain(self.population)
        state["overrides"] = dict(self.overrides)
        return state

    def __setstate__(self, state):
        from .drug import Drug
        from .physiology import Physiology
        from .population import Population

        state = dict(state)
        state["drug"] = Drug(**state["drug"])
        state["physiology"] = Physiology(**state["physiology"])
        state["population"] = Population(**state["population"])
        state["overrides"] = MappingProxyType(state["overrides"])
        for k, v in state.items():
            object.__setattr__(self, k, v)


def _plain(obj):
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        out[f.name] = dict(v) if isinstance(v, MappingProxyType) else v
    return out


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


def prepare(scn: Scenario, curves=False):
    """Validate a scenario and compile its shared parts (raises before any work is done)."""
    from . import metrics
    from .schedule import build_timeline
    from .simulation import choose_method, output_grid
    from .population import build_rate_matrices

    small = scn.population.sample(scn.drug, 0, 1, scn.physiology)
    _, _, _, model = build_rate_matrices(scn.drug, small, scn.physiology, scn.csf_layout)
    if choose_method(model, "auto") != "exact":
        raise ParameterError(f"{scn.drug.name}: populations need a linear model (the exact kernel); this drug has "
                             "Michaelis–Menten or time-dependent clearance or saturable CSF uptake")
    times = output_grid(scn.t_end, scn.dt)
    tl = build_timeline(model, scn.regimen, times)
    try:
        w0, w1 = metrics.window_indices(times, scn.window)
    except ValueError as exc:
        raise ParameterError(f"{scn.id}: {exc}") from None
    trough = metrics.trough_index(times, [d[0] for d in tl.doses], scn.window)
    names = tuple(model.outputs)
    out_state = np.array([model.outputs[o][0] for o in names], dtype=np.int64)
    target = np.full(len(names), np.inf if scn.target_nM is None else float(scn.target_nM))  # nM, all outputs
    stride, rows = 0, 0
    if curves:
        stride = max(1, math.ceil(times.size / MAX_CURVE_POINTS))
        rows = (times.size - 1) // stride + 1
    return _Prepared(model, tl, times, names, out_state, w0, w1, trough, target, stride, rows)


def run_chunk(scn: Scenario, start, stop, curves=False, prep=None):
    """Simulate subjects ``start … stop−1`` of ``scn``; return (metrics DataFrame, curves float32 or None).

    Deterministic: the same subjects give the same rows whatever process or thread runs them.
    """
    import pandas as pd

    from ._kernels.batch import N_METRICS, run_metrics
    from .metrics import NAMES
    from .population import build_rate_matrices

    prep = prep or prepare(scn, curves)
    params = scn.population.sample(scn.drug, start, stop, scn.physiology)
    Ks, volume, scale, model = build_rate_matrices(scn.drug, params, scn.physiology, scn.csf_layout)
    S = stop - start
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
                np.int64(prep.curve_stride), curves_arr, m, status)
    bad = status != 0
    m[bad] = np.nan
    cols = {"subject": params["subject"], "status": status.astype(np.int8)}
    for k, v in params.items():
        if k != "subject":
            cols[k] = v
    for j, o in enumerate(prep.out_names):
        for i, name in enumerate(NAMES):
            cols[f"{o}_{name}"] = m[:, j, i]
    p = prep.out_names.index("plasma")
    for j, o in enumerate(prep.out_names):
        if o.startswith("csf"):
            with np.errstate(divide="ignore", invalid="ignore"):
                cols[f"{o}_plasma_auc_ratio"] = m[:, j, NAMES.index("auc")] / m[:, p, NAMES.index("auc")]
    frame = pd.DataFrame(cols)
    return frame, (curves_arr.astype(np.float32) if prep.curve_rows else None)


def _run_chunk_task(scn, start, stop, curves):
    """Dask task: a chunk's rows as an Arrow-friendly DataFrame (and curves)."""
    return run_chunk(scn, start, stop, curves)


# ----------------------------------------------------------------------------- run folder
def spec_hash(spec):
    """SHA-256 of the canonical JSON of ``spec`` (first 16 hex digits)."""
    text = json.dumps(spec, sort_keys=True, default=_json_default, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (MappingProxyType,)):
        return dict(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _versions():
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for pkg in ("csfpk", "numpy", "scipy", "numba", "pandas", "pyarrow"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def _chunks(n, chunk):
    return [(i, s, min(s + chunk, n)) for i, s in enumerate(range(0, n, chunk))]


def _chunk_path(folder, scn, i, kind="metrics", ext="parquet"):
    return os.path.join(folder, "scenarios", scn.slug, f"{kind}-{i:06d}.{ext}")


def _write_json(path, data):
    from .io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True, default=_json_default)


def _open_folder(out, spec, h, chunk, curves, overwrite):
    """Create, resume or refuse ``out``; return the chunk size to use."""
    manifest = os.path.join(out, "manifest.json")
    if os.path.exists(out) and not os.path.isdir(out):
        raise RunFolderError(f"--out {out!r} is a file; expected a folder")
    if os.path.isfile(manifest):
        try:
            with open(manifest) as fh:
                old = json.load(fh)
        except (OSError, ValueError) as exc:
            raise RunFolderError(f"{manifest}: unreadable ({exc}); choose a new --out or pass --overwrite") from None
        if overwrite:
            for name in ("scenarios", "manifest.json", "summary.csv", "curves_summary.csv", "summary.png", "figures"):
                p = os.path.join(out, name)
                if os.path.isdir(p):
                    shutil.rmtree(p)
                elif os.path.exists(p):
                    os.unlink(p)
        elif old.get("spec_hash") != h or old.get("curves") != bool(curves):
            raise RunFolderError(
                f"{out!r} holds a different run (spec hash {old.get('spec_hash')}, curves {old.get('curves')}; "
                f"this one is {h}, curves {bool(curves)}); choose a new --out or pass --overwrite")
        elif old.get("status") == "complete":
            raise RunFolderError(f"{out!r} holds a finished run of this spec; pass --overwrite to run it again "
                                 "or choose a new --out")
        else:
            if chunk is not None and chunk != old["chunk"]:
                raise RunFolderError(f"{out!r} is an interrupted run with chunk = {old['chunk']}; resume it with the "
                                     f"same --chunk (got {chunk}) or pass --overwrite")
            _remove_stale_temporaries(out)
            return old["chunk"], True
    elif os.path.isdir(out) and os.listdir(out):
        raise RunFolderError(f"--out {out!r} exists, is not empty and is not a csfpk run folder; choose a new --out")
    return chunk or DEFAULT_CHUNK, False


def _remove_stale_temporaries(out):
    """Delete temporary files a killed run left behind (``atomic_path`` names them ``.<stem>-*``)."""
    for root, _, files in os.walk(os.path.join(out, "scenarios")):
        for f in files:
            if f.startswith("."):
                os.unlink(os.path.join(root, f))


# ----------------------------------------------------------------------------- running
@dataclass(frozen=True, eq=False)
class RunResult:
    """Outcome of ``run``: per-subject metrics, per-scenario summary, optional curve bands.

    ``metrics`` (tidy: one row per subject and scenario, scenario labels in the first columns) is
    read from the run folder on first access when there is one.
    """

    scenarios: tuple
    summary: object
    folder: str | None = None
    curves_summary: object = None
    _frames: dict = field(default_factory=dict, repr=False)

    @property
    def metrics(self):
        import pandas as pd

        if "metrics" not in self._frames:
            parts = []
            for scn in self.scenarios:
                df = self._frames[scn.id] if scn.id in self._frames else _read_scenario(self.folder, scn)
                parts.append(_label(df, scn))
            self._frames["metrics"] = pd.concat(parts, ignore_index=True)
        return self._frames["metrics"]

    @property
    def table(self):
        """The summary as text: median [5th–95th] of the key metrics, one row per scenario."""
        return summary_table(self.summary)


def _label(df, scn):
    df = df.copy()
    df.insert(0, "override", scn.override_name)
    df.insert(0, "population", scn.population_name)
    df.insert(0, "regimen", scn.regimen_name)
    df.insert(0, "drug", scn.drug.name)
    return df


def _read_scenario(folder, scn, columns=None):
    import pandas as pd
    import pyarrow.parquet as pq

    d = os.path.join(folder, "scenarios", scn.slug)
    files = sorted(f for f in os.listdir(d) if f.startswith("metrics-") and f.endswith(".parquet"))
    return pd.concat([pq.read_table(os.path.join(d, f), columns=columns).to_pandas() for f in files],
                     ignore_index=True)


def run(scenarios, out=None, *, chunk=None, curves=False, client=None, scheduler=None, overwrite=False,
        progress=None, spec=None):
    """Run ``scenarios`` and return a ``RunResult`` (see module docstring for the folder).

    Parameters
    ----------
    scenarios : sequence of ``Scenario``.
    out : run folder, or None to keep everything in memory.
    chunk : subjects per chunk (default 10 000; a resumed run keeps its manifest's).
    curves : also keep downsampled concentration curves (≤ 200 points per subject).
    client, scheduler : a ``distributed.Client`` or a scheduler address to run chunks on Dask.
    overwrite : replace a finished (or different) run in ``out``.
    progress : show the progress line (None: when stderr is a terminal).
    spec : plain-data description stored in the manifest (default: the scenarios' fingerprints).
    """
    from .progress import Progress

    scenarios = tuple(scenarios)
    if not scenarios:
        raise ParameterError("the sweep has no scenarios (empty grid); add drugs, regimens and populations")
    ids = [s.id for s in scenarios]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ParameterError(f"scenario labels repeat: {dup}; give regimens/populations distinct names")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1):
        raise ParameterError(f"chunk = {chunk!r} is not allowed; expected an integer >= 1 subjects")
    preps = {s.id: prepare(s, curves) for s in scenarios}  # validates everything before any file appears
    fp = {"scenarios": [s.fingerprint() for s in scenarios]}
    h = spec_hash(fp)
    resumed = False
    if out is not None:
        out = os.fspath(out)
        chunk, resumed = _open_folder(out, spec, h, chunk, curves, overwrite)
        if not resumed:
            os.makedirs(out, exist_ok=True)
            _write_json(os.path.join(out, "manifest.json"), {
                "schema": SCHEMA, "spec_hash": h, "spec": spec if spec is not None else fp, "chunk": chunk,
                "curves": bool(curves), "versions": _versions(), "status": "running",
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "scenarios": [{"id": s.id, "folder": f"scenarios/{s.slug}", "n": s.population.n,
                               "seed": s.population.seed} for s in scenarios],
            })
    else:
        chunk = chunk or DEFAULT_CHUNK
    todo = []
    for s in scenarios:
        for i, a, b in _chunks(s.population.n, chunk):
            if out is not None and os.path.exists(_chunk_path(out, s, i)):
                continue
            todo.append((s, i, a, b))
    total = sum(b - a for _, _, a, b in todo)
    bar = Progress(total, enabled=progress)
    frames = {s.id: {} for s in scenarios}
    curve_parts = {s.id: {} for s in scenarios}

    def store(s, i, frame, cur):
        if out is None:
            frames[s.id][i] = frame
            if cur is not None:
                curve_parts[s.id][i] = cur
        else:
            _write_chunk(out, s, i, frame, cur)
        bar.update(len(frame))

    if client is not None or scheduler is not None:
        _run_dask(todo, curves, store, client, scheduler)
    else:
        for s, i, a, b in todo:
            frame, cur = run_chunk(s, a, b, curves, preps[s.id])
            store(s, i, frame, cur)
    bar.close()
    return _finish(scenarios, out, frames, curve_parts, preps, curves)


def _write_chunk(out, s, i, frame, cur):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .io import atomic_path

    if cur is not None:
        with atomic_path(_chunk_path(out, s, i, "curves", "npy")) as tmp:
            np.save(tmp, cur)
    # the metrics file is written last: its presence marks the chunk as done
    with atomic_path(_chunk_path(out, s, i)) as tmp:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)


def _run_dask(todo, curves, store, client, scheduler):
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise DistributedError("running on a Dask cluster needs dask.distributed: pip install 'csfpk[distributed]'") from None
    own = client is None
    if own:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise DistributedError(f"cannot reach the Dask scheduler at {scheduler!r}: {exc}") from None
    try:
        futures = {}
        for s, i, a, b in todo:
            fut = client.submit(_run_chunk_task, s, a, b, curves, pure=False)
            futures[fut] = (s, i)
        for fut in as_completed(futures):
            s, i = futures[fut]
            frame, cur = fut.result()
            store(s, i, frame, cur)
    finally:
        if own:
            client.close()


def _finish(scenarios, out, frames, curve_parts, preps, curves):
    import pandas as pd

    from .metrics import NAMES, pta, summarize

    rows, bands = [], []
    kept = {}
    for s in scenarios:
        prep = preps[s.id]
        if out is None:
            df = pd.concat([frames[s.id][i] for i in sorted(frames[s.id])], ignore_index=True)
            kept[s.id] = df
        else:
            df = _read_scenario(out, s)
        row = {"scenario": s.id, "drug": s.drug.name, "regimen": s.regimen_name, "population": s.population_name,
               "override": s.override_name, "source": s.source, "n": len(df), "n_failed": int((df.status != 0).sum()),
               "target_nM": s.target_nM}
        for o in prep.out_names:
            for name in NAMES:
                p05, med, p95 = summarize(df[f"{o}_{name}"].to_numpy())
                row[f"{o}_{name}_median"], row[f"{o}_{name}_p05"], row[f"{o}_{name}_p95"] = med, p05, p95
            if s.target_nM is not None:
                row[f"{o}_pta_trough"] = pta(df[f"{o}_trough"].to_numpy(), s.target_nM)
                row[f"{o}_pta_cavg"] = pta(df[f"{o}_cavg"].to_numpy(), s.target_nM)
            col = f"{o}_plasma_auc_ratio"
            if col in df:
                p05, med, p95 = summarize(df[col].to_numpy())
                row[f"{col}_median"], row[f"{col}_p05"], row[f"{col}_p95"] = med, p05, p95
        rows.append(row)
        if curves:
            if out is None:
                cur = np.concatenate([curve_parts[s.id][i] for i in sorted(curve_parts[s.id])])
            else:
                d = os.path.join(out, "scenarios", s.slug)
                cur = np.concatenate([np.load(os.path.join(d, f)) for f in sorted(os.listdir(d))
                                      if f.startswith("curves-") and f.endswith(".npy")])
            t = prep.times[::prep.curve_stride][:prep.curve_rows]
            q = np.nanpercentile(cur, [5, 50, 95], axis=0)  # (3, rows, n_out)
            for j, o in enumerate(prep.out_names):
                bands.append(pd.DataFrame({"scenario": s.id, "compartment": o, "time_h": t,
                                           "p05_nM": q[0, :, j], "median_nM": q[1, :, j], "p95_nM": q[2, :, j]}))
    summary = pd.DataFrame(rows)
    curves_summary = pd.concat(bands, ignore_index=True) if bands else None
    if out is not None:
        from .io import atomic_path

        with atomic_path(os.path.join(out, "summary.csv")) as tmp:
            summary.to_csv(tmp, index=False)
        if curves_summary is not None:
            with atomic_path(os.path.join(out, "curves_summary.csv")) as tmp:
                curves_summary.to_csv(tmp, index=False)
        path = os.path.join(out, "manifest.json")
        with open(path) as fh:
            man = json.load(fh)
        man["status"] = "complete"
        man["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        _write_json(path, man)
    return RunResult(scenarios=tuple(scenarios), summary=summary, folder=out, curves_summary=curves_summary,
                     _frames=kept)


# ----------------------------------------------------------------------------- presentation
_TABLE = (("csf", "cavg", "CSF Cavg nM"), ("csf", "trough", "CSF trough nM"), ("csf", "pct_above", "CSF % time ≥ target"),
          ("plasma", "cmax", "plasma Cmax nM"), ("plasma", "auc", "plasma AUC nM·h"))


def summary_table(summary):
    """One row per scenario: median [5th–95th] of key metrics and P(CSF trough ≥ target)."""
    import pandas as pd

    rows = []
    for _, r in summary.iterrows():
        row = {"drug": r["drug"], "regimen": r["regimen"]}
        if r.get("population") not in (None, "", "population", "default"):
            row["population"] = r["population"]
        if r.get("override"):
            row["override"] = r["override"]
        for o, m, label in _TABLE:
            key = f"{o}_{m}_median"
            if key in r and not pd.isna(r[key]):
                row[label] = f"{_fmt(r[key])} [{_fmt(r[f'{o}_{m}_p05'])}–{_fmt(r[f'{o}_{m}_p95'])}]"
        if "csf_pta_trough" in r and not pd.isna(r["csf_pta_trough"]):
            row["P(CSF trough ≥ target)"] = f"{100 * r['csf_pta_trough']:.0f} %"
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(x):
    if x != x:
        return "nan"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.0f}"
    if a >= 1:
        return f"{x:.1f}"
    return f"{x:.2g}"


def plot_summary(result, path=None):
    """CSF Cavg per regimen, one panel per drug, target dotted (``csfpk.plot.comparison``).

    Boxes span the 25th–75th percentile of the per-subject values, whiskers the 5th–95th, the
    thick tick is the median; from a summary frame alone, a dot with 5th–95th whiskers.
    ``path`` (.png, .svg or .pdf) saves the figure and closes it.
    """
    from . import plot
    from .figures import load_run

    run = load_run(result)
    fig = plot.comparison(run, f"{run.csf_compartment() or 'plasma'}_cavg")
    if path is not None:
        plot.save(fig, path)
    return fig


# ----------------------------------------------------------------------------- command line
EPILOG_COMPARE = """examples:
  csfpk compare high_dose_tki --out runs/high_dose_tki
  csfpk compare high_dose_tki --out runs/tki_big --n 100000 --seed 7
  csfpk compare params/sweeps/high_dose_tki.toml --out runs/tki --curves
  csfpk compare high_dose_tki --out runs/tki --scheduler tcp://10.0.0.5:8786

Rerunning the same command on an interrupted folder resumes it; a finished folder is kept
unless --overwrite is given.
"""


def add_compare_parser(subparsers):
    """Register ``csfpk compare SWEEP --out DIR`` on an argparse ``subparsers`` object."""
    import argparse

    c = subparsers.add_parser("compare", help="run a sweep of regimens over virtual populations (run folder)",
                              epilog=EPILOG_COMPARE, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("sweep", help="sweep name in params/sweeps/ (e.g. high_dose_tki) or path to a sweep TOML")
    c.add_argument("--out", required=True, help="run folder (manifest.json, Parquet metrics, summary.csv, summary.png)")
    c.add_argument("--n", type=int, help="subjects per population (replaces the sweep's n)")
    c.add_argument("--seed", type=int, help="random seed (replaces the sweep's seed)")
    c.add_argument("--scheduler", help="Dask scheduler address (needs pip install 'csfpk[distributed]')")
    c.add_argument("--chunk", type=int, help=f"subjects per chunk (default {DEFAULT_CHUNK})")
    c.add_argument("--curves", action="store_true", help="also keep downsampled curves and their percentile bands")
    c.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    c.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress line on stderr (default: when stderr is a terminal)")
    c.set_defaults(func=cmd_compare)
    return c


def cmd_compare(args):
    """Handler of ``csfpk compare``: run, print the summary table, write summary.png."""
    from .sweep import load_sweep

    sweep = load_sweep(args.sweep, n=args.n, seed=args.seed)
    res = sweep.run(args.out, chunk=args.chunk, curves=args.curves, scheduler=args.scheduler,
                    overwrite=args.overwrite, progress=args.progress)
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 40):
        print(res.table.to_string(index=False))
    fig_path = os.path.join(args.out, "summary.png")
    plot_summary(res, fig_path)
    print(f"wrote {args.out}/: manifest.json, scenarios/*/metrics-*.parquet, summary.csv, summary.png"
          + (", curves_summary.csv" if args.curves else ""))
    return 0


def main(argv=None):
    """``python -m csfpk.batch compare …``: the same command line as ``csfpk`` (``csfpk.cli.main``)."""
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    import sys

    from csfpk.batch import main as _main  # the package's classes, not __main__'s copies (pickling)

    sys.exit(_main())
