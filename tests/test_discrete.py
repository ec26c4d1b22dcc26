"""Discrete adjoint (adjoint="discrete"): the exact gradient of the computed loss on a fixed step sequence (central
differences), convergence to the exact gradient (forward sensitivities), the lockstep and per-condition kernels
against each other, thread-count determinism, and its errors."""

import numpy as np
import pytest

import cellbox_nb as cb
from cellbox_nb import config
from conftest import random_problem, run_with_threads
from reference import flat, fsens_grad, rel_err, solve_ref
from test_adjoint import CASES, TIGHT, _setup

# A step sequence that does not depend on the parameters: tolerances so loose that every step is accepted and the
# controller always takes the largest growth (MAX_FACTOR), from a given first step, clipped at the observation
# times.  Then the loss the forward pass computes is a smooth function of W and alpha, and the discrete adjoint is
# its exact gradient.
FIXED_MESH = dict(rtol=1e6, atol=1e6, h0=0.02, pi_beta=0.0)


def _fixed_mesh_problem(n=6, M=3, seed=3):
    W, alpha, U, _ = random_problem(n, M, seed=seed)
    t = np.array([0.3, 0.6, 1.0, 1.5, 2.0])
    r = np.random.default_rng(seed + 1)
    Y = solve_ref(W, alpha, U, t) + 0.05 * r.normal(size=(M, t.size, n))
    W0 = W + 0.2 * r.normal(size=W.shape)  # dense: every entry of dL/dW is exercised
    alpha0 = alpha * (1 + 0.1 * r.normal(size=n))
    return W0, alpha0, U, t, Y


def test_fixed_mesh_gradient_is_exact():
    """On a parameter-independent step sequence the discrete adjoint is the derivative of the computed loss:
    central differences (step 1e-5) along random directions agree to 1e-8 relative (truncation about 1e-10 and
    rounding about 1e-11 here); the interpolating adjoint at the same tolerances fails the same check (it
    approximates the exact solution's gradient, not the discretised one's), which shows the check can fail."""
    W, alpha, U, t, Y = _fixed_mesh_problem()
    L, g, info = cb.loss_and_grad(W, alpha, U, t, Y, loss="mse", adjoint="discrete", full_output=True,
                                  **FIXED_MESH)
    L2, _, info2 = cb.loss_and_grad(W * 1.01, alpha, U, t, Y, loss="mse", adjoint="discrete", full_output=True,
                                    **FIXED_MESH)
    steps = info["stats"][:, 0]
    assert np.array_equal(info2["stats"][:, 0], steps) and np.all(info["stats"][:, 1] == 0)  # the same mesh
    assert np.all(steps <= 12)  # coarse: the discretisation error is large, so the two adjoints differ
    _, gi = cb.loss_and_grad(W, alpha, U, t, Y, loss="mse", **FIXED_MESH)  # interpolating, its own coarse steps
    r = np.random.default_rng(0)
    eps = 1e-5
    errs, errs_interp = [], []
    for _ in range(3):
        V = r.normal(size=W.shape)
        va = r.normal(size=alpha.shape)
        Lp, _ = cb.loss_and_grad(W + eps * V, alpha + eps * va, U, t, Y, loss="mse", **FIXED_MESH)
        Lm, _ = cb.loss_and_grad(W - eps * V, alpha - eps * va, U, t, Y, loss="mse", **FIXED_MESH)
        fd = (Lp - Lm) / (2 * eps)
        errs.append(abs(fd - (np.sum(g["W"] * V) + np.sum(g["alpha"] * va))) / abs(fd))
        errs_interp.append(abs(fd - (np.sum(gi["W"] * V) + np.sum(gi["alpha"] * va))) / abs(fd))
    assert max(errs) <= 1e-8, errs
    assert min(errs_interp) > 1e-7, errs_interp


def test_fixed_mesh_decay_gradient_is_exact():
    """dL/dd (the learned decay) on the fixed step sequence: central differences in each d_i, 1e-8 relative."""
    W, alpha, U, t, Y = _fixed_mesh_problem(n=4, M=2, seed=7)
    d = np.linspace(0.8, 1.2, 4)
    _, g = cb.loss_and_grad(W, alpha, U, t, Y, loss="mse", decay=d, adjoint="discrete", **FIXED_MESH)
    eps = 1e-5
    for i in range(4):
        e = np.zeros(4)
        e[i] = eps
        Lp, _ = cb.loss_and_grad(W, alpha, U, t, Y, loss="mse", decay=d + e, **FIXED_MESH)
        Lm, _ = cb.loss_and_grad(W, alpha, U, t, Y, loss="mse", decay=d - e, **FIXED_MESH)
        fd = (Lp - Lm) / (2 * eps)
        assert abs(fd - g["d"][i]) <= 1e-8 * abs(fd), (i, fd, g["d"][i])


@pytest.mark.parametrize("name, loss, T, missing", CASES)
def test_discrete_matches_forward_sensitivities(name, loss, T, missing):
    """The issue's accuracy case list: relative error <= 1e-6 of the full gradient (W, alpha, d) against forward
    sensitivities, both at rtol = atol = 1e-10 (the discrete adjoint's gap to the exact gradient is the forward
    pass's own error)."""
    M = 3 if name == "random30" else 4
    W, alpha, U, t, Y, mask = _setup(name, M, T, missing)
    L, g = cb.loss_and_grad(W, alpha, U, t, Y, mask=mask, loss=loss, adjoint="discrete", **TIGHT)
    L_ref, g_ref = fsens_grad(W, alpha, U, t, Y, mask, loss)
    assert abs(L - L_ref) <= 1e-8 * abs(L_ref)
    err = rel_err(flat(g, ("W", "alpha", "d")), flat(g_ref, ("W", "alpha", "d")))
    assert err <= 1e-6, err


def test_discrete_error_shrinks_with_tolerance():
    """Against forward sensitivities at 1e-10: the error falls at every step of 1e-4 .. 1e-10 and by >= 1e4 in all."""
    W, alpha, U, t, Y, mask = _setup("GSD", 3, 5)
    _, g_ref = fsens_grad(W, alpha, U, t, Y, mask, "mse", rtol=1e-12, atol=1e-12)
    errs = []
    for tol in (1e-4, 1e-6, 1e-8, 1e-10):
        _, g = cb.loss_and_grad(W, alpha, U, t, Y, mask=mask, loss="mse", rtol=tol, atol=tol, adjoint="discrete")
        errs.append(rel_err(flat(g), flat(g_ref)))
    assert all(b < a for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] <= 1e-4 * errs[0], errs


@pytest.mark.parametrize("n, tol", [(20, 1e-6), (70, 1e-6), (20, 1e-9)])
def test_lockstep_matches_per_condition(monkeypatch, n, tol):
    """Lockstep blocks (conditions of different step counts side by side, one product per stage) against one
    condition at a time: the same steps, results equal to rounding (1e-13 relative), with direct and buffered
    dL/dW updates, and with buffers smaller than a block's terms of one stage; at 1e-9 the conditions take more
    steps than the store's first capacity (64), so it grows mid-run."""
    W, alpha, U, t = random_problem(n, 11, seed=2)
    Y = solve_ref(W, alpha, U, t) + 0.01 * np.random.default_rng(3).normal(size=(11, t.size, n))
    W0 = W * 1.1
    monkeypatch.setattr(config, "LOCKSTEP_MIN_N", 10**9)
    monkeypatch.setattr(config, "DEFER_DW_MIN_N", 10**9)
    tols = dict(rtol=tol, atol=tol)
    L0, g0, i0 = cb.loss_and_grad(W0, alpha, U, t, Y, adjoint="discrete", full_output=True, **tols)
    assert len(set(i0["stats"][:, 0])) > 1  # conditions do take different numbers of steps
    if tol < 1e-6:
        assert i0["stats"][:, 0].max() > config.DENSE_INITIAL_STEPS
    monkeypatch.setattr(config, "LOCKSTEP_MIN_N", 1)
    for defer_min_n, rows in ((10**9, 384), (1, 384), (1, 3)):
        monkeypatch.setattr(config, "DEFER_DW_MIN_N", defer_min_n)
        monkeypatch.setattr(config, "DEFER_DW_ROWS", rows)
        L1, g1, i1 = cb.loss_and_grad(W0, alpha, U, t, Y, adjoint="discrete", full_output=True, **tols)
        assert np.array_equal(i1["stats"], i0["stats"])
        assert abs(L1 - L0) <= 1e-13 * abs(L0)
        assert rel_err(flat(g1, ("W", "alpha", "d")), flat(g0, ("W", "alpha", "d"))) <= 1e-13


def test_stats_and_agreement_with_interpolating():
    """stats: one backward step per accepted forward step, none rejected, six products and six dL/dW terms each;
    at the default tolerances the two adjoints agree to about the tolerance (1e-4 relative)."""
    W, alpha, U, t, Y, mask = _setup("LI", 4, 5)
    _, gd, info = cb.loss_and_grad(W, alpha, U, t, Y, mask=mask, adjoint="discrete", full_output=True)
    s = info["stats"]
    assert np.array_equal(s[:, 3], s[:, 0]) and np.all(s[:, 4] == 0)
    assert np.array_equal(s[:, 5], 6 * s[:, 0]) and np.array_equal(s[:, 6], 6 * s[:, 0])
    _, gi = cb.loss_and_grad(W, alpha, U, t, Y, mask=mask)
    assert rel_err(flat(gd), flat(gi)) <= 1e-4


_THREAD_SCRIPT = """
import numpy as np, sys
sys.path.insert(0, {tests!r})
import cellbox_nb as cb
from conftest import random_problem
out = ""
for n in (25, 70):  # per-condition kernels, lockstep blocks
    W, alpha, U, t = random_problem(n, 37, seed=5)
    Y = cb.solve(W * 0.9, alpha, U, t)
    L, g = cb.loss_and_grad(W, alpha, U, t, Y, adjoint="discrete")
    out += np.float64(L).tobytes().hex() + g["W"].tobytes().hex() + g["alpha"].tobytes().hex()
sys.stdout.write(out)
"""


def test_bitwise_identical_across_thread_counts():
    outs = [run_with_threads(_THREAD_SCRIPT, threads) for threads in (1, 2)]
    assert outs[0] == outs[1] and len(outs[0]) > 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(adjoint="backsolve"), "adjoint"),
    (dict(adjoint="discrete", adjoint_rtol=1e-6), "adjoint_rtol"),
    (dict(adjoint="discrete", adjoint_atol=1e-6), "adjoint_rtol/adjoint_atol"),
    (dict(adjoint="discrete", backend="cuda"), "cpu backend only"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cb.loss_and_grad(np.zeros((3, 3)), np.ones(3), np.zeros((2, 3)), np.array([1.0, 2.0]),
                         np.zeros((2, 2, 3)), **kwargs)


@pytest.mark.parametrize("adjoint", ["interpolating", "discrete"])
@pytest.mark.parametrize("lockstep", [False, True])
def test_store_cap_gives_dense_overflow(monkeypatch, adjoint, lockstep):
    """A store cap below what the forward pass needs (about 40 steps a condition here; the cap allows 10) ends in
    SolveError with status DENSE_OVERFLOW and the message naming max_dense_bytes, on both paths; a cap with room
    gives the uncapped result exactly."""
    from cellbox_nb.core import status as st
    from cellbox_nb.core.discrete import STAGE_STORE_FLOATS

    n = 8
    W, alpha, U, t = random_problem(n, 4, seed=1)
    Y = solve_ref(W, alpha, U, t)
    monkeypatch.setattr(config, "LOCKSTEP_MIN_N", 1 if lockstep else 10**9)
    per_step = 8 * (STAGE_STORE_FLOATS if adjoint == "discrete" else 10) * n + 16
    with pytest.raises(cb.SolveError, match="max_dense_bytes") as err:
        cb.loss_and_grad(W * 1.1, alpha, U, t, Y, adjoint=adjoint, max_dense_bytes=10 * per_step)
    assert np.all(err.value.status == st.DENSE_OVERFLOW)
    L0, g0 = cb.loss_and_grad(W * 1.1, alpha, U, t, Y, adjoint=adjoint)
    L1, g1 = cb.loss_and_grad(W * 1.1, alpha, U, t, Y, adjoint=adjoint, max_dense_bytes=1000 * per_step)
    assert L1 == L0 and np.array_equal(g1["W"], g0["W"])
