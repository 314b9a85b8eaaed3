"""exact vs adaptive vs stiff vs scipy Radau (rtol 1e-10) on every drug file."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import csfpk
from csfpk.simulation import solve

DRUGS = csfpk.list_drugs()


def scipy_reference(model, regimen, times):
    """Radau between dose times (doses as jumps), rtol 1e-10: an independent integrator."""
    from csfpk.schedule import build_timeline

    tl = build_timeline(model, regimen, None)
    K, nl = model.K, model.nl
    c, sink, v1, vmax, km, dcl, kind = int(nl[0]), int(nl[1]), nl[2], nl[3], nl[4], nl[5], nl[6]

    def f(t, x, r):
        dx = K @ x + r
        conc = x[c] / v1
        flux = (vmax * conc / (km + conc) if vmax else 0.0) + (dcl * (1 - np.exp(-kind * t)) * conc if dcl else 0.0)
        dx[c] -= flux
        dx[sink] += flux
        return dx

    x = np.zeros(model.n)
    r = np.zeros(model.n)
    t = 0.0
    out = np.zeros((len(times), model.n))  # rows at t = 0 stay 0: pre-dose
    stops = sorted(set(tl.time.tolist()) | {float(times[-1])})
    acts = list(zip(tl.time, tl.kind, tl.cmt, tl.value))
    for te in stops:
        if te > t:
            seg = times[(times > t) & (times <= te)]  # a sample at an event time is pre-event
            sol = solve_ivp(f, (t, te), x, method="Radau", rtol=1e-10, atol=1e-13, args=(r,), dense_output=True)
            out[np.searchsorted(times, seg)] = sol.sol(seg).T
            x = sol.y[:, -1].copy()
            t = te
        for ta, kind_, cmt, val in acts:
            if ta == te and kind_ == 1:
                x[cmt] += val
            elif ta == te and kind_ == 2:
                r[cmt] += val
    return out


@pytest.mark.parametrize("name", DRUGS)
def test_solvers_agree_on_drug(name):
    drug = csfpk.load_drug(name)
    dose = drug.label_dose
    regimen = csfpk.Regimen.every(amt=dose.amt, ii=dose.ii, n=4, route=dose.route)
    model = csfpk.build_model(drug, csf_layout="single")
    times = np.arange(0.0, 4 * dose.ii + 48.0 + 0.5, 0.5)
    ref = scipy_reference(model, regimen, times)
    obs = [model.outputs[k][0] for k in ("plasma", "csf")]
    mask = times > 1.0
    scale = np.abs(ref[:, obs]).max(axis=0)

    def err(x):
        return np.max(np.abs(x[mask][:, obs] - ref[mask][:, obs]) / np.maximum(np.abs(ref[mask][:, obs]), 1e-6 * scale))

    methods = ["adaptive", "stiff"] + (["exact"] if model.linear else [])
    for method in methods:
        x, _, used = solve(model, regimen, times, method=method, rtol=1e-10, atol=1e-13)
        assert err(x) < 1e-7, (method, err(x))
