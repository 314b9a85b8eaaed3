"""Blocks of virtual subjects on threads: how the population kernels use more than one core.

The population kernels (``csfpk._kernels.batch``, ``csfpk._kernels.escalation``) loop over the subjects
they are given on one thread and release the GIL (``nogil``); ``on_threads`` hands them blocks of
subjects on ``numba.get_num_threads()`` Python threads. Every subject's numbers are computed alone,
so they do not depend on the thread count or the block size. This is used instead of numba's
``parallel=True``, whose lowering of the kernels took a third of the cold compile of a population run.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

BLOCK = 512  # subjects per thread task (the exact kernel: tens of µs per subject)

_POOLS = {}  # (process id, threads) → a pool kept for the process's life: starting threads per chunk cost ~3 ms each
_POOLS_LOCK = threading.Lock()


def _pool(threads):
    """The pool of ``threads`` workers of this process (a forked child gets its own: the parent's threads are gone)."""
    key = (os.getpid(), threads)
    with _POOLS_LOCK:
        if key not in _POOLS:
            _POOLS[key] = ThreadPoolExecutor(threads, thread_name_prefix="csfpk")
        return _POOLS[key]


def on_threads(block, S, size=BLOCK):
    """Run ``block(a, b)`` over subjects [0, S) in blocks of ``size``, on ``numba.get_num_threads()`` threads.

    Blocks must not call ``on_threads`` themselves (they would wait for workers of the same pool)."""
    import numba

    starts = range(0, S, size)
    threads = min(numba.get_num_threads(), len(starts))
    if threads <= 1:
        for a in starts:
            block(a, min(a + size, S))
        return
    futures = [_pool(threads).submit(block, a, min(a + size, S)) for a in starts]
    try:
        for fut in futures:
            fut.result()
    finally:  # on an error, blocks not started are dropped and the running ones finish before it propagates
        for fut in futures:
            fut.cancel()
        wait(futures)
