"""Regimen files: ``params/regimens/<name>.toml`` → a ``Regimen`` or an ``Escalation``.

Schema ``csfpk.regimen/1``::

    name = "it_mtx_seed"            # equals the file name
    drug = "methotrexate"           # a drug file name
    route = "it_lumbar"             # oral, iv, it_lumbar, it_ventricular
    source = "..."                  # where the regimen comes from
    phases = [ { amt = "12 mg", ii = "3.5d", length = "4w" }, ... ]     # consecutive phases
    escalation = { start = "10 mg", step = "5 mg", cap = "50 mg", step_back_grade = 3 }  # optional

With ``escalation`` the phases give the injection times only (no ``amt``).
"""

from dataclasses import dataclass

from .errors import CsfpkError, ScheduleError
from .escalation import Escalation
from .paths import params_dir, resolve
from .quantity import read_document, require_keys
from .regimen import ROUTES, Regimen


@dataclass(frozen=True)
class Protocol:
    """A named regimen for a drug, with its source."""

    name: str
    drug: str
    source: str
    regimen: object  # Regimen or Escalation


def list_regimens():
    return sorted(p.stem for p in (params_dir() / "regimens").glob("*.toml"))


def load_regimen(name_or_path, *, route=None):
    """Load a regimen file; ``route`` overrides the file's route (e.g. ``"it_ventricular"`` for Ommaya).

    Examples
    --------
    >>> p = load_regimen("it_mtx_seed")
    >>> p.drug, len(p.regimen.doses())
    ('methotrexate', 17)
    """
    path = resolve("regimens", name_or_path)
    doc, where = read_document(path, "csfpk.regimen/1", ("name", "drug", "route", "source", "phases"),
                               ("escalation",), error=ScheduleError)
    if doc["name"] != path.stem:
        raise ScheduleError(f"{where}: name = {doc['name']!r} must equal the file name {path.stem!r}")
    route = route or doc["route"]
    if route not in ROUTES:
        raise ScheduleError(f"{where}: route = {route!r} is not allowed; expected one of {ROUTES}")
    phases = doc["phases"]
    if not isinstance(phases, list) or not phases:
        raise ScheduleError(f"{where}: phases must be a non-empty list of {{ amt, ii, length }}")
    esc = doc.get("escalation")
    try:
        triples = []
        for i, ph in enumerate(phases):
            require_keys(f"{where} phase {i + 1}", ph, ("ii", "length") if esc else ("amt", "ii", "length"))
            triples.append((ph.get("amt", 1.0), ph["ii"], ph["length"]))
        schedule = Regimen.phases(*triples, route=route)
        if esc is not None:
            require_keys(f"{where} escalation", esc, ("start", "step", "cap"), ("step_back_grade",))
            regimen = Escalation.from_schedule(schedule, start=esc["start"], step=esc["step"], cap=esc["cap"],
                                               step_back_grade=esc.get("step_back_grade", 3), route=route,
                                               name=doc["name"])
        else:
            regimen = Regimen(schedule.records, name=doc["name"])
    except CsfpkError as exc:
        raise ScheduleError(f"{where}: {exc}") from None
    return Protocol(doc["name"], doc["drug"], doc["source"], regimen)
