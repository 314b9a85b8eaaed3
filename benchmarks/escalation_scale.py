"""Escalation over virtual patients: wall time of the numba escalation kernel (not a timed test).

The 26-week seed pemetrexed protocol (Fan 2023, seed 000: IT lumbar, twice weekly in month 1, weekly
in month 2, then every 4 weeks; 10 mg, +5 mg per injection, cap 50 mg, one level back after grade ≥ 3
myelosuppression) for N virtual patients with the drug file's PK IIV and the PD file's marrow IIV;
exact linear PK, Friberg leukocytes, neutrophils and platelets, simulated to 4 weeks after the last
injection. The marrow is driven by the plasma curve on the output grid (step ``--dt``) with
``--substeps`` RK4 steps per grid interval; ``--check M`` reruns the first M subjects on the fine grid
of ``run_escalation`` (0.25 h, 4 substeps) and reports the largest relative nadir difference and the
share of identical final doses, so the coarse setting's accuracy is stated beside its speed.

    python benchmarks/escalation_scale.py --n 10000
    python benchmarks/escalation_scale.py --n 10000 --cold     # compile time from an empty numba cache

The warm-up (3 subjects) is timed apart: it is the compile time with ``--cold`` (a fresh, empty
NUMBA_CACHE_DIR), else the cache load. The load average is printed: on a shared machine the wall
time scales with it, so the CPU time of all threads is printed too (CPU time / threads is the wall
time the run would take with the cores to itself).
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="virtual patients")
    ap.add_argument("--dt", type=float, default=0.5, help="output grid step (h) driving the marrow")
    ap.add_argument("--substeps", type=int, default=1, help="RK4 steps per grid interval")
    ap.add_argument("--chunk", type=int, default=2048)
    ap.add_argument("--check", type=int, default=200, help="subjects rerun on the 0.25 h / 4-substep grid")
    ap.add_argument("--cold", action="store_true", help="compile from an empty numba cache")
    args = ap.parse_args(argv)
    if args.cold:
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="csfpk-numba-")

    import numba
    import numpy as np

    import csfpk
    from csfpk.escalation import Escalation
    from csfpk.escalation_population import run_escalation_population

    esc = Escalation.seed_pemetrexed(weeks=26)
    kw = dict(dt=args.dt, substeps=args.substeps, chunk_size=args.chunk)
    t0 = time.perf_counter()
    run_escalation_population("pemetrexed", esc, csfpk.Population(n=3, seed=1), **kw)
    warm = time.perf_counter() - t0
    print(f"numba threads {numba.get_num_threads()}, load average {os.getloadavg()[0]:.1f}; warm-up "
          f"({'compile, empty cache' if args.cold else 'compile or cache load'}) {warm:.1f} s")
    pop = csfpk.Population(n=args.n, seed=1)
    t0, c0 = time.perf_counter(), time.process_time()
    res = run_escalation_population("pemetrexed", esc, pop, **kw)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    s = res.subjects
    print(f"n = {args.n:,}, {len(esc.times)} injections over {esc.times[-1] / 24:.0f} d + 28 d, dt {args.dt} h, "
          f"{args.substeps} substeps: {wall:.1f} s wall ({args.n / wall:,.0f} subjects/s), {cpu:.1f} s CPU "
          f"(all threads; {cpu / numba.get_num_threads():.1f} s wall on {numba.get_num_threads()} idle cores), "
          f"{int((s.status != 0).sum())} failed, load average {os.getloadavg()[0]:.1f}")
    summ = res.summary()
    print("grade >= 3 (%): " + ", ".join(f"{k.split('_')[1]} {v:.1f}" for k, v in summ.items()
                                       if k.startswith("grade3_")))
    if args.check:
        m = min(args.check, args.n)
        fine = run_escalation_population("pemetrexed", esc, csfpk.Population(n=m, seed=1), dt=0.25, substeps=4)
        a, b = s.iloc[:m], fine.subjects
        cols = [c for c in b.columns if c.startswith("nadir_") and not c.startswith("nadir_time")]
        err = max(float(np.max(np.abs(a[c].to_numpy() - b[c].to_numpy()) / b[c].to_numpy())) for c in cols)
        same = float(np.mean(a.final_dose_mg.to_numpy() == b.final_dose_mg.to_numpy()))
        print(f"accuracy vs dt 0.25 h / 4 substeps (first {m} subjects): max nadir rel diff {err:.1e}, "
              f"identical final dose {100 * same:.1f} %")


if __name__ == "__main__":
    main()
