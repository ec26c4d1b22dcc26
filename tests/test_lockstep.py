"""Lockstep blocks (core.lockstep) against the per-condition kernels: same steps, same statuses, results equal to
rounding (the matrix product sums in another order): 1e-13 relative for x(t_k) and the loss, 1e-12 for the gradient."""

import numpy as np
import pytest

import cellbox_nb as cb
from cellbox_nb import config
from conftest import random_problem, run_with_threads


def _both(monkeypatch, fn, one_chunk=False):
    monkeypatch.setattr(config, "LOCKSTEP_MIN_N", 10**9)
    ref = fn()
    monkeypatch.setattr(config, "LOCKSTEP_MIN_N", 1)
    monkeypatch.setattr(config, "LOCKSTEP_BLOCK", 3)  # 11 conditions: 4 chunks of 2-3 conditions (uneven)
    if one_chunk:  # a dL/dW memory budget of one chunk: its 11 conditions run as blocks of 3, 3, 3, 2
        monkeypatch.setattr(config, "GRAD_CHUNK_BYTES", 1)
    return ref, fn()


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("h0", [None, 0.01])
def test_forward_same_steps_and_values(monkeypatch, h0):
    W, alpha, U, t = random_problem(17, 11, seed=3)
    (X0, i0), (X1, i1) = _both(monkeypatch, lambda: cb.solve(W, alpha, U, t, h0=h0, full_output=True))
    assert np.array_equal(i1["stats"], i0["stats"]) and np.array_equal(i1["status"], i0["status"])
    assert _rel(X1, X0) <= 1e-13


@pytest.mark.parametrize("integrator", ["dop853", "tsit5"])
@pytest.mark.parametrize("loss, one_chunk", [("mae", False), ("mse", False), ("mae", True)])
def test_gradient_same_steps_and_values(monkeypatch, loss, one_chunk, integrator):
    W, alpha, U, t = random_problem(17, 11, seed=4)
    Y = cb.solve(W * 0.8, alpha, U, t) + 0.01 * np.random.default_rng(0).normal(size=(11, t.size, 17))
    mask = np.random.default_rng(1).uniform(size=Y.shape) > 0.2
    (L0, g0, i0), (L1, g1, i1) = _both(
        monkeypatch, lambda: cb.loss_and_grad(W, alpha, U, t, Y, mask=mask, loss=loss, adjoint_integrator=integrator,
                                              full_output=True), one_chunk)
    assert np.array_equal(i1["stats"], i0["stats"])
    assert abs(L1 - L0) <= 1e-13 * abs(L0)
    for k in ("W", "alpha", "d"):
        assert _rel(g1[k], g0[k]) <= 1e-12, k


def test_failures_inside_a_block_match(monkeypatch):
    """A step limit that some conditions of a block hit and others do not: same statuses, NaN rows alike."""
    W, alpha, U, t = random_problem(17, 11, seed=5)
    U[::3] *= 40.0  # stronger perturbations take more steps
    steps = cb.solve(W, alpha, U, t, full_output=True)[1]["stats"][:, 0]
    limit = int(np.median(steps))
    (X0, i0), (X1, i1) = _both(monkeypatch, lambda: cb.solve(W, alpha, U, t, max_steps=limit, on_failure="nan",
                                                               full_output=True))
    assert 0 < np.sum(i0["status"] != 0) < 11
    assert np.array_equal(i1["status"], i0["status"])
    assert np.array_equal(np.isnan(X1), np.isnan(X0))
    ok = ~np.isnan(X0)
    assert _rel(X1[ok], X0[ok]) <= 1e-13


_SCRIPT = """
import numpy as np, sys
sys.path.insert(0, {tests!r})
import cellbox_nb as cb
from conftest import random_problem
W, alpha, U, t = random_problem(70, 37, seed=5)
Y = cb.solve(W * 0.9, alpha, U, t)
L, g = cb.loss_and_grad(W, alpha, U, t, Y, adjoint_integrator={integrator!r})
sys.stdout.write(np.float64(L).tobytes().hex() + g["W"].tobytes().hex() + g["alpha"].tobytes().hex())
"""


@pytest.mark.parametrize("integrator", ["dop853", "tsit5"])
def test_lockstep_bitwise_identical_across_thread_counts(integrator):
    """n = 70 takes the lockstep path by default (LOCKSTEP_MIN_N = 64): 4 chunks, run on 1 and on 2 threads."""
    assert config.LOCKSTEP_MIN_N <= 70
    script = _SCRIPT.replace("{integrator!r}", repr(integrator))
    outs = [run_with_threads(script, threads) for threads in (1, 2)]
    assert outs[0] == outs[1] and len(outs[0]) > 0


@pytest.mark.parametrize("adjoint", ["interpolating", "discrete"])
@pytest.mark.parametrize("lockstep", [False, True])
def test_worker_scratch_reused_after_growth(monkeypatch, adjoint, lockstep):
    """One worker (1 thread) runs every chunk with the same scratch store, which holds the previous chunk's steps and
    is smaller than some conditions need (rtol 1e-9: 77-95 steps, capacity set to 84, so those chunks grow a store of
    their own and the next chunk starts from the worker's again).  Against each condition solved alone
    (M = 1, fresh scratch): step counts identical, x(t_k) identical (lockstep: 1e-13, the matrix product of a lone
    row may sum in another order), loss 1e-13 and gradient 1e-12 relative (sums in another order)."""
    import numba

    W, alpha, U, t = random_problem(20, 7, seed=5)
    Y = cb.solve(W * 0.8, alpha, U, t) + 0.01 * np.random.default_rng(2).normal(size=(7, t.size, 20))
    monkeypatch.setattr(config, "LOCKSTEP_MIN_N", 1 if lockstep else 10**9)
    monkeypatch.setattr(config, "LOCKSTEP_BLOCK", 2)
    monkeypatch.setattr(config, "DENSE_INITIAL_STEPS", 84)
    kw = dict(rtol=1e-9, atol=1e-9, adjoint=adjoint, full_output=True)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        L, g, info = cb.loss_and_grad(W, alpha, U, t, Y, **kw)
    finally:
        numba.set_num_threads(threads)
    steps = info["stats"][:, 0]
    assert steps.max() > config.DENSE_INITIAL_STEPS and steps.min() < config.DENSE_INITIAL_STEPS
    Ls, gs = 0.0, {k: 0.0 for k in ("W", "alpha", "d")}
    for c in range(7):
        Lc, gc, ic = cb.loss_and_grad(W, alpha, U[c:c + 1], t, Y[c:c + 1], **kw)
        assert np.array_equal(ic["stats"][0], info["stats"][c])
        assert _rel(ic["X"][0], info["X"][c]) <= (1e-13 if lockstep else 0.0)  # BLAS may sum a 1-row product apart
        Ls += Lc / 7
        for k in gs:
            gs[k] = gs[k] + gc[k] / 7
    assert abs(L - Ls) <= 1e-13 * abs(Ls)
    for k in gs:
        assert _rel(g[k], gs[k]) <= 1e-12, k


@pytest.mark.parametrize("adjoint, integrator, lockstep", [
    ("interpolating", "tsit5", False), ("interpolating", "tsit5", True), ("interpolating", "dop853", False),
    ("interpolating", "dop853", True), ("discrete", "auto", False), ("discrete", "auto", True)])
def test_dw_buffers_flushed_mid_block(monkeypatch, adjoint, integrator, lockstep):
    """dL/dW terms buffered in the smallest buffers allowed (max(QROWS_STEP, QROWS_STEP8) rows: a flush every few
    accepted steps, often between two conditions of a lockstep block, where the block's step-control leaf stops, the
    kernel flushes and the leaf goes on) against the terms added straight into dL/dW, per condition: same steps, loss
    1e-13 and gradient 1e-12 relative (the products sum in another order).  A term lost or added twice at a flush
    would move dL/dW by a whole step's quadrature."""
    from cellbox_nb.core.adjoint import QROWS_STEP
    from cellbox_nb.core.adjoint8 import QROWS_STEP8

    W, alpha, U, t = random_problem(17, 11, seed=6)
    Y = cb.solve(W * 0.8, alpha, U, t) + 0.01 * np.random.default_rng(3).normal(size=(11, t.size, 17))
    kw = dict(adjoint=adjoint, adjoint_integrator=integrator, full_output=True)
    monkeypatch.setattr(config, "LOCKSTEP_MIN_N", 10**9)
    monkeypatch.setattr(config, "DEFER_DW_MIN_N", 10**9)
    monkeypatch.setattr(config, "DEFER_DW_MIN_N_DOP853", 10**9)
    L0, g0, i0 = cb.loss_and_grad(W, alpha, U, t, Y, **kw)
    monkeypatch.setattr(config, "LOCKSTEP_MIN_N", 1 if lockstep else 10**9)
    monkeypatch.setattr(config, "LOCKSTEP_BLOCK", 4)
    monkeypatch.setattr(config, "DEFER_DW_MIN_N", 1)
    monkeypatch.setattr(config, "DEFER_DW_MIN_N_DOP853", 1)
    monkeypatch.setattr(config, "DEFER_DW_ROWS", 1)  # the buffers get max(1, QROWS_STEP, QROWS_STEP8) rows
    L1, g1, i1 = cb.loss_and_grad(W, alpha, U, t, Y, **kw)
    rows = max(QROWS_STEP, QROWS_STEP8)
    assert rows <= 40 and i1["stats"][:, 6].sum() > 25 * rows  # many flushes
    assert np.array_equal(i1["stats"][:, :6], i0["stats"][:, :6])
    assert abs(L1 - L0) <= 1e-13 * abs(L0)
    for k in ("W", "alpha", "d"):
        assert _rel(g1[k], g0[k]) <= 1e-12, k


@pytest.mark.parametrize("integrator", ["dop853", "tsit5"])
def test_backward_step_limit_inside_a_block_matches(monkeypatch, integrator):
    """A max_steps that the forward passes of all conditions stay under but the backward passes of some exceed (the
    median of the backward's step counts, forward steps permitting; adjoint_rtol 1e-10 so that the backward takes
    more steps than the forward): the same conditions fail with MAX_STEPS per condition and in lockstep blocks."""
    from cellbox_nb.core import status as st

    W, alpha, U, t = random_problem(17, 11, seed=7)
    Y = cb.solve(W * 0.8, alpha, U, t) + 0.01 * np.random.default_rng(4).normal(size=(11, t.size, 17))
    kw = dict(adjoint_integrator=integrator, adjoint_rtol=1e-10)
    _, _, info = cb.loss_and_grad(W, alpha, U, t, Y, full_output=True, **kw)
    fwd_tried = info["stats"][:, 0] + info["stats"][:, 1]
    bwd_tried = info["stats"][:, 3] + info["stats"][:, 4]
    limit = max(int(fwd_tried.max()), int(np.median(bwd_tried)))
    assert 0 < np.sum(bwd_tried >= limit) < 11

    def failing():
        with pytest.raises(cb.SolveError) as exc:
            cb.loss_and_grad(W, alpha, U, t, Y, max_steps=limit, **kw)
        return exc.value.status

    s0, s1 = _both(monkeypatch, failing)
    assert np.array_equal(s1, s0)
    assert set(np.unique(s0)) == {st.SUCCESS, st.MAX_STEPS}
