"""Population kernel: walk the shared timeline for many subjects, keep only exposure metrics.

For each subject s the exact walk of ``exact.walk`` runs along the
shared timeline with its own rate matrix Ks[s], dose scale and output factors f[s]; at every
output-grid sample the concentrations of the outputs

    C_o = f[s, o] · x[state_o]          (f = scale/volume, converted to nM: ·1e6/MW)

update running metrics (formulas in ``exact.walk``; slots in ``codes``), so no concentration–time
array is stored (memory per subject is a few vectors). Optionally every ``curve_stride``-th grid
sample is written to ``curves[s]``. With ``exact_win`` = (t0, t1, t_trough) (float64[3]) the metrics are
the exact grid-free ones over [t0, t1] instead of the grid's (float64[0]): ``spectral.gap`` (eigen-decomposition
of Ks[s]) where ``spectral.decompose`` accepts Ks[s], else ``exposure.gap`` (``exact.walk``).

Nonlinear models (``run_adaptive``): each subject runs the adaptive driver of single simulations
(``adaptive.run_subject``) with its own K, nonlinear terms ``nl`` and dose scale, and keeps its states
at the output samples; the caller reads the metrics off them (``csfpk.batch``).
"""

import numpy as np
from numba import njit

from .adaptive import run_subject
from .codes import BOLUS, RATE
from .exact import walk


@njit(cache=True, nogil=True)
def run_metrics(Ks, n_dyn, kind, time, cmt, value, aux, grid_step, dose_scale, out_state, f, w0, w1, trough_index,
                target, curve_stride, curves, metrics, status, exact_win):
    """Metrics of every subject: Ks[s], dose_scale[s], f[s] → metrics[s] (n_out × N_METRICS), status[s].

    ``curves`` has shape (S, rows, n_out) (rows may be 0 when ``curve_stride`` is 0). One thread: callers
    run blocks of subjects on threads (``nogil``: ``csfpk.threads.on_threads``); not ``parallel=True``, whose
    lowering of the walk took a third of the cold compile of a population run.
    """
    n = Ks.shape[1]
    for s in range(Ks.shape[0]):
        status[s] = walk(Ks[s], n_dyn, kind, time, cmt, value, aux, grid_step, dose_scale[s], np.empty((0, n)),
                         out_state, f[s], w0, w1, trough_index, target, curve_stride, curves[s], metrics[s],
                         exact_win)


@njit(cache=True, nogil=True)
def run_adaptive(method, Ks, nls, kind, time, cmt, value, dose_scale, rtol, atol, max_steps, states, status, stats):
    """``adaptive.run_subject`` for every subject s with Ks[s], nls[s] and doses (BOLUS amounts and RATE
    changes) multiplied by dose_scale[s] → states[s] (samples × n), status[s], stats[s]. One thread, as
    ``run_metrics``: callers run blocks of subjects on threads.

    With dose_scale[s] = 1 the timeline values are passed unchanged, so a subject's states equal those of
    a single ``adaptive.run_subject`` call with the same K, nl, method and tolerances, bit for bit.
    """
    for s in range(Ks.shape[0]):
        v = value.copy()
        for a in range(kind.shape[0]):
            if kind[a] == BOLUS or kind[a] == RATE:
                v[a] = value[a] * dose_scale[s]
        status[s] = run_subject(method, Ks[s], nls[s], kind, time, cmt, v, rtol, atol, max_steps, states[s], stats[s])
