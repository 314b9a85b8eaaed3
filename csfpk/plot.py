"""Figures from results (matplotlib, imported only when a plot is made).

Every function takes results and returns a ``matplotlib.figure.Figure``; ``save(fig, path)``
writes PNG, SVG or PDF by the file's extension.
"""

_UNITS = {"nM": ("conc_nM", "nmol/L"), "ng/mL": ("conc_ng_mL", "ng/mL"), "mg/L": ("conc_mg_L", "mg/L")}
# Okabe–Ito palette: distinguishable with colour-blindness and in greyscale (with line styles)
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
_LABELS = {"plasma": "plasma (total)", "plasma_unbound": "plasma (unbound)", "csf": "CSF",
           "csf_ventricles": "CSF ventricles", "csf_cisterna": "CSF cisterna magna",
           "csf_cranial": "CSF cranial SAS", "csf_lumbar": "CSF lumbar SAS"}


def _plt():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg") and not _has_display():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _has_display():
    import os

    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


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

    Returns
    -------
    matplotlib.figure.Figure
    """
    if units not in _UNITS:
        raise ValueError(f"units = {units!r} is not allowed; expected one of {sorted(_UNITS)}")
    if time_unit not in ("h", "d"):
        raise ValueError(f"time_unit = {time_unit!r} is not allowed; expected 'h' or 'd'")
    plt = _plt()
    col, unit_label = _UNITS[units]
    names = list(compartments or [c for c in result.compartments if c != "plasma_unbound"])
    frame = result.to_frame(names)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.5, 3.8), layout="constrained")
    else:
        fig = ax.figure
    scale = 24.0 if time_unit == "d" else 1.0
    for i, name in enumerate(names):
        sub = frame[frame.compartment == name]
        y = sub[col].to_numpy()
        if log:
            y = y.copy()
            y[y <= 0] = float("nan")
        ax.plot(sub.time_h / scale, y, color=PALETTE[i % len(PALETTE)], linestyle=LINESTYLES[i % len(LINESTYLES)],
                lw=1.6, label=_LABELS.get(name, name))
    for j, (label, value) in enumerate((targets or {}).items()):
        ax.axhline(value, color="0.35", lw=1.0, linestyle=":", zorder=0)
        ax.annotate(label, xy=(1.0, value), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                    textcoords="offset points", ha="right", va="bottom", fontsize=8, color="0.25")
    if doses and result.doses:
        ax.plot([d[0] / scale for d in result.doses], [1.0] * len(result.doses), "v", color="0.3", ms=3.5,
                transform=ax.get_xaxis_transform(), clip_on=False, label="dose")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("time (days)" if time_unit == "d" else "time (h)")
    ax.set_ylabel(f"concentration ({unit_label})")
    ax.set_title(title or f"{result.model.name}", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8)
    return fig


def save(fig, path):
    """Save ``fig`` to ``path`` (PNG at 200 dpi, SVG or PDF by extension) and close it."""
    import os

    ext = os.path.splitext(str(path))[1].lower()
    if ext not in (".png", ".svg", ".pdf"):
        raise ValueError(f"plot file {str(path)!r}: extension {ext!r} is not allowed; expected .png, .svg or .pdf")
    from .io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=200, format=ext[1:])
    _plt().close(fig)


def csf_regions(arms, *, units="nM", threshold_nM=None, time_unit="d", t_max=None, decades=6):
    """CSF concentration by region, one panel per arm.

    Parameters
    ----------
    arms : ``{label: (SimulationResult, counts or None)}``, results with CSF outputs (regional or single).
    threshold_nM : a horizontal target line (default: the drug's potency target, if the result has one).
    t_max : last time shown (h or duration string); intrathecal spikes are readable over days, not months.
    decades : orders of magnitude shown below the highest peak.

    Returns
    -------
    matplotlib.figure.Figure with one axes per arm and one line per CSF compartment.
    """
    plt = _plt()
    labels = list(arms)
    ncol = 2 if len(labels) > 1 else 1
    nrow = -(-len(labels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(7.0, 2.6 * nrow + 0.6), sharex=True, squeeze=False,
                             layout="constrained")
    col, unit_label = _UNITS[units]
    scale = 24.0 if time_unit == "d" else 1.0
    from .units import hours

    t_max = hours(t_max, "t_max") if t_max is not None else None
    for ax, label in zip(axes.flat, labels):
        res = arms[label][0]
        names = [c for c in res.compartments if c.startswith("csf")]
        frame = res.to_frame(names)
        if t_max is not None:
            frame = frame[frame.time_h <= t_max]
        peak = frame[col].max()
        for i, name in enumerate(names):
            sub = frame[frame.compartment == name]
            y = sub[col].to_numpy().copy()
            y[y <= 0] = float("nan")
            ax.plot(sub.time_h / scale, y, color=PALETTE[i], linestyle=LINESTYLES[i], lw=1.3,
                    label=_LABELS.get(name, name))
        target = threshold_nM if threshold_nM is not None else _target(res)
        if target:
            ax.axhline(target if units == "nM" else target * res.model.molecular_weight / 1e6 * (1e3 if units == "ng/mL" else 1),
                       color="0.3", lw=0.9, linestyle=":")
        shown = [d[0] / scale for d in res.doses if t_max is None or d[0] <= t_max]
        ax.plot(shown, [1.0] * len(shown), "v", color="0.3", ms=3, transform=ax.get_xaxis_transform(),
                clip_on=False)
        ax.set_yscale("log")
        if peak > 0:
            ax.set_ylim(peak / 10.0 ** decades, peak * 3)
        ax.set_title(label, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.set_ylabel(f"CSF ({unit_label})")
    xlabel = "time (days)" if time_unit == "d" else "time (h)"
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    for k, ax in enumerate(list(axes.flat)[len(labels):], start=len(labels)):
        ax.set_visible(False)
        above = axes.flat[k - ncol]  # the panel above an empty slot carries the time axis
        above.xaxis.set_tick_params(labelbottom=True)
        above.set_xlabel(xlabel)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=len(names), frameon=False, fontsize=8)
    return fig


def blood_course(arms, *, lineage="leukocytes", time_unit="d"):
    """Blood counts over time per arm (top) and the doses actually given (bottom).

    ``arms`` maps a label to ``(SimulationResult, counts)`` with counts from
    ``csfpk.myelosuppression.blood_counts`` or an escalation result. CTCAE grade ≥ 3 is shaded.
    """
    plt = _plt()
    from .myelosuppression import load_myelosuppression

    lin = load_myelosuppression().lineages[lineage]
    fig, (ax, axd) = plt.subplots(2, 1, figsize=(7.0, 5.0), sharex=True, height_ratios=(2.2, 1.0),
                                  layout="constrained")
    scale = 24.0 if time_unit == "d" else 1.0
    for i, (label, (res, counts)) in enumerate(arms.items()):
        sub = counts[counts.lineage == lineage]
        ax.plot(sub.time_h / scale, sub.count_1e9_L, color=PALETTE[i % len(PALETTE)],
                linestyle=LINESTYLES[i % len(LINESTYLES)], lw=1.4, label=label)
        t = [d[0] / scale for d in res.doses]
        axd.plot(t, [d[2] for d in res.doses], marker="os^Dv<>p"[i % 8], linestyle="none", ms=4,
                 color=PALETTE[i % len(PALETTE)], label=label)
    ax.axhspan(0, lin.thresholds[2], color="0.85", zorder=0)
    ax.annotate("CTCAE grade ≥ 3", xy=(0.99, lin.thresholds[2]), xycoords=("axes fraction", "data"),
                xytext=(0, -3), textcoords="offset points", ha="right", va="top", fontsize=8, color="0.3")
    for g, thr in enumerate(lin.thresholds, start=1):
        ax.axhline(thr, color="0.6", lw=0.6, linestyle=":")
    ax.set_ylim(0, max(lin.circ0 * 1.25, ax.get_ylim()[1]))
    ax.set_ylabel(f"{lineage} (10⁹/L)")
    ax.grid(True, alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside upper center", frameon=False, fontsize=8, ncol=2)
    axd.set_ylabel("dose given (mg)")
    axd.set_xlabel("time (days)" if time_unit == "d" else "time (h)")
    axd.grid(True, alpha=0.3)
    return fig


def _target(result):
    from .drug import load_drug

    try:
        return load_drug(result.model.name).potency_target_nM
    except Exception:  # a model built in Python has no drug file
        return None
