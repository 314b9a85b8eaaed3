"""Reference solutions the benchmark measures accuracy against (see ``benchmarks/README.md``).

* Linear workloads: the exact solution, computed independently of csfpk's kernels — the state is
  propagated along the timeline with E(h) = exp(K·h) from ``scipy.linalg.expm`` (Al-Mohy & Higham
  2009, SIAM J Matrix Anal Appl 31:970), vectorised over subjects, doses as jumps.
* Nonlinear workloads: scipy's Radau IIA (order 5) at rtol 1e-12, atol 1e-14 mg, interval by
  interval. It takes about 20 s per subject (≈ 72 000 steps), so the first subjects' solutions are
  cached in ``benchmarks/results/reference_<workload>.npz`` under a fingerprint of everything they
  depend on (rate matrices, nonlinear parameters, timeline, tolerances, scipy version); a changed
  input recomputes them.
"""

import hashlib
from pathlib import Path

import numpy as np

from csfpk.schedule import BOLUS, OBS

RADAU_TOL = {"rtol": 1e-12, "atol": 1e-14}
CACHE_DIR = Path(__file__).resolve().parent / "results"


def exact_csf(w, Ks):
    """Amount in the workload's CSF state (S, n_out), exact (module docstring)."""
    from scipy.linalg import expm

    tl = w.timeline
    S, n = Ks.shape[0], Ks.shape[1]
    j = w.csf_index
    ref = np.zeros((S, tl.n_out))
    x = np.zeros((S, n))
    cache = {}
    t = 0.0
    for a in range(tl.kind.size):
        h = tl.time[a] - t
        if h > 0.0:
            key = round(h, 12)
            if key not in cache:
                cache[key] = expm(Ks * h)  # batched over subjects
            x = np.einsum("sij,sj->si", cache[key], x)
            t = tl.time[a]
        k = tl.kind[a]
        if k == OBS:
            ref[:, int(tl.value[a])] = x[:, j]
        elif k == BOLUS:
            x[:, tl.cmt[a]] += tl.value[a]
        else:
            raise AssertionError("reference: only bolus doses and observations are supported")
    return ref


def _fingerprint(w, K, nl):
    import scipy

    h = hashlib.sha256()
    tl = w.timeline
    for arr in (K, nl, tl.time, tl.kind, tl.cmt, tl.value, w.grid):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(repr((sorted(RADAU_TOL.items()), w.csf_index, scipy.__version__)).encode())
    return h.hexdigest()


def radau_cached(w, Ks, nls):
    """True when every subject of Ks has a valid cached Radau reference."""
    return _load_cache(w, Ks, nls) is not None


def _load_cache(w, Ks, nls):
    path = CACHE_DIR / f"reference_{w.name}.npz"
    if not path.is_file():
        return None
    with np.load(path) as z:
        keys, csf = list(z["keys"]), z["csf"]
    ref = np.empty((Ks.shape[0], csf.shape[1]))
    for s in range(Ks.shape[0]):
        if s >= len(keys) or keys[s] != _fingerprint(w, Ks[s], nls[s]):
            return None
        ref[s] = csf[s]
    return ref


def radau_csf(w, Ks, nls, *, log=print):
    """Amount in the CSF state (S, n_out) from scipy Radau at tight tolerance (cached, see above)."""
    from .tools import scipy_states

    ref = _load_cache(w, Ks, nls)
    if ref is not None:
        return ref
    log(f"  computing the Radau reference for {Ks.shape[0]} subject(s) of {w.name} (~20 s each; cached after)")
    out, status = scipy_states("Radau", w, Ks, nls, RADAU_TOL)
    if np.any(status != 0):
        raise RuntimeError(f"reference Radau solution failed for workload {w.name}")
    ref = out[:, :, w.csf_index]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    keys = np.array([_fingerprint(w, Ks[s], nls[s]) for s in range(Ks.shape[0])])
    np.savez_compressed(CACHE_DIR / f"reference_{w.name}.npz", keys=keys, csf=ref)
    return ref


def max_rel_err(c, ref):
    """max over subjects and times of |c − ref| / max(|ref|, 1e-6·max_t |ref|) (per subject floor)."""
    floor = 1e-6 * np.max(np.abs(ref), axis=1, keepdims=True)
    return float(np.max(np.abs(c - ref) / np.maximum(np.abs(ref), floor)))
