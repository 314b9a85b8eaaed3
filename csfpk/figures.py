"""A run folder's figures: ``csfpk plot RUN_DIR`` (DESIGN §7, issue 5).

``write_figures`` draws a finished run (a ``RunResult`` or a run folder, read and verified by
``csfpk.load_run``; molecular weights and targets come from the run's manifest, no parameter file
is read) into ``RUN_DIR/figures/`` unless told otherwise:

==================================  =========================================================
``comparison_<csf>_trough``         CSF trough (Cmin,ss) per regimen (distribution, target)
``comparison_<csf>_cavg``           CSF average concentration (Cavg,ss) per regimen
``comparison_<csf>_pct_above``      % of the window with CSF ≥ target (runs with a target)
``comparison_<csf>_peak_inj``       intrathecal runs, instead of the three above: CSF peak,
``comparison_<csf>_time_above_inj`` time ≥ target and C×T (µM·h) per injection
``comparison_<csf>_cxt_inj``
``comparison_plasma_cavg``          plasma Cavg,ss per regimen (the systemic cost; AUCτ/τ, so
                                    that daily and weekly regimens compare), steady-state runs
``comparison_plasma_auc``           plasma AUC (µM·h) over the span, other runs
``bands_<csf>_<drug>``              population bands of CSF concentration (runs with curves)
``escalation_summary``              escalation runs, instead of all the above: grade ≥ 3 shares
                                    per lineage and final dose levels per regimen
==================================  =========================================================

``<csf>`` is ``csf`` in the single CSF layout, ``csf_lumbar`` in the regional one; a regional run
draws each CSF figure for ``csf_ventricles`` too (lumbar puncture vs Ommaya). Each metric
is computed over the run's window (``csfpk.metrics``: by default the last dosing interval for
repeated doses, per injection for intrathecal regimens), which each figure's title names.

Examples
--------
>>> import csfpk, csfpk.figures, tempfile, os
>>> folder = os.path.join(tempfile.mkdtemp(), "run")
>>> res = csfpk.compare("erlotinib", {"150 mg qd": csfpk.Regimen.every(amt=150, ii=24, n=28)},
...                     population=csfpk.Population(n=20, seed=1), out=folder)
>>> [os.path.basename(p) for p in csfpk.figures.write_figures(folder)][:1]
['comparison_csf_trough.png']
"""

import os

from . import plot
from .errors import ParameterError
from .runresult import as_run

FORMATS = ("png", "svg", "pdf")


# ----------------------------------------------------------------------------- writing
def main_metrics(run):
    """The comparison metrics ``write_figures`` draws for ``run``, over the run's window.

    Oral and other repeated dosing: CSF trough (Cmin,ss), Cavg, % time ≥ target, plasma Cavg,ss.
    Intrathecal runs (per injection window): CSF peak, time ≥ target and C×T per injection, plasma
    AUC over the span; no CSF Cavg or trough, which mean nothing for bolus pulses.
    """
    csf = run.csf_compartment()
    sites = [csf] if csf is not None else []
    if csf == "csf_lumbar" and any(c.startswith("csf_ventricles_") for c in run.metric_names()):
        sites.append("csf_ventricles")  # regional runs: where an Ommaya dose goes
    out = []
    if csf is not None and f"{csf}_peak_inj" in run.metric_names():
        return [f"{o}_{m}" for o in sites for m in ("peak_inj", "time_above_inj", "cxt_inj")] + ["plasma_auc"]
    t = run.summary["target_nM"] if "target_nM" in run.summary else None
    for o in sites:
        out += [f"{o}_trough", f"{o}_cavg"]
        if t is not None and t.notna().any():
            out.append(f"{o}_pct_above")
    # AUCτ of regimens with different τ (daily vs weekly) is not comparable: their plasma Cavg,ss = AUCτ/τ is
    out.append("plasma_cavg" if "plasma_cavg_ss" in run.metric_names() else "plasma_auc")
    return out


def write_figures(run, out=None, *, fmt="png", dpi=200):
    """Draw a finished run's figures and return their paths (module docstring).

    Parameters
    ----------
    run : a run folder (``csfpk compare --out``) or a ``RunResult`` with a folder.
    out : folder for the figures (default ``<run folder>/figures``).
    fmt : ``"png"``, ``"svg"`` or ``"pdf"``.
    dpi : resolution of PNG files.
    """
    if fmt not in FORMATS:
        raise ParameterError(f"fmt = {fmt!r} is not allowed; expected one of {list(FORMATS)}")
    run = as_run(run)
    if out is None and run.folder is None:
        raise ParameterError("out = None needs a run with a folder; give out= for a result held in memory")
    out = os.fspath(out) if out is not None else os.path.join(run.folder, "figures")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise ParameterError(f"--out {out!r} cannot be written ({exc.strerror or exc}); choose a writable folder") from None
    written = []
    if plot.is_escalation(run):  # grade >= 3 shares per lineage and final dose levels per regimen
        path = os.path.join(out, f"escalation_summary.{fmt}")
        plot.save(plot.escalation_summary(run), path, dpi=dpi)
        return [path]
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
