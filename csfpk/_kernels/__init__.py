"""Numba kernels of csfpk: arrays and scalars in, status codes out.

Nothing here is imported by ``import csfpk``; the Python layer (``csfpk.simulate`` and friends)
imports a kernel module the first time it needs one, so importing the package compiles nothing.
"""
