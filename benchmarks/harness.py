"""Run the workloads with every tool, measure time, memory and accuracy, write JSON and Markdown.

``run()`` returns the list of records (one per workload, tool and population size); the CLI
(``benchmarks.cli``) writes them. The measuring rules are stated in ``benchmarks/README.md``.
"""

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import population, reference, tools
from .workloads import make_workloads

ADAPTIVE_TOL = {"rtol": 1e-8, "atol": 1e-12}  # every adaptive tool, csfpk's included (atol in mg)
LINEAR_TOOLS = ("csfpk-exact", "csfpk-dopri5", "scipy-LSODA", "scipy-BDF", "scipy-RK45", "scipy-odeint",
                "numbalsoda", "roadrunner")
NONLINEAR_TOOLS = ("csfpk-auto", "csfpk-dopri5", "csfpk-rodas", "scipy-LSODA", "scipy-BDF", "scipy-RK45",
                   "scipy-odeint", "numbalsoda", "roadrunner")
REQUIRED_KEYS = ("workload", "tool", "n", "median_s", "subjects_per_s", "ratio_to_csfpk", "max_rel_err",
                 "extrapolated")
ROOT = Path(__file__).resolve().parent.parent
POPULATION = "it_population"  # the population workload (benchmarks/population.py), run after the kernel workloads


class Settings:
    """Sizes, repeats and time budgets of a run (full or ``quick``)."""

    def __init__(self, quick=False, max_n=None, repeats=None, compile_probe=True, sizes=None):
        self.quick = quick
        self.max_n = max_n
        self.fixed_sizes = tuple(sizes) if sizes else None
        self.repeats = repeats or (3 if quick else 5)
        # a size is measured only when its predicted time is within the budget, else extrapolated
        self.budget_s = {"csfpk": 3.0, "baseline": 0.5} if quick else {"csfpk": 120.0, "baseline": 20.0}
        self.reference_subjects = 1 if quick else 3  # nonlinear: subjects with a Radau reference
        self.compile_probe = compile_probe

    def sizes(self, w):
        sizes = self.fixed_sizes or (w.quick_sizes if self.quick else w.sizes)
        if self.max_n is not None:
            sizes = tuple(n for n in sizes if n <= self.max_n) or (self.max_n,)
        return sizes


# --------------------------------------------------------------------------- memory
def _proc_status_mb(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return None


def _reset_peak():
    """Reset the peak resident set size (Linux ≥ 4.0); False where that is not possible.

    Freed heap memory is first returned to the system (glibc ``malloc_trim``), so that a run
    reusing memory freed by an earlier run still shows up as growth of the resident set.
    """
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _timed(fn):
    """(seconds, result, peak memory above the resident set before the call in MB or None)."""
    can = _reset_peak()
    before = _proc_status_mb("VmRSS") if can else None
    t = time.perf_counter()
    res = fn()
    dt = time.perf_counter() - t
    peak = None
    if can and before is not None:
        hwm = _proc_status_mb("VmHWM")
        peak = max(0.0, hwm - before) if hwm is not None else None
    return dt, res, peak


# --------------------------------------------------------------------------- compile probes
def compile_times(plan, log=print):
    """First-call times in fresh processes: {target: {phase: {...}}}.

    ``plan`` is a list of (fresh, steps): with ``fresh`` the steps share one new, empty numba cache
    folder, else they use numba's default cache (the one this process has just filled); ``steps``
    are (target, phase) run in order, e.g. ``(True, [("exact", "cold"), ("exact", "warm")])``.
    """
    results = {}
    for fresh, group in plan:
        with tempfile.TemporaryDirectory(prefix="csfpk-numba-cache-") as cache:
            env = dict(os.environ)
            if fresh:
                env["NUMBA_CACHE_DIR"] = cache
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
            for target, phase in group:
                t = time.perf_counter()
                proc = subprocess.run([sys.executable, "-m", "benchmarks._compile_probe", target], cwd=ROOT, env=env,
                                      capture_output=True, text=True, timeout=600, check=False)
                wall = time.perf_counter() - t
                if proc.returncode != 0:
                    raise RuntimeError(f"compile probe {target} ({phase}) failed:\n{proc.stderr[-2000:]}")
                rec = json.loads(proc.stdout.strip().splitlines()[-1])
                rec["process_wall_s"] = wall
                results.setdefault(target, {})[phase] = rec
                log(f"  compile {target:9s} {phase}: first call {rec['first_call_s']:.2f} s "
                    f"(import + first call {rec['import_and_first_call_s']:.2f} s, process {wall:.2f} s)")
    return results


# --------------------------------------------------------------------------- main loop
def run(*, quick=False, workloads=None, tools_=None, max_n=None, repeats=None, compile_probe=True, sizes=None,
        log=None):
    """Run the benchmark; return (records, notes).

    ``sizes`` replaces every workload's population sizes (for tests); ``max_n`` caps them.

    ``notes`` holds what the Markdown report needs beyond the records: tools that could not run
    (with the reason), compile probes, workload notes and the settings.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    load_before = os.getloadavg()
    st = Settings(quick, max_n, repeats, compile_probe, sizes)
    all_w = make_workloads()
    names = list(workloads or [*all_w, POPULATION])
    for name in names:
        if name not in all_w and name != POPULATION:
            raise ValueError(f"workload {name!r} is unknown; expected one of {sorted([*all_w, POPULATION])}")
    with_population = POPULATION in names
    names = [n for n in names if n != POPULATION]
    records, skipped, wnotes = [], {}, {}
    for name in names:
        w = all_w[name]
        sizes = st.sizes(w)
        n_max = max(sizes)
        log(f"workload {name}: {w.description}; N = {list(sizes)}")
        if w.note:
            wnotes[name] = w.note
        Ks, nls = w.population(n_max)
        w.timeline  # noqa: B018 (build outside timing)
        w.segments()
        if w.linear:
            ref = reference.exact_csf(w, Ks)
        else:
            n_ref = min(st.reference_subjects, n_max)
            ref = reference.radau_csf(w, Ks[:n_ref], nls[:n_ref], log=log)
        chosen = [t for t in (LINEAR_TOOLS if w.linear else NONLINEAR_TOOLS) if tools_ is None or t in tools_]
        if w.reference_tool not in chosen:
            chosen.insert(0, w.reference_tool)
        for tool in chosen:
            try:
                recs = _run_tool(st, w, tool, sizes, Ks, nls, ref, log)
            except tools.ToolUnavailable as exc:
                skipped[tool] = str(exc)
                log(f"  {tool}: not run: {exc}")
                continue
            records.extend(recs)
    _add_ratios(records, {n: all_w[n].reference_tool for n in names})
    if with_population:  # the batch runner end to end (benchmarks/population.py); ratios against its grid mode
        log(f"workload {POPULATION}: {population.DESCRIPTION}")
        recs = population.run(quick=quick, repeats=repeats, log=log)
        _add_ratios(recs, {POPULATION: "csfpk-batch-grid"})
        records.extend(recs)
        wnotes[POPULATION] = population.NOTE
    compile_info = {}
    if compile_probe:
        log("compile cost in fresh processes (NUMBA_CACHE_DIR = a new empty folder, then the same folder again)")
        if quick:
            # no cold compile (about 30 s): fresh processes on the cache this run has just used
            plan = [(False, [("exact", "warm"), ("simulate", "warm")])]
        else:
            plan = [(True, [(t, "cold"), (t, "warm")]) for t in ("simulate", "exact", "adaptive")]
        compile_info = compile_times(plan, log)
        for r in records:
            target = "exact" if r["tool"] == "csfpk-exact" else "adaptive" if r["tool"] in tools.CSFPK_TOOLS else None
            for phase in ("cold", "warm"):
                if phase in compile_info.get(target, {}):
                    r[f"compile_{phase}_s"] = compile_info[target][phase]["first_call_s"]
    notes = {"load_average": (load_before, os.getloadavg()), "skipped": skipped, "compile": compile_info,
             "workload_notes": wnotes,
             "settings": {"quick": quick, "repeats": st.repeats, "budget_s": st.budget_s,
                          "adaptive_tol": ADAPTIVE_TOL, "radau_tol": reference.RADAU_TOL,
                          "reference_subjects_nonlinear": st.reference_subjects,
                          "threads": _threads(), "cpus": os.cpu_count()},
             "workloads": {**{n: all_w[n].description for n in names},
                           **({POPULATION: population.DESCRIPTION} if with_population else {})}}
    return records, notes


def _threads():
    import numba

    return int(numba.get_num_threads())


def _run_tool(st, w, tool, sizes, Ks, nls, ref, log):
    fn = tools.TOOLS[tool]
    is_csfpk = tool in tools.CSFPK_TOOLS
    budget = st.budget_s["csfpk" if is_csfpk else "baseline"]
    tol = None if tool == "csfpk-exact" else ADAPTIVE_TOL
    # warm-up (compiles or loads numba kernels; compile cost is measured apart, in fresh processes)
    fn(w, Ks[:1], nls[:1], tol, None)
    out_recs = []
    per_subject = None
    measured = None  # (n, max_rel_err)
    n_ref = ref.shape[0]
    for n in sizes:
        if per_subject is not None and per_subject * n > budget:
            median = per_subject * n
            out_recs.append(_record(w, tool, n, median, measured[1], True, None, 0, tol, measured[0]))
            log(f"  {tool:13s} N={n:<6d} extrapolated {median:9.3f} s  ({n / median:12.1f} subjects/s)")
            continue
        k, r = Ks[:n], nls[:n]
        times = []
        buf = np.empty((n, w.timeline.n_out, len(w.outputs)))  # the caller's output array, reused by every repeat
        buf.fill(0.0)  # touched now: its page faults are not timed
        dt, (out, status), peak = _timed(lambda k=k, r=r: fn(w, k, r, tol, buf))
        times.append(dt)
        while len(times) < st.repeats and sum(times) + dt <= min(budget / 2, 15.0):
            dt, _, _ = _timed(lambda k=k, r=r: fn(w, k, r, tol, buf))
            times.append(dt)
        median = float(np.median(times))
        if np.any(status != 0):
            raise RuntimeError(f"{tool} failed on workload {w.name} for {int(np.sum(status != 0))} of {n} subjects")
        m = min(n, n_ref)
        err = reference.max_rel_err(out[:m, :, 1], ref[:m] * w.factors(m)[:, 1:])  # CSF, mg/L
        del out, buf
        per_subject = median / n
        measured = (n, err)
        out_recs.append(_record(w, tool, n, median, err, False, peak, len(times), tol, m))
        log(f"  {tool:13s} N={n:<6d} {median:9.4f} s  ({n / median:12.1f} subjects/s)  max rel err {err:.1e}")
    return out_recs


def _record(w, tool, n, median, err, extrapolated, peak, repeats, tol, err_subjects):
    rec = {
        "workload": w.name, "tool": tool, "n": int(n), "median_s": float(median),
        "subjects_per_s": float(n / median), "ratio_to_csfpk": None, "max_rel_err": float(err),
        "extrapolated": bool(extrapolated), "peak_mem_mb": None if peak is None else round(float(peak), 1),
        "repeats": int(repeats),
        "tolerance": "exact (matrix exponential)" if tol is None else f"rtol={tol['rtol']:g}, atol={tol['atol']:g} mg",
        "error_subjects": int(err_subjects), "csf_layout": w.layout,
    }
    if extrapolated:
        rec["extrapolated_from_n"] = int(err_subjects)
        rec["error_subjects"] = None
    return rec


def _add_ratios(records, ref_tool):
    base = {(r["workload"], r["n"]): r["median_s"] for r in records if r["tool"] == ref_tool[r["workload"]]}
    for r in records:
        b = base.get((r["workload"], r["n"]))
        r["ratio_to_csfpk"] = None if b is None else float(r["median_s"] / b)
        r["ratio_against"] = ref_tool[r["workload"]]


# --------------------------------------------------------------------------- output
def write_json(records, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=1) + "\n")


def _fmt(v, kind):
    if v is None:
        return "–"
    if kind == "s":
        return f"{v:.3g}" if v < 1000 else f"{v:,.0f}"
    if kind == "rate":
        return f"{v:,.0f}" if v >= 10 else f"{v:.2g}"
    if kind == "ratio":
        return f"{v:,.0f}" if v >= 10 else f"{v:.2g}"
    if kind == "err":
        return f"{v:.1e}"
    if kind == "mb":
        return f"{v:,.0f}" if v >= 10 else f"{v:.1f}"
    return str(v)


def markdown(records, notes):
    st = notes["settings"]
    lines = [f"# csfpk kernel benchmark ({'quick' if st['quick'] else 'full'} run)", "",
             (f"Machine: {st['cpus']} CPUs, numba threads {st['threads']}, 1-min load average "
             f"{notes['load_average'][0][0]:.1f} before and {notes['load_average'][1][0]:.1f} after the run "
             "(other jobs on the machine make timings noisy). "
             f"Adaptive tools: rtol {st['adaptive_tol']['rtol']:g},"
             f" atol {st['adaptive_tol']['atol']:g} mg. Error: max relative error of the CSF concentration "
             "against the exact solution (nonlinear: scipy Radau rtol "
             f"{st['radau_tol']['rtol']:g}, atol {st['radau_tol']['atol']:g}, first "
             f"{st['reference_subjects_nonlinear']} subject(s)). `×csfpk` = tool time / csfpk time, same workload and N "
             "(csfpk-exact; nonlinear: csfpk-auto). *italic* = extrapolated from the largest measured N."), ""]
    for wname, desc in notes["workloads"].items():
        lines += [f"## {wname}: {desc}", ""]
        if wname in notes["workload_notes"]:
            lines += [f"Note: {notes['workload_notes'][wname]}", ""]
        lines += ["| tool | N | median s | subjects/s | ×csfpk | max rel err | peak MB |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in records:
            if r["workload"] != wname:
                continue
            cells = [_fmt(r["median_s"], "s"), _fmt(r["subjects_per_s"], "rate"), _fmt(r["ratio_to_csfpk"], "ratio")]
            if r["extrapolated"]:
                cells = [f"*{c}*" for c in cells]
            lines.append(f"| {r['tool']} | {r['n']:,} | " + " | ".join(cells) +
                         f" | {_fmt(r['max_rel_err'], 'err')} | {_fmt(r['peak_mem_mb'], 'mb')} |")
        lines.append("")
    if notes["compile"]:
        lines += ["## Compile cost (fresh processes)", "",
                  ("First call in a new process with an empty numba cache (cold) and again with the cache that "
                  "run left (warm). `first call` is the csfpk call alone; `import + call` adds `import csfpk` "
                  "(and, for the kernels, building the two-subject workload); `process` is the whole "
                  "subprocess wall time including interpreter start-up."), "",
                  "| what | cold: first call s | cold: process s | warm: first call s | warm: import + call s | warm: process s |",
                  "|---|---:|---:|---:|---:|---:|"]
        label = {"simulate": "`csfpk.simulate` (erlotinib 28 d)", "exact": "exact `run_curves`",
                 "adaptive": "adaptive `run_batch`"}
        for target, c in notes["compile"].items():
            cold, warm = c.get("cold"), c.get("warm")
            cells = [f"{cold['first_call_s']:.2f}", f"{cold['process_wall_s']:.2f}"] if cold else ["not run (quick)"] * 2
            cells += [f"{warm['first_call_s']:.2f}", f"{warm['import_and_first_call_s']:.2f}",
                      f"{warm['process_wall_s']:.2f}"]
            lines.append(f"| {label[target]} | " + " | ".join(cells) + " |")
        lines.append("")
    if notes["skipped"]:
        lines += ["## Not run", ""]
        lines += [f"* **{t}**: {why}" for t, why in notes["skipped"].items()]
        lines.append("")
    return "\n".join(lines)


def check_records(records):
    """Raise if a record lacks a key or holds a non-finite number (used by the tests and the CLI)."""
    for r in records:
        for k in REQUIRED_KEYS:
            if k not in r:
                raise ValueError(f"record {r.get('workload')}/{r.get('tool')}/{r.get('n')} lacks {k!r}")
        for k, v in r.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"record {r['workload']}/{r['tool']}/{r['n']}: {k} = {v!r} is not finite")
