"""The ``csfpk`` command line (also ``python -m csfpk``); every argument parser lives here.

User errors (``CsfpkError``: bad input, unusable folders) print one line and exit with status 2
(``--debug`` shows the traceback); any other exception is a bug and shows its traceback.
"""

import argparse
import os
import shlex
import signal
import sys

from . import plot
from .batch import DEFAULT_CHUNK
from .drug import list_drugs, load_drug
from .errors import CsfpkError
from .figures import FORMATS, write_figures
from .io import atomic_path
from .myelosuppression import load_myelosuppression
from .paths import params_dir
from .physiology import load_physiology
from .protocols import list_regimens, load_regimen
from .regimen import Regimen
from .runfolder import FinishedRunError
from .runresult import load_run
from .simulation import simulate
from .sweep import load_sweep

EPILOG_MAIN = """examples:
  csfpk compare high_dose_tki --out runs/high_dose_tki
  csfpk plot runs/high_dose_tki
  csfpk bench --quick
  csfpk drugs
  csfpk simulate erlotinib --amt 150 --ii 24h --n 28 --out runs/erlotinib
  csfpk simulate osimertinib --amt 160 --ii 1d --n 28 --csv osi.csv --plot osi.png
  csfpk validate
"""
EPILOG_COMPARE = """examples:
  csfpk compare high_dose_tki --out runs/high_dose_tki
  csfpk compare high_dose_tki --out runs/tki_big --n 100000 --seed 7
  csfpk compare params/sweeps/high_dose_tki.toml --out runs/tki --curves
  csfpk compare high_dose_tki --out runs/tki --scheduler tcp://10.0.0.5:8786

Rerunning the same command on an interrupted folder resumes it; on a finished folder it prints
the summary again. --overwrite builds the new run beside the old one and swaps it in when it is
complete; entries that are not part of the run (figures/, your own files) are kept.
"""
EPILOG_PLOT = """examples:
  csfpk compare high_dose_tki --out runs/tki --n 200 --curves
  csfpk plot runs/tki                       # PNG files in runs/tki/figures/
  csfpk plot runs/tki --format svg --out figures/tki

Draws the regimen comparisons (CSF trough, CSF Cavg, % time >= target, plasma AUC; one
panel per drug) and, for runs made with --curves, the population bands of CSF concentration.
The folder is verified first; molecular weights and targets come from its manifest.
"""
EPILOG_SIMULATE = """examples:
  csfpk simulate erlotinib --amt 150 --ii 24h --n 28 --out runs/erlotinib
  csfpk simulate erlotinib --amt 1500 --ii 7d --n 4 --t-end 4w --csv pulse.csv --plot pulse.svg
  csfpk simulate lorlatinib --label-dose --n 14 --plot lorlatinib.png --linear
"""


def _parser():
    p = argparse.ArgumentParser(prog="csfpk", description="Plasma–CSF pharmacokinetics simulator.",
                                epilog=EPILOG_MAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("drugs", help="list drug files with their CSF penetration ratio and source",
                       epilog="example:\n  csfpk drugs", formatter_class=argparse.RawDescriptionHelpFormatter)
    d.set_defaults(func=_cmd_drugs)

    s = sub.add_parser("simulate", help="simulate one regimen for a typical subject", epilog=EPILOG_SIMULATE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("drug", help="drug name (see 'csfpk drugs') or path to a drug TOML file")
    s.add_argument("--amt", help="dose: mg, or '12 mg', '40 mg/m2' (needs --bsa), '10 mg/kg' (needs --weight)")
    s.add_argument("--ii", help="dosing interval: hours or '24h', '3.5d', '1w'")
    s.add_argument("--n", type=int, default=1, help="number of doses (default 1)")
    s.add_argument("--route", default="oral", help="oral, iv, it_lumbar or it_ventricular (default oral)")
    s.add_argument("--label-dose", action="store_true", help="use the drug file's labelled amt, ii and route")
    s.add_argument("--t-end", help="end of simulation (default: last dose + 7d)")
    s.add_argument("--dt", default="1h", help="output step (default 1h)")
    s.add_argument("--layout", default="single", choices=("single", "regional"), help="CSF layout")
    s.add_argument("--method", default="auto", choices=("auto", "exact", "adaptive", "stiff"))
    s.add_argument("--bsa", type=float, help="body-surface area, m2 (for mg/m2 doses)")
    s.add_argument("--weight", type=float, help="body weight, kg (for mg/kg doses)")
    s.add_argument("--csv", help="write the tidy concentration table to this CSV file")
    s.add_argument("--plot", help="save the concentration curves (.png, .svg or .pdf)")
    s.add_argument("--out", help="folder for concentrations.csv and curves.png")
    s.add_argument("--linear", action="store_true", help="linear concentration axis in the plot")
    s.set_defaults(func=_cmd_simulate)

    _add_compare(sub)
    _add_plot(sub)

    _add_bench(sub)

    v = sub.add_parser("validate", help="load and check every parameter file",
                       epilog="example:\n  csfpk validate", formatter_class=argparse.RawDescriptionHelpFormatter)
    v.set_defaults(func=_cmd_validate)
    return p


def _add_bench(sub):
    """``csfpk bench``: the repository's benchmarks/ folder (beside csfpk/, not installed with it)."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    try:
        if (root / "benchmarks" / "cli.py").is_file() and str(root) not in sys.path:
            sys.path.append(str(root))
        from benchmarks.cli import add_bench_parser
    except ImportError as exc:
        reason = str(exc)
        b = sub.add_parser("bench", help="kernel benchmarks (needs a source checkout of csfpk)")
        b.add_argument("rest", nargs=argparse.REMAINDER)

        def missing(args):
            raise CsfpkError(f"csfpk bench needs the benchmarks/ folder of the csfpk repository beside the package "
                             f"(looked in {root}); install csfpk from a source checkout with 'pip install -e .' "
                             f"or run 'python -m benchmarks' there ({reason})")

        b.set_defaults(func=missing)
        return
    add_bench_parser(sub)


def _add_compare(sub):
    c = sub.add_parser("compare", help="run a sweep of regimens over virtual populations (run folder)",
                       epilog=EPILOG_COMPARE, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("sweep", help="sweep name in params/sweeps/ (e.g. high_dose_tki) or path to a sweep TOML")
    c.add_argument("--out", required=True, help="run folder (manifest.json, Parquet metrics, summary.csv, summary.png)")
    c.add_argument("--n", type=int, help="subjects per population (replaces the sweep's n)")
    c.add_argument("--seed", type=int, help="random seed (replaces the sweep's seed)")
    c.add_argument("--scheduler", help="Dask scheduler address, tcp://host:port (needs pip install 'csfpk[distributed]')")
    c.add_argument("--chunk", type=int, help=f"subjects per chunk (default {DEFAULT_CHUNK})")
    c.add_argument("--curves", action="store_true", help="also keep downsampled curves and their percentile bands")
    c.add_argument("--overwrite", action="store_true", help="replace the run in --out (built beside it, then swapped in)")
    c.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress line on stderr (default: when stderr is a terminal)")
    c.set_defaults(func=_cmd_compare)


def _add_plot(sub):
    p = sub.add_parser("plot", help="draw a run folder's figures (comparison panels, population bands)",
                       epilog=EPILOG_PLOT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder (csfpk compare --out)")
    p.add_argument("--format", dest="fmt", default="png", choices=FORMATS, help="file format (default png)")
    p.add_argument("--out", help="folder for the figures (default RUN_DIR/figures)")
    p.set_defaults(func=_cmd_plot)


def _cmd_compare(args):
    """Run the sweep into --out (or resume it), print the summary table; a finished run prints its summary."""
    import pandas as pd

    sweep = load_sweep(args.sweep, n=args.n, seed=args.seed)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops like Ctrl-C: finished chunks are kept
    try:
        res = sweep.run(args.out, chunk=args.chunk, curves=args.curves, scheduler=args.scheduler,
                        overwrite=args.overwrite, progress=args.progress)
        done = "wrote"
    except FinishedRunError as exc:
        res = load_run(exc.folder)
        done = "already finished (pass --overwrite to run it again):"
    except KeyboardInterrupt:
        if args.overwrite:  # the new run was being built beside the old one, which is untouched
            print(f"csfpk compare: interrupted; the run in {args.out} is unchanged; run the same command again to "
                  "replace it", file=sys.stderr)
        else:
            print(f"csfpk compare: interrupted; the finished chunks in {args.out} are kept; resume with: csfpk "
                  f"{shlex.join(args.argv)}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 40):
        print(res.table.to_string(index=False))
    print(f"{done} {args.out}/: manifest.json, scenarios/*/metrics-*.parquet, summary.csv, summary.png"
          + (", curves_summary.csv" if args.curves else ""))
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _cmd_plot(args):
    """Verify the run folder, write its figures and list them."""
    paths = write_figures(args.run_dir, args.out, fmt=args.fmt)
    folder = os.path.dirname(paths[0]) if paths else args.out
    print(f"wrote {len(paths)} figures to {folder}/: " + ", ".join(os.path.basename(p) for p in paths))
    return 0


def _cmd_drugs(args):
    rows = []
    for name in list_drugs():
        d = load_drug(name)
        if d.csf is None:
            ratio, src = "-", "no CSF data"
        elif d.csf.mechanistic:
            ratio, src = f"CL_in {d.csf.CL_in:g} / CL_out {d.csf.CL_out:g} L/h", d.quantities["csf.CL_in"].source
        else:
            q = d.quantities["csf.penetration_ratio"]
            rng = f" [{q.range[0]:g}–{q.range[1]:g}]" if q.range else ""
            ratio, src = f"{q.value:g}{rng} ({d.csf.basis})", q.source
        rows.append((name, f"{d.molecular_weight:g}", ratio, src))
    w = [max(len(r[i]) for r in rows + [("drug", "MW g/mol", "CSF/plasma ratio", "")]) for i in range(3)]
    print(f"{'drug':<{w[0]}}  {'MW g/mol':<{w[1]}}  {'CSF/plasma ratio':<{w[2]}}  source")
    for r in rows:
        print(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]}")
    return 0


def _cmd_simulate(args):
    for path in (args.plot,):
        if path and os.path.splitext(path)[1].lower() not in (".png", ".svg", ".pdf"):
            raise CsfpkError(f"--plot {path!r}: extension not allowed; expected .png, .svg or .pdf")
    drug = load_drug(args.drug)
    if args.label_dose:
        if drug.label_dose is None:
            raise CsfpkError(f"{drug.name} has no [label_dose]; give --amt and --ii")
        amt, ii, route = drug.label_dose.amt, drug.label_dose.ii, drug.label_dose.route
    else:
        if args.amt is None or (args.n > 1 and args.ii is None):
            raise CsfpkError("give --amt (and --ii when --n > 1), or --label-dose")
        amt, ii, route = args.amt, args.ii or 0, args.route
    regimen = Regimen.every(amt=_number_or_text(amt), ii=_number_or_text(ii), n=args.n, route=route,
                            bsa_m2=args.bsa, weight_kg=args.weight)
    res = simulate(drug, regimen, t_end=_number_or_text(args.t_end), dt=_number_or_text(args.dt),
                   method=args.method, csf_layout=args.layout)
    csv_path, plot_path = args.csv, args.plot
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        csv_path = csv_path or os.path.join(args.out, "concentrations.csv")
        plot_path = plot_path or os.path.join(args.out, "curves.png")
    frame = res.to_frame()
    if csv_path:
        with atomic_path(csv_path) as tmp:
            frame.to_csv(tmp, index=False)
        print(f"wrote {csv_path} ({len(frame)} rows)")
    if plot_path:
        targets = {f"target {drug.potency_target_nM:g} nM": drug.potency_target_nM} if drug.potency_target_nM else None
        plot.save(plot.curves(res, log=not args.linear, targets=targets), plot_path)
        print(f"wrote {plot_path}")
    t_last = res.doses[-1][0] if res.doses else 0.0
    tau = regimen.records[0].ii or 24.0
    window = frame[(frame.time_h >= t_last) & (frame.time_h <= t_last + tau)]
    summary = window.groupby("compartment").conc_nM.agg(["min", "mean", "max"]).round(3)
    print(f"{drug.name}: {len(res.doses)} doses, method {res.method}; "
          f"concentrations over the last dosing interval ({t_last:g}–{t_last + tau:g} h), nM:")
    print(summary.to_string())
    return 0


def _cmd_validate(args):
    drugs = list_drugs()
    for name in drugs:
        load_drug(name)
    phys = sorted(p.stem for p in (params_dir() / "physiology").glob("*.toml"))
    for name in phys:
        load_physiology(name)
    regimens = list_regimens()
    for name in regimens:
        load_drug(load_regimen(name).drug)
    sweeps = sorted(p.stem for p in (params_dir() / "sweeps").glob("*.toml"))
    for name in sweeps:
        load_sweep(name)
    load_myelosuppression()
    print(f"ok: {len(drugs)} drug, {len(phys)} physiology, {len(regimens)} regimen, {len(sweeps)} sweep and 1 "
          "myelosuppression file(s) are valid")
    return 0


def _number_or_text(v):
    if v is None or not isinstance(v, str):
        return v
    try:
        return float(v)
    except ValueError:
        return v


def main(argv=None):
    """Run the ``csfpk`` command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except CsfpkError as exc:
        if args.debug:
            raise
        print(f"csfpk {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
