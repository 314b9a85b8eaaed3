import contextlib
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from csfpk import runfolder
from csfpk.drug import Drug, PlasmaPK
from csfpk.model import build_model


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, env=None, **kw):
    """``python -m csfpk *args`` in a subprocess (this checkout first on the path, ``env`` added)."""
    e = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "csfpk", *args], capture_output=True, text=True, env=e, **kw)


def cli_killed_after(chunks, *args):
    """``cli(*args)`` killed (SIGKILL, by the run folder's test hook) after ``chunks`` chunks are stored."""
    r = cli(*args, env={runfolder.STOP_AFTER_CHUNKS: str(chunks)})
    assert r.returncode == -signal.SIGKILL, r.stderr
    return r


def plasma_model(**pk):
    """A plasma-only model (no CSF) with the given PlasmaPK parameters."""
    return build_model(Drug("test", 300.0, PlasmaPK(**pk)), csf_layout="none")


@pytest.fixture
def rel_err():
    def f(a, b, floor=1e-300):
        a, b = np.asarray(a, float), np.asarray(b, float)
        return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), floor)))
    return f


@pytest.fixture(scope="session")
def dask_client():
    """A Dask client on a local cluster of 2 single-threaded worker processes, shared by the tests that compare
    Dask with a local run."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        yield client


@pytest.fixture
def bad_subjects(monkeypatch):
    """``bad_subjects(CL={3: nan}, ka={8: 1e9})``: every ``Population.sample`` then gives those subjects those
    values (the draws of all other subjects and parameters unchanged)."""
    import csfpk

    real = csfpk.Population.sample

    def patch(**values):
        def sample(self, drug, start=0, stop=None, physiology=None):
            out = real(self, drug, start, stop, physiology)
            for name, by_subject in values.items():
                for subject, value in by_subject.items():
                    out[name] = np.where(out["subject"] == subject, value, out[name])
            return out

        monkeypatch.setattr(csfpk.Population, "sample", sample)

    return patch


@pytest.fixture
def one_thread():
    """``with one_thread(): …`` runs numba on one thread (the thread count is restored after)."""
    import numba

    @contextlib.contextmanager
    def ctx():
        before = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            yield
        finally:
            numba.set_num_threads(before)

    return ctx
