"""Exceptions raised by csfpk.

Every error names the offending field, the value it got and what is allowed, so that the message
alone tells the user what to change.
"""


class CsfpkError(Exception):
    """Base class of every error csfpk raises on purpose."""


class ParameterError(CsfpkError, ValueError):
    """A parameter file or value is missing, mistyped, or outside its allowed range."""


class ScheduleError(CsfpkError, ValueError):
    """A dosing record or regimen is impossible (negative dose, bad interval, unknown route...)."""


class SolverError(CsfpkError, RuntimeError):
    """A kernel returned a failure status (see ``csfpk.solve.Status``)."""


def field_error(cls, where, field, value, allowed):
    """Build ``cls`` with the standard message: where, field, value, allowed."""
    prefix = f"{where}: " if where else ""
    return cls(f"{prefix}{field} = {value!r} is not allowed; expected {allowed}")


class ObservationError(CsfpkError, ValueError):
    """Observations or the dosing given for them are unusable (missing column, negative or NaN
    concentration, a sample before the first dose, no rows...)."""
