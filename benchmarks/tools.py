"""The tools under test: csfpk's batch kernels and the baselines a competent user would write.

Every runner has the signature ``run(workload, Ks, nls, tol, out) -> (conc, status)``: ``conc`` is
float64 (S, rows, 2), the concentrations (mg/L) of the workload's two outputs (``Workload.outputs``:
plasma and the CSF output) on its output grid (row 0 at t = 0, pre-dose; a sample at a dose time is the
pre-dose value, as in csfpk), written into ``out`` (the caller's array, allocated once and reused, as a
population runner reuses a chunk's buffer), ``status`` an int array (0 = ok). csfpk-exact writes only
those two concentrations; the other tools compute every state and convert (``_concentrations``).

Baselines integrate interval by interval between doses (dose = jump in the dosed state), with
``t_eval`` on the output grid and the right-hand side built from the same rate matrix K::

    dx/dt = K·x − e_c·E_MM + e_sink·E_MM,    E_MM = Vmax·C/(Km + C),  C = x_c/V1

(``csfpk._kernels.rhs``), and the analytic Jacobian for the implicit methods.
"""

import importlib
import importlib.util

import numpy as np

from csfpk._kernels.codes import AUTO, DOPRI5, NL_CENTRAL, NL_KM, NL_SINK, NL_V1, NL_VMAX, RODAS

MAX_STEPS = 10_000_000


class ToolUnavailable(Exception):
    """The tool cannot run here; the message says why (it is written into the report)."""


# --------------------------------------------------------------------------- csfpk
def _concentrations(w, states, out):
    """out ← the workload's output concentrations (S, rows, 2) mg/L from amounts (S, rows, n) mg."""
    F = w.factors(states.shape[0])
    np.multiply(states[:, :, w.output_states], F[:, None, :], out=out)
    return out


def _out(w, S, out):
    return np.empty((S, w.timeline.n_out, len(w.outputs))) if out is None else out


def csfpk_exact(w, Ks, nls, tol, out=None):
    """``exact.run_curves``: only the two concentrations, blocks of subjects on threads."""
    from csfpk._kernels import exact
    from csfpk.threads import on_threads

    tl = w.timeline
    S = Ks.shape[0]
    out = _out(w, S, out)
    status = np.empty(S, dtype=np.int64)
    F = w.factors(S)
    dose_scale = np.ones(S)
    states = w.output_states
    n_dyn = np.int64(w.model.n_dynamic)

    def block(a, b):
        exact.run_curves(Ks[a:b], n_dyn, tl.kind, tl.time, tl.cmt, tl.value, tl.aux, float(tl.grid_step),
                         dose_scale[a:b], states, F[a:b], out[a:b], status[a:b])

    on_threads(block, S)
    return out, status


def _csfpk_adaptive(method, w, Ks, nls, tol, out=None):
    from csfpk._kernels import adaptive, codes

    tl = w.timeline
    S = Ks.shape[0]
    states = np.empty((S, tl.n_out, Ks.shape[1]))
    status = np.empty(S, dtype=np.int64)
    stats = np.zeros((S, codes.N_STATS), dtype=np.int64)
    adaptive.run_batch(np.int64(method), Ks, nls, tl.kind, tl.time, tl.cmt, tl.value, float(tol["rtol"]),
                       float(tol["atol"]), np.int64(MAX_STEPS), states, status, stats)
    return _concentrations(w, states, _out(w, S, out)), status


def csfpk_dopri5(w, Ks, nls, tol, out=None):
    return _csfpk_adaptive(DOPRI5, w, Ks, nls, tol, out)


def csfpk_rodas(w, Ks, nls, tol, out=None):
    return _csfpk_adaptive(RODAS, w, Ks, nls, tol, out)


def csfpk_auto(w, Ks, nls, tol, out=None):
    return _csfpk_adaptive(AUTO, w, Ks, nls, tol, out)


# --------------------------------------------------------------------------- right-hand sides
def _rhs_pair(K, nl):
    """(f(t, x), jac(t, x)) for one subject: linear K, plus Michaelis–Menten when nl says so."""
    vmax = nl[NL_VMAX]
    if vmax == 0.0:
        def f(t, x):
            return K @ x

        def jac(t, x):
            return K
        return f, jac
    c, sink, v1, km = int(nl[NL_CENTRAL]), int(nl[NL_SINK]), nl[NL_V1], nl[NL_KM]

    def f(t, x):
        dx = K @ x
        conc = x[c] / v1
        flux = vmax * conc / (km + conc)
        dx[c] -= flux
        dx[sink] += flux
        return dx

    def jac(t, x):
        J = K.copy()
        conc = x[c] / v1
        d = vmax * km / (v1 * (km + conc) ** 2)
        J[c, c] -= d
        J[sink, c] += d
        return J
    return f, jac


# --------------------------------------------------------------------------- scipy
def scipy_states(method, w, Ks, nls, tol):
    """Amounts (S, rows, n) mg from ``solve_ivp`` with ``method`` (the baselines below; the Radau reference)."""
    from scipy.integrate import solve_ivp

    grid = w.grid
    S, n = Ks.shape[0], Ks.shape[1]
    states = np.zeros((S, grid.size, n))
    status = np.zeros(S, dtype=np.int64)
    implicit = method in ("LSODA", "BDF", "Radau")
    for s in range(S):
        f, jac = _rhs_pair(Ks[s], nls[s])
        x = np.zeros(n)
        for t0, t1, doses, rows in w.segments():
            for c, amt in doses:
                x[c] += amt
            kw = {"jac": jac} if implicit else {}
            sol = solve_ivp(f, (t0, t1), x, method=method, t_eval=grid[rows], rtol=tol["rtol"], atol=tol["atol"],
                            **kw)
            if sol.status != 0:
                status[s] = 1
                break
            states[s, rows, :] = sol.y.T
            # continue from the last output (t1 is on the grid for these workloads)
            x = sol.y[:, -1].copy()
    return states, status


def scipy_ivp(method):
    """Runner of ``scipy.integrate.solve_ivp`` with ``method`` (LSODA, BDF, RK45, Radau)."""
    def run(w, Ks, nls, tol, out=None):
        states, status = scipy_states(method, w, Ks, nls, tol)
        return _concentrations(w, states, _out(w, Ks.shape[0], out)), status
    return run


def scipy_odeint(w, Ks, nls, tol, out=None):
    from scipy.integrate import odeint

    grid = w.grid
    S, n = Ks.shape[0], Ks.shape[1]
    states = np.zeros((S, grid.size, n))
    status = np.zeros(S, dtype=np.int64)
    for s in range(S):
        f, jac = _rhs_pair(Ks[s], nls[s])
        x = np.zeros(n)
        for t0, t1, doses, rows in w.segments():
            for c, amt in doses:
                x[c] += amt
            ts = np.concatenate(([t0], grid[rows]))
            y, info = odeint(lambda x_, t_, f=f: f(t_, x_), x, ts, Dfun=lambda x_, t_, jac=jac: jac(t_, x_), rtol=tol["rtol"],
                             atol=tol["atol"], mxstep=100_000, full_output=True)
            if info["message"] != "Integration successful.":
                status[s] = 1
                break
            states[s, rows, :] = y[1:]
            x = y[-1].copy()
    return _concentrations(w, states, _out(w, S, out)), status


# --------------------------------------------------------------------------- numbalsoda
def numbalsoda_lsoda(w, Ks, nls, tol, out=None):
    if importlib.util.find_spec("numbalsoda") is None:
        raise ToolUnavailable(
            "numbalsoda is not installed: 'pip install numbalsoda' found no wheel for this platform/Python "
            "(0.3.4 is a source distribution) and building it needs a Fortran compiler (CMake: 'No "
            "CMAKE_Fortran_COMPILER could be found'), which this machine does not have")
    return _numbalsoda_run(w, Ks, nls, tol, out)


_NBL = {}


def _numbalsoda_rhs():
    """A cfunc right-hand side with K (and nl) passed through the data pointer (compiled once)."""
    if "rhs" in _NBL:
        return _NBL["rhs"]
    import numba as nb
    from numbalsoda import lsoda_sig

    @nb.cfunc(lsoda_sig)
    def rhs(t, u, du, p):
        # p = [n, K (n*n, row major), vmax, km, v1, c, sink]
        n = int(p[0])
        for i in range(n):
            s = 0.0
            for j in range(n):
                s += p[1 + i * n + j] * u[j]
            du[i] = s
        b = 1 + n * n
        vmax = p[b]
        if vmax != 0.0:
            c = int(p[b + 3])
            sink = int(p[b + 4])
            conc = u[c] / p[b + 2]
            flux = vmax * conc / (p[b + 1] + conc)
            du[c] -= flux
            du[sink] += flux

    _NBL["rhs"] = rhs.address
    return _NBL["rhs"]


def _numbalsoda_run(w, Ks, nls, tol, out=None):
    from numbalsoda import lsoda

    address = _numbalsoda_rhs()
    grid = w.grid
    S, n = Ks.shape[0], Ks.shape[1]
    states = np.zeros((S, grid.size, n))
    status = np.zeros(S, dtype=np.int64)
    for s in range(S):
        nl = nls[s]
        p = np.concatenate(([n], Ks[s].ravel(), [nl[NL_VMAX], nl[NL_KM], nl[NL_V1], nl[NL_CENTRAL], nl[NL_SINK]]))
        x = np.zeros(n)
        for t0, t1, doses, rows in w.segments():
            for c, amt in doses:
                x[c] += amt
            ts = np.concatenate(([t0], grid[rows]))
            y, ok = lsoda(address, x, ts, data=p, rtol=tol["rtol"], atol=tol["atol"])
            if not ok:
                status[s] = 1
                break
            states[s, rows, :] = y[1:]
            x = y[-1].copy()
    return _concentrations(w, states, _out(w, S, out)), status


# --------------------------------------------------------------------------- libroadrunner
def _sbml(K, nl):
    """SBML L3V1 text of the model: one reaction per nonzero flow K[j, i] (i → j), amounts in mg."""
    n = K.shape[0]
    sp = "".join(f'<species id="s{i}" compartment="c" initialAmount="0" hasOnlySubstanceUnits="true" '
                 f'boundaryCondition="false" constant="false"/>' for i in range(n))
    params, reactions = [], []
    for i in range(n):
        for j in range(n):
            if i != j and K[j, i] > 0:
                params.append(f'<parameter id="k_{i}_{j}" value="{float(K[j, i])!r}" constant="true"/>')
                reactions.append(
                    f'<reaction id="r_{i}_{j}" reversible="false"><listOfReactants><speciesReference species="s{i}" '
                    f'stoichiometry="1" constant="true"/></listOfReactants><listOfProducts><speciesReference '
                    f'species="s{j}" stoichiometry="1" constant="true"/></listOfProducts><kineticLaw><math '
                    f'xmlns="http://www.w3.org/1998/Math/MathML"><apply><times/><ci>k_{i}_{j}</ci><ci>s{i}</ci>'
                    f'</apply></math></kineticLaw></reaction>')
    if nl[NL_VMAX] != 0.0:
        c, sink = int(nl[NL_CENTRAL]), int(nl[NL_SINK])
        for name, idx in (("Vmax", NL_VMAX), ("Km", NL_KM), ("V1", NL_V1)):
            params.append(f'<parameter id="{name}" value="{float(nl[idx])!r}" constant="true"/>')
        reactions.append(
            f'<reaction id="mm" reversible="false"><listOfReactants><speciesReference species="s{c}" stoichiometry="1" '
            f'constant="true"/></listOfReactants><listOfProducts><speciesReference species="s{sink}" '
            f'stoichiometry="1" constant="true"/></listOfProducts><kineticLaw><math '
            f'xmlns="http://www.w3.org/1998/Math/MathML"><apply><divide/><apply><times/><ci>Vmax</ci><apply>'
            f'<divide/><ci>s{c}</ci><ci>V1</ci></apply></apply><apply><plus/><ci>Km</ci><apply><divide/>'
            f'<ci>s{c}</ci><ci>V1</ci></apply></apply></apply></math></kineticLaw></reaction>')
    return ('<?xml version="1.0" encoding="UTF-8"?><sbml xmlns="http://www.sbml.org/sbml/level3/version1/core" '
            'level="3" version="1"><model id="csfpk_bench"><listOfCompartments><compartment id="c" size="1" '
            f'constant="true"/></listOfCompartments><listOfSpecies>{sp}</listOfSpecies><listOfParameters>'
            f'{"".join(params)}</listOfParameters><listOfReactions>{"".join(reactions)}</listOfReactions>'
            '</model></sbml>')


def roadrunner_cvode(w, Ks, nls, tol, out=None):
    if importlib.util.find_spec("roadrunner") is None:
        raise ToolUnavailable("libroadrunner is not installed ('pip install libroadrunner' to add it)")
    import roadrunner

    grid = w.grid
    S, n = Ks.shape[0], Ks.shape[1]
    states = np.zeros((S, grid.size, n))
    status = np.zeros(S, dtype=np.int64)
    # one model loaded once (the structure is shared); parameters are set per subject
    rr = roadrunner.RoadRunner(_sbml(Ks[0], nls[0]))
    rr.integrator.relative_tolerance = tol["rtol"]
    rr.integrator.absolute_tolerance = tol["atol"]
    rr.integrator.maximum_num_steps = 100_000
    rr.timeCourseSelections = ["time"] + [f"s{i}" for i in range(n)]
    flows = [(i, j) for i in range(n) for j in range(n) if i != j and Ks[0][j, i] > 0]
    mm = nls[0][NL_VMAX] != 0.0
    for s in range(S):
        rr.resetAll()
        for i, j in flows:
            rr.setValue(f"k_{i}_{j}", float(Ks[s][j, i]))
        if mm:
            rr.setValue("V1", float(nls[s][NL_V1]))
        for t0, t1, doses, rows in w.segments():
            for c, amt in doses:
                rr.setValue(f"s{c}", rr.getValue(f"s{c}") + amt)
            res = rr.simulate(times=[t0] + grid[rows].tolist())
            states[s, rows, :] = np.asarray(res)[1:, 1:]
    return _concentrations(w, states, _out(w, S, out)), status


TOOLS = {
    "csfpk-exact": csfpk_exact,
    "csfpk-dopri5": csfpk_dopri5,
    "csfpk-rodas": csfpk_rodas,
    "csfpk-auto": csfpk_auto,
    "scipy-LSODA": scipy_ivp("LSODA"),
    "scipy-BDF": scipy_ivp("BDF"),
    "scipy-RK45": scipy_ivp("RK45"),
    "scipy-odeint": scipy_odeint,
    "numbalsoda": numbalsoda_lsoda,
    "roadrunner": roadrunner_cvode,
}
CSFPK_TOOLS = ("csfpk-exact", "csfpk-dopri5", "csfpk-rodas", "csfpk-auto")
