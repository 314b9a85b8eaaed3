"""Integer codes shared by the kernels and the Python layer: actions, statuses, metric and stat slots.

Kernels take and return plain integers; this module is the one place where those integers are
defined. ``csfpk.schedule`` writes the action codes into a ``Timeline``, every kernel reads them,
``csfpk.status.Status`` gives each status code its name and message, ``csfpk.metrics.NAMES`` names
the metric slots, and ``csfpk.result.SimulationResult.stats`` names the step-count slots.
``csfpk.model`` fills the nonlinear-term slots ``NL_*`` read by ``rhs``. Importing this module
compiles nothing and imports no numba.

Actions (one row of the timeline; semantics in ``csfpk.schedule``)::

    OBS       write the state to output row ``value``
    BOLUS     x[cmt] += value
    RATE      r[cmt] += value
    RESET     x = 0, r = 0
    SS_TRAIN  steady state of a train of past doses
    INF_PART  the part delivered so far by an infusion still running
    SS_CONST  steady state of a constant infusion

Statuses (what a kernel returns for one subject; messages in ``csfpk.status``)::

    OK, NONFINITE, MAX_STEPS, STEP_UNDERFLOW, SINGULAR, UNSUPPORTED

``SEGMENT_CONTINUE`` is not a status: ``stepping.segment_start`` returns it to tell an integrator
that the segment still has to be integrated (it never leaves the kernels).
"""

# ----------------------------------------------------------------------------- actions
OBS = 0
BOLUS = 1
RATE = 2
RESET = 3
SS_TRAIN = 4
INF_PART = 5
SS_CONST = 6
ACTIONS = {"OBS": OBS, "BOLUS": BOLUS, "RATE": RATE, "RESET": RESET, "SS_TRAIN": SS_TRAIN,
           "INF_PART": INF_PART, "SS_CONST": SS_CONST}

# ----------------------------------------------------------------------------- statuses
OK = 0
NONFINITE = 2
MAX_STEPS = 3
STEP_UNDERFLOW = 4
SINGULAR = 5
UNSUPPORTED = 6
STATUSES = {"OK": OK, "NONFINITE": NONFINITE, "MAX_STEPS": MAX_STEPS, "STEP_UNDERFLOW": STEP_UNDERFLOW,
            "SINGULAR": SINGULAR, "UNSUPPORTED": UNSUPPORTED}

SEGMENT_CONTINUE = -1  # stepping.segment_start: go on integrating (internal, never returned to Python)
STIFFNESS_SWITCH = -2  # dopri5_steps / rodas_steps: stopped to hand over to the other method (internal, ``autoswitch``)

# ----------------------------------------------------------------------------- escalation decisions
# one per injection of the population escalation kernel (``_kernels.escalation``); names in
# ``csfpk.escalation_population.DECISIONS``
START = 0
ESCALATE = 1
HOLD = 2
STEP_BACK = 3
AT_CAP = 4
DECISIONS = {"start": START, "escalate": ESCALATE, "hold": HOLD, "step_back": STEP_BACK, "at_cap": AT_CAP}
# the kernel's step-back grade for an escalation without step-back: no CTCAE grade (0–4) reaches it, so no
# episode is ever severe (no step-back, no hold; ``Escalation.step_back = False``)
NO_STEP_BACK_GRADE = 5

# ----------------------------------------------------------------------------- metric slots
# metrics[o, slot] of the population kernel (``batch.run_metrics``); names in ``csfpk.metrics.NAMES``
CMAX = 0
TMAX = 1
TROUGH = 2
CAVG = 3
AUC = 4
TIME_ABOVE = 5
PCT_ABOVE = 6
N_METRICS = 7
METRICS = {"cmax": CMAX, "tmax": TMAX, "trough": TROUGH, "cavg": CAVG, "auc": AUC, "time_above": TIME_ABOVE,
           "pct_above": PCT_ABOVE}

# ----------------------------------------------------------------------------- step-count slots
# stats[slot] of the adaptive kernels, summed over all segments of a subject
STEPS_ACCEPTED = 0
STEPS_REJECTED = 1  # attempted steps that were not accepted (error too large, singular E, overflow)
RHS_EVALUATIONS = 2  # evaluations of the right-hand side f(t, x)
LU_FACTORISATIONS = 3  # LU factorisations of I/(h·γ) − J (Rodas4 only; 0 for Dormand–Prince)
STIFFNESS_SWITCHES = 4  # method AUTO: hand-overs Dormand–Prince → Rodas4 and back (0 for the other methods)
N_STATS = 5
STATS = {"steps_accepted": STEPS_ACCEPTED, "steps_rejected": STEPS_REJECTED, "rhs_evaluations": RHS_EVALUATIONS,
         "lu_factorisations": LU_FACTORISATIONS, "stiffness_switches": STIFFNESS_SWITCHES}

# ----------------------------------------------------------------------------- nonlinear-term slots
# nl[slot] of the model's nonlinear parameters (equations in ``rhs``); written by ``csfpk.model``
NL_CENTRAL = 0  # index of the central compartment (stored as float)
NL_SINK = 1  # index of the elimination sink
NL_V1 = 2  # central volume, L
NL_VMAX = 3  # mg/h
NL_KM = 4  # mg/L
NL_DCL = 5  # CL_induced − CL, L/h
NL_KIND = 6  # 1/h
NL_CSF = 7  # index of the CSF state with saturable uptake (stored as float)
NL_KIN = 8  # linear influx rate constant central → CSF carried by K, 1/h
NL_ASAT = 9  # central amount at half-saturation of the CSF influx, mg (0: no saturation)
NL_SIZE = 10
NL = {"NL_CENTRAL": NL_CENTRAL, "NL_SINK": NL_SINK, "NL_V1": NL_V1, "NL_VMAX": NL_VMAX, "NL_KM": NL_KM,
      "NL_DCL": NL_DCL, "NL_KIND": NL_KIND, "NL_CSF": NL_CSF, "NL_KIN": NL_KIN, "NL_ASAT": NL_ASAT}

# ----------------------------------------------------------------------------- methods
# ``adaptive.run_subject``'s ``method``: Dormand–Prince 5(4), Rodas4, or Dormand–Prince with stiffness detection
# switching to Rodas4 and back (``autoswitch``)
DOPRI5 = 0
RODAS = 1
AUTO = 2
METHODS = {"DOPRI5": DOPRI5, "RODAS": RODAS, "AUTO": AUTO}

# ----------------------------------------------------------------------------- stiffness-switch state
# switch[slot] (int64[N_SWITCH]) of ``dopri5.dopri5_steps`` / ``rosenbrock.rodas_steps``, kept per subject
SW_DETECT = 0  # 1: test stiffness (and return STIFFNESS_SWITCH when the test says so); 0: never
SW_STIFF = 1  # Dormand–Prince: stiff steps counted (dopri5.f IASTI)
SW_NONSTIFF = 2  # successive non-stiff steps (dopri5.f NONSTI; in Rodas4 the steps towards switching back)
SW_MODE = 3  # autoswitch: the method in use, DOPRI5 (0, a new subject) or RODAS
SW_FIXED = 4  # autoswitch: 0 switches (a new subject); 1 runs the method SW_MODE alone (adaptive.run_subject)
N_SWITCH = 5
SWITCH = {"SW_DETECT": SW_DETECT, "SW_STIFF": SW_STIFF, "SW_NONSTIFF": SW_NONSTIFF, "SW_MODE": SW_MODE,
          "SW_FIXED": SW_FIXED}
