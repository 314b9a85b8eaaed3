"""Size limits, checked before any work so that a typing slip is refused at once, not after minutes.

The checks use only numbers (no model, no numba), so the command line can run them first.
"""

import math

from .errors import ScheduleError

MAX_OUTPUT_ROWS = 50_000_000
# memory a result may take (amounts, float64, plus the tidy frame's ~5 columns per output);
# assumed: well under the RAM of a laptop
MAX_RESULT_BYTES = 2e9


def check_size(t_end, dt, n_states=1, n_outputs=None, where=("t_end", "dt")):
    """Refuse an output grid of ``t_end``/``dt`` (h) too long or a result too large for memory.

    ``n_outputs`` None: not known yet (the row count alone is checked, as for one output).
    ``where`` names the two arguments in the message (the CLI passes ``("--t-end", "--dt")``).

    Examples
    --------
    >>> check_size(672.0, 1.0, 5, 3)
    >>> check_size(2.4e9, 1.0)
    Traceback (most recent call last):
    ...
    csfpk.errors.ScheduleError: t_end = 2.4e+09 h with dt = 1 h gives 2.4e+09 output times (≈ 115 GB); expected at most 5e+07 times and 2 GB: raise dt, end earlier or give fewer doses
    """
    if not (t_end > 0 and dt > 0):
        return
    rows = math.floor(t_end / dt + 1e-9) + 2
    n_out = max(1, n_outputs or 1)
    per = f" × {n_out} outputs" if n_outputs else ""
    nbytes = rows * (n_states * 8 + n_out * 5 * 8)
    if rows > MAX_OUTPUT_ROWS or nbytes > MAX_RESULT_BYTES:
        raise ScheduleError(f"{where[0]} = {t_end:.6g} h with {where[1]} = {dt:g} h gives {rows:.3g} output times{per} "
                            f"(≈ {nbytes / 1e9:.3g} GB); expected at most {MAX_OUTPUT_ROWS:.0e} times "
                            f"and {MAX_RESULT_BYTES / 1e9:g} GB: raise {where[1]}, end earlier or give fewer doses")
