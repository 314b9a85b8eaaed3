"""Numba kernels of csfpk: arrays and scalars in, status codes out.

Nothing here is imported by ``import csfpk``; the Python layer (``csfpk.simulate`` and friends)
imports a kernel module the first time it needs one, so importing the package compiles nothing.

Cache folder. Numba's on-disk cache (``cache=True``) keys a compiled kernel on its own source file
only: when a kernel it calls changes in another module (``git pull`` in an editable install, an edit
while developing), the caller's stale machine code is loaded and runs the old callee — silently
wrong numbers or a crash. So, unless the user chose one (``NUMBA_CACHE_DIR``) or numba was imported
before this package, the cache goes to ``$XDG_CACHE_HOME/csfpk/numba/<digest>`` (default
``~/.cache``), where ``digest`` is the SHA-256 of every kernel source: any change to any kernel
gives a fresh, consistent cache (folders of older sources stay; delete ``~/.cache/csfpk/numba`` to
reclaim the space). An unwritable cache home leaves numba's default in place.
"""

import hashlib
import os
import sys
from pathlib import Path


def source_digest():
    """16 hex digits of the SHA-256 of every kernel module (file name and bytes, in name order)."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _use_versioned_cache():
    if "NUMBA_CACHE_DIR" in os.environ or "numba" in sys.modules:  # the user's choice, or too late to set
        return
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = home / "csfpk" / "numba" / source_digest()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    os.environ["NUMBA_CACHE_DIR"] = str(folder)


_use_versioned_cache()
