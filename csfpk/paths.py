"""Where csfpk finds its parameter files.

The ``params/`` folder sits beside the package in the repository (the README installs csfpk in
editable mode). ``CSFPK_PARAMS`` overrides it, e.g. for a site-wide library of drug files.
"""

import os
from pathlib import Path

from .errors import ParameterError


def params_dir():
    """Return the folder holding ``drugs/``, ``physiology/``, ``regimens/`` and ``sweeps/``."""
    env = os.environ.get("CSFPK_PARAMS")
    path = Path(env) if env else Path(__file__).resolve().parent.parent / "params"
    if not path.is_dir():
        raise ParameterError(
            f"parameter folder {str(path)!r} does not exist; install csfpk from its repository with "
            "'pip install -e .' or set CSFPK_PARAMS to a folder with drugs/ and physiology/"
        )
    return path


def file_key(path):
    """(resolved path, mtime, size): a cache key that changes when the file is edited."""
    st = os.stat(path)
    return (str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


def resolve(kind, name_or_path):
    """Return the TOML file for ``name_or_path``: a path as given, or ``params/<kind>/<name>.toml``."""
    text = str(name_or_path)
    p = Path(text)
    if p.suffix == ".toml" or os.sep in text or "/" in text:
        if not p.is_file():
            raise ParameterError(f"{kind} file {text!r} does not exist")
        return p
    folder = params_dir() / kind
    p = folder / f"{text.lower()}.toml"
    if not p.is_file():
        known = sorted(f.stem for f in folder.glob("*.toml"))
        raise ParameterError(f"unknown {kind[:-1] if kind.endswith('s') else kind} {text!r}; known: {', '.join(known) or 'none'}")
    return p
