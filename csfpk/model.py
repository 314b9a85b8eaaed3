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

(with ``csf.uptake_half_saturation`` K_u the influx saturates, CL_in·fu·C_p / (1 + fu·C_p/K_u): a
nonlinear term of ``_kernels/rhs.py``, so R below is its low-concentration limit)

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

Brain interstitial fluid (drugs with ``csf.CL_interstitial``; intrathecal agents). A compartment
``brain_ecf`` of volume V_isf (physiology ``volume_interstitial``, 0.24 L) exchanges with the CSF
by diffusion, CL_isf shared among the regions by volume as the plasma exchange is, and may lose
drug to plasma across the blood–brain barrier (``csf.CL_brain_out``)::

    dA_r/dt  += CL_isf,r·(C_isf − C_r),          CL_isf,r = CL_isf·V_r/V_csf
    dA_isf/dt = Σ_r CL_isf,r·(C_r − C_isf) − CL_brain_out·C_isf
    dA_c/dt  += CL_brain_out·C_isf

Delayed CSF drainage (physiologies with ``drainage_fraction``; every drug with a CSF layout). A share φ of
the CSF bulk outflow leaves the absorbing region (cranial SAS; the CSF in the single layout) not through
the arachnoid granulations straight into venous blood but along nerve sheaths and meningeal lymphatics
into extracranial lymph, a compartment ``csf_drainage`` that reaches plasma with half-life t½_d::

    dA_c/dt     −= φ·Q_bulk·C_c          (C_c → plasma now carries (1 − φ)·Q_bulk)
    dA_drain/dt  = φ·Q_bulk·C_c − (ln2/t½_d)·A_drain
    dA_central  += (ln2/t½_d)·A_drain

Why (issue 10, third pass). A tracer that leaves the CSF only with bulk flow (gadobutrol, lumbar
intrathecal) peaks in human blood at about 10 h (Eide 2021 JCI Insight 6:e147063, 29 reference
patients); with direct absorption the model's blood peak is at 6.5 h (7.5 h as the spinal mixing goes
to zero), so the human CSF-to-blood transfer has a delay downstream of the CSF, as the lymphatic outflow
of CSF in animals implies (40–48 % of cranial CSF in sheep, Boulton 1998 Am J Physiol 274:R88;
"predominantly" in mice, Ma 2017 Nat Commun 8:1434). φ and t½_d are set from the tracer alone (the
smallest φ that gives the 10-h blood peak, at the t½_d where it is reached; ``params/physiology/adult.toml``),
before and independently of the methotrexate fit. The compartment is downstream of the CSF, so
steady-state CSF/plasma ratios (the TKI parameterisation) and every CSF curve under a given plasma
curve are unchanged; what changes is the plasma curve after an intrathecal dose (a lower peak, a
longer tail), which is what the methotrexate plasma rows (Bleyer & Dedrick 1977) ask for. The two
values are physiology-file keys, so ``csfpk.fit`` can estimate them (``physiology.csf.drainage_fraction``,
``physiology.csf.drainage_half_life``) from tracer data; they are not fitted to drug data here. Drug-specific efflux
(``CL_out``, ``CL_brain_out``: transporters into blood) is not delayed.

Why this structure (issue 10). Human lumbar CSF methotrexate after an intrathecal dose falls in
two phases (t½ ≈ 4.5 h, then ≈ 14 h; 0.17 µM still present at 48 h) and reaches blood slowly
(Bleyer & Dedrick 1977 Cancer Treat Rep 61:703; Bleyer 1973 N Engl J Med 289:770). Bulk flow
(ln2·V_csf/Q_bulk ≈ 4 h) plus a modest efflux explains the first phase; no arrangement of CSF regions produces
the second, because every region is flushed by the same bulk flow. Bleyer & Dedrick attributed it
to diffusion between CSF and brain extracellular fluid, the simplest mechanism that gives a slow
phase of small amplitude: the tissue takes up drug while the CSF level is high and returns it when
it is low. Saturable efflux was not needed (IT doses in the data span 2–18 mg; no dose dependence
was tested) and the spinal/cranial mixing clearance was not identifiable from the data (fits
drove it to its bounds), so it keeps its physiology value.

Mixing of the cranial CSF (2026-11-29). CSF does not only flow one way: with every heart beat it
moves to and fro through the aqueduct (oscillatory volume 1.7 mL/min) and across the foramen magnum
(39 mL/min; Enzmann & Pelc 1993 AJNR 14:1301, phase-contrast MRI). ``mixing_ventricles_cisterna``
and ``mixing_cisterna_cranial`` are these tidal flows (each stroke exchanged once). Without them the
ventricles were flushed by fresh CSF within about an hour, and ventricular MTX after an Ommaya dose
or during an IV infusion was 10-100x below the published values; with them the ventricles,
cisterna and cranial SAS behave as the patients' data do (one mixed cranial pool a few hours after
an Ommaya dose), while the spinal canal, whose 35 mL the 0.65-mL stroke barely moves, keeps its
slow dispersion: ``mixing_cranial_lumbar`` 0.004 L/h, a spinal exchange time of 4 h, set from the
blood curve of lumbar intrathecal gadobutrol, a tracer that leaves the CSF only with bulk flow
(blood peak ~10 h; Eide 2021 JCI Insight 6:e147063; the part of that delay the CSF cannot give is the
delayed drainage above). The lumbar dose thus stays in the spinal canal for hours, which delays the
plasma peak and lengthens both lumbar phases. Tried and not kept (they
did not improve the fit rows and the three behaviours together; numbers in params/pd/NOTES.md):
efflux at the choroid plexus only, and a larger apparent brain tissue volume for MTX. At steady state under constant
plasma with CL_brain_out = 0 the interstitial compartment carries no net flux, so steady-state
CSF/plasma ratios, the quantity TKI files are parameterised by, are unchanged; the compartment
exists only for drugs whose file sets ``CL_interstitial``. The calibration is in
``params/drugs/methotrexate.toml`` and ``examples/it_validation.py``.
"""

import functools
import math
from dataclasses import dataclass, field, replace

import numpy as np

from ._kernels.codes import (NL_ASAT, NL_CENTRAL, NL_CSF, NL_DCL, NL_KIN, NL_KIND, NL_KM, NL_SINK, NL_SIZE, NL_V1,
                             NL_VMAX)
from .drug import Drug
from .errors import ParameterError, ScheduleError
from .physiology import Physiology, load_physiology

LAYOUTS = ("single", "regional")
REGIONS = ("csf_ventricles", "csf_cisterna", "csf_cranial", "csf_lumbar")
_SITE_REGION = {"lumbar": "csf_lumbar", "ventricular": "csf_ventricles", "cisternal": "csf_cisterna"}
_REGION_VOLUMES = ("volume_ventricles", "volume_cisterna", "volume_cranial", "volume_lumbar")  # REGIONS order


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
        return self.nl[NL_VMAX] == 0.0 and self.nl[NL_DCL] == 0.0 and self.nl[NL_ASAT] == 0.0

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


# per-subject parameters ``rate_matrices`` and ``nonlinear_parameters`` accept as arrays (everything else comes
# from the drug and physiology files): drug parameters (``Drug.replace`` names; CL_induced enters only the
# nonlinear terms) and physiology values (``Physiology.replace`` names)
DRUG_VARYING = ("CL", "V1", "ka", "Q", "V2", "Q3", "V3", "mtt", "fu", "penetration_ratio", "CL_in", "CL_out",
                "CL_induced")
PHYSIOLOGY_VARYING = ("csf_volume", "bulk_flow", "volume_ventricles", "volume_cisterna", "volume_cranial",
                      "volume_lumbar", "mixing_cranial_lumbar")
VARYING = DRUG_VARYING + PHYSIOLOGY_VARYING
# the physiology values each layout uses (the others change nothing in it)
LAYOUT_PHYSIOLOGY = {"none": (), "single": ("csf_volume", "bulk_flow"),
                     "regional": ("bulk_flow", "volume_ventricles", "volume_cisterna", "volume_cranial",
                                  "volume_lumbar", "mixing_cranial_lumbar")}
# the physiology value that is the volume of each CSF output
OUTPUT_VOLUME = {"csf": "csf_volume", "csf_ventricles": "volume_ventricles", "csf_cisterna": "volume_cisterna",
                 "csf_cranial": "volume_cranial", "csf_lumbar": "volume_lumbar"}


def typical_value(drug, physiology, name):
    """The file value of ``name`` (one of ``VARYING``): a physiology value, a CSF exchange or a plasma parameter."""
    if name in PHYSIOLOGY_VARYING:
        return float(getattr(physiology, name))
    return float(getattr(drug.csf if name in ("penetration_ratio", "CL_in", "CL_out") else drug.plasma, name))


def _add_flow(K, states, src, dst, k):
    """Add flow src → dst with rate constant k (1/h, one per subject) to every K[s]."""
    k = np.broadcast_to(np.asarray(k, dtype=float), (K.shape[0],))
    if not np.all(np.isfinite(k) & (k >= 0)):
        bad = k[~(np.isfinite(k) & (k >= 0))][0]
        raise ParameterError(f"rate constant {states[src]}->{states[dst]} = {bad!r} must be finite and >= 0")
    K[:, dst, src] += k
    K[:, src, src] -= k


def _half_life_reachable(drug, v, qb):
    """True where the drug's CSF equilibration half-life is reachable with CSF volume v and bulk flow qb
    (arrays): t½ <= ln2·V_csf/Q_bulk. Always true in the mechanistic mode."""
    v, qb = np.asarray(v, dtype=float), np.asarray(qb, dtype=float)
    if drug.csf is None or drug.csf.mechanistic:
        return np.ones(np.broadcast(v, qb).shape, dtype=bool)
    return drug.csf.equilibration_half_life <= math.log(2) * v / qb


def _check_half_life(drug, v, qb):
    ok = _half_life_reachable(drug, v, qb)
    if not np.all(ok):
        i = int(np.flatnonzero(~np.atleast_1d(ok))[0])
        v, qb = np.broadcast_to(v, ok.shape).ravel()[i], np.broadcast_to(qb, ok.shape).ravel()[i]
        raise ParameterError(
            f"{drug.name}: csf.equilibration_half_life = {drug.csf.equilibration_half_life:g} h is longer than CSF "
            f"bulk flow alone allows; expected <= ln2·V_csf/Q_bulk = {math.log(2) * v / qb:.3g} h "
            f"(V_csf = {v:g} L, Q_bulk = {qb:g} L/h)"
        )


def _exchange(drug, v, qb, ratio, fu):
    """(CL_in, CL_out) in L/h for a CSF volume v and bulk flow qb, from ratio and fu (arrays)."""
    csf = drug.csf
    _check_half_life(drug, v, qb)
    cl_total = math.log(2) * v / csf.equilibration_half_life
    fu_basis = fu if csf.basis == "total" else 1.0
    return ratio * cl_total / fu_basis, np.maximum(cl_total - qb, 0.0)


def reachable_exchange(drug, physiology, csf_layout, values):
    """bool[S]: True for the subjects whose CSF volume and bulk flow (``values`` as in ``rate_matrices``)
    allow the drug's CSF equilibration half-life (``_graph`` raises for the others)."""
    S = len(next(iter(values.values()))) if values else 1
    if csf_layout == "none" or drug.csf is None:
        return np.ones(S, dtype=bool)
    qb = np.asarray(values.get("bulk_flow", physiology.bulk_flow), dtype=float)
    if csf_layout == "single":
        v = values.get("csf_volume", physiology.csf_volume)
    else:
        v = sum(np.asarray(values.get(k, getattr(physiology, k)), dtype=float) for k in _REGION_VOLUMES)
    return np.broadcast_to(_half_life_reachable(drug, v, qb), (S,)).copy()


def csf_clearances(drug: Drug, physiology: Physiology):
    """Return (CL_in, CL_out) in L/h for the single layout (see module docstring)."""
    csf = drug.csf
    if csf is None:
        raise ParameterError(f"{drug.name}: has no [csf] section; CSF exchange is undefined")
    if csf.mechanistic:
        return csf.CL_in, csf.CL_out
    return _exchange(drug, physiology.csf_volume, physiology.bulk_flow, csf.penetration_ratio, drug.plasma.fu)


def _states(drug, physiology, csf_layout):
    """State names of the model (sinks last) and whether it has a CSF depot; checks the layout."""
    if csf_layout not in LAYOUTS + ("none",):
        raise ParameterError(f"csf_layout = {csf_layout!r} is not allowed; expected one of {LAYOUTS + ('none',)}")
    p = drug.plasma
    states = ["depot"] + [f"transit{i + 1}" for i in range(p.n_transit or 0)] + ["central"]
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
        states.append("csf")
    elif csf_layout == "regional":
        if not physiology.has_regional:
            raise ParameterError(f"physiology {physiology.name!r} has no [csf.regional] section; regional layout needs it")
        states += list(REGIONS)
    if _has_interstitial(drug, csf_layout):
        if physiology.volume_interstitial is None:
            raise ParameterError(
                f"{drug.name}: csf.CL_interstitial needs the physiology's [csf] volume_interstitial "
                f"(brain interstitial fluid, L); physiology {physiology.name!r} has none"
            )
        states.append("brain_ecf")
    has_depot = drug.csf is not None and drug.csf.depot_release_half_life is not None and csf_layout != "none"
    if has_depot:
        states.append("csf_depot")
    if csf_layout != "none" and physiology.has_drainage:  # last: the NONMEM numbers of the states above stay
        states.append("csf_drainage")
    states.append("eliminated")
    return states, has_depot


def _has_interstitial(drug, csf_layout):
    return csf_layout != "none" and drug.csf is not None and drug.csf.CL_interstitial is not None


def _interstitial(add, ix, drug, physiology, vols):
    """CSF ↔ brain interstitial fluid exchange (module docstring): one clearance CL_isf shared among
    the CSF regions in proportion to their volume, as the plasma exchange is. ``vols`` maps each
    CSF state name to its volumes (L, one per subject)."""
    cl, v_isf = drug.csf.CL_interstitial, physiology.volume_interstitial
    e = ix["brain_ecf"]
    if len(vols) == 1:
        pairs = [(ix[r], v, cl) for r, v in vols.items()]
    else:
        v_total = sum(vols.values())
        pairs = [(ix[r], vols[r], cl * vols[r] / v_total) for r in REGIONS]
    for j, v, cl_r in pairs:
        if np.any(np.asarray(cl_r) > 0):
            add(j, e, cl_r / v)
            add(e, j, cl_r / v_isf)
    if drug.csf.CL_brain_out:
        add(e, ix["central"], drug.csf.CL_brain_out / v_isf)


def _direct(physiology):
    """Share of the CSF bulk outflow that enters venous blood directly (arachnoid granulations/villi)."""
    return 1.0 - physiology.drainage_fraction if physiology.has_drainage else 1.0


def _drainage(add, ix, physiology, src, k_bulk):
    """The delayed share of the bulk outflow (module docstring): CSF state ``src`` → ``csf_drainage`` at
    ``drainage_fraction`` × the bulk outflow rate constant ``k_bulk`` (1/h, per subject), then → plasma
    with half-life ``drainage_half_life``."""
    if not physiology.has_drainage:
        return
    d = ix["csf_drainage"]
    if physiology.drainage_fraction > 0:
        add(src, d, physiology.drainage_fraction * k_bulk)
    add(d, ix["central"], math.log(2) / physiology.drainage_half_life)


def _graph(drug, physiology, csf_layout, values):
    """Rate matrices of S subjects: (states, has_depot, Ks float64[S, n, n], derived).

    ``values`` maps names of ``VARYING`` to float64[S] (S subjects); the rest comes from the drug and
    the physiology. The one place the compartment graph of the module docstring is built:
    ``build_model`` is S = 1.
    """
    states, has_depot = _states(drug, physiology, csf_layout)
    unknown = set(values) - set(VARYING)
    if unknown:
        raise ParameterError(f"cannot vary {sorted(unknown)} per subject; allowed: {list(VARYING)}")
    S = len(next(iter(values.values()))) if values else 1
    p, csf = drug.plasma, drug.csf

    def get(name):
        if name in values:
            return np.asarray(values[name], dtype=float)
        return np.full(S, typical_value(drug, physiology, name))

    n = len(states)
    ix = {st: i for i, st in enumerate(states)}
    Ks = np.zeros((S, n, n))
    add = functools.partial(_add_flow, Ks, states)
    n_tr = p.n_transit or 0
    c, sink = ix["central"], ix["eliminated"]
    chain = ["depot"] + [f"transit{i + 1}" for i in range(n_tr)] + ["central"]
    k_abs = get("ka") if n_tr == 0 else (n_tr + 1) / get("mtt")
    for a, b in zip(chain[:-1], chain[1:]):
        # the last link of a transit chain is the absorption step ka (Savic 2007)
        add(ix[a], ix[b], get("ka") if (b == "central" and n_tr > 0) else k_abs)
    V1, fu = get("V1"), get("fu")
    add(c, sink, get("CL") / V1)
    if p.Q is not None:
        add(c, ix["peripheral"], get("Q") / V1)
        add(ix["peripheral"], c, get("Q") / get("V2"))
    if p.Q3 is not None:
        add(c, ix["peripheral2"], get("Q3") / V1)
        add(ix["peripheral2"], c, get("Q3") / get("V3"))
    derived = {}
    if csf_layout == "single":
        v, qb = get("csf_volume"), get("bulk_flow")
        if csf.mechanistic:
            cl_in, cl_out = get("CL_in"), get("CL_out")
        else:
            cl_in, cl_out = _exchange(drug, v, qb, get("penetration_ratio"), fu)
        add(c, ix["csf"], cl_in * fu / V1)
        add(ix["csf"], c, (cl_out + _direct(physiology) * qb) / v)
        _drainage(add, ix, physiology, ix["csf"], qb / v)
        derived.update(CL_in=cl_in, CL_out=cl_out)
        if _has_interstitial(drug, csf_layout):
            _interstitial(add, ix, drug, physiology, {"csf": v})
            derived["CL_interstitial"] = csf.CL_interstitial
    elif csf_layout == "regional":
        derived.update(_regional(add, Ks, ix, drug, physiology, c, V1, fu, get))
    if has_depot:
        target = "csf" if csf_layout == "single" else "csf_lumbar"
        add(ix["csf_depot"], ix[target], math.log(2) / csf.depot_release_half_life)
    return states, has_depot, Ks, derived


def rate_matrices(drug: Drug, physiology: Physiology, csf_layout, values):
    """Rate matrices K (float64[S, n, n], 1/h) of S subjects whose ``values`` (name in ``VARYING`` →
    float64[S]) replace the drug's parameters; ``Ks[i]`` equals ``build_model`` of that subject's
    drug bit for bit (same code, same operations)."""
    return _graph(drug, physiology, csf_layout, values)[2]



def nonlinear_parameters(drug: Drug, csf_layout, states, Ks, values):
    """The nonlinear-term vectors ``nl`` (float64[S, NL_SIZE], slots ``NL_*`` of ``_kernels.codes``) of S subjects.

    ``states`` are the model's state names (layout ``csf_layout``) and ``Ks`` the subjects' rate matrices (``_graph``); ``values``
    maps names of ``VARYING`` to float64[S] as for ``rate_matrices``. Four slots depend on the subject:
    NL_V1 (V1), NL_DCL (CL_induced − CL), NL_KIN (the linear influx central → CSF, read from K) and
    NL_ASAT = K_u·V1/fu (the central amount at half-saturation of the CSF influx, ``_kernels/rhs.py``).
    The one place ``nl`` is built: ``build_model`` is S = 1, so subject i's vector equals the vector of
    ``build_model`` for subject i's drug bit for bit.
    """
    S = Ks.shape[0]
    p = drug.plasma

    def get(name):
        if name in values:
            return np.asarray(values[name], dtype=float)
        return np.full(S, float(getattr(p, name)))

    c, sink = states.index("central"), states.index("eliminated")
    nl = np.zeros((S, NL_SIZE))
    nl[:, NL_CENTRAL], nl[:, NL_SINK], nl[:, NL_V1] = c, sink, get("V1")
    if p.Vmax is not None:
        nl[:, NL_VMAX], nl[:, NL_KM] = p.Vmax, p.Km
    if p.CL_induced is not None:
        nl[:, NL_DCL], nl[:, NL_KIND] = get("CL_induced") - get("CL"), p.k_induction
    if csf_layout != "none" and drug.csf.uptake_half_saturation is not None:
        # saturable CSF influx (module docstring of _kernels/rhs.py): A_sat = K_u·V1/fu, K_u unbound mg/L
        if csf_layout != "single":
            raise ParameterError(f"{drug.name}: csf.uptake_half_saturation (saturable CSF uptake) needs "
                                 f"csf_layout='single'; got {csf_layout!r}")
        j = states.index("csf")
        nl[:, NL_CSF], nl[:, NL_KIN] = j, Ks[:, j, c]
        nl[:, NL_ASAT] = drug.csf.uptake_half_saturation * get("V1") / get("fu")
    return nl

def build_model(drug: Drug, physiology: Physiology | None = None, csf_layout="single"):
    """Compile ``drug`` with ``physiology`` into a ``Model`` (see module docstring for equations).

    Parameters
    ----------
    drug : the drug (``csfpk.load_drug``).
    physiology : CSF physiology; default ``load_physiology("adult")``.
    csf_layout : ``"single"`` (one CSF compartment), ``"regional"`` (four regions) or ``"none"``
        (plasma only; for drugs without CSF data).
    """
    if physiology is None:
        physiology = load_physiology("adult")
    states, has_depot, Ks, derived = _graph(drug, physiology, csf_layout, {})
    K = Ks[0]
    derived = {k: (float(v[0]) if isinstance(v, np.ndarray) else
                   {r: float(np.asarray(x).ravel()[0]) for r, x in v.items()} if isinstance(v, dict) else v)
               for k, v in derived.items()}
    p = drug.plasma
    ix = {st: i for i, st in enumerate(states)}
    n = len(states)
    c, sink = ix["central"], ix["eliminated"]
    outputs = {"plasma": (c, p.V1, 1.0), "plasma_unbound": (c, p.V1, p.fu)}
    if csf_layout == "single":
        outputs["csf"] = (ix["csf"], physiology.csf_volume, 1.0)
    elif csf_layout == "regional":
        for r in REGIONS:
            outputs[r] = (ix[r], derived["volumes"][r], 1.0)
    if "brain_ecf" in ix:
        outputs["brain_ecf"] = (ix["brain_ecf"], physiology.volume_interstitial, 1.0)

    nl = nonlinear_parameters(drug, csf_layout, states, Ks, {})[0]

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


def _regional(add, Ks, ix, drug, phys, c, V1, fu, get):
    """Add the regional CSF flows to every K[s]; return the derived clearances (module docstring).

    Volumes, bulk flow and spinal mixing may differ by subject (``get`` gives one value per subject),
    so the influx solve is one small linear system per subject (``np.linalg.solve`` over the stack).
    """
    vols = {r: get(k) for r, k in zip(REGIONS, _REGION_VOLUMES)}
    v_total = sum(vols.values())
    qb, s = get("bulk_flow"), phys.spinal_fraction
    region_ix = [ix[r] for r in REGIONS]
    vol_of = {ix[r]: vols[r] for r in REGIONS}
    V, M, C, L = region_ix
    for a, b, q in [(V, M, qb), (M, C, (1 - s) * qb), (M, L, s * qb), (L, C, s * qb), (C, c, _direct(phys) * qb)]:
        if np.any(q > 0):
            add(a, b, q / vol_of[a])
    _drainage(add, ix, phys, C, qb / vol_of[C])
    for a, b, q in ((C, L, get("mixing_cranial_lumbar")), (V, M, phys.mixing_ventricles_cisterna),
                    (M, C, phys.mixing_cisterna_cranial)):
        if np.any(np.asarray(q) > 0):
            add(a, b, q / vol_of[a])
            add(b, a, q / vol_of[b])
    extra = {}
    if "brain_ecf" in ix:  # before the influx solve: the interstitial fluid links the regions at steady state
        _interstitial(add, ix, drug, phys, vols)
        extra["CL_interstitial"] = drug.csf.CL_interstitial
    csf = drug.csf
    if csf.mechanistic:
        k_out = get("CL_out") / v_total
        scale = get("CL_in") / v_total
    else:
        k_out = _exchange(drug, v_total, qb, 1.0, 1.0)[1] / v_total
        # per-volume influx of unbound drug solved so the steady-state ratio at the sampling site is R:
        # with C_p = 1 mg/L and fu = 1 the CSF block gives A_unit; A is linear in fu·scale
        block = region_ix + ([ix["brain_ecf"]] if "brain_ecf" in ix else [])
        sub = Ks[:, block][:, :, block].copy()
        for j in range(len(REGIONS)):
            sub[:, j, j] -= k_out
        rhs = np.zeros((Ks.shape[0], len(block), 1))
        for j, r in enumerate(REGIONS):
            rhs[:, j, 0] = vols[r]
        a_unit = np.linalg.solve(sub, -rhs)[:, :, 0]
        site = _SITE_REGION[csf.site]
        c_site_unit = a_unit[:, REGIONS.index(site)] / vols[site]
        target = get("penetration_ratio") * (1.0 if csf.basis == "total" else fu)
        scale = target / (fu * c_site_unit)
    cl_in, cl_out = {}, {}
    for r, j in zip(REGIONS, region_ix):
        cl_in[r] = scale * vols[r]
        cl_out[r] = k_out * vols[r]
        add(c, j, cl_in[r] * fu / V1)
        if np.any(cl_out[r] > 0):
            add(j, c, cl_out[r] / vols[r])
    return {"volumes": vols, "CL_in": cl_in, "CL_out": cl_out, **extra}
