"""The cpu drivers' scratch pool (cellbox_nb._scratch): kept sets are lent again, and whatever a previous call left
in them cannot change a result.  Exact comparisons (bitwise): the same kernels run the same arithmetic, only the
scratch they write into differs."""

import threading

import numpy as np
import pytest

import cellbox_nb as cb
from cellbox_nb import api, config
from cellbox_nb._scratch import ScratchPool
from conftest import random_problem


def _bits(L, g, info):
    return (np.float64(L).tobytes() + g["W"].tobytes() + g["alpha"].tobytes() + g["d"].tobytes()
            + info["X"].tobytes() + info["stats"].tobytes())


@pytest.mark.parametrize("lockstep", [False, True])
@pytest.mark.parametrize("adjoint, integrator", [("interpolating", "dop853"), ("interpolating", "tsit5"),
                                                 ("discrete", "auto")])
@pytest.mark.parametrize("poison", [np.nan, np.inf, -1e300])
def test_poisoned_scratch_gives_the_same_bits(monkeypatch, lockstep, adjoint, integrator, poison):
    """A fresh pool against one whose kept set is filled with NaN, Inf or -1e300 (what a call that blew up, or any
    other call, may leave behind): bitwise the same loss, gradient, x(t_k) and step counts.  The store starts with
    room for 8 steps, so every condition also grows a store of its own (30-60 steps) and the dL/dW buffers are the
    smallest allowed (flushes mid-block)."""
    from cellbox_nb.core.adjoint import QROWS_STEP
    from cellbox_nb.core.adjoint8 import QROWS_STEP8

    monkeypatch.setattr(config, "LOCKSTEP_MIN_N", 1 if lockstep else 10**9)
    monkeypatch.setattr(config, "LOCKSTEP_BLOCK", 3)
    monkeypatch.setattr(config, "DENSE_INITIAL_STEPS", 8)
    monkeypatch.setattr(config, "DEFER_DW_MIN_N", 1)
    monkeypatch.setattr(config, "DEFER_DW_MIN_N_DOP853", 1)
    monkeypatch.setattr(config, "DEFER_DW_ROWS", max(QROWS_STEP, QROWS_STEP8))
    monkeypatch.setattr(api, "_SCRATCH", ScratchPool(lambda: 2**30))
    W, alpha, U, t = random_problem(17, 11, seed=7)
    Y = cb.solve(W * 0.8, alpha, U, t) + 0.01 * np.random.default_rng(4).normal(size=(11, t.size, 17))
    kw = dict(adjoint=adjoint, adjoint_integrator=integrator, full_output=True)
    fresh = _bits(*cb.loss_and_grad(W, alpha, U, t, Y, **kw))
    kept = api._SCRATCH.sets()
    assert len(kept) == 1
    for a in kept[0]:
        a.fill(poison)
    again = _bits(*cb.loss_and_grad(W, alpha, U, t, Y, **kw))
    assert api._SCRATCH.sets()[0][1] is kept[0][1]  # the poisoned set was lent again
    assert again == fresh


def test_other_problem_in_between_changes_nothing(monkeypatch):
    """A call on another problem of the same shape in between (it leaves its own trajectory in the kept set): the
    first problem's results are bitwise those of its first call."""
    monkeypatch.setattr(api, "_SCRATCH", ScratchPool(lambda: 2**30))
    W, alpha, U, t = random_problem(70, 20, seed=8)  # n >= 64: the lockstep path by default
    Y = cb.solve(W * 0.8, alpha, U, t)
    first = _bits(*cb.loss_and_grad(W, alpha, U, t, Y, full_output=True))
    W2, alpha2, U2, _ = random_problem(70, 20, seed=9)
    cb.loss_and_grad(W2, alpha2, U2, t, Y, full_output=True)
    assert _bits(*cb.loss_and_grad(W, alpha, U, t, Y, full_output=True)) == first
    assert len(api._SCRATCH.sets()) == 1


def test_pool_limit_and_order():
    """Sets come back up to the limit, least recently returned go first, a set over the limit is not kept, and two
    borrows at once get different arrays."""
    limit = [3 * 800]
    pool = ScratchPool(lambda: limit[0])
    a, b = ((10, 10),), ((5, 20),)  # 800 bytes each
    with pool.borrow(a) as s1, pool.borrow(a) as s2:
        assert s1[0] is not s2[0] and s1[0].shape == (10, 10)
    assert pool.held_bytes == 1600
    with pool.borrow(a) as s3:
        assert s3[0] is s2[0] or s3[0] is s1[0]
    with pool.borrow(b):
        pass
    assert pool.held_bytes == 2400
    with pool.borrow(((10, 20),)):  # 1600 bytes: the two oldest sets (of shape a) make room
        pass
    shapes = [s[0].shape for s in pool.sets()]
    assert sorted(shapes) == [(5, 20), (10, 20)] and pool.held_bytes == 2400
    with pool.borrow(((40, 10),)):  # 3200 bytes > limit: lent, not kept
        pass
    assert pool.held_bytes == 2400
    limit[0] = 0
    with pool.borrow(a):
        pass
    assert pool.held_bytes == 2400  # nothing more is kept under a limit of 0 ...
    pool.clear()
    assert pool.held_bytes == 0 and pool.sets() == []


def test_pool_with_threads():
    """Eight Python threads borrowing the same shapes 200 times each never hold the same arrays at once."""
    pool = ScratchPool(lambda: 2**20)
    held, clash, lock = set(), [], threading.Lock()

    def work():
        for _ in range(200):
            with pool.borrow(((4, 4), (3,))) as s:
                with lock:
                    if id(s[0]) in held:
                        clash.append(1)
                    held.add(id(s[0]))
                with lock:
                    held.discard(id(s[0]))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not clash and pool.held_bytes == len(pool.sets()) * (16 + 3) * 8 and len(pool.sets()) <= 8


def test_keep_limit_zero_keeps_nothing(monkeypatch):
    monkeypatch.setattr(config, "SCRATCH_KEEP_BYTES", 0)
    monkeypatch.setattr(api, "_SCRATCH", ScratchPool(lambda: config.SCRATCH_KEEP_BYTES))
    W, alpha, U, t = random_problem(9, 4, seed=1)
    cb.loss_and_grad(W, alpha, U, t, cb.solve(W * 0.8, alpha, U, t))
    assert api._SCRATCH.held_bytes == 0
