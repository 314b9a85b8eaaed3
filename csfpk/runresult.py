"""The result of a population run, whether it was just computed or read from a run folder (DESIGN §7, §8).

``RunResult`` is the one type ``csfpk.compare``, ``csfpk.run_sweep``, ``csfpk.batch.run`` and
``csfpk.load_run`` return and the figures (``csfpk.plot``) take. It holds:

* ``scenarios``: the resolved record of each scenario (``Scenario.record()``: drug, physiology,
  population, regimen as NONMEM records, span, window, target), exactly as the manifest stores them;
* ``summary``: one row per scenario, every metric's median, 5th and 95th percentile and the
  probability of target attainment (numbers; ``table`` is the text view);
* per-subject metrics (``metrics``), held in memory or read from the verified run folder on use;
* optional percentile bands of the concentration curves (``curves_summary``).

Examples
--------
>>> import csfpk
>>> res = csfpk.compare("erlotinib", {"150 mg qd": csfpk.Regimen.every(amt=150, ii=24, n=28)},
...                     population=csfpk.Population(n=20, seed=1))
>>> int(res.summary.loc[0, "n"]), res.scenarios[0]["drug"]["name"], len(res.metrics)
(20, 'erlotinib', 20)
"""

import os
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from . import runfolder
from .errors import ParameterError
from .regimen import Record, Regimen
from .model import VARYING

_LABEL_COLUMNS = ("scenario", "drug", "regimen", "population", "override", "source")
_PARAMETER_COLUMNS = {"subject", "status", "weight_kg", "bsa_m2", "crcl_mL_min", *VARYING}
_WINDOW_SUFFIXES = ("ss", "span", "win", "inj")
# per window suffix: (output, metric, header, factor) of the printed table; AUC and C×T in µM·h as in the figures
_TABLE = {
    "ss": (("csf", "cavg", "CSF Cavg,ss nM", 1.0), ("csf", "trough", "CSF Cmin,ss nM", 1.0),
           ("csf", "pct_above", "CSF % of τ ≥ target", 1.0), ("plasma", "cmax", "plasma Cmax,ss nM", 1.0),
           ("plasma", "auc", "plasma AUCτ µM·h", 1e-3)),
    "span": (("csf", "cavg", "CSF Cavg (span) nM", 1.0), ("csf", "trough", "CSF last trough nM", 1.0),
             ("csf", "pct_above", "CSF % of span ≥ target", 1.0), ("plasma", "cmax", "plasma Cmax (span) nM", 1.0),
             ("plasma", "auc", "plasma AUC (span) µM·h", 1e-3)),
    "win": (("csf", "cavg", "CSF Cavg (window) nM", 1.0), ("csf", "trough", "CSF trough (window) nM", 1.0),
            ("csf", "pct_above", "CSF % of window ≥ target", 1.0), ("plasma", "cmax", "plasma Cmax (window) nM", 1.0),
            ("plasma", "auc", "plasma AUC (window) µM·h", 1e-3)),
    "inj": (("csf", "peak_inj", "CSF peak per injection nM", 1.0),
            ("csf", "time_above_inj", "CSF h ≥ target per injection", 1.0),
            ("csf", "cxt_inj", "CSF C×T per injection µM·h", 1.0), ("plasma", "cmax_span", "plasma Cmax (span) nM", 1.0),
            ("plasma", "auc_span", "plasma AUC (span) µM·h", 1e-3)),
}
# regional runs: the table's CSF columns are the lumbar SAS's; these ventricular ones follow them (Ommaya arms)
_VENTRICULAR = {"ss": (("cavg", "ventricular CSF Cavg,ss nM"),),
                "span": (("cavg", "ventricular CSF Cavg (span) nM"),),
                "win": (("cavg", "ventricular CSF Cavg (window) nM"),),
                "inj": (("time_above_inj", "ventricular CSF h ≥ target per injection"),
                        ("cxt_inj", "ventricular CSF C×T per injection µM·h"))}
_PTA = {"ss": "P(CSF Cmin,ss ≥ target)", "span": "P(CSF last trough ≥ target)", "win": "P(CSF trough ≥ target)"}


@dataclass(frozen=True, eq=False)
class RunResult:
    """A population run: scenario records, per-scenario summary, per-subject metrics, curve bands.

    Attributes
    ----------
    scenarios : tuple of plain dicts, the resolved record of each scenario (``Scenario.record()``).
    summary : pandas DataFrame, one row per scenario (``scenario`` is the scenario's id); columns
        ``<output>_<metric>_<window>_{median,p05,p95,typical}`` (window suffix ``ss``, ``span``,
        ``win`` or ``inj``, ``csfpk.metrics``), ``<output>_pta_{trough,cavg}_<window>``, ``n``,
        ``n_failed`` (and ``failed_by_status``, e.g. "MAX_STEPS 2, NONFINITE 1"), ``solver_text``,
        ``metrics_text``, and the plain-words ``window_text``, ``target_text``, ``percentiles``,
        ``drawn_from_range``.
    curves_summary : percentile bands of the curves (nM), or None.
    folder : the run folder the result was read from or written to, or None.
    manifest : the folder's manifest (plain data), or None.
    frames : scenario key → per-subject metrics, for a result held in memory.
    timelines : scenario key → dose timeline of an escalation scenario held in memory (``doses``).
    """

    scenarios: tuple
    summary: object
    curves_summary: object = None
    folder: str | None = None
    manifest: dict | None = None
    frames: MappingProxyType = field(default_factory=lambda: MappingProxyType({}), repr=False)
    timelines: MappingProxyType = field(default_factory=lambda: MappingProxyType({}), repr=False)

    def __post_init__(self):
        object.__setattr__(self, "scenarios", tuple(self.scenarios))
        object.__setattr__(self, "frames", MappingProxyType(dict(self.frames)))
        object.__setattr__(self, "timelines", MappingProxyType(dict(self.timelines)))

    def doses(self, scenario):
        """Every subject's dose timeline in ``scenario`` (its id or key): one row per subject × dose, columns
        subject, injection (1-based), time_h, dose_mg (mg actually given) and action.

        Escalation scenarios: the doses and decisions the escalation kernel took per subject (``start``,
        ``escalate``, ``hold``, ``step_back``, ``at_cap``; ``failed`` rows of a failed subject have NaN doses),
        stored in the run folder. Other scenarios: the regimen's doses, times the subject's dose scale for
        mg/kg or mg/m² regimens (weight or BSA over the reference body of the record's physiology), rebuilt
        from the record and the subject's weight_kg/bsa_m2 columns; action ``fixed``.
        """
        import pandas as pd

        rec = self.record(scenario)
        if rec.get("escalation"):
            if rec["key"] in self.timelines:
                return self.timelines[rec["key"]]
            if self.folder is None:
                raise ParameterError(f"scenario {rec['id']!r} has no dose timeline in this result")
            return runfolder.read_doses(self.folder, self.manifest, rec)
        doses = Regimen(tuple(Record(**r) for r in rec["regimen"])).doses(until=rec["t_end"])
        basis = rec.get("dose_basis")
        size = {"bsa": "bsa_m2", "weight": "weight_kg"}.get(basis)
        subj = self.scenario_metrics(rec["key"], ["subject"] + ([size] if size else []))
        scale = np.ones(len(subj)) if size is None else subj[size].to_numpy(dtype=float) / rec["physiology"][size]
        amt = np.array([d.amt for d in doses], dtype=float)
        n, k = len(subj), len(doses)
        return pd.DataFrame({"subject": np.repeat(subj["subject"].to_numpy(), k),
                             "injection": np.tile(np.arange(1, k + 1), n),
                             "time_h": np.tile([d.time for d in doses], n),
                             "dose_mg": (scale[:, None] * amt[None, :]).ravel(), "action": "fixed"})

    # ------------------------------------------------------------------ per-subject data
    def record(self, scenario):
        """The record of ``scenario`` (its id or key)."""
        for rec in self.scenarios:
            if scenario in (rec["id"], rec["key"]):
                return rec
        raise ParameterError(f"scenario {scenario!r} is not in this run; expected one of "
                             f"{[r['id'] for r in self.scenarios]}")

    def scenario_metrics(self, scenario, columns=None):
        """Per-subject metrics of one scenario (its id or key), in subject order."""
        rec = self.record(scenario)
        if rec["key"] in self.frames:
            df = self.frames[rec["key"]]
            return df if columns is None else df[list(columns)]
        if self.folder is None:
            raise ParameterError(f"scenario {rec['id']!r} has no per-subject metrics in this result")
        return runfolder.read_metrics(self.folder, self.manifest, rec, columns)

    @property
    def metrics(self):
        """Tidy per-subject frame of every scenario: drug, regimen, population, override, then its metrics."""
        import pandas as pd

        parts = []
        for rec in self.scenarios:
            df = self.scenario_metrics(rec["key"]).copy()
            for col, value in (("override", rec["override_name"]), ("population", rec["population_name"]),
                               ("regimen", rec["regimen_name"]), ("drug", rec["drug"]["name"])):
                df.insert(0, col, value)
            parts.append(df)
        return pd.concat(parts, ignore_index=True)

    @property
    def table(self):
        """The summary as text: median [5th–95th] (typical) of the key metrics, one row per scenario."""
        return summary_table(self.summary)

    @property
    def notes(self):
        """Lines that say what the table shows: percentiles, windows, targets with sources, ranges."""
        return summary_notes(self.summary)

    def metric_column(self, metric):
        """``metric`` as a per-subject column of this run: exact, else with the run's window suffix added
        (``csf_trough`` → ``csf_trough_ss`` in a steady-state run)."""
        names = self.metric_names()
        if metric in names:
            return metric
        for sfx in _WINDOW_SUFFIXES:
            if f"{metric}_{sfx}" in names:
                return f"{metric}_{sfx}"
        return metric

    # ------------------------------------------------------------------ what the figures use
    @property
    def drugs(self):
        return list(dict.fromkeys(self.summary["drug"]))

    def labelled(self):
        """Copy of ``summary`` with text label columns filled and a ``label`` per scenario.

        The label is the regimen, plus the population and override when they vary within a drug.
        """
        s = self.summary.copy().reset_index(drop=True)
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

    def select(self, *, drug=None, drugs=None, regimens=None):
        """Labelled scenario rows of ``drug`` (or of ``drugs``), optionally only ``regimens`` in that order."""
        s = self.labelled()
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

    def _has_subjects(self):
        return bool(self.scenarios) and (self.folder is not None or bool(self.frames))

    def metric_names(self):
        """Names of the per-subject metric columns of this run (from the summary for a summary-only result)."""
        if self._has_subjects():
            rec = self.scenarios[0]
            if rec["key"] in self.frames:
                names = list(self.frames[rec["key"]].columns)
            else:
                names = runfolder.metric_columns(self.folder, self.manifest, rec)
        else:
            names = [c[: -len("_median")] for c in self.summary.columns if c.endswith("_median")]
        return names

    def check_metric(self, column):
        """Raise ``ParameterError`` unless per-subject ``column`` (or its summary) is in the run."""
        names = self.metric_names()
        if column not in names:
            allowed = [c for c in names if c not in _PARAMETER_COLUMNS and "_" in c]
            raise ParameterError(f"metric = {column!r} is not in this run; expected one of {allowed}")

    def values(self, scenario, column):
        """Per-subject values of ``column`` (failed subjects as NaN), or None for a summary-only result."""
        if not self._has_subjects():
            return None
        return self.scenario_metrics(scenario, [column])[column].to_numpy(dtype=float)

    def summary_stats(self, scenario, column):
        """``{5: p05, 50: median, 95: p95}`` of ``column`` from the summary table."""
        row = self.summary[self.summary["scenario"] == scenario].iloc[0]
        return {5: float(row[f"{column}_p05"]), 50: float(row[f"{column}_median"]), 95: float(row[f"{column}_p95"])}

    @property
    def has_curves(self):
        return self.curves_summary is not None and len(self.curves_summary) > 0

    def quantiles(self, scenario, compartment):
        """Times (h) and ``{percentile: nM array}`` of the population's curves in ``compartment``.

        Percentiles 5, 50, 95 always; 25 and 75 when the raw curves are in the run folder.
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
        if self.folder is not None and self.manifest is not None:
            cur = runfolder.read_curves(self.folder, self.manifest, self.record(scenario),
                                        order.index(compartment)).astype(float)
            if cur.shape[1] != t.size:
                raise runfolder.RunFolderError(f"{self.folder}: curves have {cur.shape[1]} time points but "
                                               f"curves_summary.csv has {t.size}; rerun with --overwrite")
            with np.errstate(invalid="ignore"):
                p = np.nanpercentile(cur, [5, 25, 50, 75, 95], axis=0)
            q = dict(zip((5, 25, 50, 75, 95), p))
        return t, q

    def molecular_weight(self, drug):
        """Molecular weight of ``drug`` (g/mol) as the run used it, for ng/mL and mg/L axes."""
        for rec in self.scenarios:
            if rec["drug"]["name"] == drug:
                return float(rec["drug"]["molecular_weight"])
        rows = self.summary[self.summary["drug"] == drug]
        if "molecular_weight" in rows and len(rows):
            return float(rows["molecular_weight"].iloc[0])
        raise ParameterError(f"drug {drug!r}: this result does not record its molecular weight; expected one of "
                             f"{self.drugs}")

    def csf_compartment(self):
        """The CSF output the figures show: ``csf``, else ``csf_lumbar``, else the first regional one."""
        outs = [c.split("_cmax_")[0] for c in self.summary.columns
                if "_cmax_" in c and c.endswith("_median")]
        csf = [o for o in outs if o.startswith("csf")]
        for pick in ("csf", "csf_lumbar"):
            if pick in csf:
                return pick
        return csf[0] if csf else None


def load_run(path):
    """Read a finished run folder (``csfpk compare --out``) after verifying it; return a ``RunResult``.

    Every chunk's subject range and checksum, the manifest's hashes and the summary files'
    checksums are checked first; a folder that fails raises ``RunFolderError`` (one line).
    """
    import pandas as pd

    path = os.path.abspath(os.fspath(path))
    man = runfolder.read_run(path)
    summary = pd.read_csv(os.path.join(path, runfolder.SUMMARY))
    curves = None
    if man["curves"] and runfolder.CURVES_SUMMARY in man.get("files", {}):
        curves = pd.read_csv(os.path.join(path, runfolder.CURVES_SUMMARY))
    return RunResult(scenarios=tuple(man["scenarios"]), summary=summary, curves_summary=curves, folder=path,
                     manifest=man)


def as_run(source):
    """``source`` as a ``RunResult``: a result, a run folder path, or a summary frame (summary only)."""
    import pandas as pd

    if isinstance(source, RunResult):
        return source
    if isinstance(source, (str, os.PathLike)):
        return load_run(source)
    if isinstance(source, pd.DataFrame):
        need = {"scenario", "drug", "regimen"}
        if not need <= set(source.columns):
            raise ParameterError(f"a summary frame needs the columns {sorted(need)}; got {list(source.columns)[:8]}")
        return RunResult(scenarios=(), summary=source)
    raise ParameterError(f"source = {type(source).__name__} is not allowed; expected a RunResult, a run folder path "
                         "or a summary DataFrame")


def _csf(summary):
    outs = [c.split("_cmax_")[0] for c in summary.columns if "_cmax_" in c and c.endswith("_median")]
    for pick in ("csf", "csf_lumbar"):
        if pick in outs:
            return pick
    csf = [o for o in outs if o.startswith("csf")]
    return csf[0] if csf else "csf"


def _suffix(r):
    kind = r.get("window")
    return {"ss": "ss", "span": "span", "window": "win", "per_injection": "inj"}.get(kind, "span")


def summary_table(summary):
    """One row per scenario: the window, then median [5th–95th] (typical) of the key metrics of that
    window and P(CSF trough ≥ target) (not for intrathecal pulses), as text."""
    import pandas as pd

    csf = _csf(summary)
    rows = []
    for _, r in summary.iterrows():
        row = {"drug": r["drug"], "regimen": r["regimen"]}
        if r.get("population") not in (None, "", "population", "default") and not pd.isna(r.get("population")):
            row["population"] = r["population"]
        if isinstance(r.get("override"), str) and r.get("override"):
            row["override"] = r["override"]
        sfx = _suffix(r)
        if isinstance(r.get("window_text"), str):
            row["window"] = r["window_text"]
        columns = [(csf if o == "csf" else o, m, label.replace("CSF", "lumbar CSF", 1) if csf == "csf_lumbar"
                    and o == "csf" else label, k) for o, m, label, k in _TABLE[sfx]]
        if csf == "csf_lumbar":
            columns[3:3] = [("csf_ventricles", m, label, 1.0) for m, label in _VENTRICULAR[sfx]]
        for o, m, label, k in columns:
            key = f"{o}_{m}_median" if sfx == "inj" else f"{o}_{m}_{sfx}_median"
            if key in r and not pd.isna(r[key]):
                base = key[: -len("_median")]
                cell = f"{_fmt(k * r[key])} [{_fmt(k * r[f'{base}_p05'])}–{_fmt(k * r[f'{base}_p95'])}]"
                if f"{base}_typical" in r and not pd.isna(r[f"{base}_typical"]):
                    cell += f" typ {_fmt(k * r[f'{base}_typical'])}"
                row[label] = cell
        row.update(_escalation_cells(r))
        pta = f"{csf}_pta_trough_{sfx}"
        if pta in r and not pd.isna(r[pta]):
            row[_PTA[sfx]] = f"{100 * r[pta]:.0f} %"
        if r.get("n_failed", 0):
            row["failed"] = f"{int(r['n_failed'])} of {int(r['n'])}"
            if isinstance(r.get("failed_by_status"), str) and r["failed_by_status"]:
                row["failed"] += f" ({r['failed_by_status']})"
        rows.append(row)
    return pd.DataFrame(rows)


# the grade >= 3 shares of an escalation scenario's summary row: (column, header)
_GRADE3 = (("grade3_leukocytes_pct", "G≥3 leukopenia %"), ("grade3_neutrophils_pct", "G≥3 neutropenia %"),
           ("grade3_platelets_pct", "G≥3 thrombocytopenia %"), ("grade3_any_pct", "G≥3 any %"))


def _escalation_cells(r):
    """Cells of an escalation scenario's row (empty for other scenarios): grade ≥ 3 shares, final dose."""
    import pandas as pd

    if pd.isna(r.get("grade3_any_pct", float("nan"))):
        return {}
    out = {head: f"{r[col]:.1f}" for col, head in _GRADE3 if col in r and not pd.isna(r[col])}
    out["final dose mg"] = (f"{_fmt(r['final_dose_mg_median'])} [{_fmt(r['final_dose_mg_p05'])}–"
                            f"{_fmt(r['final_dose_mg_p95'])}] typ {_fmt(r['final_dose_mg_typical'])}")
    out["final dose at cap %"] = f"{r['final_dose_at_cap_pct']:.1f}"
    out["≥1 step-back %"] = f"{r['step_back_pct']:.1f}"
    out["final dose levels"] = r["final_dose_levels"]
    return out


def summary_notes(summary):
    """The lines printed above the table: percentiles and n, each window kind, target, ranges."""
    lines = []
    ns = sorted({int(n) for n in summary["n"]}) if "n" in summary else []
    lines.append("cells: median [5th–95th percentile] over " + "/".join(str(n) for n in ns)
                 + " subjects per regimen; typ = one simulation of the typical subject (no IIV, nominal "
                 "parameters), same regimen and window")
    kinds = [k for k in dict.fromkeys(summary["window"]) if isinstance(k, str)] if "window" in summary else []
    words = {"ss": "ss = last complete dosing interval τ (Cmin,ss = pre-dose at its end, AUCτ, Cavg,ss = AUCτ/τ)",
             "span": "span = the whole simulated span, including the climb to steady state",
             "window": "window = the explicit metric window of the sweep",
             "per_injection": "per injection = from each injection to the next (the last: to the end); "
                              "values are means over injections; C×T = AUC in µM·h"}
    escalation = "grade_text" in summary and summary["grade_text"].notna().all()
    if escalation:  # grades, nadirs and doses of every subject from 0 to the end of the span
        words["span"] = "span = the whole simulated span: every injection and the counts after the last"
    for k in kinds:
        lines.append("window: " + words.get(k, k))
    if escalation:
        for t in dict.fromkeys(summary["grade_text"]):
            if isinstance(t, str) and t:
                lines.append("grades: " + t + " (failed subjects excluded); final dose = dose at the last injection, "
                             "levels = share of subjects ending at each dose level")
    for drug in dict.fromkeys(summary["drug"]):
        part = summary[summary["drug"] == drug]
        for col, head in (("target_text", "target: "), ("drawn_from_range", f"drawn from a range: {drug} ")):
            for t in dict.fromkeys(part[col]) if col in part else ():
                if isinstance(t, str) and t:
                    lines.append(head + t)
        if "solver_text" in part and not part["solver_text"].astype(str).str.startswith("exact").all():
            for sv, mt in dict.fromkeys(zip(part["solver_text"], part["metrics_text"])):
                lines.append(f"solver: {drug} {sv}; metrics {mt}")
    return list(dict.fromkeys(lines))  # one line per distinct note, whatever the number of drugs


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
