"""Import hygiene and kernel signatures."""

import subprocess
import sys

import numpy as np
import pandas as pd

import csfpk


def test_import_compiles_nothing_and_loads_no_matplotlib():
    code = ("import sys, csfpk; csfpk.Regimen; csfpk.load_drug('erlotinib');"
            "bad = [m for m in ('matplotlib', 'numba', 'csfpk._kernels.exact') if m in sys.modules];"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_each_kernel_compiles_one_signature():
    from csfpk._kernels import adaptive, exact

    drug = csfpk.load_drug("erlotinib")
    for amt, ii, n in [(150, 24, 3), (150.0, 24.0, 2), (np.float64(100), np.int64(12), np.int64(2))]:
        csfpk.simulate(drug, csfpk.Regimen.every(amt=amt, ii=ii, n=int(n)), t_end=96, dt=1)
        csfpk.simulate(drug, csfpk.Regimen.every(amt=amt, ii=ii, n=int(n)), t_end=96, dt=0.5, method="adaptive")
        csfpk.simulate(drug, csfpk.Regimen.every(amt=amt, ii=ii, n=int(n)), t_end=96, dt=2, method="stiff")
    csfpk.simulate(csfpk.load_drug("methotrexate"), csfpk.Regimen.from_frame(
        pd.DataFrame({"time": [0, 84], "amt": [12, 12], "cmt": ["it_lumbar"] * 2})), t_end=200)
    assert len(exact.run_subject.signatures) == 1
    assert len(adaptive.run_subject.signatures) == 1


def test_public_names_resolve():
    for name in csfpk.__all__:
        assert getattr(csfpk, name) is not None
