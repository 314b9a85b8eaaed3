"""Population throughput: subjects/s and peak memory of the batch runner (not a timed test).

Erlotinib 150 mg daily for 28 days, hourly output, metrics only, written to a run folder
(Parquet per chunk), blocks of subjects on numba.get_num_threads() threads. Erlotinib's file has no IIV,
so the benchmark adds CV 30 % on CL and V1 and 50 % on ka and draws the CSF penetration ratio
in its Table 1 range — every subject has its own rate matrix, as in a real population.

    python benchmarks/batch_scale.py --n 100000 1000000 --metrics exact grid

``--metrics`` picks how the metrics are computed (``csfpk.metrics``): ``exact`` (grid-free, the
default of populations: the timeline holds the 28 doses and the window's end only) or ``grid``
(read off the hourly grid, 672 samples per subject); several modes run one after the other in the
same process, so their ratio is measured on the same machine state.

Compile time is measured apart (a 100-subject warm-up run). Peak memory is the process's maximum
resident set size (``resource.getrusage``), which includes the Python interpreter, numpy, numba
and pyarrow (about 200–300 MB before any subject is simulated).
"""

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000], help="population sizes")
    ap.add_argument("--chunk", type=int, default=10_000)
    ap.add_argument("--metrics", nargs="+", choices=("exact", "grid"), default=["exact", "grid"],
                    help="metric modes to time (default both)")
    ap.add_argument("--keep", help="keep the run folders under this folder")
    args = ap.parse_args(argv)

    import numba

    import csfpk
    from csfpk.batch import Scenario, run

    drug = csfpk.load_drug("erlotinib")
    regimen = csfpk.Regimen.every(amt=150, ii=24, n=28)

    def scenario(n, mode):
        pop = csfpk.Population(n=n, seed=1, iiv={"CL": 0.3, "V1": 0.3, "ka": 0.5}, penetration="range")
        return Scenario(drug, regimen, pop, t_end=672.0, dt=1.0, regimen_name="150 mg qd", metrics=mode)

    base = args.keep or tempfile.mkdtemp(prefix="csfpk-bench-")
    t0 = time.perf_counter()
    for mode in args.metrics:
        run([scenario(100, mode)], os.path.join(base, f"warmup-{mode}"), chunk=100, progress=False)
    compile_s = time.perf_counter() - t0
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"numba threads: {numba.get_num_threads()}, chunk {args.chunk}; warm-up (compile or cache load) "
          f"{compile_s:.1f} s, RSS after warm-up {rss0:.0f} MB")
    walls = {}
    for n in args.n:
        for mode in args.metrics:
            out = os.path.join(base, f"n{n}-{mode}")
            t0 = time.perf_counter()
            res = run([scenario(n, mode)], out, chunk=args.chunk, progress=None)
            wall = walls[n, mode] = time.perf_counter() - t0
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            s = res.summary.iloc[0]
            print(f"n = {n:>9,} {mode:>5}: {wall:7.1f} s wall, {n / wall:>9,.0f} subjects/s, peak RSS {rss:,.0f} MB "
                  f"(process max so far); medians: CSF Cavg,ss {s['csf_cavg_ss_median']:.4f} nM, plasma Cmax,ss "
                  f"{s['plasma_cmax_ss_median']:.2f} nM, CSF Cmax,ss {s['csf_cmax_ss_median']:.4f} nM")
        if len(args.metrics) == 2:
            print(f"n = {n:>9,}: exact/grid wall-time ratio {walls[n, 'exact'] / walls[n, 'grid']:.2f}")
    if not args.keep:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
