"""csfpk — plasma–CSF pharmacokinetics of targeted and intrathecal drugs for leptomeningeal metastases.

Public names are loaded on first use, so ``import csfpk`` is fast, compiles nothing and does not
import matplotlib or numba.

Examples
--------
>>> import csfpk
>>> drug = csfpk.load_drug("erlotinib")
>>> res = csfpk.simulate(drug, csfpk.Regimen.every(amt=150, ii=24, n=28), t_end="28d", dt=1)
>>> res.to_frame().columns.tolist()[:4]
['time_h', 'compartment', 'conc_mg_L', 'conc_nM']
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "load_drug": "drug",
    "list_drugs": "drug",
    "Drug": "drug",
    "PlasmaPK": "drug",
    "CSFExchange": "drug",
    "load_physiology": "physiology",
    "Physiology": "physiology",
    "build_model": "model",
    "Model": "model",
    "Regimen": "regimen",
    "Record": "regimen",
    "simulate": "simulation",
    "read_dataset": "dataset",
    "simulate_dataset": "dataset",
    "write_dataset": "dataset",
    "Dataset": "dataset",
    "solve": "simulation",
    "SimulationResult": "result",
    "Status": "status",
    "Population": "population",
    "compare": "comparison",
    "RunResult": "runresult",
    "load_run": "runresult",
    "write_figures": "figures",
    "RunFolderError": "runfolder",
    "Escalation": "escalation",
    "run_escalation": "escalation",
    "run_escalation_population": "escalation_population",
    "exposure_table": "intrathecal",
    "blood_counts": "myelosuppression",
    "load_regimen": "protocols",
    "params_dir": "paths",
    "load_sweep": "sweep",
    "run_sweep": "sweep",
    "CsfpkError": "errors",
    "ParameterError": "errors",
    "ScheduleError": "errors",
    "SolverError": "errors",
}
_SUBMODULES = ("plot", "metrics", "units", "fit", "observations")  # csfpk.fit is also callable: csfpk.fit(obs, dosing, ...)

__all__ = sorted(_LAZY) + list(_SUBMODULES)


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'csfpk' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
