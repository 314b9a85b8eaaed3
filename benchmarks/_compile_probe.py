"""Time the first csfpk call in this (fresh) process; run by the harness in a subprocess.

``python -m benchmarks._compile_probe TARGET`` with NUMBA_CACHE_DIR set by the caller (empty for a
cold start, already filled for a warm one). TARGET is ``simulate`` (``import csfpk`` and one
``csfpk.simulate`` of erlotinib 150 mg q24h × 28 d), ``exact`` (``exact.run_curves`` on two tki
subjects) or ``adaptive`` (``adaptive.run_batch`` on two nonlinear subjects). Prints one JSON line.
"""

import json
import sys
import time


def main(target):
    t0 = time.perf_counter()
    import csfpk

    t_import = time.perf_counter() - t0
    if target == "simulate":
        t = time.perf_counter()
        csfpk.simulate("erlotinib", csfpk.Regimen.every(amt=150, ii=24, n=28), t_end=672, dt=1)
        first = time.perf_counter() - t
        t = time.perf_counter()
        csfpk.simulate("erlotinib", csfpk.Regimen.every(amt=150, ii=24, n=28), t_end=672, dt=1)
        second = time.perf_counter() - t
    else:
        from benchmarks import tools
        from benchmarks.workloads import make_workloads

        w = make_workloads()["tki" if target == "exact" else "nonlinear"]
        Ks, nls = w.population(2)
        w.timeline  # noqa: B018 (build the timeline outside the timed call)
        run = tools.csfpk_exact if target == "exact" else tools.csfpk_dopri5
        tol = {"rtol": 1e-8, "atol": 1e-12}
        t = time.perf_counter()
        run(w, Ks, nls, tol)
        first = time.perf_counter() - t
        t = time.perf_counter()
        run(w, Ks, nls, tol)
        second = time.perf_counter() - t
    total = time.perf_counter() - t0
    print(json.dumps({"target": target, "import_s": t_import, "first_call_s": first, "second_call_s": second,
                      "import_and_first_call_s": total - second}))


if __name__ == "__main__":
    main(sys.argv[1])
