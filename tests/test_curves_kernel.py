"""The curves kernel (issue 12, item 2): ``exact.run_curves`` writes only the concentrations asked for, and
equals the all-states walk (``exact.run_subject``, what ``csfpk.simulate`` runs) times f = scale/volume.

The oracle is the all-states walk, which steps x ← E·x through every sample; ``run_curves`` reads runs of
grid samples off tables of output rows and jumps the state by binary powers of E, a different order of
sums, hence 1e-13 relative and not bit for bit. Every shipped drug with a linear model in a layout is
covered (lorlatinib's autoinduction is never linear: no exact kernel runs it).
"""

import numpy as np
import pytest

import csfpk
from csfpk._kernels import exact
from csfpk.drug import list_drugs
from csfpk.errors import CsfpkError
from csfpk.regimen import Record, Regimen
from csfpk.schedule import build_timeline

RTOL = 1e-13
ATOL = 1e-300  # subnormal numbers (a washed-out intravenous dose after days: 1.6e-316 mg/L) carry fewer digits


def _linear_models():
    for name in list_drugs():
        drug = csfpk.load_drug(name)
        for layout in ("single", "regional", "none"):
            try:
                model = csfpk.build_model(drug, csf_layout=layout)
            except CsfpkError:  # gefitinib's saturable uptake refuses the regional layout
                continue
            if model.linear:
                yield pytest.param(model, id=f"{name}-{layout}")


def _regimens(model):
    """Doses on grid points, off grid points (lag), a weekly interval longer than RUN_CAP grid steps, an
    infusion (the stepping path while it runs) and, where the layout has it, intrathecal boluses."""
    out = {"oral q24h": Regimen.every(amt=150, ii=24, n=4),
           "oral q168h": Regimen.every(amt=900, ii=168, n=2),
           "oral off grid": Regimen((Record(time=2.5, amt=100), Record(time=30.25, amt=50))),
           "iv infusion": Regimen.every(amt=100, ii=24, n=3, route="iv", duration=1.5)}
    if "it_lumbar" in model.routes:
        out["it q84h"] = Regimen.every(amt=12, ii=84, n=3, route="it_lumbar")
    return out


def _factors(model):
    names = list(model.outputs)
    out_state = np.array([model.outputs[o][0] for o in names], dtype=np.int64)
    f = np.array([model.outputs[o][2] / model.outputs[o][1] for o in names])
    return out_state, f


def _run_curves(model, tl, Ks, F, dose_scale, rows=None):
    out_state = _factors(model)[0]
    curves = np.full((Ks.shape[0], tl.n_out if rows is None else rows, out_state.size), np.nan)
    status = np.full(Ks.shape[0], -1, dtype=np.int64)
    exact.run_curves(Ks, np.int64(model.n_dynamic), tl.kind, tl.time, tl.cmt, tl.value, tl.aux, float(tl.grid_step),
                     dose_scale, out_state, F, curves, status)
    return curves, status


def _all_states(model, tl, K):
    out = np.zeros((tl.n_out, model.n))
    code = exact.run_subject(K, np.int64(model.n_dynamic), tl.kind, tl.time, tl.cmt, tl.value, tl.aux,
                             float(tl.grid_step), out)
    assert code == 0
    return out


@pytest.mark.parametrize("model", list(_linear_models()))
def test_curves_equal_the_all_states_walk_on_every_linear_drug(model):
    """Three subjects (K, faster, slower: a valid compartment matrix scaled in time) with their own f, on
    an hourly grid of 14 days, record outputs included (rows after the grid, at the dose times)."""
    K = np.ascontiguousarray(model.K, dtype=np.float64)
    Ks = np.ascontiguousarray(np.stack([K, 1.7 * K, 0.6 * K]))
    out_state, f = _factors(model)
    F = np.ascontiguousarray(np.stack([f, 0.5 * f, 2.0 * f]))
    for label, regimen in _regimens(model).items():
        tl = build_timeline(model, regimen, np.arange(0.0, 337.0), record_outputs=True)
        curves, status = _run_curves(model, tl, Ks, F, np.ones(3))
        assert np.all(status == 0), label
        for s in range(3):
            want = _all_states(model, tl, Ks[s])[:, out_state] * F[s]
            np.testing.assert_allclose(curves[s], want, rtol=RTOL, atol=ATOL, err_msg=f"{label}, subject {s}")


def test_dose_scale_and_rows_beyond_the_array():
    """Doses × dose_scale (linear: the curves scale exactly); rows past the caller's array are not written."""
    model = csfpk.build_model(csfpk.load_drug("erlotinib"))
    tl = build_timeline(model, Regimen.every(amt=150, ii=24, n=3), np.arange(0.0, 97.0))
    Ks = np.ascontiguousarray(np.stack([model.K, model.K]).astype(np.float64))
    _, f = _factors(model)
    F = np.ascontiguousarray(np.stack([f, f]))
    curves, status = _run_curves(model, tl, Ks, F, np.array([1.0, 2.5]))
    assert np.all(status == 0)
    np.testing.assert_allclose(curves[1], 2.5 * curves[0], rtol=1e-14, atol=0)
    assert np.max(curves[0]) > 0
    short, _ = _run_curves(model, tl, Ks, F, np.ones(2), rows=40)
    np.testing.assert_array_equal(short[0], curves[0, :40])


def test_many_samples_at_one_time_and_a_failing_subject():
    """More samples at one time than a piece holds (70 observation records at t = 5 h after the grid sample
    there) are all written; a subject with a NaN rate fails alone (status NONFINITE), the others are kept."""
    model = csfpk.build_model(csfpk.load_drug("erlotinib"))
    records = [Record(time=0.0, amt=150)] + [Record(time=5.0, evid=2) for _ in range(70)]
    tl = build_timeline(model, Regimen(tuple(records)), np.arange(0.0, 49.0), record_outputs=True)
    K = np.ascontiguousarray(model.K, dtype=np.float64)
    bad = K.copy()
    bad[0, 0] = np.nan
    Ks = np.ascontiguousarray(np.stack([K, bad, K]))
    out_state, f = _factors(model)
    curves, status = _run_curves(model, tl, Ks, np.ascontiguousarray(np.stack([f, f, f])), np.ones(3))
    assert status[0] == 0 and status[2] == 0 and status[1] == csfpk.Status.NONFINITE
    want = _all_states(model, tl, K)[:, out_state] * f
    np.testing.assert_allclose(curves[0], want, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(curves[2], curves[0])
    assert tl.n_out == 49 + 71 and want[5, 0] > 0
    np.testing.assert_allclose(curves[0, 50:], np.repeat(want[5:6], 70, axis=0), rtol=RTOL)  # rows 50…119: t = 5 h


def test_one_compiled_signature():
    """Python ints and numpy scalars for the scalar arguments, 4- and 7-state models: one signature. (Its
    callees show theirs only when compiled afresh: tests/test_kernels_adaptive.py checks those in CI's
    fresh cache.)"""
    for layout in ("single", "regional"):
        model = csfpk.build_model(csfpk.load_drug("erlotinib"), csf_layout=layout)
        tl = build_timeline(model, Regimen.every(amt=150, ii=24, n=2), np.arange(0.0, 49.0))
        out_state, f = _factors(model)
        Ks = np.ascontiguousarray(model.K[None], dtype=np.float64)
        for n_dyn, step in ((model.n_dynamic, 1.0), (np.int64(model.n_dynamic), np.float64(1.0))):
            curves = np.zeros((1, tl.n_out, out_state.size))
            exact.run_curves(Ks, n_dyn, tl.kind, tl.time, tl.cmt, tl.value, tl.aux, step, np.ones(1), out_state,
                             f[None].copy(), curves, np.zeros(1, dtype=np.int64))
    assert len(exact.run_curves.signatures) == 1
