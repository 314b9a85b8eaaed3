"""Sourced quantities and the strict reader of TOML value entries.

A value entry in a parameter file is ``{ value, unit, source, range?, note? }``. ``read_entry``
checks it against the schema's expectation (unit letter for letter, finite, allowed range) and
returns a ``Quantity``; every failure names the file, the key, the value and what is allowed.
"""

import math
from dataclasses import dataclass, fields
from types import MappingProxyType

from .errors import ParameterError

_ENTRY_FIELDS = {"value", "unit", "source", "range", "note"}


class PicklesMappings:
    """Mixin for frozen dataclasses holding read-only mappings (``MappingProxyType`` does not pickle).

    Pickling ships the mappings as plain dicts and restores them read-only, so ``Drug``,
    ``Physiology``, ``Population`` and ``Scenario`` travel to Dask workers as themselves.
    """

    def __getstate__(self):
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        proxies = [k for k, v in state.items() if isinstance(v, MappingProxyType)]
        return {"fields": {k: dict(v) if k in proxies else v for k, v in state.items()}, "proxies": proxies}

    def __setstate__(self, state):
        for k, v in state["fields"].items():
            object.__setattr__(self, k, MappingProxyType(v) if k in state["proxies"] else v)


@dataclass(frozen=True)
class Quantity:
    """A number with its unit and provenance, as written in a parameter file."""

    value: float
    unit: str
    source: str
    range: tuple | None = None
    note: str | None = None

    @property
    def assumed(self):
        """True when the source says the value is an assumption, not a citation."""
        return self.source.lower().startswith("assumed")


@dataclass(frozen=True)
class Spec:
    """What a key must hold: its unit, bounds and whether the upper/lower bound is open."""

    unit: str
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def allowed(self):
        lo = "(" if self.low_open else "["
        hi = ")" if self.high_open else "]"
        kind = "an integer" if self.integer else "a number"
        return f"{kind} in {lo}{self.low:g}, {self.high:g}{hi} {self.unit}"

    def accepts(self, v):
        if not math.isfinite(v):
            return False
        if self.integer and v != int(v):
            return False
        if v < self.low or (self.low_open and v == self.low):
            return False
        if v > self.high or (self.high_open and v == self.high):
            return False
        return True


POSITIVE = dict(low=0.0, low_open=True)
NONNEG = dict(low=0.0)
FRACTION = dict(low=0.0, high=1.0, low_open=True)


def check_value(where, key, value, spec):
    """Return ``value`` as float if ``spec`` accepts it, else raise ``ParameterError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(f"{where}: {key} = {value!r} is not a number; expected {spec.allowed()}")
    v = float(value)
    if not spec.accepts(v):
        raise ParameterError(f"{where}: {key} = {value!r} is not allowed; expected {spec.allowed()}")
    return v


def read_entry(where, key, entry, spec, extra_fields=()):
    """Validate one value entry of a parameter file and return it as a ``Quantity``."""
    if not isinstance(entry, dict):
        raise ParameterError(
            f"{where}: {key} = {entry!r} must be a table {{ value = ..., unit = \"{spec.unit}\", source = \"...\" }}"
        )
    unknown = set(entry) - _ENTRY_FIELDS - set(extra_fields)
    if unknown:
        raise ParameterError(
            f"{where}: {key} has unknown field(s) {sorted(unknown)}; allowed: {sorted(_ENTRY_FIELDS | set(extra_fields))}"
        )
    for required in ("value", "unit", "source"):
        if required not in entry:
            raise ParameterError(f"{where}: {key} is missing '{required}'")
    value = check_value(where, f"{key}.value", entry["value"], spec)
    if entry["unit"] != spec.unit:
        raise ParameterError(f"{where}: {key}.unit = {entry['unit']!r} is not allowed; expected {spec.unit!r}")
    source = entry["source"]
    if not isinstance(source, str) or not source.strip():
        raise ParameterError(f"{where}: {key}.source = {source!r} must be a non-empty citation or 'assumed: reason'")
    rng = entry.get("range")
    if rng is not None:
        if not (isinstance(rng, list) and len(rng) == 2):
            raise ParameterError(f"{where}: {key}.range = {rng!r} must be [low, high]")
        lo = check_value(where, f"{key}.range[0]", rng[0], spec)
        hi = check_value(where, f"{key}.range[1]", rng[1], spec)
        if not lo <= value <= hi:
            raise ParameterError(f"{where}: {key}.range = {rng!r} must contain value {value:g}")
        rng = (lo, hi)
    note = entry.get("note")
    if note is not None and not isinstance(note, str):
        raise ParameterError(f"{where}: {key}.note = {note!r} must be text")
    return Quantity(value, spec.unit, source, rng, note)


def require_keys(where, table, required, optional=()):
    """Raise if ``table`` misses a required key or has one not in required ∪ optional."""
    if not isinstance(table, dict):
        raise ParameterError(f"{where} must be a table, got {table!r}")
    allowed = set(required) | set(optional)
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ParameterError(f"{where}: unknown key(s) {unknown}; allowed keys: {sorted(allowed)}")
    missing = [k for k in required if k not in table]
    if missing:
        raise ParameterError(f"{where}: missing required key(s) {missing}")


def read_document(path, schema, required, optional=(), error=ParameterError):
    """Read a parameter TOML file, check its top-level keys and ``schema`` string; return (doc, where).

    ``error`` is the exception class raised (with the file named) for unreadable or invalid files.
    """
    import tomllib

    where = str(path)
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{where}: not valid TOML ({exc})") from None
    except FileNotFoundError:
        raise error(f"{where}: file not found") from None
    try:
        require_keys(where, doc, ("schema",) + tuple(required), optional)
    except ParameterError as exc:
        raise error(str(exc)) from None
    if doc["schema"] != schema:
        raise error(f"{where}: schema = {doc['schema']!r}; expected {schema!r}")
    return doc, where
