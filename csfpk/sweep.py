"""Sweep files: a grid of drugs × regimens × populations × overrides in TOML (DESIGN §7).

``params/sweeps/<name>.toml``::

    schema = "csfpk.sweep/1"
    name = "high_dose_tki"
    t_end = "28d"                     # simulated span (h or a duration string)
    dt = "1h"                          # output step (optional, default 1 h)
    window = "ss"                      # metric window (optional): "span" (0 … t_end), "ss" (last complete
                                       # dosing interval), "per_injection" or ["0d", "28d"]; default
                                       # per injection for intrathecal regimens, "ss" for repeated doses
    metrics = "exact"                  # optional: "exact" (default, grid-free) or "grid" (read off the dt grid)
    method = "auto"                    # optional: solver as csfpk.simulate names it: "auto" (default: exact for
                                       # linear drugs, else "switching"), "exact", "adaptive", "stiff", "switching"
    rtol = 1e-8                        # optional: tolerances of the adaptive solvers (relative; absolute, mg),
    atol = 1e-12                       # default csfpk.simulate's; the exact solver ignores them

    [regimens.erl_150_qd]              # one table per regimen; the key is its id
    label = "150 mg qd"                # shown in tables (default: the id)
    amt = 150                          # mg, or "40 mg/m2" / "10 mg/kg" (doses then scale with BSA / weight)
    ii = "24h"
    n = 28                             # optional: default fills the span, ceil(t_end / ii)
    route = "oral"                     # optional, default oral; duration (NONMEM D) or rate for infusions
    phases = [[12, "3.5d", "4w"], ...] # instead of amt/ii/n: consecutive (amt, ii, length) phases
    source = "Lee 2013 (review ref 98)" # required

    csf_layout = "single"              # optional: "single" (default), "regional" (ventricles, cisterna,
                                       # cranial and lumbar SAS, each with its metrics) or "none"

    [regimens.pem_esc]                 # toxicity-guided escalation (issue 11): doses chosen per subject
    label = "pemetrexed 10 -> 50 mg"
    route = "it_lumbar"
    phases = [["3.5d", "4w"], ["1w", "4w"], ["4w", "18w"]]   # injection times: [ii, length] (or ii, n)
    escalation = { start = 10, step = 5, cap = 50, step_back = true }  # mg, or "0.2 mg/kg" / "5 mg/m2";
                                       # optional step_back (default true), step_back_grade (default 3)
    source = "seed 000 (Fan 2023), Methods"

    [regimens.mtx_12]                  # a fixed-dose regimen with myelosuppression: pd = true
    amt = 12                           # boluses of one dose, any of the regimen forms above
    ...
    pd = true

    [populations.default]              # n, seed; optional iiv, covariates, correlations, penetration,
    n = 1000                           # physiology (a file in params/physiology/, default "adult": its
    seed = 1                           # CSF volumes, flows and their [iiv])

    [overrides.slow_csf]               # optional: Drug.replace changes
    equilibration_half_life = 4.0

    [[grid]]                           # each entry: the product of its lists is run
    drugs = ["erlotinib"]
    regimens = ["erl_150_qd", "erl_1500_qw"]
    populations = ["default"]          # optional, default: every population
    overrides = ["slow_csf"]           # optional, default: none
    target_nM = { erlotinib = 7 }      # optional, default: each drug's [potency] target

Everything is checked before any work starts; errors name the file, the field and the value.

Regimens with ``escalation`` or ``pd = true`` run through the escalation kernel (exact linear PK,
Friberg marrow of leukocytes, neutrophils and platelets with the IIV of
``params/pd/myelosuppression.toml``, the seed's step-back rule per subject; ``csfpk.escalation``):
their rows are doses, decisions, nadirs and CTCAE grades, their summary the share of subjects at
grade ≥ 3 per lineage and the final dose levels, over the whole span. A sweep holds either such
regimens or exposure regimens, not both.

Examples
--------
>>> import csfpk
>>> sweep = csfpk.load_sweep("high_dose_tki", n=10)
>>> len(sweep.scenarios) >= 10
True
"""

import math
import re
from dataclasses import dataclass

from .batch import prepare, run
from .drug import load_drug as _load_drug
from .errors import CsfpkError, ParameterError, ScheduleError
from .escalation import Escalation
from .metrics import WINDOWS
from .paths import resolve
from .physiology import load_physiology
from .population import Population
from .quantity import read_document, require_keys
from .regimen import Regimen
from .scenario import Scenario
from .simulation import ATOL, METHODS, RTOL, check_tolerances
from .units import dose_mg, hours

SCHEMA = "csfpk.sweep/1"
_TOP = {"schema", "name", "description", "t_end", "dt", "window", "regimens", "populations", "overrides",
        "grid", "csf_layout", "metrics", "method", "rtol", "atol"}
_REGIMEN = {"label", "amt", "ii", "n", "route", "start", "duration", "rate", "phases", "source", "note", "escalation",
            "pd"}
_ESCALATION = {"start", "step", "cap", "step_back", "step_back_grade"}
_PER_BODY = re.compile(r"\s*/\s*(kg|m2|m²|m\^2)\s*$")
_POPULATION = {"n", "seed", "iiv", "covariates", "correlations", "penetration", "label", "physiology"}
LAYOUTS = ("single", "regional", "none")
_GRID = {"drugs", "regimens", "populations", "overrides", "target_nM"}


class SweepError(ParameterError):
    """A sweep file is invalid (unknown drug, bad t_end, empty grid, negative n …)."""


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: its scenarios and the plain-data spec stored in run manifests."""

    name: str
    scenarios: tuple
    spec: dict
    path: str | None = None

    def run(self, out=None, **kwargs):
        """Run every scenario (``csfpk.batch.run``) and return its ``RunResult``; keyword arguments pass through."""
        return run(self.scenarios, out, spec=self.spec, **kwargs)


def _keys(where, table, allowed, required=()):
    """``quantity.require_keys`` raising ``SweepError``."""
    try:
        require_keys(where, table, required, set(allowed) - set(required))
    except ParameterError as exc:
        raise SweepError(str(exc)) from None


def _hours(where, field, value, positive=True):
    try:
        h = hours(value, field)
    except CsfpkError as exc:
        raise SweepError(f"{where}: {exc}") from None
    if positive and not h > 0:
        raise SweepError(f"{where}: {field} = {value!r} is not allowed; expected a duration > 0")
    return h


def _regimen(where, rid, t, t_end):
    """(Regimen, label, source, dose basis, Escalation or None) of a ``[regimens.<rid>]`` table."""
    _keys(where, t, _REGIMEN, ("source",))
    if not isinstance(t["source"], str) or not t["source"].strip():
        raise SweepError(f"{where}: source = {t['source']!r}; expected text naming where the regimen comes from")
    pd_flag = t.get("pd", False)
    if not isinstance(pd_flag, bool):
        raise SweepError(f"{where}: pd = {pd_flag!r} is not allowed; expected true (simulate myelosuppression) "
                         "or false")
    if "escalation" in t:
        if "pd" in t and not pd_flag:
            raise SweepError(f"{where}: pd = false conflicts with escalation (an escalation always simulates the "
                             "marrow); remove pd")
        return _escalation_regimen(where, rid, t, t_end)
    reg, label, source, basis = _plain_regimen(where, rid, t, t_end)
    if not pd_flag:
        return reg, label, source, basis, None
    doses = reg.doses()
    amts = {d.amt for d in doses}
    if len(amts) != 1 or any(d.rate != 0 for d in doses):
        raise SweepError(f"{where}: pd = true needs boluses of one dose (got doses {sorted(amts)} mg"
                         f"{', infusions' if any(d.rate != 0 for d in doses) else ''}); the escalation kernel gives "
                         "boluses")
    body = load_physiology("adult")
    level = amts.pop() / {"bsa": body.bsa_m2, "weight": body.weight_kg}.get(basis, 1.0)  # mg/m² or mg/kg as written
    try:
        esc = Escalation.fixed(reg, level, route=t.get("route", "oral"), name=rid)
    except ScheduleError as exc:
        raise SweepError(f"{where}: {exc}") from None
    return esc.schedule(), label, source, basis, esc


def _per_body_dose(where, field, value):
    """A dose of an escalation table as (number, basis): mg, or mg/kg ("weight") or mg/m² ("bsa") as written."""
    basis = None
    if isinstance(value, str):
        m = _PER_BODY.search(value.strip().lower())
        if m:
            basis = "weight" if m.group(1) == "kg" else "bsa"
            value = value.strip()[: m.start()]
    try:
        return dose_mg(value, f"escalation.{field}"), basis
    except ScheduleError as exc:
        raise SweepError(f"{where}: {exc}") from None


def _escalation_regimen(where, rid, t, t_end):
    esc_t = t["escalation"]
    if not isinstance(esc_t, dict):
        raise SweepError(f"{where}: escalation = {esc_t!r}; expected a table {{ start, step, cap[, step_back] }}")
    _keys(f"{where} escalation", esc_t, _ESCALATION, ("start", "step", "cap"))
    odd = [k for k in ("amt", "rate", "duration") if k in t]
    if odd:
        raise SweepError(f"{where}: {odd[0]} is not allowed with escalation; the doses come from escalation.start, "
                         "step and cap, and the escalation kernel gives boluses")
    doses = {k: _per_body_dose(where, k, esc_t[k]) for k in ("start", "step", "cap")}
    bases = {b for _, b in doses.values()}
    if len(bases) > 1:
        unit = {None: "mg", "weight": "mg/kg", "bsa": "mg/m2"}
        given = ", ".join(f"{k} = {esc_t[k]!r} ({unit[b]})" for k, (_, b) in doses.items())
        raise SweepError(f"{where}: escalation mixes units ({given}); give start, step and cap all in mg, all in "
                         "mg/kg or all in mg/m2")
    basis = bases.pop()
    route = t.get("route", "oral")
    try:
        if "phases" in t:
            if any(k in t for k in ("ii", "n")):
                raise SweepError(f"{where}: give phases or ii/n, not both")
            phases = t["phases"]
            if (not isinstance(phases, list) or not phases
                    or not all(isinstance(p, list) and len(p) == 2 for p in phases)):
                raise SweepError(f"{where}: phases = {phases!r}; with escalation expected a list of [ii, length] "
                                 "pairs (the injection times; the doses come from escalation)")
            schedule = Regimen.phases(*[(1.0, ii, length) for ii, length in phases], route=route,
                                      start=t.get("start", 0.0))
        else:
            _keys(where, t, _REGIMEN, ("ii",))
            ii = _hours(where, "ii", t["ii"])
            n = t.get("n", max(1, math.ceil(t_end / ii - 1e-9)))
            schedule = Regimen.every(amt=1.0, ii=ii, n=n, route=route, start=t.get("start", 0.0))
        esc = Escalation.from_schedule(schedule, start=doses["start"][0], step=doses["step"][0],
                                       cap=doses["cap"][0], route=route, name=rid,
                                       step_back=esc_t.get("step_back", True),
                                       step_back_grade=esc_t.get("step_back_grade", 3))
    except ScheduleError as exc:
        raise SweepError(f"{where}: {exc}") from None
    label = t.get("label", rid)
    if not isinstance(label, str) or not label.strip():
        raise SweepError(f"{where}: label = {label!r} is not allowed; expected non-empty text shown in tables")
    return esc.schedule(), label, t["source"], basis, esc


def _plain_regimen(where, rid, t, t_end):
    route = t.get("route", "oral")
    basis = None
    try:
        if "phases" in t:
            if any(k in t for k in ("amt", "ii", "n")):
                raise SweepError(f"{where}: give phases or amt/ii/n, not both")
            phases = t["phases"]
            if not isinstance(phases, list) or not phases or not all(isinstance(p, list) for p in phases):
                raise SweepError(f"{where}: phases = {phases!r}; expected a list of [amt, ii, length] lists")
            reg = Regimen.phases(*[tuple(p) for p in phases], route=route, start=t.get("start", 0.0))
        else:
            _keys(where, t, _REGIMEN, ("amt", "ii"))
            amt = t["amt"]
            if isinstance(amt, str) and amt.strip().endswith("mg/m2"):
                basis = "bsa"
            elif isinstance(amt, str) and amt.strip().endswith("mg/kg"):
                basis = "weight"
            ii = _hours(where, "ii", t["ii"])
            n = t.get("n", max(1, math.ceil(t_end / ii - 1e-9)))
            body = load_physiology("adult")
            reg = Regimen.every(amt=amt, ii=ii, n=n, route=route, start=t.get("start", 0.0), rate=t.get("rate", 0.0),
                                duration=t.get("duration"), bsa_m2=body.bsa_m2, weight_kg=body.weight_kg)
    except ScheduleError as exc:
        raise SweepError(f"{where}: {exc}") from None
    label = t.get("label", rid)
    if not isinstance(label, str) or not label.strip():
        raise SweepError(f"{where}: label = {label!r} is not allowed; expected non-empty text shown in tables")
    return reg, label, t["source"], basis


def _population(where, pid, t, n_override, seed_override, default_physiology):
    _keys(where, t, _POPULATION, ("n",))
    n = t["n"] if n_override is None else n_override
    seed = t.get("seed", 1) if seed_override is None else seed_override
    cov = {k: tuple(v) if isinstance(v, list) else v for k, v in t.get("covariates", {}).items()}
    name = t.get("physiology")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise SweepError(f"{where}: physiology = {name!r} is not allowed; expected the name of a file in "
                         "params/physiology/ (e.g. 'adult', 'adult_lm') or a path")
    try:
        physiology = default_physiology if name is None else load_physiology(name)
        pop = Population(n=n, seed=seed, iiv=t.get("iiv"), covariates=cov, correlations=t.get("correlations", {}),
                         penetration=t.get("penetration", "nominal"), name=t.get("label", pid))
    except ParameterError as exc:
        raise SweepError(f"{where}: {exc}") from None
    return pop, physiology


def load_sweep(name_or_path, *, n=None, seed=None):
    """Load and validate a sweep file (name in ``params/sweeps/`` or a path).

    ``n`` and ``seed`` replace every population's size and seed (the CLI's ``--n``/``--seed``).
    Returns a ``Sweep``; raises ``SweepError`` naming the field on any problem.
    """
    try:
        path = resolve("sweeps", name_or_path)
    except ParameterError as exc:
        raise SweepError(str(exc)) from None
    # keys and schema are checked field by field in sweep_from_dict (also used for dicts built in Python)
    doc, where = read_document(path, SCHEMA, (), tuple(_TOP - {"schema"}), error=SweepError)
    return sweep_from_dict(doc, where=where, n=n, seed=seed, load_drug=_load_drug, physiology=load_physiology("adult"))


def sweep_from_dict(doc, *, where="sweep", n=None, seed=None, load_drug=None, physiology=None):
    """Build a ``Sweep`` from the parsed TOML ``doc`` (see module docstring)."""
    load_drug = load_drug or _load_drug
    if physiology is None:
        physiology = load_physiology("adult")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise SweepError(f"--n = {n!r} is not allowed; expected an integer >= 1")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise SweepError(f"--seed = {seed!r} is not allowed; expected an integer >= 0")
    _keys(where, doc, _TOP, ("schema", "name", "t_end", "regimens", "populations", "grid"))
    if doc["schema"] != SCHEMA:
        raise SweepError(f"{where}: schema = {doc['schema']!r}; expected {SCHEMA!r}")
    t_end = _hours(where, "t_end", doc["t_end"])
    dt = _hours(where, "dt", doc.get("dt", 1.0))
    if dt > t_end:
        raise SweepError(f"{where}: dt = {doc.get('dt')!r} is longer than t_end = {doc['t_end']!r}")
    window = None  # the default per regimen: per injection for intrathecal, "ss" for repeated doses (Scenario)
    if "window" in doc and isinstance(doc["window"], str):
        window = doc["window"]
        if window not in WINDOWS:
            raise SweepError(f"{where}: window = {window!r} is not allowed; expected one of {list(WINDOWS)} or "
                             "[start, end]")
    elif "window" in doc:
        w = doc["window"]
        if not (isinstance(w, list) and len(w) == 2):
            raise SweepError(f"{where}: window = {w!r}; expected one of {list(WINDOWS)} or [start, end]")
        window = (_hours(where, "window start", w[0], positive=False), _hours(where, "window end", w[1]))
        if not 0 <= window[0] < window[1] <= t_end + 1e-9:
            raise SweepError(f"{where}: window = {w!r} is not allowed; expected 0 <= start < end <= t_end")
    mode = doc.get("metrics", "exact")
    if mode not in ("exact", "grid"):
        raise SweepError(f"{where}: metrics = {mode!r} is not allowed; expected 'exact' or 'grid'")
    method = doc.get("method", "auto")
    if method not in METHODS:
        raise SweepError(f"{where}: method = {method!r} is not allowed; expected one of {list(METHODS)}")
    rtol, atol = doc.get("rtol", RTOL), doc.get("atol", ATOL)
    try:
        check_tolerances(rtol, atol)
    except ParameterError as exc:
        raise SweepError(f"{where}: {exc}") from None
    layout = doc.get("csf_layout", "single")
    if layout not in LAYOUTS:
        raise SweepError(f"{where}: csf_layout = {layout!r} is not allowed; expected one of {list(LAYOUTS)}")
    regimens = {}
    for rid, t in _table(where, doc, "regimens").items():
        regimens[rid] = _regimen(f"{where} [regimens.{rid}]", rid, t, t_end)
    pops = {pid: _population(f"{where} [populations.{pid}]", pid, t, n, seed, physiology)
            for pid, t in _table(where, doc, "populations").items()}
    overrides = {}
    for oid, t in doc.get("overrides", {}).items():
        if not isinstance(t, dict) or not t:
            raise SweepError(f"{where} [overrides.{oid}]: expected a table of parameter = value")
        overrides[oid] = dict(t)
    grid = doc["grid"]
    if not isinstance(grid, list) or not grid:
        raise SweepError(f"{where}: grid is empty; add [[grid]] entries with drugs and regimens")
    drugs = {}
    scenarios = []
    for gi, g in enumerate(grid):
        gw = f"{where} [[grid]] #{gi + 1}"
        _keys(gw, g, _GRID, ("drugs", "regimens"))
        lists = {}
        for key, known in (("drugs", None), ("regimens", regimens), ("populations", pops), ("overrides", overrides)):
            default = list(pops) if key == "populations" else ([""] if key == "overrides" else None)
            val = g.get(key, default)
            if not isinstance(val, list) or not val:
                raise SweepError(f"{gw}: {key} = {val!r} is empty; the grid needs at least one")
            odd = [v for v in val if not isinstance(v, str) or (v == "" and key != "overrides")]
            if odd:
                raise SweepError(f"{gw}: {key} entry {odd[0]!r} is not allowed; expected the name of a defined "
                                 f"{key[:-1]} (text, not empty)")
            if known is not None:
                bad = [v for v in val if v != "" and v not in known]
                if bad:
                    raise SweepError(f"{gw}: {key} {bad} are not defined; defined: {sorted(known)}")
            lists[key] = val
        targets = g.get("target_nM", {})
        for dname in lists["drugs"]:
            if dname not in drugs:
                try:
                    drugs[dname] = load_drug(dname)
                except ParameterError as exc:
                    raise SweepError(f"{gw}: drugs: {exc}") from None
            for oid in lists["overrides"]:
                try:
                    drug = drugs[dname].replace(**overrides[oid]) if oid else drugs[dname]
                except (ParameterError, TypeError) as exc:
                    raise SweepError(f"{where} [overrides.{oid}] for {dname}: {exc}") from None
                target = targets.get(dname, drug.potency_target_nM)
                for rid in lists["regimens"]:
                    reg, label, source, basis, esc = regimens[rid]
                    for pid in lists["populations"]:
                        pop, pop_physiology = pops[pid]
                        try:
                            scenarios.append(Scenario(
                                drug=drug, regimen=reg, population=pop, t_end=t_end, dt=dt, regimen_name=label,
                                population_name=pop.name, override_name=oid, overrides=overrides.get(oid, {}),
                                source=source, dose_basis=basis, target_nM=target, window=window, csf_layout=layout,
                                physiology=pop_physiology, metrics=mode, method=method, rtol=rtol, atol=atol,
                                escalation=esc))
                        except ParameterError as exc:
                            raise SweepError(f"{gw}: {dname} / {label}: {exc}") from None
    if not scenarios:
        raise SweepError(f"{where}: the grid gives no scenarios")
    kinds = {s.escalation is not None for s in scenarios}
    if len(kinds) > 1:
        used = {s.regimen_name: s.escalation is not None for s in scenarios}
        esc = sorted(r for r, e in used.items() if e)
        exposure = sorted(r for r, e in used.items() if not e)
        kinds = ("give exposure metrics", "have escalation or pd = true")
        few, many = ((exposure, esc), kinds) if len(exposure) <= len(esc) else ((esc, exposure), kinds[::-1])
        raise SweepError(f"{where}: regimens {few[0]} {many[0]} and the {len(few[1])} others {many[1]}; a sweep "
                         "holds one kind (their rows and summaries differ): put them in two sweep files")
    for s in scenarios:  # compile schedules now: every error surfaces before any work
        try:
            prepare(s)
        except CsfpkError as exc:
            raise SweepError(f"{where}: scenario {s.id}: {exc}") from None
    spec = {"sweep": doc, "n": n, "seed": seed}
    return Sweep(name=doc["name"], scenarios=tuple(scenarios), spec=spec, path=where)


def _table(where, doc, key):
    t = doc[key]
    if not isinstance(t, dict) or not t:
        raise SweepError(f"{where}: [{key}] is empty; define at least one")
    return t


def run_sweep(name_or_path, out=None, *, n=None, seed=None, **kwargs):
    """Load a sweep file and run it; ``out`` is the run folder (None: in memory). See ``csfpk.batch.run``.

    Examples
    --------
    >>> import csfpk
    >>> res = csfpk.run_sweep("high_dose_tki", n=20, progress=False)
    >>> res.summary.shape[0] >= 10
    True
    """
    return load_sweep(name_or_path, n=n, seed=seed).run(out, **kwargs)
