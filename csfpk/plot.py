"""Figures from results (matplotlib, imported only when a plot is made).

Every function takes results and returns a ``matplotlib.figure.Figure``; ``save(fig, path)``
writes PNG, SVG or PDF by the file's extension.

=====================  ==================================================================
``curves``             one simulation: concentration–time per compartment, targets, doses
``population_bands``   a population: median, 25th–75th and 5th–95th percentile ribbons
                       per regimen (from a ``RunResult`` or a run folder)
``comparison``         one metric per regimen (box 25th–75th, whiskers 5th–95th, median),
                       sorted, one panel per drug, target line where it applies
``csf_regions``        intrathecal arms: CSF concentration by region, one panel per arm
``blood_course``       intrathecal arms: blood counts with the doses actually given
``summary_figure``     a run's CSF Cavg per regimen (the run folder's ``summary.png``)
``dose_exposure``      plasma and CSF Cavg/Cmax against dose, published points overlaid
``fold_axes``          predicted-vs-observed log axes with the line of identity and the 2-fold band
=====================  ==================================================================

Defaults are meant for print: widths of a journal column (``SINGLE_COLUMN_IN`` 3.5 in,
``DOUBLE_COLUMN_IN`` 7 in), axes labelled with units, legends outside the data, the Okabe–Ito
palette (Okabe & Ito 2008, *Color Universal Design*) paired with line styles so that figures
survive colour-blind viewing and greyscale printing, and logarithmic axes labelled at major
ticks only with plain numbers (``20``, ``50``, ``100`` rather than ``2×10¹``).

Artists that tests and scripts may want to find carry a ``gid``: ``"median"``,
``"band_25_75"``, ``"band_5_95"``, ``"box"``, ``"target"``.
"""

import math
import textwrap

from . import metrics
from .drug import Drug, load_drug
from .errors import ParameterError
from .io import atomic_path
from .myelosuppression import load_myelosuppression
from .paths import params_dir
from .regimen import Regimen
from .runresult import as_run
from .simulation import simulate
from .units import hours, mg_per_L_per_unit

_UNITS = {"nM": ("conc_nM", "nM"), "ng/mL": ("conc_ng_mL", "ng/mL"), "mg/L": ("conc_mg_L", "mg/L")}
# Okabe–Ito palette: distinguishable with colour-blindness and in greyscale (with line styles)
# (yellow last: it is faint on white)
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
MARKERS = "os^Dv<>p"
SINGLE_COLUMN_IN = 3.5
DOUBLE_COLUMN_IN = 7.0
_LABELS = {"plasma": "plasma (total)", "plasma_unbound": "plasma (unbound)", "csf": "CSF",
           "csf_ventricles": "CSF ventricles", "csf_cisterna": "CSF cisterna magna",
           "csf_cranial": "CSF cranial SAS", "csf_lumbar": "CSF lumbar SAS"}
# short names for axis labels of metrics ("CSF trough (nM)", "lumbar CSF Cavg (nM)")
_SHORT = {"plasma": "plasma", "plasma_unbound": "unbound plasma", "csf": "CSF", "csf_ventricles": "ventricular CSF",
          "csf_cisterna": "cisternal CSF", "csf_cranial": "cranial SAS CSF", "csf_lumbar": "lumbar CSF"}
# metric -> (label, unit, factor applied to the stored value); stored units are in csfpk.metrics.UNITS
_METRICS = {"cmax": ("Cmax", "nM", 1.0), "tmax": ("tmax", "h", 1.0), "trough": ("trough", "nM", 1.0),
            "cavg": ("Cavg", "nM", 1.0), "auc": ("AUC", "µM·h", 1e-3), "time_above": ("time ≥ target", "h", 1.0),
            "pct_above": ("time ≥ target", "% of time", 1.0), "plasma_auc_ratio": ("AUC / plasma AUC", "ratio", 1.0),
            "peak": ("peak", "nM", 1.0), "cxt": ("C×T", "µM·h", 1.0)}
# window suffix of a metric column (csfpk.metrics.SUFFIX) -> how its label reads, and the title line
_WINDOW_LABELS = {"ss": {"cmax": "Cmax,ss", "trough": "Cmin,ss", "cavg": "Cavg,ss", "auc": "AUCτ",
                         "pct_above": "time ≥ target", "time_above": "time ≥ target in τ"},
                  "inj": {"peak": "peak per injection", "time_above": "time ≥ target per injection",
                          "cxt": "C×T per injection"}}
_WINDOW_TITLES = {"ss": "last complete dosing interval τ of each regimen",
                  "span": "the whole simulated span",
                  "win": "the sweep's metric window", "inj": "per injection, mean over injections"}
_PCT_UNITS = {"ss": "% of τ", "span": "% of span", "win": "% of window"}
_FONT = 8  # pt; tick labels and legends (7–9 pt is what journals print at column width)


def _plt():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg") and not _has_display():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _has_display():
    import os

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


# ----------------------------------------------------------------------------- axes helpers
def _tick_text(value, _pos=None, powers=False):
    """Plain tick label: 0.05, 2, 300, 20000; powers of ten beyond that range (or with ``powers``)."""
    if value <= 0 or not math.isfinite(value):
        return ""
    k = math.floor(math.log10(value) + 1e-9)
    if -3 <= k <= 4 and not powers:
        return f"{value:g}" if k < 0 else f"{value:.0f}"
    mant = value / 10.0 ** k
    if abs(mant - 1.0) < 1e-6:
        return f"$10^{{{k}}}$"
    return f"${mant:g}\\times10^{{{k}}}$"


def _log_axis(ax, which="y"):
    """Log scale labelled at major ticks only, with plain numbers and spacing fitted to the range.

    Matplotlib labels minor ticks (``4×10⁰ 6×10⁰ …``) when an axis spans less than a decade; those
    labels overlap at column width. Here the labelled ticks are 1-2-5, 1-3 or decades by the
    span, and minor ticks carry no text.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis = ax.yaxis if which == "y" else ax.xaxis
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    lo, hi = ax.get_ylim() if which == "y" else ax.get_xlim()
    lo, hi = min(lo, hi), max(lo, hi)
    decades = math.log10(hi / lo) if lo > 0 and hi > 0 else 10.0
    if decades <= 0.6:
        subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
    elif decades <= 1.3:
        subs = (1.0, 2.0, 5.0)
    elif decades <= 2.5:
        subs = (1.0, 3.0)
    else:
        subs = (1.0,)
    axis.set_major_locator(LogLocator(base=10.0, subs=subs, numticks=8))
    # an axis reaching past 10⁴ (or below 10⁻³) is labelled in powers of ten throughout, not "10000, 10⁵"
    powers = subs == (1.0,) and (hi > 1.5e4 or lo < 1e-3)
    axis.set_major_formatter(FuncFormatter(lambda v, pos: _tick_text(v, pos, powers)))
    axis.set_minor_locator(LogLocator(base=10.0, subs=tuple(range(2, 10)), numticks=12))
    axis.set_minor_formatter(NullFormatter())


def _tidy(ax):
    ax.tick_params(labelsize=_FONT)
    ax.grid(True, which="major", alpha=0.3, lw=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _time_ticks(ax, span_days):
    """Weekly ticks over two weeks to four months, four-weekly up to a year (dosing is weekly-minded)."""
    from matplotlib.ticker import MultipleLocator

    if 14 <= span_days <= 120:
        ax.xaxis.set_major_locator(MultipleLocator(7))
    elif 120 < span_days <= 400:
        ax.xaxis.set_major_locator(MultipleLocator(28))


def _time_scale(time_unit):
    if time_unit not in ("h", "d"):
        raise ParameterError(f"time_unit = {time_unit!r} is not allowed; expected 'h' or 'd'")
    return (24.0, "time (days)") if time_unit == "d" else (1.0, "time (h)")


def _check_units(units):
    if units not in _UNITS:
        raise ParameterError(f"units = {units!r} is not allowed; expected one of {sorted(_UNITS)}")
    return _UNITS[units]


def _from_nM(values, units, molecular_weight):
    """Convert nM to ``units`` (mg/L = nM · MW / 10⁶; ng/mL = mg/L · 10³)."""
    if units == "nM":
        return values
    if molecular_weight is None:
        raise ParameterError(f"units = {units!r} needs the drug's molecular weight, which this result does not carry; "
                             "use units='nM'")
    mg_L = values * molecular_weight / 1e6
    return mg_L if units == "mg/L" else mg_L * 1e3


# ----------------------------------------------------------------------------- one simulation
def curves(result, compartments=None, *, units="nM", log=True, targets=None, time_unit="d", doses=True,
           title=None, ax=None):
    """Concentration–time curves of one simulation.

    Parameters
    ----------
    result : a ``SimulationResult``.
    compartments : names to draw (default: every output but ``plasma_unbound``).
    units : ``"nM"``, ``"ng/mL"`` or ``"mg/L"``.
    log : logarithmic concentration axis.
    targets : ``{label: concentration in `units`}`` drawn as horizontal dotted lines (IC50, 1 µM …).
    time_unit : ``"h"`` or ``"d"`` on the time axis.
    doses : mark dose times along the top of the axes.
    title : axes title (default: the drug's name).
    ax : draw into these axes instead of a new double-column figure.

    Returns
    -------
    matplotlib.figure.Figure with one line per compartment (labelled as in the legend).

    Examples
    --------
    >>> import csfpk
    >>> res = csfpk.simulate(csfpk.load_drug("erlotinib"), csfpk.Regimen.every(amt=150, ii=24, n=7), t_end="7d")
    >>> fig = csfpk.plot.curves(res, targets={"IC50 7 nM": 7.0})
    >>> fig.axes[0].get_ylabel()
    'concentration (nM)'
    """
    col, unit_label = _check_units(units)
    scale, xlabel = _time_scale(time_unit)
    plt = _plt()
    names = list(compartments or [c for c in result.compartments if c != "plasma_unbound"])
    frame = result.to_frame(names)
    if ax is None:
        fig, ax = plt.subplots(figsize=(DOUBLE_COLUMN_IN, 3.0), layout="constrained")
    else:
        fig = ax.figure
    for i, name in enumerate(names):
        sub = frame[frame.compartment == name]
        y = sub[col].to_numpy()
        if log:
            y = y.copy()
            y[y <= 0] = float("nan")
        ax.plot(sub.time_h / scale, y, color=PALETTE[i % len(PALETTE)], linestyle=LINESTYLES[i % len(LINESTYLES)],
                lw=1.6, label=_LABELS.get(name, name))
    for label, value in (targets or {}).items():
        ax.axhline(value, color="0.35", lw=1.0, linestyle=":", zorder=0, gid="target")
        ax.annotate(label, xy=(1.0, value), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                    textcoords="offset points", ha="right", va="bottom", fontsize=_FONT, color="0.25")
    if doses and result.doses:
        ax.plot([d[0] / scale for d in result.doses], [1.0] * len(result.doses), "v", color="0.3", ms=3.5,
                transform=ax.get_xaxis_transform(), clip_on=False, label="dose")
    if log:
        _log_axis(ax, "y")
    if time_unit == "d" and len(result.times):
        _time_ticks(ax, float(result.times[-1]) / 24.0)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(f"concentration ({unit_label})", fontsize=9)
    ax.set_title(title or f"{result.model.name}", fontsize=10)
    _tidy(ax)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=_FONT)
    return fig


def save(fig, path, *, dpi=200):
    """Save ``fig`` to ``path`` (PNG at ``dpi``, SVG or PDF by extension) and close it."""
    import os

    ext = os.path.splitext(str(path))[1].lower()
    if ext not in (".png", ".svg", ".pdf"):
        raise ParameterError(f"plot file {str(path)!r}: extension {ext!r} is not allowed; expected .png, .svg or .pdf")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=ext[1:])
    _plt().close(fig)


# ----------------------------------------------------------------------------- populations
def population_bands(source, *, compartment="csf", drug=None, regimens=None, units="nM", log=True, time_unit="d",
                     target=True, width=DOUBLE_COLUMN_IN):
    """Median and percentile ribbons of a population's concentrations, one panel per regimen.

    The darker ribbon spans the 25th–75th and the lighter one the 5th–95th percentile at each
    output time; the line is the median. Panels share both axes so regimens compare at a glance.

    Parameters
    ----------
    source : a run folder written with ``--curves`` (path), or a ``RunResult``
        run with ``curves=True``. An in-memory result keeps only the 5th/50th/95th percentiles,
        so its figure has no 25th–75th ribbon.
    compartment : ``"csf"``, ``"plasma"``, ``"plasma_unbound"`` or a regional CSF output.
    drug : the drug to show; required when the run holds several drugs.
    regimens : regimen labels to show, in this order (default: all of the drug's, in run order).
    units : ``"nM"``, ``"ng/mL"`` or ``"mg/L"``.
    log : logarithmic concentration axis.
    time_unit : ``"h"`` or ``"d"``.
    target : draw the scenario's target concentration (dotted) when it has one.
    width : figure width, in (3.5 single column, 7 double column); default single column, double when
        a row label is longer than 24 characters (several populations), which would squeeze the data.

    Returns
    -------
    matplotlib.figure.Figure with one axes per regimen; in each, one ``"median"`` line and the
    ``"band_25_75"`` and ``"band_5_95"`` ribbons (by ``gid``).

    Examples
    --------
    >>> import csfpk
    >>> cmp = csfpk.compare("erlotinib", {"150 mg qd": csfpk.Regimen.every(amt=150, ii=24, n=28)},
    ...                     population=csfpk.Population(n=50, seed=1), curves=True)
    >>> fig = csfpk.plot.population_bands(cmp)
    >>> fig.axes[0].get_ylabel()
    'CSF concentration (nM)'
    """
    import numpy as np

    _, unit_label = _check_units(units)
    scale, xlabel = _time_scale(time_unit)
    run = as_run(source)
    if drug is None and len(run.drugs) > 1:
        raise ParameterError(f"this run holds several drugs {run.drugs}; choose one with drug=")
    rows = run.select(drug=drug, regimens=regimens)
    plt = _plt()
    n = len(rows)
    ncol = min(n, 3 if width >= 6 else 2)
    nrow = -(-n // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(width, 1.75 * nrow + 0.75), sharex=True, sharey=True,
                             squeeze=False, layout="constrained")
    lo, hi, t_end = math.inf, 0.0, 0.0
    n_subjects = set()
    handles = {}
    for i, (ax, (_, row)) in enumerate(zip(axes.flat, rows.iterrows())):
        t, q = run.quantiles(row["scenario"], compartment)
        mw = run.molecular_weight(row["drug"]) if units != "nM" else None
        q = {k: _from_nM(v, units, mw) for k, v in q.items()}
        if log:  # zero before the first dose has no place on a log axis
            q = {k: np.where(v > 0, v, np.nan) for k, v in q.items()}
        color = PALETTE[0]  # the panel title names the regimen; one colour keeps panels comparable
        x = t / scale
        h = ax.fill_between(x, q[5], q[95], color=color, alpha=0.18, lw=0, gid="band_5_95")
        handles.setdefault("5th–95th percentile", h)
        if 25 in q:
            h = ax.fill_between(x, q[25], q[75], color=color, alpha=0.38, lw=0, gid="band_25_75")
            handles.setdefault("25th–75th percentile", h)
        (h,) = ax.plot(x, q[50], color=color, lw=1.5, gid="median")
        handles.setdefault("median", h)
        tgt = row.get("target_nM")
        if target and _known(tgt):
            tv = float(_from_nM(tgt, units, mw))
            (h,) = ax.plot([0, 1], [tv, tv], transform=ax.get_yaxis_transform(), color="0.25", lw=0.9, ls=":",
                           gid="target")
            handles.setdefault(f"target ({_tick_text(tgt)} nM)" if units == "nM" else "target", h)
        positive = q[5][q[5] > 0]
        if positive.size:
            lo = min(lo, float(positive.min()))
        hi = max(hi, float(np.nanmax(q[95])))
        t_end = max(t_end, float(t[-1]))
        n_subjects.add(int(row.get("n", 0) or 0))
        ax.set_title(row["label"], fontsize=9)
        _tidy(ax)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
        above = axes.flat[list(axes.flat).index(ax) - ncol]
        above.xaxis.set_tick_params(labelbottom=True)
        above.set_xlabel(xlabel, fontsize=9)
    if log and hi > 0:
        axes.flat[0].set_ylim(max(lo, hi / 1e4) / 1.5, hi * 1.5)  # sharey: one call sets every panel
        for ax in axes.flat[:n]:
            _log_axis(ax, "y")
    if time_unit == "d":
        _time_ticks(axes.flat[0], t_end / 24.0)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{_SHORT.get(compartment, compartment)} concentration ({unit_label})", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel, fontsize=9)
    title = f"{rows['drug'].iloc[0]}: " if len(set(rows["drug"])) == 1 else ""
    title += f"{_SHORT.get(compartment, compartment)} concentration"
    if len(n_subjects) == 1 and n_subjects != {0}:
        title += f", n = {n_subjects.pop()} per regimen"
    fig.suptitle(title, fontsize=10)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=len(handles),
               frameon=False, fontsize=_FONT, handlelength=2.5)
    return fig


def comparison(source, metric="csf_trough", *, drugs=None, sort=True, log=None, target=True, width=None):
    """One exposure metric per regimen: its distribution over the population, one panel per drug.

    Each row is a regimen: the box spans the 25th–75th percentile of the per-subject values, the
    whiskers the 5th–95th, the thick tick is the median (with only a summary table, a dot and
    5th–95th whiskers). Rows are sorted by median, highest on top. For CSF and unbound plasma
    concentrations the target is a dotted vertical line, its value in the panel title.

    Parameters
    ----------
    source : a ``RunResult``, a run folder (path) or a summary frame
        (``RunResult.summary``, median/p05/p95 columns only).
    metric : ``<compartment>_<metric>[_<window>]``: compartment ``csf``, ``plasma``,
        ``plasma_unbound`` or a regional CSF output; metric ``cmax``, ``trough``, ``cavg``, ``auc``,
        ``tmax``, ``time_above``, ``pct_above``, for CSF ``plasma_auc_ratio``, per injection
        ``peak``, ``time_above``, ``cxt``; window ``ss``, ``span``, ``win`` or ``inj``
        (``csfpk.metrics``; without it, the run's window). AUC and C×T are shown in µM·h, as in
        the printed table; the figure's title names the metric and its window.
    drugs : drugs to show, in this order (default: all, in run order).
    sort : sort rows by median (False: run order, first on top).
    log : logarithmic metric axis (default: for concentrations, AUCs and ratios).
    target : draw the target line where it applies.
    width : figure width, in (3.5 single column, 7 double column); default single column, double when
        a row label is longer than 24 characters (several populations), which would squeeze the data.

    Returns
    -------
    matplotlib.figure.Figure with one axes per drug and one ``"box"`` patch (or, from a summary
    frame, one ``"median"`` marker) per regimen.

    Examples
    --------
    >>> import csfpk
    >>> cmp = csfpk.compare("erlotinib", {"150 mg qd": csfpk.Regimen.every(amt=150, ii=24, n=28),
    ...                                   "1500 mg qw": csfpk.Regimen.every(amt=1500, ii="7d", n=4)},
    ...                     population=csfpk.Population(n=50, seed=1))
    >>> fig = csfpk.plot.comparison(cmp, "csf_trough")
    >>> fig.axes[0].get_xlabel()
    'CSF Cmin,ss (nM)'
    """
    import numpy as np

    run = as_run(source)
    _split_metric(metric)  # a clear message for a malformed name before the run is read
    column = run.metric_column(metric)
    run.check_metric(column)
    compartment, name, sfx = _split_metric(column)
    label, unit, factor = _metric_label(name, sfx)
    if log is None:
        log = unit in ("nM", "µM·h", "ratio")
    rows = run.select(drugs=drugs)
    if width is None:
        width = DOUBLE_COLUMN_IN if max((len(str(x)) for x in rows["label"]), default=0) > 24 else SINGLE_COLUMN_IN
    drug_names = list(dict.fromkeys(rows["drug"]))
    stats = {}
    for _, row in rows.iterrows():
        values = run.values(row["scenario"], column)
        if values is not None:
            v = values[np.isfinite(values)] * factor
            q = np.percentile(v, [5, 25, 50, 75, 95]) if v.size else np.full(5, np.nan)
            stats[row["scenario"]] = (dict(zip((5, 25, 50, 75, 95), q)), int(v.size))
        else:
            s = run.summary_stats(row["scenario"], column)
            stats[row["scenario"]] = ({k: x * factor for k, x in s.items()}, int(row.get("n", 0) or 0))
    typical = {}  # one simulation of the typical subject, same regimen and window (summary column)
    if f"{column}_typical" in rows:
        typical = dict(zip(rows["scenario"], rows[f"{column}_typical"].astype(float)))
    drew_typical = False
    ranges = {}  # parameter drawn per subject from the drug file's range -> drugs (CSF metrics only)
    for d in drug_names:
        ranged = rows.loc[rows["drug"] == d, "drawn_from_range"].iloc[0] if "drawn_from_range" in rows else ""
        if isinstance(ranged, str) and ranged and compartment.startswith("csf"):
            ranges.setdefault(ranged.split(" drawn")[0].split(".")[-1].replace("_", " "), []).append(d)
    title = f"{_SHORT.get(compartment, compartment)} {label}, by regimen\nwindow: {_WINDOW_TITLES.get(sfx, 'as stored')}"
    for par, ds in ranges.items():
        who = "" if set(ds) == set(drug_names) else f" ({', '.join(ds)})"
        title += "\n" + "\n".join(textwrap.wrap(f"{par} drawn per subject from the drug file's range{who}", 64))
    plt = _plt()
    counts = [int((rows["drug"] == d).sum()) for d in drug_names]
    heights = [0.22 * c + 0.45 for c in counts]
    # panels, their titles and x labels, the title lines, and the key below (about 0.8 in at least)
    tall = sum(heights) + 0.42 * len(drug_names) + 0.15 + 0.15 * (title.count("\n") + 1)
    fig = plt.figure(figsize=(width, max(tall, 2.6)), layout="constrained")
    axes = fig.subplots(len(drug_names), 1, squeeze=False, height_ratios=heights)[:, 0]
    xlabel = f"{_SHORT.get(compartment, compartment)} {label} ({unit})"
    n_all, drew_target = set(), False
    for ax, d in zip(axes, drug_names):
        sub = rows[rows["drug"] == d]
        order = list(sub.index)
        if sort:
            order.sort(key=lambda i: -_nan_low(stats[sub.loc[i, "scenario"]][0][50]))
        ys = {}
        for k, i in enumerate(order):
            ys[i] = len(order) - 1 - k  # first row on top
            q, _ = stats[sub.loc[i, "scenario"]]
            y = ys[i]
            if 25 in q:
                ax.barh(y, q[75] - q[25], left=q[25], height=0.56, color=PALETTE[0], alpha=0.35,
                        edgecolor=PALETTE[0], lw=0.9, gid="box")
                ax.plot([q[5], q[25]], [y, y], color=PALETTE[0], lw=1.0)
                ax.plot([q[75], q[95]], [y, y], color=PALETTE[0], lw=1.0)
                ax.plot([q[50], q[50]], [y - 0.28, y + 0.28], color="black", lw=2.0, solid_capstyle="butt",
                        gid="median")
            else:
                ax.plot([q[5], q[95]], [y, y], color=PALETTE[0], lw=1.2)
                ax.plot([q[50]], [y], "o", color=PALETTE[0], ms=5, gid="median")
            for end in (q[5], q[95]):
                ax.plot([end, end], [y - 0.14, y + 0.14], color=PALETTE[0], lw=1.0)
            typ = typical.get(sub.loc[i, "scenario"])
            if _known(typ):
                ax.plot([typ * factor], [y], linestyle="none", marker="D", ms=4, mfc="white", mec=PALETTE[1],
                        mew=1.2, zorder=4, gid="typical")
                drew_typical = True
        ax.set_yticks([ys[i] for i in order], [sub.loc[i, "label"] for i in order], fontsize=_FONT)
        ax.set_ylim(-0.6, len(order) - 0.4)
        tgt = sub["target_nM"].iloc[0] if "target_nM" in sub else None
        draw_target = (target and _known(tgt) and unit == "nM"
                       and (compartment.startswith("csf") or compartment == "plasma_unbound"))
        values = [x for i in order for x in (stats[sub.loc[i, "scenario"]][0][5], stats[sub.loc[i, "scenario"]][0][95])
                  if _known(x)]
        off = _metric_limits(ax, values, float(tgt) if draw_target else None, log, unit)
        n_all.update(stats[s][1] for s in sub["scenario"])
        if draw_target and not off:
            ax.axvline(float(tgt), color="0.2", lw=1.0, ls=":", zorder=3, gid="target")
            drew_target = True
        ax.set_title(d, loc="left", fontsize=9, fontweight="bold")
        right = []
        if _known(tgt) and (draw_target or name in ("pct_above", "time_above")):
            right.append(f"target {_tick_text(float(tgt))} nM" + (f" {off}" if draw_target and off else ""))
        if right:
            ax.set_title(" · ".join(right), loc="right", fontsize=7, color="0.25")
        ax.set_xlabel(xlabel, fontsize=9)
        _tidy(ax)
        ax.grid(False, axis="y")
        ax.tick_params(axis="y", length=0)
    _comparison_key(fig, summary_only=not any(25 in stats[s][0] for s in stats), target=drew_target,
                    n=n_all.pop() if len(n_all) == 1 and n_all != {0} else None, typical=drew_typical)
    fig.suptitle(title, fontsize=8)
    return fig


def _comparison_key(fig, *, summary_only, target, n, typical=False):
    """Legend under the panels: what box, whiskers and median mean, the target line, n per regimen."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [] if summary_only else [Patch(facecolor=PALETTE[0], alpha=0.35, edgecolor=PALETTE[0],
                                             label="25th–75th percentile")]
    handles.append(Line2D([], [], color=PALETTE[0], lw=1.0, marker="|", ms=6, label="5th–95th percentile"))
    handles.append(Line2D([], [], color="black", lw=0, marker="|", ms=9, mew=2.0, label="median") if not summary_only
                   else Line2D([], [], color=PALETTE[0], lw=0, marker="o", ms=5, label="median"))
    if typical:
        handles.append(Line2D([], [], linestyle="none", marker="D", ms=4, mfc="white", mec=PALETTE[1], mew=1.2,
                              label="typical subject"))
    if target:
        handles.append(Line2D([], [], color="0.2", lw=1.0, ls=":", label="target ([potency] of the drug file)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False, fontsize=7,
               title=f"n = {n} per regimen" if n else None, title_fontsize=7)


def _nan_low(x):
    return x if _known(x) else -math.inf


def _known(x):
    """True for a finite-or-infinite number, False for None and NaN (pandas reads blanks as NaN)."""
    return x is not None and x == x  # noqa: PLR0124  (NaN is the one value unequal to itself)


def _split_metric(metric):
    """``(compartment, metric name, window suffix or "")`` of ``<compartment>_<metric>[_<window>]``."""
    base, sfx = metric, ""
    for w in ("ss", "span", "win", "inj"):
        if isinstance(metric, str) and metric.endswith("_" + w):
            base, sfx = metric[: -len(w) - 1], w
            break
    for name in sorted(_METRICS, key=len, reverse=True):
        if isinstance(base, str) and base.endswith("_" + name) and len(base) > len(name) + 1:
            return base[: -len(name) - 1], name, sfx
    allowed = ", ".join(f"<compartment>_{m}" for m in _METRICS)
    raise ParameterError(f"metric = {metric!r} is not allowed; expected one of {allowed}, optionally with a window "
                         "suffix _ss, _span, _win or _inj (e.g. 'csf_trough_ss')")


def _metric_label(name, sfx):
    """Axis label and unit of metric ``name`` computed over window ``sfx``."""
    label, unit, factor = _METRICS[name]
    label = _WINDOW_LABELS.get(sfx, {}).get(name, label)
    if name == "pct_above":
        unit = _PCT_UNITS.get(sfx, unit)
    return label, unit, factor


def _metric_limits(ax, values, target, log, unit):
    """Limits that show every row's 5th–95th percentile and the target (when within two decades).

    Returns "" or the arrow ("←", "→") towards a target left off the axis, for the panel title.
    """
    off = ""
    if unit.startswith("%"):
        ax.set_xlim(-3, 103)
        return off
    if not values:
        return off
    lo, hi = min(values), max(values)
    if log:
        positive = [v for v in values if v > 0]
        lo = min(positive) if positive else 1.0
        hi = max(hi, lo)
        if target is not None and target > 0:
            if target >= lo / 100 and target <= hi * 100:
                lo, hi = min(lo, target), max(hi, target)
            else:
                off = "→" if target > hi else "←"  # the target is off the axis: the panel title points to it
        pad = max(1.25, (hi / lo) ** 0.06)
        ax.set_xlim(lo / pad, hi * pad)
        _log_axis(ax, "x")
        return off
    else:
        if target is not None:
            lo, hi = min(lo, target), max(hi, target)
        span = (hi - min(lo, 0.0)) or abs(hi) or 1.0  # the axis starts at 0 for positive values: pad on that scale
        ax.set_xlim(min(0.0, lo - 0.05 * span) if lo >= 0 else lo - 0.05 * span, hi + 0.05 * span)
    return off


def summary_figure(source):
    """The run folder's ``summary.png``: the headline CSF metric per regimen, one panel per drug.

    CSF Cavg,ss (or Cavg over the run's window) against the target; for intrathecal runs (per
    injection window) the time ≥ target per injection instead, since an average of bolus pulses
    says nothing about the target; for escalation runs ``escalation_summary``. Boxes span the
    25th–75th percentile of the per-subject values, whiskers the 5th–95th, the thick tick is the
    median; the title names the metric and the window.
    """
    run = as_run(source)
    if is_escalation(run):
        return escalation_summary(run)
    csf = run.csf_compartment() or "plasma"
    if f"{csf}_time_above_inj" in run.metric_names():
        return comparison(run, f"{csf}_time_above_inj")
    return comparison(run, f"{csf}_cavg")


# ----------------------------------------------------------------------------- escalation runs (issue 11)
_GRADE3_LINEAGES = (("leukocytes", "leukopenia"), ("neutrophils", "neutropenia"), ("platelets", "thrombocytopenia"),
                    ("any", "any lineage"))


def is_escalation(source):
    """Whether a run's scenarios are escalation / fixed-dose-with-myelosuppression scenarios."""
    run = as_run(source)
    return "grade3_any_pct" in run.summary.columns and run.summary["grade3_any_pct"].notna().all()


def escalation_summary(source, *, reference=None):
    """Grade ≥ 3 myelosuppression and final dose level per regimen of an escalation run, one row per regimen.

    Left: the share of subjects (%) whose worst CTCAE grade over the whole span is ≥ 3, per lineage
    (leukopenia, neutropenia, thrombocytopenia, any). Right: the final dose (the dose at the last
    injection) as a stacked bar of the shares of subjects ending at each dose, coloured by dose (mg);
    from a summary frame only, the median with its 5th–95th percentile.

    Parameters
    ----------
    source : a ``RunResult`` of escalation scenarios, its run folder, or its summary frame.
    reference : optional ``{"label": text, "leukocytes": %, "platelets": %, "any": %}``: an observed
        share per lineage, drawn as a dashed line across the rows (e.g. a study's grade ≥ 3 rate).

    Returns
    -------
    matplotlib.figure.Figure with two axes.
    """
    import numpy as np

    run = as_run(source)
    if not is_escalation(run):
        raise ParameterError("escalation_summary needs a run of escalation scenarios (sweep regimens with "
                             "escalation = {...} or pd = true)")
    plt = _plt()
    from matplotlib import cm, colors

    s = run.labelled()
    labels = [f"{d}: {lab}" if s["drug"].nunique() > 1 else lab for d, lab in zip(s["drug"], s["label"])]
    n = len(s)
    fig, (a, b) = plt.subplots(1, 2, figsize=(DOUBLE_COLUMN_IN, 0.42 * n + 1.6), sharey=True,
                               gridspec_kw={"width_ratios": (1.25, 1.0)}, layout="constrained")
    y = np.arange(n)[::-1]
    h = 0.8 / len(_GRADE3_LINEAGES)
    top = 0.0
    for k, (lin, word) in enumerate(_GRADE3_LINEAGES):
        v = s[f"grade3_{lin}_pct"].to_numpy(dtype=float)
        yy = y + (len(_GRADE3_LINEAGES) / 2 - k - 0.5) * h
        a.barh(yy, v, h, color=PALETTE[k], label=word)
        for yi, vi in zip(yy, v):
            a.text(vi, yi, f" {vi:.1f}", va="center", ha="left", fontsize=6)
        top = max(top, float(np.nanmax(v)) if v.size else 0.0)
        if reference is not None and reference.get(lin) is not None:
            a.axvline(reference[lin], color=PALETTE[k], linestyle="--", lw=1.0)
            top = max(top, float(reference[lin]))
    a.set_xlim(0, max(top * 1.2, 5.0))
    a.set_yticks(y, labels, fontsize=_FONT)
    a.set_xlabel("grade ≥ 3 (% of subjects)", fontsize=9)
    a.set_title("CTCAE grade ≥ 3, whole span", fontsize=_FONT, loc="left")
    handles, names = a.get_legend_handles_labels()
    if reference is not None:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="0.3", linestyle="--", lw=1.0))
        names.append(f"dashed: {reference.get('label', 'observed')}")
    fig.legend(handles, names, loc="outside upper center", frameon=False, fontsize=_FONT,
               ncol=len(_GRADE3_LINEAGES) if reference is None else 3)
    _tidy(a)
    finals = {}
    if run._has_subjects():
        for sc, yi in zip(s["scenario"], y):
            v = run.values(sc, "final_dose_mg")
            finals[yi] = v[~np.isnan(v)]
    if finals:
        every = np.concatenate([v for v in finals.values() if v.size]) if any(v.size for v in finals.values()) \
            else np.array([1.0])
        norm = colors.Normalize(vmin=float(every.min()), vmax=max(float(every.max()), float(every.min()) + 1e-9))
        cmap = plt.get_cmap("viridis")
        for yi, v in finals.items():
            left = 0.0
            for dose in np.unique(np.round(v, 9)):
                pct = 100.0 * np.isclose(v, dose, rtol=1e-9).sum() / max(v.size, 1)
                b.barh(yi, pct, 0.7, left=left, color=cmap(norm(dose)), edgecolor="white", lw=0.4)
                if pct >= 12:
                    b.text(left + pct / 2, yi, f"{dose:g}", ha="center", va="center", fontsize=6,
                           color="white" if norm(dose) < 0.6 else "black")
                left += pct
        b.set_xlim(0, 100)
        b.set_xlabel("final dose (% of subjects)", fontsize=9)
        bar = fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=b, pad=0.02, shrink=0.8)
        bar.set_label("final dose (mg)", fontsize=_FONT)
        bar.ax.tick_params(labelsize=7)
    else:
        med = s["final_dose_mg_median"].to_numpy(dtype=float)
        lo, hi = s["final_dose_mg_p05"].to_numpy(dtype=float), s["final_dose_mg_p95"].to_numpy(dtype=float)
        b.errorbar(med, y, xerr=[med - lo, hi - med], fmt="o", color=PALETTE[0], ms=4, capsize=2)
        b.set_xlabel("final dose (mg), median [5th–95th]", fontsize=9)
    b.set_title("dose at the last injection", fontsize=_FONT, loc="left")
    _tidy(b)
    return fig


# ----------------------------------------------------------------------------- intrathecal
def csf_regions(arms, *, units="nM", target_nM=None, time_unit="d", t_max=None, decades=6):
    """CSF concentration by region, one panel per arm, all panels on one concentration scale.

    Parameters
    ----------
    arms : ``{label: (SimulationResult, counts or None)}``, results with CSF outputs (regional or single).
    units : ``"nM"``, ``"ng/mL"`` or ``"mg/L"``.
    target_nM : a horizontal target line (default: each arm's drug potency target, if it has one).
    time_unit : ``"h"`` or ``"d"``.
    t_max : last time shown (h or duration string); intrathecal spikes are readable over days, not months.
    decades : orders of magnitude shown below the highest peak of all arms.

    Returns
    -------
    matplotlib.figure.Figure with one axes per arm and one line per CSF compartment.
    """
    col, unit_label = _check_units(units)
    scale, xlabel = _time_scale(time_unit)
    plt = _plt()
    labels = list(arms)
    if not labels:
        raise ParameterError("arms is empty; expected {label: (SimulationResult, counts)}")
    ncol = 2 if len(labels) > 1 else 1
    nrow = -(-len(labels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(DOUBLE_COLUMN_IN, 2.3 * nrow + 0.5), sharex=True, sharey=True,
                             squeeze=False, layout="constrained")
    t_max = hours(t_max, "t_max") if t_max is not None else None
    peak = 0.0
    extra, peaks = {}, {}
    for ax, label in zip(axes.flat, labels):
        res = arms[label][0]
        names = [c for c in res.compartments if c.startswith("csf")]
        frame = res.to_frame(names)
        if t_max is not None:
            frame = frame[frame.time_h <= t_max]
        peak = max(peak, float(frame[col].max()))
        for i, name in enumerate(names):
            sub = frame[frame.compartment == name]
            y = sub[col].to_numpy().copy()
            y[y <= 0] = float("nan")
            ax.plot(sub.time_h / scale, y, color=PALETTE[i], linestyle=LINESTYLES[i], lw=1.3,
                    label=_LABELS.get(name, name))
        target = target_nM if target_nM is not None else _target(res)
        if target:
            value = float(_from_nM(target, units, res.model.molecular_weight))
            (h,) = ax.plot([0, 1], [value, value], transform=ax.get_yaxis_transform(), color="0.3", lw=0.9,
                           ls=":", gid="target")
            extra.setdefault("target (value at right)", h)
            ax.annotate(f"{_tick_text(value)} {unit_label}", xy=(1.0, value), xycoords=("axes fraction", "data"),
                        xytext=(-3, 2), textcoords="offset points", ha="right", va="bottom", fontsize=7,
                        color="0.25")
        shown = [d[0] / scale for d in res.doses if t_max is None or d[0] <= t_max]
        if shown:
            (h,) = ax.plot(shown, [1.0] * len(shown), "v", color="0.3", ms=3.5, transform=ax.get_xaxis_transform(),
                           clip_on=False)
            extra.setdefault("dose", h)
        ax.set_title(label, fontsize=9)
        _tidy(ax)
        peaks[label] = frame.groupby("compartment")[col].max()
    if peak > 0:
        floor = peak / 10.0 ** decades
        axes.flat[0].set_ylim(floor, peak * 3)
        for ax, label in zip(axes.flat, labels):  # say which regions stay below the axis, not leave them missing
            low = [f"{_LABELS.get(c, c).removeprefix('CSF ')} ({_tick_text(v)})" for c, v in peaks[label].items()
                   if v < floor]
            if low:
                ax.annotate(f"peak below axis, {unit_label}: " + ", ".join(low), xy=(0.99, 0.97),
                            xycoords="axes fraction", ha="right", va="top", fontsize=6.5, color="0.3")
    for ax in axes.flat[:len(labels)]:
        _log_axis(ax, "y")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"CSF concentration ({unit_label})", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel, fontsize=9)
    empty = list(axes.flat)[len(labels):]
    for k, ax in enumerate(empty, start=len(labels)):
        ax.axis("off")  # kept (not hidden) so that the legend can sit in the first empty slot
        above = axes.flat[k - ncol]  # the panel above an empty slot carries the time axis
        above.xaxis.set_tick_params(labelbottom=True)
        above.set_xlabel(xlabel, fontsize=9)
    handles, names = [], []
    for ax in axes.flat[:len(labels)]:  # every region drawn in any panel, once
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    handles += list(extra.values())
    names += list(extra)
    if empty:
        empty[0].legend(handles, names, loc="center", frameon=False, fontsize=_FONT)
    else:
        fig.legend(handles, names, loc="outside lower center", ncol=min(len(names), 4), frameon=False,
                   fontsize=_FONT)
    return fig


def blood_course(arms, *, lineage="leukocytes", time_unit="d"):
    """Blood counts over time per arm (top) and the doses actually given (bottom).

    ``arms`` maps a label to ``(SimulationResult, counts)`` with counts from
    ``csfpk.myelosuppression.blood_counts`` or an escalation result. CTCAE grade ≥ 3 is shaded and
    the grade 1–4 lower limits are dotted. Arms drawn first get wider lines and larger open markers,
    so arms with identical courses (lumbar vs Ommaya dosing of the same drug) stay visible.
    """
    scale, xlabel = _time_scale(time_unit)
    plt = _plt()

    lin = load_myelosuppression().lineages[lineage]
    fig, (ax, axd) = plt.subplots(2, 1, figsize=(DOUBLE_COLUMN_IN, 4.6), sharex=True, height_ratios=(2.2, 1.0),
                                  layout="constrained")
    n = len(arms)
    for i, (label, (res, counts)) in enumerate(arms.items()):
        sub = counts[counts.lineage == lineage]
        ax.plot(sub.time_h / scale, sub.count_1e9_L, color=PALETTE[i % len(PALETTE)],
                linestyle=LINESTYLES[i % len(LINESTYLES)], lw=1.3 + 1.1 * (n - 1 - i) / max(n - 1, 1), label=label)
        t = [d[0] / scale for d in res.doses]
        axd.plot(t, [d[2] for d in res.doses], marker=MARKERS[i % len(MARKERS)], linestyle="none",
                 ms=4 + 4 * (n - 1 - i) / max(n - 1, 1), mfc="none", mew=1.1, color=PALETTE[i % len(PALETTE)],
                 label=label)
    ax.axhspan(0, lin.thresholds[2], color="0.88", zorder=0)
    for g, thr in enumerate(lin.thresholds, start=1):
        ax.axhline(thr, color="0.6", lw=0.6, linestyle=":", zorder=0)
        ax.annotate(f"G{g}", xy=(1.0, thr), xycoords=("axes fraction", "data"), xytext=(3, 0),
                    textcoords="offset points", ha="left", va="center", fontsize=7, color="0.35")
    ax.annotate("CTCAE grade ≥ 3", xy=(0.99, lin.thresholds[2]), xycoords=("axes fraction", "data"),
                xytext=(0, -3), textcoords="offset points", ha="right", va="top", fontsize=_FONT, color="0.3")
    ax.set_ylim(0, max(lin.circ0 * 1.25, ax.get_ylim()[1]))
    ax.set_ylabel(f"{lineage} (10⁹/L)", fontsize=9)
    _tidy(ax)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside upper center", frameon=False, fontsize=_FONT, ncol=2)
    axd.set_ylabel("dose given (mg)", fontsize=9)
    axd.set_xlabel(xlabel, fontsize=9)
    axd.set_ylim(0, None)
    if time_unit == "d":
        t_last = max((float(c.time_h.max()) for _, c in arms.values()), default=0.0)
        _time_ticks(axd, t_last / 24.0)
    _tidy(axd)
    return fig


def _target(result):
    try:
        return load_drug(result.model.name).potency_target_nM
    except ParameterError:  # a model built in Python has no drug file
        return None


# ----------------------------------------------------------------------------- exposure against dose
_DOSE_METRICS = {"cavg": ("Cavg", "-", "o"), "cmax": ("Cmax", "--", "s")}
_OBS_SITES = {"plasma": "plasma", "csf_lumbar": "csf"}
_OBS_METRICS = {"cavg_ss": "cavg", "cmax": "cmax"}


def dose_exposure(drug, doses, regimen_builder=None, *, window=None, units="nM", observations=True, log=True,
                  dt=0.25, width=DOUBLE_COLUMN_IN):
    """Plasma and CSF exposure (Cavg, Cmax) of one typical subject against dose, published points overlaid.

    Each dose D is simulated with ``regimen_builder(D)`` and its Cavg (AUC over the window / its
    length) and Cmax over the window are drawn against D, plasma on the left, CSF on the right. A
    dotted line extends the lowest dose's Cavg in proportion to dose, so that a less than
    proportional increase (dose-dependent bioavailability) is visible at a glance. Published
    steady-state levels of the drug (``params/observations/tki.csv``, metrics ``cavg_ss`` and
    ``cmax`` at ``plasma`` or ``csf_lumbar``) are overlaid: filled markers when the study's dosing
    interval is the builder's, open markers when the study used another schedule.

    Parameters
    ----------
    drug : a drug name or ``Drug``.
    doses : doses to simulate, mg (at least two, > 0).
    regimen_builder : callable dose (mg) → ``Regimen``; default: the drug's label interval for 28 days.
    window : (t0, t1) in h; default: the last dosing interval of each regimen (steady state when
        the regimen is long enough), stated in the title.
    units : ``"nM"``, ``"ng/mL"`` or ``"mg/L"``.
    observations : overlay the published points.
    log : logarithmic axes (both).
    dt : output step of the simulations, h.

    Returns
    -------
    matplotlib.figure.Figure with axes "plasma" and "CSF"; lines carry gid ``"cavg"``, ``"cmax"``,
    ``"proportional"``; published markers gid ``"published"``.

    Examples
    --------
    >>> import csfpk
    >>> fig = csfpk.plot.dose_exposure("erlotinib", [150, 600, 1500],
    ...                                lambda d: csfpk.Regimen.every(amt=d, ii="7d", n=4))
    >>> fig.axes[1].get_ylabel()
    'CSF concentration (nM)'
    """
    _check_units(units)
    if isinstance(drug, str):
        drug = load_drug(drug)
    if not isinstance(drug, Drug):
        raise ParameterError(f"drug = {drug!r} is not a drug; pass a name or csfpk.load_drug(name)")
    doses = [float(d) for d in doses]
    if len(doses) < 2 or not all(math.isfinite(d) and d > 0 for d in doses):
        raise ParameterError(f"doses = {doses!r} is not allowed; expected at least two doses > 0 mg")
    doses = sorted(doses)
    if regimen_builder is None:
        if drug.label_dose is None:
            raise ParameterError(f"{drug.name}: has no [label_dose]; pass regimen_builder")
        ii = drug.label_dose.ii
        regimen_builder = lambda d: Regimen.every(amt=d, ii=ii, n=max(1, int(round(672.0 / ii))))  # noqa: E731
    rows = {m: {"plasma": [], "csf": []} for m in _DOSE_METRICS}
    for d in doses:
        reg = regimen_builder(d)
        if not isinstance(reg, Regimen):
            raise ParameterError(f"regimen_builder({d:g}) returned {reg!r}; expected a csfpk.Regimen")
        last = reg.records[-1]
        t_last = last.time + last.addl * last.ii
        tau = last.ii if last.ii > 0 else 24.0
        win = window or (t_last, t_last + tau)
        res = simulate(drug, reg, t_end=win[1], dt=dt)
        for comp in ("plasma", "csf"):
            c = _from_nM(res.to_frame([comp]).conc_nM.to_numpy(), units, drug.molecular_weight)
            rows["cavg"][comp].append(float(metrics.cavg(c, res.times, win)))
            rows["cmax"][comp].append(float(metrics.cmax(c, res.times, win)))
    first = regimen_builder(doses[0])
    interval = _regimen_text(first)
    published = _published_points(drug, units, first.records[-1].ii) if observations else []

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(width, 3.0), layout="constrained")
    for ax, comp in zip(axes, ("plasma", "csf")):
        for i, (m, (label, style, marker)) in enumerate(_DOSE_METRICS.items()):
            ax.plot(doses, rows[m][comp], color=PALETTE[i], linestyle=style, marker=marker, ms=3.5, lw=1.4,
                    label=f"model {label}", gid=m)
        base = rows["cavg"][comp][0]
        ax.plot(doses, [base * d / doses[0] for d in doses], color="0.45", lw=1.0, linestyle=":",
                label=f"Cavg ∝ dose (from {doses[0]:g} mg)", gid="proportional")
        for k, (site, metric, dose, value, same, study) in enumerate(p for p in published if p[0] == comp):
            color = PALETTE[0 if metric == "cavg" else 1]
            ax.plot([dose], [value], linestyle="none", marker="D" if metric == "cavg" else "^", ms=6,
                    markerfacecolor=color if same else "white", markeredgecolor=color, markeredgewidth=1.2,
                    label=f"published {_DOSE_METRICS[metric][0]}" + ("" if same else " (other schedule)"),
                    gid="published", zorder=5)
            ax.annotate(_short_citation(study), xy=(dose, value), xytext=(5, -2 if k % 2 else 4),
                        textcoords="offset points", fontsize=_FONT - 2, color="0.3", ha="left",
                        bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
            _log_axis(ax, "x")
            _log_axis(ax, "y")
        ax.set_xlabel("dose (mg)", fontsize=9)
        ax.set_ylabel(f"{_SHORT[comp]} concentration ({_UNITS[units][1]})", fontsize=9)
        ax.set_title(_LABELS[comp], fontsize=9)
        _tidy(ax)
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="outside lower center", ncol=3, frameon=False, fontsize=_FONT - 1)
    when = "last dosing interval" if window is None else f"window {window[0]:g}–{window[1]:g} h"
    fig.suptitle(f"{drug.name}: {interval}; Cavg and Cmax over the {when} (typical subject)", fontsize=9)
    return fig


def _short_citation(citation):
    """A marker label: 'Togashi 2012' (author et al.), 'abstract 3594', 'label'."""
    import re

    if citation.lower().startswith("label"):
        return "label"
    author = re.match(r"\s*([A-Z][A-Za-z'-]+) [A-Z]+ et al", citation)
    year = re.search(r"(?:19|20)\d\d(?=[;\s(])", citation)
    if author:
        return f"{author.group(1)} {year.group(0) if year else ''}".strip()
    abstract = re.search(r"[Aa]bstract (\d+)", citation)
    return f"abstract {abstract.group(1)}" if abstract else citation.split(".")[0][:20]


def _regimen_text(reg):
    """'every 24 h, 28 doses' style description of a regimen's records."""
    parts = []
    for r in reg.records:
        n = r.addl + 1
        every = f"every {r.ii / 24:g} d" if r.ii >= 48 and r.ii % 24 == 0 else f"every {r.ii:g} h"
        parts.append(f"{every}, {n} doses" if n > 1 else "single dose")
    return "; then ".join(parts)


def _published_points(drug, units, ii):
    """(site, metric, dose mg, value in ``units``, dosed every ``ii`` h?, citation) of the drug's published rows."""
    import csv

    path = params_dir() / "observations" / "tki.csv"
    if not path.is_file():
        return []
    mw = drug.molecular_weight
    from_mg_L = 1.0 / mg_per_L_per_unit(units, mw)
    out = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if (row["drug"] != drug.name or row["site"] not in _OBS_SITES or row["metric"] not in _OBS_METRICS
                    or mg_per_L_per_unit(row["unit"], mw) is None):
                continue
            last = row["regimen"].split(";")[-1]
            row_ii = float(last.split("@")[1].split("*")[0])
            out.append((_OBS_SITES[row["site"]], _OBS_METRICS[row["metric"]], float(row["dose_mg"]),
                        float(row["value"]) * mg_per_L_per_unit(row["unit"], mw) * from_mg_L, abs(row_ii - ii) < 1e-9,
                        row["citation"]))
    return out


# ----------------------------------------------------------------------------- fits (csfpk.fit)
def _fit_units(fit, units):
    _check_units(units)
    mw = fit.drug.molecular_weight
    return (lambda mg_L: mg_L / mw * 1e6) if units == "nM" else (lambda mg_L: mg_L * (1e3 if units == "ng/mL" else 1.0))


def fit_observed_vs_predicted(fit, *, units="nM", ax=None):
    """Observed against predicted concentrations of a ``csfpk.fit`` result, log–log, with the line
    of identity and the 2-fold band (dashed); one marker per compartment, BLQ rows drawn at their
    LLOQ as open triangles pointing down."""
    conv = _fit_units(fit, units)
    plt = _plt()
    if ax is None:
        fig, ax = plt.subplots(figsize=(SINGLE_COLUMN_IN + 0.6, SINGLE_COLUMN_IN), layout="constrained")
    else:
        fig = ax.figure
    r = fit.residuals
    for i, (name, sub) in enumerate(r.groupby("compartment", sort=True)):
        q = sub[~sub.blq]
        ax.plot(conv(q.predicted_mg_L), conv(q.observed_mg_L), MARKERS[i % len(MARKERS)], color=PALETTE[i % len(PALETTE)],
                ms=4, mfc="none", label=_LABELS.get(name, name))
        b = sub[sub.blq]
        if len(b):
            ax.plot(conv(b.predicted_mg_L), conv(b.lloq_mg_L), "v", color=PALETTE[i % len(PALETTE)], ms=4, mfc="none",
                    label=f"{_LABELS.get(name, name)} BLQ (at LLOQ)")
    values = list(conv(r.predicted_mg_L.to_numpy())) + list(conv(r.observed_mg_L.to_numpy()))
    fold_axes(ax, values, f"({units})")
    ax.legend(loc="upper left", frameon=False, fontsize=_FONT - 1)
    return fig


def fold_axes(ax, values, label):
    """Log–log predicted-vs-observed axes: the line of identity (gid ``"identity"``) and the 2-fold band
    (dashed, gid ``"twofold"``) over the positive finite ``values`` (both axes, widened 3-fold each way),
    axis labels ``predicted <label>`` / ``observed <label>``."""
    finite = [v for v in values if v == v and 0 < v < math.inf]
    lo, hi = min(finite) / 3, max(finite) * 3
    ax.plot([lo, hi], [lo, hi], color="0.2", lw=0.9, gid="identity")
    for f in (0.5, 2.0):
        ax.plot([lo, hi], [lo * f, hi * f], color="0.5", lw=0.8, ls="--", gid="twofold")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel(f"predicted {label}", fontsize=9)
    ax.set_ylabel(f"observed {label}", fontsize=9)
    _tidy(ax)


def fit_residuals(fit, *, ax=None):
    """Weighted residuals (ln obs − ln pred)/σ of a ``csfpk.fit`` result against time, per
    compartment; BLQ rows (ln LLOQ − ln pred) as open triangles; zero and ±2 lines."""
    plt = _plt()
    if ax is None:
        fig, ax = plt.subplots(figsize=(DOUBLE_COLUMN_IN * 0.7, 2.8), layout="constrained")
    else:
        fig = ax.figure
    r = fit.residuals
    for i, (name, sub) in enumerate(r.groupby("compartment", sort=True)):
        q, b = sub[~sub.blq], sub[sub.blq]
        ax.plot(q.time_h, q.weighted, MARKERS[i % len(MARKERS)], color=PALETTE[i % len(PALETTE)], ms=4, mfc="none",
                label=_LABELS.get(name, name))
        if len(b):
            ax.plot(b.time_h, b.weighted, "v", color=PALETTE[i % len(PALETTE)], ms=4, mfc="none", label=f"{name} BLQ")
    ax.axhline(0, color="0.2", lw=0.9)
    for y in (-2, 2):
        ax.axhline(y, color="0.5", lw=0.8, ls="--")
    ax.set_xlabel("time after first dose (h)", fontsize=9)
    ax.set_ylabel("weighted residual (log scale)", fontsize=9)
    _tidy(ax)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=_FONT - 1)
    return fig


def fit_curves(fit, *, ids=None, units="nM", t_end=None, n_cols=3):
    """Fitted curves with the data of a ``csfpk.fit`` result: one panel per id, one line per
    observed compartment (``fit.predict`` on a fine grid), observations as markers, BLQ rows as
    triangles at their LLOQ."""
    import numpy as np

    conv = _fit_units(fit, units)
    plt = _plt()
    r = fit.residuals
    ids = list(dict.fromkeys(r.id)) if ids is None else list(ids)
    n_cols = min(n_cols, len(ids))
    n_rows = math.ceil(len(ids) / n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(DOUBLE_COLUMN_IN, 2.2 * n_rows), layout="constrained",
                             squeeze=False)
    regimens = fit._problem.regimens
    for k, i in enumerate(ids):
        ax = axes[k // n_cols][k % n_cols]
        sub = r[r.id == i]
        end = t_end or float(sub.time_h.max()) * 1.1
        grid = np.linspace(end / 400, end, 400)
        for j, (name, s) in enumerate(sub.groupby("compartment", sort=True)):
            color = PALETTE[j % len(PALETTE)]
            y = conv(fit.predict(regimens[i], grid, compartment=name, id=i))
            ax.plot(grid, np.where(y > 0, y, np.nan), color=color, ls=LINESTYLES[j % len(LINESTYLES)], lw=1.2,
                    label=_LABELS.get(name, name))
            q, b = s[~s.blq], s[s.blq]
            ax.plot(q.time_h, conv(q.observed_mg_L), MARKERS[j % len(MARKERS)], color=color, ms=4, mfc="none")
            if len(b):
                ax.plot(b.time_h, conv(b.lloq_mg_L), "v", color=color, ms=4, mfc="none")
        ax.set_yscale("log")
        ax.set_title(str(i), fontsize=8)
        _tidy(ax)
        if k % n_cols == 0:
            ax.set_ylabel(f"conc ({units})", fontsize=8)
        if k // n_cols == n_rows - 1:
            ax.set_xlabel("time (h)", fontsize=8)
        if k == 0:
            ax.legend(frameon=False, fontsize=_FONT - 2)
    for k in range(len(ids), n_rows * n_cols):
        axes[k // n_cols][k % n_cols].set_visible(False)
    return fig
