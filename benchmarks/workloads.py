"""The reference workloads of the kernel benchmark (defined in ``benchmarks/README.md``).

A workload is one model structure, one dosing schedule and one output grid shared by every
subject; subjects differ only in their parameters (log-normal inter-individual variability), so
every tool receives the same rate matrices ``Ks`` (S, n, n) and nonlinear parameters ``nls``
(S, NL_SIZE). Building the population is common setup and is not timed for any tool.
"""

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

import csfpk
from csfpk.schedule import BOLUS, OBS, build_timeline

SEED = 20240606

# tki: erlotinib (params/drugs/erlotinib.toml) plus a peripheral compartment, stated here
TKI_Q = 10.0  # L/h, intercompartmental clearance (benchmark assumption, not a sourced value)
TKI_V2 = 100.0  # L, peripheral volume (benchmark assumption)
TKI_CV = 0.30  # IIV coefficient of variation on CL, V1, ka
# nonlinear: Michaelis–Menten elimination added to the linear CL of the tki drug
NL_VMAX = 3.0  # mg/h
NL_KM = 0.5  # mg/L


@dataclass(frozen=True)
class Workload:
    """One benchmark workload (see the module docstring)."""

    name: str
    description: str
    drug: object  # csfpk Drug of the typical subject
    layout: str
    regimen: object
    t_end: float  # h
    dt: float  # h, output step
    iiv: dict  # parameter -> CV (fraction); log-normal, omega² = ln(1 + CV²)
    sizes: tuple  # population sizes of the full run
    quick_sizes: tuple
    csf_output: str  # name in Model.outputs whose concentration is compared
    reference_tool: str  # the csfpk record that ratio_to_csfpk divides by
    note: str = ""
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def model(self):
        if "model" not in self._cache:
            self._cache["model"] = csfpk.build_model(self.drug, csf_layout=self.layout)
        return self._cache["model"]

    @property
    def linear(self):
        return self.model.linear

    @property
    def grid(self):
        if "grid" not in self._cache:
            n = round(self.t_end / self.dt)
            self._cache["grid"] = self.dt * np.arange(n + 1)
        return self._cache["grid"]

    @property
    def timeline(self):
        if "timeline" not in self._cache:
            tl = build_timeline(self.model, self.regimen, self.grid)
            if not np.all((tl.kind == OBS) | (tl.kind == BOLUS)):
                raise AssertionError(f"workload {self.name}: only bolus doses are supported by the baselines")
            self._cache["timeline"] = tl
        return self._cache["timeline"]

    @property
    def csf_index(self):
        return self.model.outputs[self.csf_output][0]

    @property
    def outputs(self):
        """The curves every tool returns: plasma and the compared CSF output (concentrations, mg/L)."""
        return ("plasma", self.csf_output)

    @property
    def output_states(self):
        return np.array([self.model.outputs[o][0] for o in self.outputs], dtype=np.int64)

    def factors(self, n):
        """(n, 2) mg/L per mg of the outputs of subjects 0..n-1 (scale/volume of each subject's model)."""
        self.population(n)
        return np.ascontiguousarray(self._cache["pop"][2][:n])

    def population(self, n):
        """(Ks, nls) for subjects 0..n-1; subject i is the same whatever n (one seeded stream)."""
        have = self._cache.get("pop")
        if have is None or have[0].shape[0] < n:
            names = sorted(self.iiv)
            omega = np.array([math.sqrt(math.log1p(self.iiv[p] ** 2)) for p in names])
            eta = np.random.default_rng(SEED).standard_normal((n, len(names))) * omega
            typical = self.drug.plasma
            m0 = self.model
            Ks = np.empty((n, m0.n, m0.n))
            nls = np.empty((n, m0.nl.shape[0]))
            F = np.empty((n, len(self.outputs)))
            for s in range(n):
                changes = {p: getattr(typical, p) * math.exp(eta[s, j]) for j, p in enumerate(names)}
                m = csfpk.build_model(self.drug.replace(**changes), csf_layout=self.layout)
                Ks[s] = m.K
                nls[s] = m.nl
                for o, name in enumerate(self.outputs):
                    _, volume, scale = m.outputs[name]
                    F[s, o] = scale / volume
            have = (Ks, nls, F)
            self._cache["pop"] = have
        return np.ascontiguousarray(have[0][:n]), np.ascontiguousarray(have[1][:n])

    def segments(self):
        """Dose intervals for the interval-by-interval baselines.

        Returns ``[(t0, t1, doses, rows)]``: at t0 give ``doses`` [(state, mg)], then integrate to
        t1 writing output rows ``rows`` (grid times in (t0, t1]). Grid row 0 at t = 0 is the
        pre-dose initial state (zero), as in csfpk (a sample at a dose time is the pre-dose value).
        """
        if "segments" in self._cache:
            return self._cache["segments"]
        tl, grid = self.timeline, self.grid
        bolus = tl.kind == BOLUS
        dose_times = sorted(set(tl.time[bolus].tolist()))
        bounds = sorted(set([0.0] + dose_times + [float(grid[-1])]))
        segs = []
        for a, b in itertools.pairwise(bounds):
            here = bolus & (tl.time == a)
            doses = [(int(c), float(v)) for c, v in zip(tl.cmt[here], tl.value[here])]
            rows = np.nonzero((grid > a) & (grid <= b))[0]
            segs.append((a, b, doses, rows))
        self._cache["segments"] = segs
        return segs


def _tki_drug():
    return csfpk.load_drug("erlotinib").replace(Q=TKI_Q, V2=TKI_V2)


def _it_layout():
    """The regional CSF layout when it builds, else the single one (recorded in the workload note)."""
    try:
        csfpk.build_model(csfpk.load_drug("methotrexate"), csf_layout="regional")
        return "regional", "csf_lumbar", ""
    except csfpk.CsfpkError as exc:  # the regional layout is optional here; say why it is absent
        return "single", "csf", f"regional CSF layout unavailable ({exc}); single layout used"


def make_workloads():
    """All workloads by name (built lazily; building loads parameter files only)."""
    tki_drug = _tki_drug()
    daily = csfpk.Regimen.every(amt=150, ii=24, n=28, route="oral")
    tki_iiv = {"CL": TKI_CV, "V1": TKI_CV, "ka": TKI_CV}
    layout, site, note = _it_layout()
    mtx = csfpk.load_drug("methotrexate")
    seed = csfpk.Regimen.phases((12, "3.5d", "4w"), (12, "1w", "4w"), (12, "4w", "18w"), route="it_lumbar")
    mtx_iiv = {p: mtx.quantities[f"iiv.{p}"].value / 100.0 for p in ("CL", "Q", "V3")} if _has_iiv(mtx) else {
        "CL": 0.196, "Q": 0.32, "V3": 0.31}
    return {
        "tki": Workload(
            name="tki",
            description="erlotinib-like oral TKI, depot+central+peripheral+CSF, 150 mg q24h x 28 d, hourly output",
            drug=tki_drug, layout="single", regimen=daily, t_end=672.0, dt=1.0, iiv=tki_iiv,
            sizes=(1, 100, 1000, 10000), quick_sizes=(1, 100, 1000), csf_output="csf",
            reference_tool="csfpk-exact"),
        "it": Workload(
            name="it",
            description=f"intrathecal methotrexate 12 mg lumbar, seed schedule, 180 d, 15-min output ({layout} CSF)",
            drug=mtx, layout=layout, regimen=seed, t_end=180 * 24.0, dt=0.25, iiv=mtx_iiv,
            sizes=(1, 1000), quick_sizes=(1, 100), csf_output=site, reference_tool="csfpk-exact", note=note),
        "nonlinear": Workload(
            name="nonlinear",
            description="tki with Michaelis-Menten elimination (Vmax 3 mg/h, Km 0.5 mg/L), adaptive solvers",
            drug=tki_drug.replace(Vmax=NL_VMAX, Km=NL_KM), layout="single", regimen=daily, t_end=672.0, dt=1.0,
            iiv=tki_iiv, sizes=(1, 100, 1000, 10000), quick_sizes=(1, 100), csf_output="csf",
            reference_tool="csfpk-auto"),
    }


def _has_iiv(drug):
    q = getattr(drug, "quantities", {}) or {}
    return all(f"iiv.{p}" in q for p in ("CL", "Q", "V3"))
