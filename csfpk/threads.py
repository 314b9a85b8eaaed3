"""Blocks of virtual subjects on threads: how the population kernels use more than one core.

The population kernels (``csfpk._kernels.batch``, ``csfpk._kernels.escalation``) loop over the subjects
they are given on one thread and release the GIL (``nogil``); ``on_threads`` hands them blocks of
subjects on ``numba.get_num_threads()`` Python threads. Every subject's numbers are computed alone,
so they do not depend on the thread count or the block size. This is used instead of numba's
``parallel=True``, whose lowering of the kernels took a third of the cold compile of a population run.
"""

from concurrent.futures import ThreadPoolExecutor

BLOCK = 512  # subjects per thread task (the exact kernel: tens of µs per subject)


def on_threads(block, S, size=BLOCK):
    """Run ``block(a, b)`` over subjects [0, S) in blocks of ``size``, on ``numba.get_num_threads()`` threads."""
    import numba

    starts = range(0, S, size)
    threads = min(numba.get_num_threads(), len(starts))
    if threads <= 1:
        for a in starts:
            block(a, min(a + size, S))
        return
    with ThreadPoolExecutor(threads) as pool:
        for fut in [pool.submit(block, a, min(a + size, S)) for a in starts]:
            fut.result()
