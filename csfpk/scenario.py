"""A scenario: one drug (overrides applied), one regimen and one virtual population (DESIGN §7).

A scenario is the unit the batch runner (``csfpk.batch``) simulates and the run folder
(``csfpk.runfolder``) stores. ``Scenario.record()`` is its plain-data description with every
parameter value resolved — drug, physiology, population, regimen as NONMEM records, span, window
and target — so a run folder describes itself without the parameter files that produced it.
``Scenario.key`` names its folder: a readable slug of its labels and a hash of that record, so two
scenarios whose labels differ only in characters a file name cannot hold ("150 mg/qd" and
"150 mg qd") never share a folder.

Examples
--------
>>> import csfpk
>>> from csfpk.scenario import Scenario
>>> s = Scenario(csfpk.load_drug("erlotinib"), csfpk.Regimen.every(amt=150, ii=24, n=28),
...              csfpk.Population(n=10), t_end=672.0, regimen_name="150 mg/qd")
>>> s.key.startswith("erlotinib__150_mg_qd__population-")
True
"""

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from .drug import Drug
from .errors import ParameterError
from .escalation import Escalation
from .myelosuppression import Myelosuppression, load_myelosuppression
from .metrics import NONLINEAR_MAX_SAMPLES, NONLINEAR_STEP_H
from .model import build_model
from .physiology import Physiology, load_physiology
from .population import Population
from .quantity import PicklesMappings
from .regimen import Regimen
from .simulation import ATOL, METHODS, RTOL, check_tolerances, choose_method

DOSE_BASES = (None, "bsa", "weight")
METRICS = ("exact", "grid")


def digest(data, length=16):
    """SHA-256 (first ``length`` hex digits) of the canonical JSON of plain ``data``."""
    text = json.dumps(data, sort_keys=True, default=_json_default, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, MappingProxyType):
        return dict(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def plain(data):
    """``data`` as JSON-ready plain data (tuples → lists, numpy scalars → Python numbers)."""
    return json.loads(json.dumps(data, default=_json_default))


@dataclass(frozen=True, eq=False)
class Scenario(PicklesMappings):
    """One cell of a sweep grid: a drug (overrides applied), a regimen and a population.

    Attributes
    ----------
    drug : the ``Drug`` with overrides applied.  regimen : the ``Regimen``.
    population : the ``Population``.  t_end, dt : simulated span and output step, h.
    regimen_name, population_name, override_name : labels (``override_name`` "" for none).
    overrides : the ``Drug.replace`` changes applied.  source : where the regimen comes from.
    dose_basis : None (mg), ``"bsa"`` (mg/m²) or ``"weight"`` (mg/kg): doses scale per subject.
    target_nM : target concentration (nM) for time above target and PTA; None = drug's [potency].
    window : the metric window (``csfpk.metrics``): ``"span"`` (whole simulation), ``"ss"`` (last
        complete dosing interval), ``"per_injection"`` or ``(start, end)`` h; None picks the
        default: per injection for intrathecal regimens, ``"ss"`` for repeated doses, else the span.
    csf_layout : ``"single"``, ``"regional"`` or ``"none"``.  physiology : the ``Physiology`` (default adult).
    metrics : ``"exact"`` (default; grid-free exact metrics of the linear model, ``csfpk.metrics``)
        or ``"grid"`` (read off the output grid every ``dt`` h, as NCA on sampled data would). A
        nonlinear model has no exact metrics: ``"exact"`` then reads them off a grid of
        ``csfpk.metrics.NONLINEAR_STEP_H`` inside each window (``metrics_grid_h``).
    method : the solver, as ``csfpk.simulate`` names it: ``"auto"`` (default: exact for a linear model,
        else the solver ``simulate`` picks), ``"exact"``, ``"adaptive"`` or ``"stiff"``; the one used is
        ``solver``. rtol, atol : tolerances of the adaptive solvers (relative; absolute, mg), as
        ``simulate``'s. Subject i of a population then gives ``simulate``'s numbers for its parameters.
    escalation : an ``Escalation`` (toxicity-guided, or ``Escalation.fixed`` for a fixed dose with
        myelosuppression): the scenario then runs through the escalation kernel
        (``csfpk.escalation_population``) and its rows are per-subject doses, decisions, nadirs and
        grades instead of exposure metrics; ``regimen`` must be ``escalation.schedule()`` and the
        window is the whole span. With ``dose_basis`` the escalation's levels are per kg or per m².
    pd : the myelosuppression parameter set of an escalation scenario (default
        ``params/pd/myelosuppression.toml``).  marrow_iiv : draw the marrow IIV of ``pd`` per subject.
    substeps : RK4 sub-steps of the marrow model per output step ``dt``.
    """

    drug: Drug
    regimen: Regimen
    population: Population
    t_end: float
    dt: float = 1.0
    regimen_name: str = "regimen"
    population_name: str = "population"
    override_name: str = ""
    overrides: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    source: str = ""
    dose_basis: str | None = None
    target_nM: float | None = None
    window: tuple | None = None
    csf_layout: str = "single"
    physiology: Physiology = None
    metrics: str = "exact"
    method: str = "auto"
    rtol: float = RTOL
    atol: float = ATOL
    solver: str = field(init=False, default="exact")  # the method used: "exact", "adaptive" or "stiff"
    escalation: Escalation | None = None
    pd: Myelosuppression | None = None
    marrow_iiv: bool = True
    substeps: int = 4

    def __post_init__(self):
        if self.escalation is not None:
            _check_escalation(self)
        if self.metrics not in METRICS:
            raise ParameterError(f"metrics = {self.metrics!r} is not allowed; expected 'exact' or 'grid'")
        if self.method not in METHODS:
            raise ParameterError(f"method = {self.method!r} is not allowed; expected one of {METHODS}")
        check_tolerances(self.rtol, self.atol)
        if self.physiology is None:
            object.__setattr__(self, "physiology", load_physiology("adult"))
        model = build_model(self.drug, self.physiology, self.csf_layout)
        object.__setattr__(self, "solver", choose_method(model, self.method))
        if self.dose_basis not in DOSE_BASES:
            raise ParameterError(f"dose_basis = {self.dose_basis!r} is not allowed; expected None, 'bsa' or 'weight'")
        if self.target_nM is None and self.drug.potency_target_nM is not None:
            object.__setattr__(self, "target_nM", float(self.drug.potency_target_nM))
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))
        object.__setattr__(self, "window", _window(self.window, self.regimen, self.t_end))

    @property
    def id(self):
        """Readable label: drug / regimen / population [/ override]."""
        parts = [self.drug.name, self.regimen_name, self.population_name]
        if self.override_name:
            parts.append(self.override_name)
        return " / ".join(parts)

    @property
    def metrics_grid_h(self):
        """Step (h) of the grid the metrics are read off: None for exact metrics, ``dt`` for grid metrics,
        ``NONLINEAR_STEP_H`` inside each window for exact metrics of a nonlinear model (coarser for spans
        longer than ``NONLINEAR_MAX_SAMPLES`` such steps, ``csfpk.metrics``)."""
        if self.metrics == "grid":
            return self.dt
        if self.solver == "exact":
            return None
        return min(max(NONLINEAR_STEP_H, self.t_end / NONLINEAR_MAX_SAMPLES), self.dt)

    @property
    def key(self):
        """Folder name: a file-system-safe slug of ``id`` and a hash of ``record()`` (collision-free)."""
        slug = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in self.id.replace(" / ", "__"))
        return f"{slug.strip('_.')[:80]}-{digest(self._resolved(), 12)}"

    def record(self):
        """Plain data: labels, ``key`` and every resolved value that determines the numbers."""
        return {"id": self.id, "key": self.key, **self._resolved()}

    def _resolved(self):
        d = self.drug
        return plain({
            "drug": {"name": d.name, "molecular_weight": d.molecular_weight,
                     "plasma": dataclasses.asdict(d.plasma),
                     "csf": None if d.csf is None else dataclasses.asdict(d.csf),
                     "iiv": dict(d.iiv), "potency_target_nM": d.potency_target_nM,
                     "covariates": {k: [dataclasses.asdict(e) for e in v] for k, v in d.covariates.items()}},
            "regimen": [dataclasses.asdict(r) for r in self.regimen.records],
            "population": self.population.to_dict(),
            "physiology": {f.name: getattr(self.physiology, f.name) for f in dataclasses.fields(self.physiology)
                           if f.name != "quantities"},
            "t_end": self.t_end, "dt": self.dt, "regimen_name": self.regimen_name,
            "population_name": self.population_name, "override_name": self.override_name,
            "overrides": dict(self.overrides), "source": self.source, "dose_basis": self.dose_basis,
            "target_nM": self.target_nM, "window": self.window if isinstance(self.window, str) else list(self.window),
            "csf_layout": self.csf_layout, "metrics": self.metrics,
            "solver": {"method": self.method, "used": self.solver,
                       "rtol": None if self.solver == "exact" else self.rtol,
                       "atol": None if self.solver == "exact" else self.atol,
                       "metrics_grid_h": self.metrics_grid_h},
            **self._escalation_record(),
        })

    def _escalation_record(self):
        """The escalation, marrow parameters and solver settings of an escalation scenario ({} otherwise: the
        records, hashes and folder keys of exposure scenarios are those of runs made before escalation)."""
        if self.escalation is None:
            return {}
        return {"escalation": self.escalation.to_dict(), "pd": self.pd.record(self.drug.name, self.marrow_iiv),
                "marrow_iiv": self.marrow_iiv, "substeps": self.substeps}


def _check_escalation(scn):
    """Checks and defaults of an escalation scenario (``Scenario.escalation``); one line naming the field."""
    esc = scn.escalation
    if not isinstance(esc, Escalation):
        raise ParameterError(f"escalation = {esc!r} is not an Escalation; build one with csfpk.Escalation(...)")
    if scn.pd is None:
        object.__setattr__(scn, "pd", load_myelosuppression())
    if not isinstance(scn.pd, Myelosuppression):
        raise ParameterError(f"pd = {scn.pd!r} is not a myelosuppression parameter set; use "
                             "csfpk.myelosuppression.load_myelosuppression()")
    scn.pd.slope(scn.drug.name)  # the drug needs a drug-effect slope
    if not isinstance(scn.marrow_iiv, bool):
        raise ParameterError(f"marrow_iiv = {scn.marrow_iiv!r} is not allowed; expected True or False")
    sub = scn.substeps
    if isinstance(sub, bool) or not isinstance(sub, (int, np.integer)) or not 1 <= sub <= 100:
        raise ParameterError(f"substeps = {scn.substeps!r} is not allowed; expected an integer in [1, 100]")
    times = [r.time for r in scn.regimen.doses()]
    if times != list(esc.times):
        raise ParameterError(f"{scn.drug.name} / {scn.regimen_name}: the regimen's dose times differ from the "
                             "escalation's injection times; pass regimen=escalation.schedule()")
    if scn.window not in (None, "span"):
        raise ParameterError(f"window = {scn.window!r} is not allowed for an escalation scenario; its grades, "
                             "nadirs and doses cover the whole span (window 'span')")
    object.__setattr__(scn, "window", "span")
    if not scn.t_end > esc.times[-1]:
        raise ParameterError(f"t_end = {scn.t_end:g} h is not after the last injection at {esc.times[-1]:g} h; "
                             "expected a span that covers every injection and the nadir after it")


def _window(window, regimen, t_end):
    """The checked metric window; None → the default for ``regimen`` (class docstring)."""
    if window is None:
        doses = [r for r in regimen.records if r.evid in (1, 4) and r.time < t_end]
        if doses and all(isinstance(r.cmt, str) and r.cmt.startswith("it_") for r in doses):
            return "per_injection"
        n = len(doses) + sum(1 for r in doses if r.addl >= 1 and r.time + r.ii < t_end)
        return "ss" if n >= 2 or any(r.ss for r in doses) else "span"
    if isinstance(window, str):
        if window not in ("span", "ss", "per_injection"):
            raise ParameterError(f"window = {window!r} is not allowed; expected 'span', 'ss', 'per_injection' "
                                 "or (start, end) in h")
        return window
    try:
        a, b = (float(x) for x in window)
    except (TypeError, ValueError):
        raise ParameterError(f"window = {window!r} is not allowed; expected 'span', 'ss', 'per_injection' "
                             "or (start, end) in h") from None
    if not 0 <= a < b:
        raise ParameterError(f"window = {window!r} is not allowed; expected 0 <= start < end (h)")
    return (a, b)
