"""Population workloads: the batch runner end to end (sampling, rate matrices, kernel, tables), metrics only.

``it_population`` (issue 11): N virtual patients of intrathecal methotrexate in the regional CSF
layout on the 26-week seed schedule (``params/regimens/it_mtx_seed.toml``: 12 mg into the lumbar SAS
twice weekly in month one, weekly in month two, then every 4 weeks), the drug file's PK IIV and the
adult physiology's CSF-side IIV (``params/physiology/adult.toml`` [iiv]), per-subject metrics of
every output over the whole span, no curves, in memory (``csfpk.batch.run``), one chunk of 10 000.

Two tools, timed in the same run:

* ``csfpk-batch-grid``: metrics read off the hourly grid (``metrics = "grid"``, 4 369 samples);
* ``csfpk-batch-exact``: the grid-free exact metrics (``metrics = "exact"``, the default of
  populations), from the eigen-decomposition of each subject's rate matrix
  (``csfpk._kernels.spectral``; cost per dose event, not per ‖K‖₁: the tidal cisterna ⇄ cranial SAS
  mixing, 2.34 L/h over 7.5 mL, makes ‖K‖₁ ≈ 650 /h, which made the certificate walk of
  ``csfpk._kernels.exposure`` take ~12 ms per subject). ``fallbacks``: subjects whose matrix the
  eigen-decomposition refused (they take the certificate walk), counted on the first chunk.

``max_rel_err``: largest relative difference of the lumbar CSF AUC over the span (nM·h) of the
first ``ERROR_SUBJECTS`` subjects from the exact AUC computed independently with
``scipy.linalg.expm`` (an integrating state appended to K, doses as jumps).
"""

import time

import numpy as np

SPAN_H = 26 * 168.0
ERROR_SUBJECTS = 3
SIZES = {"full": {"csfpk-batch-grid": 100_000, "csfpk-batch-exact": 100_000},
         "quick": {"csfpk-batch-grid": 10_000, "csfpk-batch-exact": 10_000}}
TARGET_N = {"full": 100_000, "quick": 10_000}  # the N every record states a time for
NOTE = ("×csfpk is against csfpk-batch-grid here. max rel err = lumbar CSF AUC over the span against scipy expm "
        "on the first 3 subjects.")
DESCRIPTION = ("intrathecal methotrexate 12 mg lumbar, regional CSF, seed schedule 26 weeks, PK + CSF IIV, "
               "metrics only (batch runner)")


def scenario(n, metrics):
    import csfpk
    from csfpk.scenario import Scenario

    drug = csfpk.load_drug("methotrexate")
    regimen = csfpk.load_regimen("it_mtx_seed").regimen
    return Scenario(drug, regimen, csfpk.Population(n=n, seed=1), t_end=SPAN_H, dt=1.0, regimen_name="seed",
                    csf_layout="regional", window="span", metrics=metrics)


def exact_lumbar_auc(scn, subjects):
    """Lumbar CSF AUC over the span (nM·h) of ``subjects``, by scipy's expm (independent of csfpk's kernels)."""
    from scipy.linalg import expm

    from csfpk.population import build_rate_matrices

    p = scn.population.sample(scn.drug, 0, subjects, scn.physiology)
    Ks, volume, scale, model = build_rate_matrices(scn.drug, p, scn.physiology, "regional")
    n = model.n
    lumbar = model.outputs["csf_lumbar"][0]
    o = list(model.outputs).index("csf_lumbar")
    aug = np.zeros((subjects, n + 1, n + 1))
    aug[:, :n, :n] = Ks
    aug[:, n, lumbar] = 1.0  # d(∫x_lumbar)/dt = x_lumbar
    x = np.zeros((subjects, n + 1))
    doses = sorted((r.time + k * r.ii, r.amt) for r in scn.regimen.records for k in range(r.addl + 1))
    t = 0.0
    for when, amt in doses + [(SPAN_H, 0.0)]:
        when = min(when, SPAN_H)
        if when > t:
            x = np.einsum("sij,sj->si", expm(aug * (when - t)), x)
            t = when
        if when < SPAN_H:
            x[:, model.routes["it_lumbar"]] += amt
    return x[:, n] * scale[:, o] / volume[:, o] * 1e6 / scn.drug.molecular_weight


def fallbacks(scn, subjects):
    """How many of the first ``subjects`` subjects the eigen-decomposition refuses (``spectral.fallbacks``)."""
    from csfpk._kernels.spectral import fallbacks as count
    from csfpk.batch import prepare
    from csfpk.population import build_rate_matrices

    prep = prepare(scn)
    p = scn.population.sample(scn.drug, 0, subjects, scn.physiology)
    Ks, _, _, model = build_rate_matrices(scn.drug, p, scn.physiology, scn.csf_layout)
    return int(count(Ks, np.int64(model.n_dynamic), prep.out_state))


def run(*, quick=False, repeats=None, log=print):
    """Records of the ``it_population`` workload (schema of ``benchmarks.harness``)."""
    import numba

    from csfpk.batch import run as run_batch

    mode = "quick" if quick else "full"
    target = TARGET_N[mode]
    ref = exact_lumbar_auc(scenario(ERROR_SUBJECTS, "exact"), ERROR_SUBJECTS)
    records = []
    for tool, n in SIZES[mode].items():
        metrics = tool.rsplit("-", 1)[1]
        run_batch([scenario(5, metrics)], progress=False)  # warm-up: compile or cache load, untimed
        times = []
        for _ in range(repeats or 1):
            t = time.perf_counter()
            res = run_batch([scenario(n, metrics)], chunk=10_000, progress=False)
            times.append(time.perf_counter() - t)
        df = res.metrics.sort_values("subject")
        if (df.status != 0).any():
            raise RuntimeError(f"{tool}: {int((df.status != 0).sum())} of {n} subjects failed")
        got = df.csf_lumbar_auc_span.to_numpy()[:ERROR_SUBJECTS]
        err = float(np.max(np.abs(got - ref) / np.abs(ref)))
        median = float(np.median(times))
        extrapolated = n < target
        wall = median * target / n if extrapolated else median
        rec = {"workload": "it_population", "tool": tool, "n": target, "median_s": wall,
               "subjects_per_s": target / wall, "ratio_to_csfpk": None, "max_rel_err": err,
               "extrapolated": extrapolated, "peak_mem_mb": None, "repeats": len(times),
               "tolerance": "exact (grid-free)" if metrics == "exact" else "hourly grid",
               "error_subjects": ERROR_SUBJECTS, "csf_layout": "regional", "threads": int(numba.get_num_threads())}
        if extrapolated:
            rec["extrapolated_from_n"] = n
        if metrics == "exact":
            rec["fallbacks"] = fallbacks(scenario(min(n, 10_000), metrics), min(n, 10_000))
            rec["fallbacks_of"] = min(n, 10_000)
        records.append(rec)
        log(f"  {tool:17s} N={target:<7d} {'extrapolated ' if extrapolated else ''}{wall:9.1f} s "
            f"({target / wall:10.1f} subjects/s; measured on {n}: {median:.2f} s)  lumbar AUC rel err {err:.1e}")
    return records
