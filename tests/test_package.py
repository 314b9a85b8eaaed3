"""Import hygiene and kernel signatures."""

import subprocess
import sys

import csfpk


def test_import_compiles_nothing_and_loads_no_matplotlib():
    code = ("import sys, csfpk; csfpk.Regimen; csfpk.load_drug('erlotinib');"
            "csfpk.build_model(csfpk.load_drug('lorlatinib')); import csfpk.simulation, csfpk.status;"
            "bad = [m for m in ('matplotlib', 'numba', 'csfpk._kernels.exact') if m in sys.modules];"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_names_are_the_documented_objects_of_their_modules():
    """Every name in ``csfpk.__all__`` is a documented object defined in a csfpk module (not a stray alias
    of another name) and ``from csfpk import *`` gives exactly those names. The one-signature check of the
    kernels lives in test_kernels_adaptive.py (every dispatcher, through the public API)."""
    import types

    assert len(set(csfpk.__all__)) == len(csfpk.__all__)
    namespace = {}
    exec("from csfpk import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(csfpk.__all__)
    owners = {}
    for name in csfpk.__all__:
        obj = getattr(csfpk, name)
        doc = (obj.__doc__ or "").strip()  # its own: not inherited, not a dataclass's generated signature
        assert doc and not doc.startswith(f"{name}("), f"csfpk.{name} has no docstring of its own"
        if isinstance(obj, types.ModuleType):
            assert obj.__name__ == f"csfpk.{name}"
        else:
            assert obj.__module__.startswith("csfpk.") and obj.__name__ == name, (name, obj)
            owners.setdefault(id(obj), []).append(name)
    assert all(len(v) == 1 for v in owners.values()), [v for v in owners.values() if len(v) > 1]


def test_bare_pytest_collects_the_benchmark_tests_and_doctests_are_collected():
    """`pytest` without `python -m` does not put the working directory on sys.path; pyproject's
    ``pythonpath`` must (isolated mode, -I, gives the same sys.path as the console script)."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-I", "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "tests/test_benchmarks.py"], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    # and the CI command runs the package's docstring examples
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "csfpk/metrics.py"], cwd=root, capture_output=True, text=True)
    assert "csfpk/metrics.py::csfpk.metrics.exposure" in out.stdout, out.stdout[-2000:]
