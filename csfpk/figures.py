"""A run folder's figures: ``csfpk plot RUN_DIR`` (DESIGN §7, issue 5).

``load_run`` reads what the figures need from a finished run folder (``manifest.json``,
``summary.csv``, ``scenarios/*/metrics-*.parquet``, and with ``--curves`` the downsampled
``curves-*.npy`` and ``curves_summary.csv``), or from a ``RunResult`` / ``Comparison`` in memory.
``write_figures`` draws, into ``RUN_DIR/figures/`` unless told otherwise:

==================================  =========================================================
``comparison_<csf>_trough``         CSF trough per regimen (distribution, target), per drug
``comparison_<csf>_cavg``           CSF average concentration per regimen
``comparison_<csf>_pct_above``      % of the window with CSF ≥ target (runs with a target)
``comparison_plasma_auc``           plasma AUC per regimen (the systemic cost)
``bands_<csf>_<drug>``              population bands of CSF concentration (runs with curves)
==================================  =========================================================

``<csf>`` is ``csf`` in the single CSF layout, ``csf_lumbar`` in the regional one.

Examples
--------
>>> import csfpk, csfpk.figures, tempfile, os
>>> folder = os.path.join(tempfile.mkdtemp(), "run")
>>> cmp = csfpk.compare("erlotinib", {"150 mg qd": csfpk.Regimen.every(amt=150, ii=24, n=28)},
...                     population=csfpk.Population(n=20, seed=1), out=folder)
>>> [os.path.basename(p) for p in csfpk.figures.write_figures(folder)][:1]
['comparison_csf_trough.png']
"""

import json
import os
from dataclasses import dataclass, field

import numpy as np

from .errors import ParameterError

FORMATS = ("png", "svg", "pdf")
_LABEL_COLUMNS = ("scenario", "drug", "regimen", "population", "override", "source")


@dataclass(frozen=True, eq=False)
class RunData:
    """The parts of a run the figures use, read from a folder or taken from a result in memory.

    Attributes
    ----------
    summary : one row per scenario (``summary.csv``) plus a ``label`` column for the figures.
    folder : the run folder, or None.
    scenario_dirs : scenario id → its folder under ``scenarios/`` (runs on disk).
    frames : scenario id → per-subject metrics (runs in memory).
    curves_summary : percentile bands of the curves, or None.
    molecular_weights : drug name → g/mol (others are read from the drug files when needed).
    """

    summary: object
    folder: str | None = None
    scenario_dirs: dict = field(default_factory=dict)
    frames: dict = field(default_factory=dict)
    curves_summary: object = None
    molecular_weights: dict = field(default_factory=dict)

    @property
    def drugs(self):
        return list(dict.fromkeys(self.summary["drug"]))

    def select(self, *, drug=None, drugs=None, regimens=None):
        """Scenario rows of ``drug`` (or of ``drugs``), optionally only ``regimens`` in that order."""
        s = self.summary
        known = self.drugs
        if drug is not None:
            drugs = [drug]
        if drugs is not None:
            if isinstance(drugs, str):
                drugs = [drugs]
            bad = [d for d in drugs if d not in known]
            if bad:
                raise ParameterError(f"drug {bad[0]!r} is not in this run; expected one of {known}")
            s = s[s["drug"].isin(drugs)]
            s = s.iloc[np.argsort([list(drugs).index(d) for d in s["drug"]], kind="stable")]
        if regimens is not None:
            if isinstance(regimens, str):
                regimens = [regimens]
            have = list(s["regimen"]) + list(s["label"])
            bad = [r for r in regimens if r not in have]
            if bad:
                raise ParameterError(f"regimen {bad[0]!r} is not in this run; expected one of "
                                     f"{list(dict.fromkeys(s['regimen']))}")
            keep = [i for r in regimens for i in s.index if r in (s.loc[i, "regimen"], s.loc[i, "label"])]
            s = s.loc[list(dict.fromkeys(keep))]
        return s

    def check_metric(self, column):
        """Raise ``ParameterError`` unless per-subject ``column`` (or its summary) is in the run."""
        if self.scenario_dirs:
            import pyarrow.parquet as pq

            d = next(iter(self.scenario_dirs.values()))
            names = pq.read_schema(_metric_files(d)[0]).names
        elif self.frames:
            names = list(next(iter(self.frames.values())).columns)
        else:
            names = [c[: -len("_median")] for c in self.summary.columns if c.endswith("_median")]
        if column not in names:
            skip = {"subject", "status", "weight_kg", "bsa_m2", "crcl_mL_min", "CL", "V1", "ka", "fu",
                    "penetration_ratio"}
            allowed = [c for c in names if c not in skip and "_" in c]
            raise ParameterError(f"metric = {column!r} is not in this run; expected one of {allowed}")

    def values(self, scenario, column):
        """Per-subject values of ``column`` (failed subjects as NaN), or None for a summary-only run."""
        if scenario in self.scenario_dirs:
            import pyarrow.parquet as pq

            parts = [pq.read_table(f, columns=[column]).column(0).to_numpy(zero_copy_only=False)
                     for f in _metric_files(self.scenario_dirs[scenario])]
            return np.concatenate(parts).astype(float)
        if scenario in self.frames:
            return self.frames[scenario][column].to_numpy(dtype=float)
        return None

    def summary_stats(self, scenario, column):
        """``{5: p05, 50: median, 95: p95}`` of ``column`` from the summary table."""
        row = self.summary[self.summary["scenario"] == scenario].iloc[0]
        return {5: float(row[f"{column}_p05"]), 50: float(row[f"{column}_median"]), 95: float(row[f"{column}_p95"])}

    @property
    def has_curves(self):
        return self.curves_summary is not None and len(self.curves_summary) > 0

    def quantiles(self, scenario, compartment):
        """Times (h) and ``{percentile: nM array}`` of the population's curves in ``compartment``.

        Percentiles 5, 50, 95 always; 25 and 75 when the raw curves are on disk (or stored).
        """
        if not self.has_curves:
            raise ParameterError("this run has no curves; run it with --curves (csfpk compare) or curves=True")
        cs = self.curves_summary[self.curves_summary["scenario"] == scenario]
        order = list(dict.fromkeys(cs["compartment"]))
        if compartment not in order:
            raise ParameterError(f"compartment = {compartment!r} has no curves in this run; expected one of {order}")
        part = cs[cs["compartment"] == compartment]
        t = part["time_h"].to_numpy(dtype=float)
        q = {5: part["p05_nM"].to_numpy(float), 50: part["median_nM"].to_numpy(float),
             95: part["p95_nM"].to_numpy(float)}
        if "p25_nM" in part and "p75_nM" in part:
            q[25], q[75] = part["p25_nM"].to_numpy(float), part["p75_nM"].to_numpy(float)
        elif scenario in self.scenario_dirs:
            d = self.scenario_dirs[scenario]
            files = sorted(f for f in os.listdir(d) if f.startswith("curves-") and f.endswith(".npy"))
            if files:
                j = order.index(compartment)
                cur = np.concatenate([np.load(os.path.join(d, f))[:, :, j] for f in files]).astype(float)
                if cur.shape[1] != t.size:
                    from .batch import RunFolderError

                    raise RunFolderError(f"{d}: curves have {cur.shape[1]} time points but curves_summary.csv has "
                                         f"{t.size}; the folder is inconsistent, rerun with --overwrite")
                with np.errstate(invalid="ignore"):
                    p = np.nanpercentile(cur, [5, 25, 50, 75, 95], axis=0)
                q = dict(zip((5, 25, 50, 75, 95), p))
        return t, q

    def molecular_weight(self, drug):
        """Molecular weight of ``drug`` (g/mol), for ng/mL and mg/L axes."""
        if drug not in self.molecular_weights:
            from .drug import load_drug

            self.molecular_weights[drug] = load_drug(drug).molecular_weight
        return self.molecular_weights[drug]

    def csf_compartment(self):
        """The CSF output the figures show: ``csf``, else ``csf_lumbar``, else the first regional one."""
        outs = [c[: -len("_cavg_median")] for c in self.summary.columns if c.endswith("_cavg_median")]
        csf = [o for o in outs if o.startswith("csf")]
        for pick in ("csf", "csf_lumbar"):
            if pick in csf:
                return pick
        return csf[0] if csf else None


def load_run(source):
    """``RunData`` from a run folder (path), a ``RunResult``, a ``Comparison`` or a summary frame.

    Raises ``csfpk.batch.RunFolderError`` (one line) when a path is not a finished run folder.
    """
    import pandas as pd

    if isinstance(source, RunData):
        return source
    if isinstance(source, (str, os.PathLike)):
        return _read_folder(os.fspath(source))
    if hasattr(source, "result") and hasattr(source.result, "summary"):  # Comparison
        return load_run(source.result)
    if hasattr(source, "scenarios") and hasattr(source, "summary"):  # RunResult
        if source.folder is not None:
            return _read_folder(source.folder)
        summary = _labelled(source.summary)
        metrics = source.metrics
        frames = {}
        for _, row in summary.iterrows():
            keep = np.ones(len(metrics), dtype=bool)
            for c in ("drug", "regimen", "population", "override"):
                keep &= metrics[c].fillna("").astype(str).to_numpy() == str(row[c])
            frames[row["scenario"]] = metrics[keep]
        mws = {s.drug.name: s.drug.molecular_weight for s in source.scenarios}
        return RunData(summary=summary, frames=frames, curves_summary=source.curves_summary, molecular_weights=mws)
    if isinstance(source, pd.DataFrame):
        need = {"scenario", "drug", "regimen"}
        if not need <= set(source.columns):
            raise ParameterError(f"a summary frame needs the columns {sorted(need)}; got {list(source.columns)[:8]}")
        return RunData(summary=_labelled(source))
    raise ParameterError(f"source = {type(source).__name__} is not allowed; expected a run folder path, a RunResult, "
                         "a Comparison or a summary DataFrame")


def _read_folder(path):
    import pandas as pd

    from .batch import SCHEMA, RunFolderError

    hint = "expected a run folder written by 'csfpk compare SWEEP --out DIR'"
    if not os.path.isdir(path):
        raise RunFolderError(f"{path!r} is not a folder; {hint}")
    manifest = os.path.join(path, "manifest.json")
    if not os.path.isfile(manifest):
        raise RunFolderError(f"{path!r} has no manifest.json; {hint}")
    try:
        with open(manifest) as fh:
            man = json.load(fh)
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{manifest}: unreadable ({exc}); {hint}") from None
    if man.get("schema") != SCHEMA:
        raise RunFolderError(f"{manifest}: schema = {man.get('schema')!r}; expected {SCHEMA!r}")
    if man.get("status") != "complete":
        raise RunFolderError(f"{path!r} is an unfinished run (status {man.get('status')!r}); finish it by running the "
                             "same csfpk compare command again")
    summary_path = os.path.join(path, "summary.csv")
    if not os.path.isfile(summary_path):
        raise RunFolderError(f"{path!r} has no summary.csv; rerun the csfpk compare command with --overwrite")
    summary = _labelled(pd.read_csv(summary_path))
    dirs = {s["id"]: os.path.join(path, s["folder"]) for s in man.get("scenarios", [])}
    missing = [sid for sid in summary["scenario"] if sid not in dirs or not os.path.isdir(dirs[sid])
               or not _metric_files(dirs[sid])]
    if missing:
        raise RunFolderError(f"{path!r}: scenario {missing[0]!r} has no metrics files; rerun with --overwrite")
    cpath = os.path.join(path, "curves_summary.csv")
    curves = pd.read_csv(cpath) if man.get("curves") and os.path.isfile(cpath) else None
    return RunData(summary=summary, folder=path, scenario_dirs=dirs, curves_summary=curves)


def _metric_files(folder):
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.startswith("metrics-") and f.endswith(".parquet"))


def _labelled(summary):
    """Copy of ``summary`` with text label columns filled and a ``label`` per scenario.

    The label is the regimen, plus the population and override when they vary within a drug.
    """
    s = summary.copy().reset_index(drop=True)
    for c in _LABEL_COLUMNS:
        if c not in s:
            s[c] = ""
        s[c] = s[c].astype(object).where(s[c].notna(), "").astype(str)
    labels = []
    for _, row in s.iterrows():
        same = s[s["drug"] == row["drug"]]
        parts = [row["regimen"]]
        if same["population"].nunique() > 1:
            parts.append(row["population"])
        if row["override"]:
            parts.append(row["override"])
        labels.append(", ".join(parts))
    s["label"] = labels
    return s


# ----------------------------------------------------------------------------- writing
def main_metrics(run):
    """The comparison metrics ``write_figures`` draws for ``run`` (CSF trough, Cavg, % ≥ target, plasma AUC)."""
    csf = run.csf_compartment()
    out = []
    if csf is not None:
        out += [f"{csf}_trough", f"{csf}_cavg"]
        t = run.summary["target_nM"] if "target_nM" in run.summary else None
        if t is not None and t.notna().any():
            out.append(f"{csf}_pct_above")
    out.append("plasma_auc")
    return out


def write_figures(run_dir, out=None, *, fmt="png", dpi=200):
    """Draw a finished run folder's figures and return their paths (module docstring).

    Parameters
    ----------
    run_dir : the run folder (``csfpk compare --out``).
    out : folder for the figures (default ``run_dir/figures``).
    fmt : ``"png"``, ``"svg"`` or ``"pdf"``.
    dpi : resolution of PNG files.
    """
    from . import plot

    if fmt not in FORMATS:
        raise ParameterError(f"fmt = {fmt!r} is not allowed; expected one of {list(FORMATS)}")
    run = load_run(run_dir)
    out = os.fspath(out) if out is not None else os.path.join(os.fspath(run_dir), "figures")
    written = []
    for metric in main_metrics(run):
        path = os.path.join(out, f"comparison_{metric}.{fmt}")
        plot.save(plot.comparison(run, metric), path, dpi=dpi)
        written.append(path)
    csf = run.csf_compartment()
    if run.has_curves and csf is not None:
        for drug in run.drugs:
            path = os.path.join(out, f"bands_{csf}_{_slug(drug)}.{fmt}")
            plot.save(plot.population_bands(run, compartment=csf, drug=drug), path, dpi=dpi)
            written.append(path)
    return written


def _slug(text):
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text).strip("_")


# ----------------------------------------------------------------------------- command line
EPILOG_PLOT = """examples:
  csfpk compare high_dose_tki --out runs/tki --n 200 --curves
  csfpk plot runs/tki                       # PNG files in runs/tki/figures/
  csfpk plot runs/tki --format svg --out figures/tki

Draws the regimen comparisons (CSF trough, CSF Cavg, % time >= target, plasma AUC; one
panel per drug) and, for runs made with --curves, the population bands of CSF concentration.
"""


def add_plot_parser(subparsers):
    """Register ``csfpk plot RUN_DIR [--format png|svg|pdf] [--out DIR]`` on an argparse ``subparsers``."""
    import argparse

    p = subparsers.add_parser("plot", help="draw a run folder's figures (comparison panels, population bands)",
                              epilog=EPILOG_PLOT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder (csfpk compare --out)")
    p.add_argument("--format", dest="fmt", default="png", choices=FORMATS, help="file format (default png)")
    p.add_argument("--out", help="folder for the figures (default RUN_DIR/figures)")
    p.set_defaults(func=cmd_plot)
    return p


def cmd_plot(args):
    """Handler of ``csfpk plot``: write the figures and list them."""
    paths = write_figures(args.run_dir, args.out, fmt=args.fmt)
    folder = os.path.dirname(paths[0]) if paths else args.out
    print(f"wrote {len(paths)} figures to {folder}/: " + ", ".join(os.path.basename(p) for p in paths))
    return 0
