"""The numba cache folder follows the kernel sources (csfpk/_kernels/__init__.py docstring)."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import csfpk

KERNELS = Path(csfpk.__file__).parent / "_kernels"
PROBE = "import csfpk._kernels, os, sys; print(os.environ.get('NUMBA_CACHE_DIR', '')); print('numba' in sys.modules)"


def _expected_digest():
    h = hashlib.sha256()
    for path in sorted(KERNELS.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _probe(tmp_path, **env):
    full = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    full.update(XDG_CACHE_HOME=str(tmp_path), PYTHONPATH=str(KERNELS.parent.parent), **env)
    out = subprocess.run([sys.executable, "-c", PROBE], env=full, capture_output=True, text=True, check=True)
    return out.stdout.split("\n")[:2]


def test_cache_folder_is_keyed_by_every_kernel_source(tmp_path):
    folder, numba_loaded = _probe(tmp_path)
    assert Path(folder) == tmp_path / "csfpk" / "numba" / _expected_digest()
    assert Path(folder).is_dir()
    assert numba_loaded == "False"  # set before numba reads its configuration


def test_a_users_cache_folder_is_kept(tmp_path):
    folder, _ = _probe(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "mine"))
    assert folder == str(tmp_path / "mine")
