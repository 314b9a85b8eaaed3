"""Results of a simulation: amounts per state on an output grid, with tidy views."""

from dataclasses import dataclass

import numpy as np

from .units import mg_per_L_to_nM


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """One subject's simulation.

    Attributes
    ----------
    times : output times, h.
    amounts : state amounts, mg, shape (len(times), n_states), states as ``model.states``.
    model : the compiled ``Model``.
    method : solver used (``"exact"``, ``"adaptive"``, ``"stiff"`` or ``"switching"``).
    doses : (time h, state index, amount mg) of each dose actually given (after F and lag).
    regimen : the ``Regimen`` simulated.
    stats : step counts of the adaptive methods, summed over the run (None for ``"exact"``, which
        takes no steps): ``steps_accepted``, ``steps_rejected`` (error too large, singular iteration
        matrix or overflow), ``rhs_evaluations``, ``lu_factorisations`` (Rodas4 steps only; 0 for
        ``"adaptive"``) and ``stiffness_switches`` (``"switching"``: hand-overs between Dormand–Prince and
        Rodas4 either way; 0 for the other methods). Like diffrax's ``Solution.stats`` and scipy's
        ``nfev``/``nlu``: a measure of the work done, and of stiffness when ``"adaptive"`` needs many more
        steps than ``"stiff"``.

    Examples
    --------
    >>> import csfpk
    >>> res = csfpk.simulate("lorlatinib", csfpk.Regimen.every(amt=100, ii=24, n=2), t_end=48, method="stiff")
    >>> sorted(res.stats)
    ['lu_factorisations', 'rhs_evaluations', 'steps_accepted', 'steps_rejected', 'stiffness_switches']
    >>> res.stats["steps_accepted"] > 0 and res.stats["lu_factorisations"] >= res.stats["steps_accepted"]
    True
    """

    times: np.ndarray
    amounts: np.ndarray
    model: object
    method: str
    doses: tuple
    regimen: object = None
    stats: dict | None = None

    @property
    def compartments(self):
        """Names of the concentration outputs (``plasma``, ``plasma_unbound``, ``csf`` …)."""
        return tuple(self.model.outputs)

    def conc(self, compartment="plasma"):
        """Concentration in ``compartment``, mg/L: scale·A/V (scale = fu for ``plasma_unbound``)."""
        try:
            idx, vol, scale = self.model.outputs[compartment]
        except KeyError:
            raise KeyError(f"compartment {compartment!r} is not an output; allowed: {list(self.compartments)}") from None
        return scale * self.amounts[:, idx] / vol

    def amount(self, state):
        """Amount in ``state`` (any of ``model.states``), mg."""
        return self.amounts[:, self.model.states.index(state)]

    def to_frame(self, compartments=None):
        """Tidy frame: time_h, compartment, conc_mg_L, conc_nM, conc_ng_mL (one row per time × compartment)."""
        import pandas as pd

        names = list(compartments or self.compartments)
        blocks = []
        for name in names:
            c = self.conc(name)
            blocks.append(pd.DataFrame({
                "time_h": self.times,
                "compartment": name,
                "conc_mg_L": c,
                "conc_nM": mg_per_L_to_nM(c, self.model.molecular_weight),
                "conc_ng_mL": c * 1e3,
            }))
        return pd.concat(blocks, ignore_index=True)

    def amounts_frame(self):
        """Wide frame of state amounts (mg), one column per state, indexed by time_h."""
        import pandas as pd

        return pd.DataFrame(self.amounts, columns=list(self.model.states), index=pd.Index(self.times, name="time_h"))
