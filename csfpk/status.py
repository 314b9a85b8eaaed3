"""Kernel status codes and the messages a user needs (after SciMLBase's documented retcodes).

The integer values are defined once, in ``csfpk._kernels.codes``; this enum names them and
holds the message for each (``tests/test_codes.py`` checks that the two agree).
"""

from enum import IntEnum

from ._kernels import codes


class Status(IntEnum):
    """Outcome of a kernel run for one subject.

    Examples
    --------
    >>> from csfpk.status import Status
    >>> Status(2).name, Status(2).message.split(";")[0]
    ('NONFINITE', 'the state became NaN or infinite')
    """

    OK = codes.OK
    NONFINITE = codes.NONFINITE
    MAX_STEPS = codes.MAX_STEPS
    STEP_UNDERFLOW = codes.STEP_UNDERFLOW
    SINGULAR = codes.SINGULAR
    UNSUPPORTED = codes.UNSUPPORTED

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
