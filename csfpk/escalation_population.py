"""Toxicity-guided escalation over virtual patients (issue 11): the seed rule per subject, in numba.

Each subject gets its own PK parameters (``Population.sample``), its own marrow (Friberg Circ0, MTT and
drug-effect slope with the IIV of ``params/pd/myelosuppression.toml``, ``population.marrow_parameters``)
and, for doses written per kg or per m², its own body size. The decision logic of
``csfpk.escalation.run_escalation`` (start, +step per injection, cap, one level back when a grade ≥ 3
episode of any lineage began since the previous injection) runs inside one numba kernel over all
subjects (``csfpk._kernels.escalation``): exact linear PK plus the Friberg chain, interval by interval,
with no Python loop per subject. Subject i gives the same doses and nadirs as ``run_escalation`` with
subject i's parameters (tested to 1e-9).

Results are per subject: the doses given (a long frame, one row per injection), the final and highest
dose, the number of step-backs, nadir, nadir time and worst CTCAE grade per lineage (leukocytes,
neutrophils, platelets) and a status; a subject with an invalid parameter (NaN, ≤ 0) or a non-finite
result loses only its own row, which is marked. Draws depend only on (seed, subject index), so the
numbers do not depend on chunk size or thread count.

Examples
--------
>>> import csfpk
>>> from csfpk.escalation import Escalation
>>> from csfpk.escalation_population import run_escalation_population
>>> res = run_escalation_population("pemetrexed", Escalation.seed_pemetrexed(weeks=12),
...                                 csfpk.Population(n=20, seed=1), dt=1.0)
>>> len(res.subjects), res.summary()["n_failed"]
(20, 0)
"""

import math
from dataclasses import dataclass

import numpy as np

from ._kernels import codes
from .drug import load_drug
from .errors import ParameterError, ScheduleError
from .escalation import Escalation
from .model import VARYING, build_model, rate_matrices, typical_value
from .myelosuppression import load_myelosuppression
from .physiology import load_physiology
from .population import Population, marrow_parameters
from .simulation import output_grid
from .status import Status
from .threads import on_threads
from .units import hours

DECISIONS = tuple(sorted(codes.DECISIONS, key=codes.DECISIONS.get))  # names of the kernel's decision codes
DOSE_BASES = (None, "weight", "bsa")
ESCALATION_BLOCK = 16  # subjects per thread task (each runs a 26-week protocol: milliseconds)


@dataclass(frozen=True, eq=False)
class EscalationPopulation:
    """Result of ``run_escalation_population`` / ``run_escalation_subjects``.

    Attributes
    ----------
    subjects : one row per subject: subject, status (0 ok, ``csfpk.status.Status``), message,
        weight_kg, bsa_m2, dose_scale, final_dose_mg, max_dose_mg, n_step_backs, n_holds, and per
        lineage ``nadir_<lineage>_1e9_L``, ``nadir_time_<lineage>_h``, ``worst_grade_<lineage>``, and
        ``worst_grade_any``. Failed rows keep subject, status and message; their numbers are NaN.
    doses : one row per subject × injection: subject, injection (1-based), time_h, dose_mg, action.
    lineages : lineage names.
    """

    subjects: object
    doses: object
    lineages: tuple

    def summary(self, grade=3):
        """Shares of subjects (ok rows only, %) at grade ≥ ``grade`` per lineage and any lineage, and
        the final-dose distribution: ``{"grade3_<lineage>_pct": …, "grade3_any_pct": …,
        "final_dose_mg_median": …, "final_dose_mg_counts": {dose: n}, "n_ok": …, "n_failed": …}``."""
        ok = self.subjects[self.subjects.status == 0]
        out = {"n_ok": int(len(ok)), "n_failed": int(len(self.subjects) - len(ok))}
        for lin in self.lineages + ("any",):
            col = f"worst_grade_{lin}"
            out[f"grade{grade}_{lin}_pct"] = float(100.0 * (ok[col] >= grade).mean()) if len(ok) else math.nan
        out["final_dose_mg_median"] = float(ok.final_dose_mg.median()) if len(ok) else math.nan
        counts = ok.final_dose_mg.value_counts().sort_index()
        out["final_dose_mg_counts"] = {float(k): int(v) for k, v in counts.items()}
        return out


def _timeline(grid, times):
    """Shared action list: grid samples and injections sorted by time, a sample before an injection at
    the same time (the pre-dose value)."""
    t = np.concatenate([grid, np.asarray(times, dtype=float)])
    kind = np.concatenate([np.zeros(grid.size, dtype=np.int64), np.ones(len(times), dtype=np.int64)])
    index = np.concatenate([np.arange(grid.size, dtype=np.int64), np.arange(len(times), dtype=np.int64)])
    order = np.lexsort((kind, t))
    return t[order], kind[order], index[order]


def _bad_rows(params, marrow):
    """Per-subject reason why a parameter is unusable ('' when fine)."""
    S = marrow["slope"].shape[0]
    why = np.array([""] * S, dtype=object)
    checks = [(k, np.asarray(params[k], dtype=float)) for k in VARYING if k in params]
    checks += [("weight_kg", np.asarray(params["weight_kg"], dtype=float))] if "weight_kg" in params else []
    checks += [("bsa_m2", np.asarray(params["bsa_m2"], dtype=float))] if "bsa_m2" in params else []
    checks += [(f"Circ0[{n}]", marrow["circ0"][:, j]) for j, n in enumerate(marrow["lineages"])]
    checks += [(f"MTT[{n}]", marrow["mtt"][:, j]) for j, n in enumerate(marrow["lineages"])]
    for name, v in checks:
        bad = ~(np.isfinite(v) & (v > 0))
        for i in np.flatnonzero(bad & (why == "")):
            why[i] = f"{name} = {float(v[i])!r} is not allowed; expected a finite value > 0"
    s = marrow["slope"]
    for i in np.flatnonzero(~(np.isfinite(s) & (s >= 0)) & (why == "")):
        why[i] = f"slope = {float(s[i])!r} is not allowed; expected a finite value >= 0 L/mg"
    if "fu" in params:
        fu = np.asarray(params["fu"], dtype=float)
        for i in np.flatnonzero((fu > 1) & (why == "")):
            why[i] = f"fu = {float(fu[i])!r} is not allowed; expected a fraction in (0, 1]"
    return why


def escalation_model(drug, escalation, physiology, csf_layout):
    """The typical subject's model and the dosing state index, after the checks this path needs (linear
    model, route available, no lag); raises ``ParameterError``/``ScheduleError`` naming the field."""
    model = build_model(drug, physiology, csf_layout)
    if not model.linear:
        raise ParameterError(f"{drug.name}: escalation over a population needs a linear model (exact kernel); "
                             f"{drug.name} has Michaelis–Menten or time-dependent clearance")
    if escalation.route not in model.routes:
        raise ScheduleError(f"route = {escalation.route!r} is not available for {drug.name} with csf_layout "
                            f"{csf_layout!r}; allowed: {sorted(model.routes)}")
    route = model.routes[escalation.route]
    if model.lag[route] != 0.0:
        raise ScheduleError(f"route = {escalation.route!r} has a lag time; escalation decisions assume doses at "
                            "the injection times")
    return model, route


def run_escalation_subjects(drug, escalation: Escalation, params, marrow, *, t_end=None, dt=0.25,
                            csf_layout="single", physiology=None, pd=None, dose_basis=None, substeps=4,
                            chunk_size=4096, threads=None):
    """Run ``escalation`` for S subjects given their parameters (the batch runner's entry point).

    Parameters
    ----------
    drug : a linear ``Drug`` (``csfpk.load_drug``) or its name.
    escalation : the rule and injection times (``Escalation``); with ``dose_basis`` its start, step and
        cap are read as mg/kg (``"weight"``) or mg/m² (``"bsa"``) and scaled by each subject's size.
    params : ``{name: float64[S]}``: ``subject`` (indices), any of ``csfpk.model.VARYING`` (PK per
        subject, as ``Population.sample`` returns), and ``weight_kg`` / ``bsa_m2`` when ``dose_basis``
        needs them.
    marrow : ``population.marrow_parameters`` output (``circ0`` (S, L), ``mtt`` (S, L), ``slope`` (S,)).
    t_end, dt : simulated span (default last injection + 4 weeks) and output step (h); the marrow is
        driven by the plasma curve on this grid, as in ``run_escalation``.
    chunk_size : subjects per kernel call (bounds memory; results do not depend on it).
    threads : numba threads (default: numba's setting); results do not depend on it.

    Returns
    -------
    EscalationPopulation
    """
    import pandas as pd_

    from ._kernels import escalation as kernel

    if isinstance(drug, str):
        drug = load_drug(drug)
    if dose_basis not in DOSE_BASES:
        raise ParameterError(f"dose_basis = {dose_basis!r} is not allowed; expected one of {DOSE_BASES}")
    if not isinstance(escalation, Escalation):
        raise ScheduleError(f"escalation = {escalation!r} is not an Escalation; build one with Escalation(...)")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ParameterError(f"chunk_size = {chunk_size!r} is not allowed; expected an integer >= 1")
    if isinstance(substeps, bool) or not isinstance(substeps, (int, np.integer)) or not 1 <= substeps <= 100:
        raise ParameterError(f"substeps = {substeps!r} is not allowed; expected an integer in [1, 100]")
    import numba

    max_threads = numba.config.NUMBA_NUM_THREADS
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
                                or not 1 <= threads <= max_threads):
        raise ParameterError(f"threads = {threads!r} is not allowed; expected an integer in [1, {max_threads}]")
    pd = pd or load_myelosuppression()
    if physiology is None:
        physiology = load_physiology("adult")
    model, route = escalation_model(drug, escalation, physiology, csf_layout)
    S = int(np.asarray(marrow["slope"]).shape[0])
    subject = np.asarray(params.get("subject", np.arange(S)), dtype=np.int64)
    for k, v in params.items():
        if np.asarray(v).shape != (S,):
            raise ParameterError(f"params[{k!r}] has shape {np.asarray(v).shape}; expected ({S},), one per subject")
    L = len(marrow["lineages"])
    if tuple(marrow["lineages"]) != tuple(pd.lineages):
        raise ParameterError(f"marrow lineages {marrow['lineages']} differ from the PD file's {tuple(pd.lineages)}")
    for key, shape in (("circ0", (S, L)), ("mtt", (S, L))):
        if np.asarray(marrow[key]).shape != shape:
            raise ParameterError(f"marrow[{key!r}] has shape {np.asarray(marrow[key]).shape}; expected {shape}")
    need = {"weight": "weight_kg", "bsa": "bsa_m2"}.get(dose_basis)
    if need and need not in params:
        raise ParameterError(f"dose_basis = {dose_basis!r} needs params[{need!r}] (one per subject)")

    t_end = escalation.times[-1] + hours("4w") if t_end is None else hours(t_end, "t_end")
    if t_end <= escalation.times[-1]:
        raise ScheduleError(f"t_end = {t_end:g} h must be after the last injection at {escalation.times[-1]:g} h")
    grid = output_grid(t_end, hours(dt, "dt"))
    d = np.diff(grid)
    grid_step = float(d[0]) if d.size and np.allclose(d, d[0], rtol=0, atol=1e-9 * max(1.0, d[0])) else 0.0
    act_time, act_kind, act_index = _timeline(grid, escalation.times)
    levels = np.asarray(escalation.levels, dtype=float)
    lin = [pd.lineages[n] for n in marrow["lineages"]]
    gamma = np.array([x.gamma for x in lin])
    kcirc = np.array([x.kcirc or 0.0 for x in lin])
    thresholds = np.array([x.thresholds for x in lin], dtype=float)
    central = model.states.index("central")

    why = _bad_rows(params, marrow)
    skip = (why != "").astype(np.int64)
    pk = {k: np.asarray(params[k], dtype=float).copy() for k in VARYING if k in params}
    typical = {k: typical_value(drug, physiology, k) for k in pk}
    for k in pk:  # failed subjects get typical values so the rate matrices of the others can be built
        pk[k][skip == 1] = typical[k]
    if "fu" in pk:
        pk["fu"] = np.minimum(pk["fu"], 1.0)
    v1_all = pk["V1"] if "V1" in pk else np.full(S, float(drug.plasma.V1))
    scale_all = np.ones(S) if need is None else np.asarray(params[need], dtype=float)
    circ0_all = np.ascontiguousarray(marrow["circ0"], dtype=float)
    mtt_all = np.ascontiguousarray(marrow["mtt"], dtype=float)
    slope_all = np.ascontiguousarray(marrow["slope"], dtype=float)

    n_inj = len(escalation.times)
    doses = np.full((S, n_inj), np.nan)
    actions = np.full((S, n_inj), -1, dtype=np.int64)
    nadir = np.full((S, L), np.nan)
    nadir_t = np.full((S, L), np.nan)
    worst = np.zeros((S, L), dtype=np.int64)
    status = np.zeros(S, dtype=np.int64)
    f_route = float(model.bioavailability[route])
    old_threads = numba.get_num_threads()
    if threads is not None:
        numba.set_num_threads(int(threads))
    try:
        for a in range(0, S, int(chunk_size)):
            b = min(S, a + int(chunk_size))
            Ks = np.ascontiguousarray(rate_matrices(drug, physiology, csf_layout, {k: v[a:b] for k, v in pk.items()}))
            v1, dose_scale = np.ascontiguousarray(v1_all[a:b]), np.where(skip[a:b] == 1, 1.0, scale_all[a:b])
            circ0 = np.ascontiguousarray(np.where(skip[a:b, None] == 1, 1.0, circ0_all[a:b]))
            mtt = np.ascontiguousarray(np.where(skip[a:b, None] == 1, 1.0, mtt_all[a:b]))
            slope = np.where(skip[a:b] == 1, 0.0, slope_all[a:b])
            out = (skip[a:b], doses[a:b], actions[a:b], nadir[a:b], nadir_t[a:b], worst[a:b], status[a:b])

            def block(c, d):  # runs before the next chunk's arrays are made (on_threads waits)
                kernel.run_batch(Ks[c:d], np.int64(central), v1[c:d], np.int64(route), f_route, act_time, act_kind,
                                 act_index, grid_step, levels, dose_scale[c:d], np.int64(escalation.decision_grade),
                                 np.int64(substeps), circ0[c:d], mtt[c:d], gamma, kcirc, slope[c:d], thresholds,
                                 *(arr[c:d] for arr in out))

            on_threads(block, b - a, size=ESCALATION_BLOCK)
    finally:
        if threads is not None:
            numba.set_num_threads(old_threads)

    failed = status != Status.OK
    message = np.where(why != "", why, np.where(failed, Status.NONFINITE.message if failed.any() else "", "ok"))
    doses[failed] = np.nan
    nadir[failed] = np.nan
    nadir_t[failed] = np.nan
    cols = {"subject": subject, "status": status.astype(np.int8), "message": message,
            "weight_kg": np.asarray(params.get("weight_kg", np.full(S, physiology.weight_kg)), dtype=float),
            "bsa_m2": np.asarray(params.get("bsa_m2", np.full(S, physiology.bsa_m2)), dtype=float),
            "dose_scale": np.where(failed, np.nan, scale_all),
            "final_dose_mg": doses[:, -1],
            "max_dose_mg": np.where(failed, np.nan, np.max(np.where(failed[:, None], 0.0, doses), axis=1)),
            "n_step_backs": np.where(failed, -1, (actions == codes.STEP_BACK).sum(axis=1)),
            "n_holds": np.where(failed, -1, (actions == codes.HOLD).sum(axis=1))}
    for j, n in enumerate(marrow["lineages"]):
        cols[f"nadir_{n}_1e9_L"] = nadir[:, j]
        cols[f"nadir_time_{n}_h"] = nadir_t[:, j]
        cols[f"worst_grade_{n}"] = np.where(failed, -1, worst[:, j])
    cols["worst_grade_any"] = np.where(failed, -1, worst.max(axis=1))
    subjects = pd_.DataFrame(cols)
    times = np.asarray(escalation.times, dtype=float)
    act_names = np.array(DECISIONS + ("failed",), dtype=object)
    dose_frame = pd_.DataFrame({
        "subject": np.repeat(subject, n_inj), "injection": np.tile(np.arange(1, n_inj + 1), S),
        "time_h": np.tile(times, S), "dose_mg": doses.ravel(),
        "action": act_names[np.where(np.repeat(failed, n_inj), len(DECISIONS), actions.ravel())]})
    return EscalationPopulation(subjects, dose_frame, tuple(marrow["lineages"]))


def run_escalation_population(drug, escalation: Escalation, population: Population, *, t_end=None, dt=0.25,
                              csf_layout="single", physiology=None, pd=None, dose_basis=None, weight_kg=None,
                              bsa_m2=None, marrow_iiv=True, substeps=4, chunk_size=4096, threads=None):
    """Escalation for every subject of ``population`` (PK IIV from the drug file, marrow IIV from the PD file).

    Body size per subject comes from the population's covariates (``Population(covariates={"weight":
    (70, 0.2)})``) or, when given, from ``weight_kg`` / ``bsa_m2`` arrays of length ``population.n``;
    without either every subject has the physiology's reference size. ``dose_basis``: None (mg), ``"weight"``
    (levels in mg/kg) or ``"bsa"`` (mg/m²). Other arguments as ``run_escalation_subjects``.

    Examples
    --------
    >>> import csfpk
    >>> from csfpk.escalation import Escalation
    >>> esc = Escalation(times=(0.0, 84.0, 168.0), start=0.1, step=0.05, cap=0.3)  # mg/kg
    >>> res = run_escalation_population("pemetrexed", esc, csfpk.Population(n=3, seed=2), dt=1.0,
    ...                                 dose_basis="weight", weight_kg=[50.0, 70.0, 90.0])
    >>> res.doses.query("injection == 1").dose_mg.round(6).tolist()
    [5.0, 7.0, 9.0]
    """

    if isinstance(drug, str):
        drug = load_drug(drug)
    if not isinstance(population, Population):
        raise ParameterError(f"population = {population!r} is not a Population; build one with csfpk.Population(n=...)")
    pd = pd or load_myelosuppression()
    if physiology is None:
        physiology = load_physiology("adult")
    if not isinstance(escalation, Escalation):
        raise ScheduleError(f"escalation = {escalation!r} is not an Escalation; build one with Escalation(...)")
    escalation_model(drug, escalation, physiology, csf_layout)
    params = population.sample(drug, physiology=physiology)
    for name, arr in (("weight_kg", weight_kg), ("bsa_m2", bsa_m2)):
        if arr is not None:
            arr = np.asarray(arr, dtype=float)
            if arr.shape != (population.n,):
                raise ParameterError(f"{name} has shape {arr.shape}; expected ({population.n},), one per subject")
            params[name] = arr
    marrow = marrow_parameters(pd, drug.name, population.seed, params["subject"], iiv=marrow_iiv)
    return run_escalation_subjects(drug, escalation, params, marrow, t_end=t_end, dt=dt, csf_layout=csf_layout,
                                   physiology=physiology, pd=pd, dose_basis=dose_basis, substeps=substeps,
                                   chunk_size=chunk_size, threads=threads)
