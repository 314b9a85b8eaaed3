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
