"""Command line of the benchmark: ``python -m benchmarks`` and ``csfpk bench``.

This module imports only ``argparse`` at import time, so ``csfpk --help`` stays fast; the harness
(numpy, scipy, numba, csfpk kernels) loads when the command runs.
"""

import argparse
import sys

WORKLOADS = ("tki", "it", "nonlinear", "it_population")
TOOLS = ("csfpk-exact", "csfpk-dopri5", "csfpk-rodas", "csfpk-auto", "scipy-LSODA", "scipy-BDF", "scipy-RK45",
         "scipy-odeint", "numbalsoda", "roadrunner")
EPILOG = """examples:
  python -m benchmarks --quick
  python -m benchmarks --json benchmarks/results/bench.json --md benchmarks/results/bench.md
  csfpk bench --quick --workloads tki --tools csfpk-exact scipy-odeint

Workloads, tolerances and the error measure are defined in benchmarks/README.md.
"""


def _add_arguments(p):
    p.add_argument("--quick", action="store_true",
                   help="reduced run (smaller N, fewer repeats, slow baselines on N = 1 only): under a minute")
    p.add_argument("--json", metavar="PATH", help="write the records (a JSON list) to PATH")
    p.add_argument("--md", metavar="PATH", help="write the Markdown report to PATH (it is always printed)")
    p.add_argument("--workloads", nargs="+", choices=WORKLOADS, metavar="NAME",
                   help=f"run only these workloads ({', '.join(WORKLOADS)}; default all)")
    p.add_argument("--tools", nargs="+", choices=TOOLS, metavar="TOOL",
                   help=f"run only these tools (default all: {', '.join(TOOLS)})")
    p.add_argument("--max-n", type=int, metavar="N", help="cap the population sizes at N")
    p.add_argument("--repeats", type=int, metavar="R", help="timed repeats per size (default 5; quick 3)")
    p.add_argument("--no-compile", action="store_true", help="skip the fresh-process compile measurements")


def add_bench_parser(subparsers):
    """Register ``bench`` on an argparse ``subparsers`` object (used by ``csfpk.cli``)."""
    p = subparsers.add_parser("bench", help="benchmark the kernels against scipy and other ODE tools",
                              description="Time csfpk's kernels and the baselines on the reference workloads.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(p)
    p.set_defaults(func=run_from_args)
    return p


def run_from_args(args):
    from .harness import check_records, markdown, run, write_json

    if args.max_n is not None and args.max_n < 1:
        print(f"bench: error: --max-n = {args.max_n} is not allowed; expected an integer >= 1", file=sys.stderr)
        return 2
    if args.repeats is not None and args.repeats < 1:
        print(f"bench: error: --repeats = {args.repeats} is not allowed; expected an integer >= 1", file=sys.stderr)
        return 2
    records, notes = run(quick=args.quick, workloads=args.workloads, tools_=args.tools, max_n=args.max_n,
                         repeats=args.repeats, compile_probe=not args.no_compile)
    check_records(records)
    report = markdown(records, notes)
    if args.json:
        write_json(records, args.json)
        print(f"wrote {args.json} ({len(records)} records)", file=sys.stderr)
    if args.md:
        from pathlib import Path

        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(report + "\n")
        print(f"wrote {args.md}", file=sys.stderr)
    print(report)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description="csfpk kernel benchmarks (issue 6).",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(p)
    return run_from_args(p.parse_args(argv))
