"""The ``csfpk`` command line (also ``python -m csfpk``); every argument parser lives here.

User errors (``CsfpkError``: bad input, unusable folders) print one line and exit with status 2
(``--debug`` shows the traceback); any other exception is a bug and shows its traceback.
"""

import argparse
import os
import shlex
import signal
import sys
import tempfile
import tomllib

from . import __version__, plot
from .batch import DEFAULT_CHUNK
from .dataset import read_dataset, simulate_dataset, write_dataset
from .drug import PLASMA_SPECS, bsa_du_bois, list_drugs, load_drug
from .errors import CsfpkError
from .escalation import Escalation
from .figures import FORMATS, write_figures
from .io import atomic_path
from .limits import check_size
from .myelosuppression import load_myelosuppression
from .paths import params_dir
from .physiology import load_physiology
from .protocols import list_regimens, load_regimen
from .regimen import Regimen, columns, read_table
from .runfolder import FinishedRunError
from .runresult import load_run
from .simulation import METHODS, as_model, simulate
from .sweep import load_sweep
from .units import body_size, hours

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
  csfpk compare it_escalation --out runs/it_escalation --n 1000

Sweeps whose regimens have escalation = {...} or pd = true (it_escalation) simulate the marrow per
subject: the table shows the % of subjects with CTCAE grade >= 3 per lineage over the whole span and
the final dose levels; each subject's doses and decisions are in scenarios/*/doses-*.parquet.

Rerunning the same command on an interrupted folder resumes it; on a finished folder it prints
the summary again. --overwrite builds the new run beside the old one and swaps it in when it is
complete; entries that are not part of the run (figures/, your own files) are kept.
"""
EPILOG_PLOT = """examples:
  csfpk compare high_dose_tki --out runs/tki --n 200 --curves
  csfpk plot runs/tki                       # PNG files in runs/tki/figures/
  csfpk plot runs/tki --format svg --out figures/tki

Draws the regimen comparisons over the run's window (CSF Cmin,ss, Cavg,ss, % of tau >= target, plasma
Cavg,ss; intrathecal runs: CSF peak, time >= target and CxT per injection, plasma AUC; one
panel per drug) and, for runs made with --curves, the population bands of CSF concentration.
The folder is verified first; molecular weights and targets come from its manifest.
"""
EPILOG_SIMULATE = """examples:
  csfpk simulate erlotinib --amt 150 --ii 24h --n 28 --out runs/erlotinib
  csfpk simulate erlotinib --amt 150 --ii qd --ss --t-end 1d
  csfpk simulate pemetrexed --amt "500 mg/m2" --weight 70 --height 175 --crcl 60 --route iv --duration 10min
  csfpk simulate methotrexate --regimen it_mtx_seed --layout regional --dt 15min
  csfpk simulate pemetrexed --data trial.csv --csv trial_pred.csv
  csfpk simulate erlotinib --amt 1500 --ii 7d --n 4 --t-end 4w --csv pulse.csv --plot pulse.svg
  csfpk simulate lorlatinib --label-dose --n 14 --plot lorlatinib.png --linear
"""


class _Parser(argparse.ArgumentParser):
    """argparse with the error contract: one line on stderr naming the flag, exit status 2."""

    def error(self, message):
        print(f"{self.prog}: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(2)


def _parser():
    p = _Parser(prog="csfpk", description="Plasma–CSF pharmacokinetics simulator.",
                epilog=EPILOG_MAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors (also accepted after COMMAND)")
    p.add_argument("--version", action="version", version=f"csfpk {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("drugs", help="list drug files with their CSF penetration ratio and source",
                       epilog="example:\n  csfpk drugs", formatter_class=argparse.RawDescriptionHelpFormatter)
    d.set_defaults(func=_cmd_drugs)

    s = sub.add_parser("simulate", help="simulate one regimen for a typical subject, or every subject of a dataset",
                       epilog=EPILOG_SIMULATE, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("drug", help="drug name (see 'csfpk drugs') or path to a drug TOML file")
    g = s.add_argument_group("dose (one of: --amt ..., --label-dose, --regimen, --data)")
    g.add_argument("--amt", help="dose: mg, or '1.5 g', '500 ug', '40 mg/m2' (needs --bsa or --weight and "
                                 "--height), '10 mg/kg' (needs --weight)")
    g.add_argument("--ii", help="dosing interval: hours or '24h', '1 day', 'q12h', 'qd', 'bid', 'tid', 'qw'")
    g.add_argument("--n", help="number of doses (default 1)")
    g.add_argument("--route", choices=("oral", "iv", "it_lumbar", "it_ventricular"), help="default oral")
    g.add_argument("--duration", help="infusion duration ('30min', '2h'); default: bolus")
    g.add_argument("--ss", action="store_true", help="start at steady state (NONMEM SS=1; needs --ii)")
    g.add_argument("--label-dose", action="store_true", help="use the drug file's labelled amt, ii and route")
    g.add_argument("--regimen", help="a regimen file: params/regimens name or path (.toml), or a NONMEM-style "
                                     "CSV of one subject's records")
    g.add_argument("--data", help="a NONMEM-style dataset CSV (ID, TIME, EVID, AMT, CMT, RATE, II, ADDL, SS, DV, "
                                  "MDV, covariates): simulate every subject, predictions beside DV")
    s.add_argument("--t-end", help="end of simulation (default: last dose + 7d)")
    s.add_argument("--dt", default="1h", help="output step (default 1h)")
    s.add_argument("--layout", default="single", choices=("single", "regional"), help="CSF layout")
    s.add_argument("--method", default="auto", choices=METHODS)
    b = s.add_argument_group("subject (covariates of the drug file's covariate models; BSA for mg/m2 doses)")
    b.add_argument("--weight", help="body weight, kg")
    b.add_argument("--height", help="height, cm (with --weight gives the BSA by Du Bois)")
    b.add_argument("--bsa", help="body-surface area, m2")
    b.add_argument("--crcl", help="creatinine clearance, mL/min")
    s.add_argument("--csv", help="write the tidy concentration table (with --data: the dataset with predictions)")
    s.add_argument("--plot", help="save the concentration curves (.png, .svg or .pdf)")
    s.add_argument("--out", help="folder for concentrations.csv and curves.png")
    s.add_argument("--linear", action="store_true", help="linear concentration axis in the plot")
    s.set_defaults(func=_cmd_simulate)

    _add_compare(sub)
    _add_plot(sub)

    _add_bench(sub)

    v = sub.add_parser("validate", help="load and check every parameter file, or the files given",
                       epilog="examples:\n  csfpk validate\n  csfpk validate trial.csv my_drug.toml",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("files", nargs="*", metavar="FILE",
                   help="check these files instead: a drug, regimen, sweep or physiology TOML (by its schema), a "
                        "dataset CSV (with an ID column) or a one-subject regimen CSV")
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
    for line in res.notes:  # what the cells are: percentiles, window, target and its source, ranges
        print(line)
    with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 48):
        print(res.table.to_string(index=False))
    doses = any(r.get("escalation") for r in res.scenarios)  # escalation runs: each subject's dose timeline
    print(f"{done} {args.out}/: manifest.json, scenarios/*/metrics-*.parquet, "
          + ("scenarios/*/doses-*.parquet, " if doses else "") + "summary.csv, summary.png"
          + (", curves_summary.csv" if args.curves else ""))
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _cmd_plot(args):
    """Verify the run folder, write its figures and list them."""
    paths = write_figures(args.run_dir, args.out, fmt=args.fmt)
    folder = os.path.dirname(paths[0]) if paths else args.out
    names = ", ".join(os.path.basename(p) for p in paths)
    print(f"wrote {len(paths)} figure{'' if len(paths) == 1 else 's'} to {folder}/: {names}")
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
    csv_path, plot_path = _output_paths(args)
    drug = load_drug(args.drug)
    subject = _subject(args)
    if args.data:
        return _simulate_data(args, drug, subject, csv_path, plot_path)
    regimen, describe = _regimen(args, drug, subject)
    dt = _positive_hours(args.dt, "--dt")
    last = regimen.end
    t_end = last + 168.0 if args.t_end is None else _positive_hours(args.t_end, "--t-end")
    if t_end < last:
        fewer = "" if args.regimen else " or fewer doses (--n)"
        raise CsfpkError(f"--t-end {args.t_end} ({t_end:g} h) ends before the last dose at {last:g} h; expected "
                         f"--t-end >= {last:g} h{fewer}")
    size_names = ("--t-end" if args.t_end else "the end (last dose + 7 d)", "--dt")
    check_size(t_end, dt, where=size_names)  # from the numbers alone, before numba is imported
    tau = _summary_interval(regimen)
    window = (last, min(t_end, last + tau)) if tau else (last, t_end)
    if window[1] - window[0] > 0 and dt > (window[1] - window[0]) / 10:
        raise CsfpkError(f"--dt {args.dt} ({dt:g} h) is too coarse for the summary window "
                         f"{window[0]:g}–{window[1]:g} h "
                         f"(fewer than 10 output times); expected --dt <= {(window[1] - window[0]) / 10:g} h")

    model_drug = drug.for_subject(**subject)
    model = as_model(model_drug, csf_layout=args.layout)
    check_size(t_end, dt, model.n, len(model.outputs), where=size_names)
    if not model.linear and any(r.ss for r in regimen.records):
        what = "--ss needs" if args.ss else f"steady-state (SS) records in --regimen {args.regimen} need"
        raise CsfpkError(f"{what} a linear model; {drug.name} has saturable or time-dependent clearance: simulate the "
                         "dosing history instead")
    routes = {r.cmt for r in regimen.records if r.is_dose}
    notes = []
    if args.layout == "single" and routes & {"it_lumbar", "it_ventricular"}:
        notes.append("note: with --layout single, it_lumbar and it_ventricular both dose the one well-mixed CSF "
                     "compartment, so the route makes no difference; use --layout regional to tell them apart")
    res = simulate(model, regimen, t_end=t_end, dt=dt, method=args.method)
    frame = res.to_frame()
    if csv_path:
        with atomic_path(csv_path) as tmp:
            frame.to_csv(tmp, index=False)
        print(f"wrote {csv_path} ({len(frame)} rows)")
    if plot_path:
        targets = {f"target {drug.potency_target_nM:g} nM": drug.potency_target_nM} if drug.potency_target_nM else None
        fig = plot.curves(res, log=not args.linear, targets=targets, title=f"{drug.name}: {describe}")
        plot.save(fig, plot_path)
        print(f"wrote {plot_path}")
    win = frame[(frame.time_h >= window[0] - 1e-9) & (frame.time_h <= window[1] + 1e-9)]
    summary = win.groupby("compartment").conc_nM.agg(["min", "mean", "max"]).round(3)
    kind = "the last dosing interval" if tau else "the time after the last dose"
    print(f"{drug.name}: {describe}; {len(res.doses)} dose(s) given, method {res.method}")
    if subject:
        shown = {"weight_kg": ("weight", "kg"), "bsa_m2": ("BSA", "m2"), "crcl_mL_min": ("CrCl", "mL/min")}
        parts = [f"{shown[k][0]} {v:.4g} {shown[k][1]}" for k, v in subject.items()]
        if args.height and not args.bsa and "bsa_m2" in subject:
            parts[list(subject).index("bsa_m2")] += " (Du Bois, from --weight and --height)"

        changed = [f"{k} {getattr(model_drug.plasma, k):.4g} {PLASMA_SPECS[k].unit} (file: "
                   f"{getattr(drug.plasma, k):.4g})"
                   for k in drug.covariates if getattr(model_drug.plasma, k) != getattr(drug.plasma, k)]
        used = (f"; covariate models give {', '.join(changed)}" if changed else
                "; no covariate model of the drug file uses them")
        print(f"subject: {', '.join(parts)}{used}")
    for note in notes:
        print(note)
    print(f"concentrations over {kind} ({window[0]:g}–{window[1]:g} h), nM (min = trough, mean = Cavg, max = peak):")
    print(summary.to_string())
    return 0


def _positive_hours(text, flag):
    h = hours(_number_or_text(text), flag)
    if not h > 0:
        raise CsfpkError(f"{flag} = {text!r} is not allowed; expected a duration > 0 h")
    return h


def _summary_interval(regimen):
    """The dosing interval of the last dose (h) for the summary window, 0 for a single dose."""
    doses = [r for r in regimen.records if r.is_dose]
    if not doses:
        return 0.0
    last = max(doses, key=lambda r: r.last_time)
    if last.ii > 0:
        return last.ii
    times = sorted({r.time for r in doses})
    return times[-1] - times[-2] if len(times) > 1 else 0.0


def _output_paths(args):
    """The CSV and plot paths, checked (extension, folder writable, not a folder) before any work."""
    csv_path, plot_path = args.csv, args.plot
    if plot_path and os.path.splitext(plot_path)[1].lower() not in (".png", ".svg", ".pdf"):
        raise CsfpkError(f"--plot {plot_path!r}: extension not allowed; expected .png, .svg or .pdf")
    if args.out:
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise CsfpkError(f"--out {args.out!r} is an existing file; expected a folder (new or existing)")
        _check_writable(args.out, "--out", args.out)
        csv_path = csv_path or os.path.join(args.out, "dataset.csv" if args.data else "concentrations.csv")
        plot_path = plot_path or (None if args.data else os.path.join(args.out, "curves.png"))
    for path, flag in ((csv_path, "--csv"), (plot_path, "--plot")):
        if path:
            if os.path.isdir(path):
                raise CsfpkError(f"{flag} {path!r} is a folder; expected a file name")
            _check_writable(os.path.dirname(os.path.abspath(path)), flag, path)
    return csv_path, plot_path


def _check_writable(folder, flag, shown):
    """Refuse a folder that cannot be created or written, naming the flag (before the simulation runs)."""
    probe = os.path.abspath(folder)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise CsfpkError(f"{flag} {shown!r}: {probe!r} is a file, not a folder")

    try:  # a real write: permission bits alone do not tell (root, read-only mounts, /proc)
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".csfpk-write-check-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise CsfpkError(f"{flag} {shown!r}: folder {probe!r} is not writable ({exc.strerror or exc}); choose "
                         "another place") from None


def _subject(args):
    """Body size and renal function from --weight/--height/--bsa/--crcl, range-checked, by flag name."""
    out = {}
    for flag, kind in (("weight", "weight_kg"), ("height", "height_cm"), ("bsa", "bsa_m2"), ("crcl", "crcl_mL_min")):
        v = getattr(args, flag)
        if v is not None:
            out[kind] = body_size(_number_or_text(v), f"--{flag}", kind)
    if "bsa_m2" not in out and "weight_kg" in out and "height_cm" in out:
        out["bsa_m2"] = bsa_du_bois(out["weight_kg"], out["height_cm"])
    out.pop("height_cm", None)
    return out


def _regimen(args, drug, sub):
    """The regimen from --amt/--ii/..., --label-dose or --regimen, refusing conflicting flags."""
    given = [f for f, v in (("--amt", args.amt), ("--ii", args.ii), ("--n", args.n), ("--route", args.route),
                            ("--duration", args.duration), ("--ss", args.ss)) if v not in (None, False)]
    sources = [f for f, v in (("--label-dose", args.label_dose), ("--regimen", args.regimen)) if v]
    if len(sources) > 1 or (sources and given and not (sources == ["--label-dose"] and given == ["--n"])):
        raise CsfpkError(f"{' and '.join(sources + given)} conflict: give the dose by --amt (with --ii, --n, --route, "
                         "--duration, --ss), by --label-dose (with --n), by --regimen or by --data")
    if args.regimen:
        return _regimen_file(args.regimen, drug)
    n = _count(args.n)
    if args.label_dose:
        if drug.label_dose is None:
            raise CsfpkError(f"{drug.name} has no [label_dose]; give --amt and --ii")
        ld = drug.label_dose
        reg = Regimen.every(amt=ld.amt, ii=ld.ii, n=n, route=ld.route)
        return reg, reg.describe() + " (label dose)"
    if args.amt is None:
        raise CsfpkError("give the dose: --amt (and --ii when --n > 1), --label-dose, --regimen FILE or --data FILE")
    if (n > 1 or args.ss) and args.ii is None:
        raise CsfpkError(f"--ii is missing; {'--ss' if args.ss else f'--n {n}'} needs a dosing interval")
    names = {"bsa_m2": "--bsa (or --weight and --height)", "weight_kg": "--weight", "ii": "--ii",
             "duration": "--duration"}
    amt = _number_or_text(args.amt)
    try:
        reg = Regimen.every(amt=amt, ii=_number_or_text(args.ii) or 0, n=n, route=args.route or "oral",
                            duration=_number_or_text(args.duration), ss=int(args.ss), bsa_m2=sub.get("bsa_m2"),
                            weight_kg=sub.get("weight_kg"), names=names)
    except CsfpkError as exc:
        msg = str(exc)
        if msg.startswith("record at time ") and ": " in msg:  # the one record built from the flags
            msg = msg.split(": ", 1)[1]
        for py, flag in (("amt = ", "--amt = "), ("ii = ", "--ii = "), ("route = ", "--route = "),
                         ("ss = ", "--ss: ss = ")):
            if msg.startswith(py):
                msg = flag + msg[len(py):]
                break
        raise type(exc)(msg) from None
    return reg, reg.describe()


def _count(text):
    if text is None:
        return 1
    try:
        n = int(str(text).strip())
    except ValueError:
        n = None
    if n is None or n < 1:
        raise CsfpkError(f"--n = {text!r} is not allowed; expected an integer number of doses >= 1")
    return n


def _regimen_file(path, drug):
    if str(path).lower().endswith(".csv"):
        reg = Regimen.from_csv(path)
        return reg, f"{os.path.basename(path)} ({reg.n_doses} doses)"

    proto = load_regimen(path)
    if proto.drug != drug.name:
        raise CsfpkError(f"--regimen {path!r} is written for {proto.drug!r}, not {drug.name!r}; give that drug or "
                         "another regimen")
    if isinstance(proto.regimen, Escalation):
        raise CsfpkError(f"--regimen {path!r} is a toxicity-guided escalation, which needs the marrow model; run it "
                         "with csfpk.escalation.run_escalation in Python")
    return proto.regimen, f"{proto.name}, {proto.regimen.describe()}"


def _simulate_data(args, drug, subject, csv_path, plot_path):
    given = [f for f, v in (("--amt", args.amt), ("--ii", args.ii), ("--n", args.n), ("--route", args.route),
                            ("--duration", args.duration), ("--ss", args.ss), ("--label-dose", args.label_dose),
                            ("--regimen", args.regimen), ("--t-end", args.t_end))
             if v not in (None, False)]
    given += [f"--{k.split('_')[0]}" for k in subject]
    if given:
        raise CsfpkError(f"--data and {', '.join(given)} conflict: a dataset brings its own doses, times and "
                         "covariates (drop those flags)")
    if plot_path:
        raise CsfpkError("--plot is not available with --data (predictions are at the dataset's records, not on a "
                         "grid); write --csv and plot observed against predicted from it")
    data = read_dataset(args.data)
    table = simulate_dataset(drug, data, csf_layout=args.layout, method=args.method)
    if csv_path:
        write_dataset(table, csv_path)
        print(f"wrote {csv_path} ({len(data.table)} records with predictions per compartment)")
    print(f"{drug.name}: {data.n_subjects} subject(s), {len(data.table)} records from {args.data}; covariates and the "
          "parameters they give:")
    print(data.summary(drug).to_string(index=False))
    return 0


def _validate_file(path):
    """Load one user file with the reader its content calls for; return what it is."""
    if str(path).lower().endswith(".csv"):
        if "id" in columns(read_table(path), str(path)):
            data = read_dataset(path)
            return f"dataset, {data.n_subjects} subject(s), {len(data.table)} records"
        return f"regimen CSV, {Regimen.from_csv(path).n_doses} dose(s)"

    try:
        with open(path, "rb") as fh:
            schema = tomllib.load(fh).get("schema")
    except OSError as exc:
        raise CsfpkError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise CsfpkError(f"{path}: not UTF-8 text; TOML files must be saved as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise CsfpkError(f"{path}: not valid TOML ({exc})") from None
    if schema == "csfpk.drug/1":
        return f"drug {load_drug(path).name}"
    if schema == "csfpk.regimen/1":
        return f"regimen for {load_regimen(path).drug}"
    if schema == "csfpk.sweep/1":
        return f"sweep, {len(load_sweep(path).scenarios)} scenario(s)"
    if schema == "csfpk.physiology/1":
        return f"physiology {load_physiology(path).name}"
    raise CsfpkError(f"{path}: schema = {schema!r}; expected 'csfpk.drug/1', 'csfpk.regimen/1', 'csfpk.sweep/1' or "
                     "'csfpk.physiology/1', or a .csv dataset")


def _cmd_validate(args):
    if args.files:
        done = [f"{f}: {_validate_file(f)}" for f in args.files]
        print("\n".join(f"ok: {d}" for d in done))
        return 0
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
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere (before or after COMMAND), but not after a literal "--"
    head = argv[: argv.index("--")] if "--" in argv else argv
    debug = "--debug" in head
    if debug:
        argv = [a for i, a in enumerate(argv) if not (a == "--debug" and i < len(head))]
    args = parser.parse_args(argv)
    args.argv = argv
    args.debug = args.debug or debug
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (CsfpkError, OSError) as exc:
        if args.debug:
            raise
        msg = f"{exc.filename}: {exc.strerror or exc}" if isinstance(exc, OSError) and exc.filename else exc
        print(f"csfpk {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
