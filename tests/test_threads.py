"""on_threads: every subject once, errors surface after the running blocks finish, the pool survives a fork."""

import multiprocessing
import threading
import time

import numba
import numpy as np
import pytest

from csfpk import threads


def _cover(S, size):
    seen = np.zeros(S, dtype=np.int64)
    lock = threading.Lock()

    def block(a, b):
        with lock:
            seen[a:b] += 1

    threads.on_threads(block, S, size=size)
    return seen


def test_every_subject_once_whatever_the_block_size():
    assert numba.get_num_threads() >= 2  # the pool is used (one thread runs the blocks in the caller)
    for S, size in [(1, 512), (1000, 512), (1024, 512), (7, 2), (10_000, 3)]:
        assert (_cover(S, size) == 1).all(), (S, size)
    assert threads._pool(2) is threads._pool(2)  # kept between calls: threads are not started per chunk


def test_an_error_propagates_after_the_running_blocks_finished():
    state = {"running": 0, "max_after": None}
    lock = threading.Lock()

    def block(a, b):
        with lock:
            state["running"] += 1
        try:
            if a == 0:
                raise ValueError("block 0 failed")
            time.sleep(0.05)
        finally:
            with lock:
                state["running"] -= 1

    with pytest.raises(ValueError, match="block 0 failed"):
        threads.on_threads(block, 20, size=1)
    assert state["running"] == 0  # no block still writes into the caller's arrays
    assert (_cover(100, 7) == 1).all()  # and the pool still works


def _child(q):
    q.put(int(_cover(5000, 64).sum()))


def test_a_forked_child_gets_its_own_pool():
    _cover(100, 7)  # the parent's pool exists (its threads are not copied into a fork)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q,))
    p.start()
    p.join(timeout=60)
    if p.is_alive():
        p.kill()
    assert p.exitcode == 0 and q.get(timeout=5) == 5000
