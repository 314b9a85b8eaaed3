"""Compare regimens of one drug over a virtual population (DESIGN §7, §8).

``compare`` is the Python face of ``csfpk compare``: each regimen becomes a scenario of the batch
runner (``csfpk.batch``), simulated for the same subjects (same seed, same parameters). It returns
the same ``csfpk.RunResult`` whether the run stays in memory or goes to a run folder:
``summary`` (numbers), ``table`` (text), ``metrics`` (per subject); ``csfpk.plot`` draws it.
"""

from .batch import run
from .drug import Drug, load_drug
from .errors import ParameterError
from .escalation import Escalation
from .physiology import Physiology
from .population import Population
from .regimen import Regimen
from .scenario import Scenario
from .simulation import ATOL, RTOL
from .units import hours


def compare(drug, regimens, population=None, t_end="28d", *, dt=1.0, out=None, window=None, target_nM=None,
            overrides=None, metrics="exact", method="auto", rtol=RTOL, atol=ATOL, csf_layout="single", physiology=None,
            chunk=None, curves=False, client=None, scheduler=None, overwrite=False, progress=None):
    """Simulate each regimen over the same virtual population and summarise exposure.

    Parameters
    ----------
    drug : a ``Drug`` or a drug name.
    regimens : ``{label: Regimen}``, or ``{label: Escalation}`` (toxicity-guided escalation, or
        ``Escalation.fixed`` for a fixed dose, with the marrow simulated per subject: grade ≥ 3 shares
        and final doses over the whole span, ``RunResult.doses``). One kind per call.
    population : a ``Population`` (default ``Population(n=1000, seed=1)``).
    t_end, dt : simulated span and output step (h or duration strings).
    out : run folder (manifest, Parquet, summary.csv); None keeps everything in memory.
    window : the metric window: ``"span"`` (the whole simulation), ``"ss"`` (the last complete dosing
        interval), ``"per_injection"`` or (start, end) in h or duration strings; default per
        injection for intrathecal regimens, ``"ss"`` for repeated doses, else the span.
    target_nM : target concentration; default the drug's ``[potency]`` target.
    overrides : ``Drug.replace`` changes applied first.
    metrics : ``"exact"`` (default): exact, grid-free metrics of the linear model (AUC, Cmax/Tmax,
        time above target, trough; ``csfpk.metrics``); ``"grid"``: read off the output grid every
        ``dt`` h, as NCA on sampled data would. A nonlinear drug has no exact metrics: they are read
        off a grid of ``csfpk.metrics.NONLINEAR_STEP_H`` inside the window (recorded in the manifest).
    method : the solver, as ``csfpk.simulate`` names it: ``"auto"`` (exact for a linear drug, else the
        adaptive/stiff choice of ``simulate``), ``"exact"``, ``"adaptive"`` or ``"stiff"``.
    rtol, atol : tolerances of the adaptive solvers (relative; absolute, mg), default ``simulate``'s.
    csf_layout : ``"single"`` (one CSF compartment, output ``csf``), ``"regional"`` (outputs
        ``csf_ventricles``, ``csf_cisterna``, ``csf_cranial``, ``csf_lumbar``, each with the metrics
        of ``csf``; the ``it_lumbar`` and ``it_ventricular`` routes then differ) or ``"none"``.
    physiology : a ``Physiology`` (``csfpk.load_physiology("adult_lm")``); default adult. Its
        ``[iiv]`` table gives the CSF-side variability of the population.
    chunk, curves, client, scheduler, overwrite, progress : see ``csfpk.batch.run``.

    Returns
    -------
    RunResult

    Examples
    --------
    >>> import csfpk
    >>> daily = csfpk.Regimen.every(amt=150, ii=24, n=28)
    >>> pulse = csfpk.Regimen.every(amt=1500, ii="7d", n=4)
    >>> cmp = csfpk.compare("erlotinib", {"150 mg qd": daily, "1500 mg qw": pulse},
    ...                     population=csfpk.Population(n=50, seed=1), t_end="28d")
    >>> list(cmp.summary.regimen)
    ['150 mg qd', '1500 mg qw']
    >>> "CSF Cavg,ss nM" in cmp.table.columns
    True
    """
    if isinstance(drug, str):
        drug = load_drug(drug)
    if not isinstance(drug, Drug):
        raise ParameterError(f"drug = {drug!r} is not a drug; pass csfpk.load_drug(name) or a name")
    if overrides:
        drug = drug.replace(**overrides)
    if not isinstance(regimens, dict) or not regimens:
        raise ParameterError("regimens must be a non-empty {label: Regimen} mapping")
    for label, reg in regimens.items():
        if not isinstance(reg, (Regimen, Escalation)):
            raise ParameterError(f"regimens[{label!r}] = {reg!r} is not a Regimen or an Escalation; build one with "
                                 "csfpk.Regimen.every or csfpk.Escalation")
    if physiology is not None and not isinstance(physiology, Physiology):
        raise ParameterError(f"physiology = {physiology!r} is not a Physiology; pass csfpk.load_physiology(name)")
    population = population or Population(n=1000, seed=1)
    if not isinstance(population, Population):
        raise ParameterError(f"population = {population!r} is not a csfpk.Population")
    t_end = hours(t_end, "t_end")
    dt = hours(dt, "dt")
    if window is not None and not isinstance(window, str):
        window = (hours(window[0], "window start"), hours(window[1], "window end"))
    scenarios = [Scenario(drug=drug, regimen=reg.schedule() if isinstance(reg, Escalation) else reg,
                          population=population, t_end=t_end, dt=dt, regimen_name=str(label),
                          population_name=population.name, overrides=overrides or {}, target_nM=target_nM,
                          window=window, metrics=metrics, method=method, rtol=rtol, atol=atol, csf_layout=csf_layout,
                          physiology=physiology, escalation=reg if isinstance(reg, Escalation) else None)
                 for label, reg in regimens.items()]
    return run(scenarios, out, chunk=chunk, curves=curves, client=client, scheduler=scheduler, overwrite=overwrite,
               progress=progress)
