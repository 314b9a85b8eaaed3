"""Kernel status codes and the messages a user needs (after SciMLBase's documented retcodes)."""

from enum import IntEnum


class Status(IntEnum):
    """Outcome of a kernel run for one subject."""

    OK = 0
    NONFINITE = 2
    MAX_STEPS = 3
    STEP_UNDERFLOW = 4
    SINGULAR = 5
    UNSUPPORTED = 6

    @property
    def message(self):
        return _MESSAGES[self]


_MESSAGES = {
    Status.OK: "ok",
    Status.NONFINITE: "the state became NaN or infinite; check for a zero volume, a huge rate constant or a "
                      "negative Km",
    Status.MAX_STEPS: "the adaptive solver hit its step limit; loosen rtol/atol, shorten t_end, or use "
                      "method='stiff' if the model is stiff",
    Status.STEP_UNDERFLOW: "the adaptive solver's step size underflowed; the model is probably stiff: use "
                           "method='stiff'",
    Status.SINGULAR: "steady state is undefined: the model has no elimination path from the dosed compartment",
    Status.UNSUPPORTED: "this solver does not support an action in the schedule (steady-state records need a "
                        "linear model and method='exact')",
}
