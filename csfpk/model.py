r"""The compartment graph of a drug, compiled to a rate matrix (DESIGN §3).

States are amounts (mg). Flows are first order; ``K[j, i]`` is the rate constant (1/h) of the
flow from state i to state j and ``K[i, i]`` minus the sum of all flows out of i, so that every
column of K sums to zero: with the elimination sink as a state, mass is conserved exactly and
``dosed = present + eliminated``.

Plasma (Savic 2007 for the transit chain; standard mammillary model)::

    dA_depot/dt   = −ka·A_depot                         (or −k_tr·A_depot with a transit chain,
    dA_tr,i/dt    = k_tr·A_tr,i−1 − k_tr·A_tr,i           k_tr = (n_transit + 1)/mtt)
    dA_c/dt       = ka·A_depot − (CL/V1)·A_c − (Q/V1)·A_c + (Q/V2)·A_p − (Q3/V1)·A_c + (Q3/V3)·A_p2
                    − Σ_r CL_in,r·fu·A_c/V1 + Σ_r (CL_out,r/V_r)·A_r + (Q_bulk/V_exit)·A_exit
    dA_p/dt       = (Q/V1)·A_c − (Q/V2)·A_p
    dA_elim/dt    = (CL/V1)·A_c                          (+ nonlinear terms, see _kernels/rhs.py)

CSF, ``single`` layout (one well-mixed region of volume V_csf, bulk flow Q_bulk back to blood)::

    dA_csf/dt = CL_in·fu·C_p − (CL_out + Q_bulk)·C_csf

At steady state under constant plasma concentration, C_csf/C_p = CL_in·fu/(CL_out + Q_bulk), and
the CSF relaxes to it with rate constant k_csf = (CL_out + Q_bulk)/V_csf. Given a penetration
ratio R (on total plasma: C_csf = R·C_p; on unbound plasma: C_csf = R·fu·C_p) and an equilibration
half-life t½::

    CL_out = ln2·V_csf/t½ − Q_bulk      (must be ≥ 0: t½ ≤ ln2·V_csf/Q_bulk)
    CL_in  = R·(CL_out + Q_bulk)/fu     (total basis)     or   R·(CL_out + Q_bulk)   (unbound basis)

CSF, ``regional`` layout (ventricles v, cisterna magna m, cranial SAS c, spinal/lumbar SAS l):
CSF is produced in v at Q_bulk and flows v → m → c → venous blood, a share s passing m → l → c;
two-way mixing Q_cl between c and l (and optionally Q_vm between v and m, Q_mc between m and c)::

    dA_v/dt = in_v − Q_bulk·C_v + Q_vm·(C_m − C_v)
    dA_m/dt = in_m + Q_bulk·C_v − Q_bulk·C_m + Q_vm·(C_v − C_m)
    dA_l/dt = in_l + s·Q_bulk·C_m − s·Q_bulk·C_l + Q_cl·(C_c − C_l)
    dA_c/dt = in_c + (1 − s)·Q_bulk·C_m + s·Q_bulk·C_l − Q_bulk·C_c + Q_cl·(C_l − C_c) + Q_mc·(C_m − C_c)
    (and the mirror terms Q_mc·(C_c − C_m) in dA_m/dt)
    in_r    = CL_in,r·fu·C_p − CL_out,r·C_r,   with CL_in,r, CL_out,r ∝ V_r

Exchange clearances are shared among regions in proportion to volume (the same per-volume
permeability everywhere, an assumption); the efflux rate constant CL_out,r/V_r equals the single
layout's CL_out/V_csf, and the influx scale is solved so that the steady-state ratio at the
drug's sampling site (lumbar unless stated) equals R. With fast mixing the regional layout
collapses to the single one.
"""

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ._kernels.rhs import NL_CENTRAL, NL_DCL, NL_KIND, NL_KM, NL_SINK, NL_SIZE, NL_V1, NL_VMAX
from .drug import Drug
from .errors import ParameterError, ScheduleError
from .physiology import Physiology

LAYOUTS = ("single", "regional")
REGIONS = ("csf_ventricles", "csf_cisterna", "csf_cranial", "csf_lumbar")
_SITE_REGION = {"lumbar": "csf_lumbar", "ventricular": "csf_ventricles", "cisternal": "csf_cisterna"}


@dataclass(frozen=True, eq=False)
class Model:
    """A compiled model: state names, rate matrix and dosing properties per state.

    Attributes
    ----------
    states : names of the state amounts (mg); the last ``n_sinks`` are sinks (``eliminated``).
    K : rate matrix (1/h), shape (n, n), columns sum to zero.
    nl : nonlinear parameters for the kernels (see ``csfpk._kernels.rhs``).
    outputs : ``{name: (state index, volume L, scale)}``; concentration = scale·A/volume (mg/L).
    routes : ``{route: state index}`` for the dosing routes this model accepts.
    bioavailability, lag, rate, duration : per-state dose modifiers (NONMEM F, ALAG, R, D);
        ``rate``/``duration`` are used by records with rate = −1 / −2 (0 means "not modelled").
    """

    states: tuple
    K: np.ndarray
    nl: np.ndarray
    outputs: dict
    routes: dict
    bioavailability: np.ndarray
    lag: np.ndarray
    rate: np.ndarray
    duration: np.ndarray
    n_sinks: int = 1
    molecular_weight: float = 1.0
    name: str = "model"
    layout: str = "none"
    dose_bioavailability: object = None  # callable(dose mg) -> F for oral doses, or None
    derived: dict = field(default_factory=dict)

    @property
    def n(self):
        return len(self.states)

    @property
    def n_dynamic(self):
        return self.n - self.n_sinks

    @property
    def linear(self):
        """True when the model is linear and time-invariant (the exact solver applies)."""
        return self.nl[NL_VMAX] == 0.0 and self.nl[NL_DCL] == 0.0

    def index(self, cmt):
        """State index of ``cmt`` (a state name, or a 1-based NONMEM compartment number)."""
        if isinstance(cmt, str):
            if cmt in self.states[: self.n_dynamic]:
                return self.states.index(cmt)
            raise ScheduleError(
                f"cmt = {cmt!r} is not a compartment of this model; allowed: {list(self.states[: self.n_dynamic])}"
            )
        c = int(cmt)
        if c != cmt or not 1 <= c <= self.n_dynamic:
            raise ScheduleError(
                f"cmt = {cmt!r} is not allowed; expected 1..{self.n_dynamic} ({', '.join(self.states[: self.n_dynamic])})"
            )
        return c - 1

    def with_dosing(self, *, bioavailability=None, lag=None, rate=None, duration=None):
        """Return a copy with per-compartment F, ALAG, modelled rate R (mg/h) or duration D (h).

        Each argument maps a compartment name or 1-based number to a value, as NONMEM's F1/ALAG1/
        R1/D1. Examples: ``model.with_dosing(lag={"central": 2.0}, bioavailability={"central": 0.6})``.
        """
        arrays = {}
        for label, given, lo, hi in (("bioavailability", bioavailability, 0.0, math.inf),
                                     ("lag", lag, 0.0, math.inf),
                                     ("rate", rate, 0.0, math.inf),
                                     ("duration", duration, 0.0, math.inf)):
            arr = getattr(self, label).copy()
            for cmt, v in (given or {}).items():
                v = float(v)
                if not (math.isfinite(v) and lo <= v <= hi):
                    raise ParameterError(f"{label}[{cmt!r}] = {v!r} is not allowed; expected a finite value >= 0")
                arr[self.index(cmt)] = v
            arrays[label] = arr
        return replace(self, **arrays)


def _add_flow(K, src, dst, k):
    if k < 0 or not math.isfinite(k):
        raise ParameterError(f"rate constant {src}->{dst} = {k!r} must be finite and >= 0")
    K[dst, src] += k
    K[src, src] -= k


def csf_clearances(drug: Drug, physiology: Physiology):
    """Return (CL_in, CL_out) in L/h for the single layout (see module docstring)."""
    csf = drug.csf
    if csf is None:
        raise ParameterError(f"{drug.name}: has no [csf] section; CSF exchange is undefined")
    if csf.mechanistic:
        return csf.CL_in, csf.CL_out
    v, qb = physiology.csf_volume, physiology.bulk_flow
    max_half_life = math.log(2) * v / qb
    if csf.equilibration_half_life > max_half_life:
        raise ParameterError(
            f"{drug.name}: csf.equilibration_half_life = {csf.equilibration_half_life:g} h is longer than CSF bulk "
            f"flow alone allows; expected <= ln2·V_csf/Q_bulk = {max_half_life:.3g} h "
            f"(V_csf = {v:g} L, Q_bulk = {qb:g} L/h)"
        )
    cl_total = math.log(2) * v / csf.equilibration_half_life
    cl_out = cl_total - qb
    fu_basis = drug.plasma.fu if csf.basis == "total" else 1.0
    cl_in = csf.penetration_ratio * cl_total / fu_basis
    return cl_in, max(cl_out, 0.0)


def build_model(drug: Drug, physiology: Physiology | None = None, csf_layout="single"):
    """Compile ``drug`` with ``physiology`` into a ``Model`` (see module docstring for equations).

    Parameters
    ----------
    drug : the drug (``csfpk.load_drug``).
    physiology : CSF physiology; default ``load_physiology("adult")``.
    csf_layout : ``"single"`` (one CSF compartment), ``"regional"`` (four regions) or ``"none"``
        (plasma only; for drugs without CSF data).
    """
    if csf_layout not in LAYOUTS + ("none",):
        raise ParameterError(f"csf_layout = {csf_layout!r} is not allowed; expected one of {LAYOUTS + ('none',)}")
    if physiology is None:
        from .physiology import load_physiology

        physiology = load_physiology("adult")
    p = drug.plasma
    states = ["depot"]
    n_tr = p.n_transit or 0
    states += [f"transit{i + 1}" for i in range(n_tr)]
    states.append("central")
    if p.Q is not None:
        states.append("peripheral")
    if p.Q3 is not None:
        states.append("peripheral2")
    if csf_layout != "none" and drug.csf is None:
        raise ParameterError(
            f"{drug.name}: csf_layout = {csf_layout!r} needs a [csf] section in the drug file; "
            "use csf_layout='none' for plasma only"
        )
    if csf_layout == "single":
        csf_states = ["csf"]
    elif csf_layout == "regional":
        if not physiology.has_regional:
            raise ParameterError(f"physiology {physiology.name!r} has no [csf.regional] section; regional layout needs it")
        csf_states = list(REGIONS)
    else:
        csf_states = []
    states += csf_states
    has_depot = drug.csf is not None and drug.csf.depot_release_half_life is not None and csf_layout != "none"
    if has_depot:
        states.append("csf_depot")
    states.append("eliminated")
    n = len(states)
    ix = {s: i for i, s in enumerate(states)}
    K = np.zeros((n, n))
    c, sink = ix["central"], ix["eliminated"]

    chain = ["depot"] + [f"transit{i + 1}" for i in range(n_tr)] + ["central"]
    k_abs = p.ka if n_tr == 0 else (n_tr + 1) / p.mtt
    for a, b in zip(chain[:-1], chain[1:]):
        # the last link of a transit chain is the absorption step ka (Savic 2007)
        _add_flow(K, ix[a], ix[b], p.ka if (b == "central" and n_tr > 0) else k_abs)
    _add_flow(K, c, sink, p.CL / p.V1)
    if p.Q is not None:
        _add_flow(K, c, ix["peripheral"], p.Q / p.V1)
        _add_flow(K, ix["peripheral"], c, p.Q / p.V2)
    if p.Q3 is not None:
        _add_flow(K, c, ix["peripheral2"], p.Q3 / p.V1)
        _add_flow(K, ix["peripheral2"], c, p.Q3 / p.V3)

    outputs = {"plasma": (c, p.V1, 1.0), "plasma_unbound": (c, p.V1, p.fu)}
    derived = {}
    if csf_layout == "single":
        cl_in, cl_out = csf_clearances(drug, physiology)
        v, qb = physiology.csf_volume, physiology.bulk_flow
        _add_flow(K, c, ix["csf"], cl_in * p.fu / p.V1)
        _add_flow(K, ix["csf"], c, (cl_out + qb) / v)
        outputs["csf"] = (ix["csf"], v, 1.0)
        derived.update(CL_in=cl_in, CL_out=cl_out)
    elif csf_layout == "regional":
        derived.update(_regional(K, ix, drug, physiology, c))
        for r in REGIONS:
            outputs[r] = (ix[r], derived["volumes"][r], 1.0)
    if has_depot:
        target = "csf" if csf_layout == "single" else "csf_lumbar"
        _add_flow(K, ix["csf_depot"], ix[target], math.log(2) / drug.csf.depot_release_half_life)

    nl = np.zeros(NL_SIZE)
    nl[NL_CENTRAL], nl[NL_SINK], nl[NL_V1] = c, sink, p.V1
    if p.Vmax is not None:
        nl[NL_VMAX], nl[NL_KM] = p.Vmax, p.Km
    if p.CL_induced is not None:
        nl[NL_DCL], nl[NL_KIND] = p.CL_induced - p.CL, p.k_induction

    routes = {"oral": ix["depot"], "iv": c}
    if csf_layout == "single":
        routes["it_lumbar"] = routes["it_ventricular"] = ix["csf_depot"] if has_depot else ix["csf"]
    elif csf_layout == "regional":
        routes["it_lumbar"] = ix["csf_depot"] if has_depot else ix["csf_lumbar"]
        if not has_depot:  # the one depot releases into the lumbar region; an Ommaya depot is not modelled
            routes["it_ventricular"] = ix["csf_ventricles"]
    f = np.ones(n)
    f[ix["depot"]] = p.F
    lag = np.zeros(n)
    lag[ix["depot"]] = p.tlag
    return Model(
        states=tuple(states), K=K, nl=nl, outputs=outputs, routes=routes, bioavailability=f, lag=lag,
        rate=np.zeros(n), duration=np.zeros(n), n_sinks=1, molecular_weight=drug.molecular_weight,
        name=drug.name, layout=csf_layout,
        dose_bioavailability=p.bioavailability if p.F_dose_threshold is not None else None, derived=derived,
    )


def _regional(K, ix, drug, phys, c):
    """Add the regional CSF flows to K; return the derived exchange clearances (module docstring)."""
    vols = {"csf_ventricles": phys.volume_ventricles, "csf_cisterna": phys.volume_cisterna,
            "csf_cranial": phys.volume_cranial, "csf_lumbar": phys.volume_lumbar}
    v_total = sum(vols.values())
    qb, s = phys.bulk_flow, phys.spinal_fraction
    V, M, C, L = (ix[r] for r in REGIONS)
    flows = [(V, M, qb), (M, C, (1 - s) * qb), (M, L, s * qb), (L, C, s * qb), (C, c, qb)]
    for a, b, q in flows:
        if q > 0:
            _add_flow(K, a, b, q / _vol(vols, a, ix))
    for a, b, q in ((C, L, phys.mixing_cranial_lumbar), (V, M, phys.mixing_ventricles_cisterna),
                    (M, C, phys.mixing_cisterna_cranial)):
        if q > 0:
            _add_flow(K, a, b, q / _vol(vols, a, ix))
            _add_flow(K, b, a, q / _vol(vols, b, ix))
    p = drug.plasma
    csf = drug.csf
    if csf.mechanistic:
        cl_in_total, cl_out_total = csf.CL_in, csf.CL_out
        k_out = cl_out_total / v_total
        scale = cl_in_total / v_total
    else:
        cl_in_single, cl_out_single = csf_clearances(drug, phys.replace(csf_volume=v_total))
        k_out = cl_out_single / v_total
        scale = None
    region_ix = [V, M, C, L]
    # per-volume influx of unbound plasma drug (L/h per L of region), solved for the site ratio
    if scale is None:
        sub = K[np.ix_(region_ix, region_ix)].copy()
        for j, r in enumerate(REGIONS):
            sub[j, j] -= k_out
        # steady state with C_p = 1 mg/L and unit per-volume influx: sub·A + fu·V_r = 0
        b = np.array([p.fu * vols[r] for r in REGIONS])
        a_unit = np.linalg.solve(sub, -b)
        site = _SITE_REGION[csf.site]
        c_site_unit = a_unit[REGIONS.index(site)] / vols[site]
        target = csf.penetration_ratio * (1.0 if csf.basis == "total" else p.fu)
        scale = target / c_site_unit
    cl_in, cl_out = {}, {}
    for r, j in zip(REGIONS, region_ix):
        cl_in[r] = scale * vols[r]
        cl_out[r] = k_out * vols[r]
        _add_flow(K, c, j, cl_in[r] * p.fu / p.V1)
        if cl_out[r] > 0:
            _add_flow(K, j, c, cl_out[r] / vols[r])
    return {"volumes": vols, "CL_in": cl_in, "CL_out": cl_out}


def _vol(vols, state, ix):
    for r, v in vols.items():
        if ix[r] == state:
            return v
    raise AssertionError("flow from a non-CSF state")
