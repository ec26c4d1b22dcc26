"""Adjoint gradient: against forward sensitivities (scipy, independent), finite differences, the Taylor test,
tolerance convergence, and thread-count determinism."""

import numpy as np
import pytest
from scipy.stats import linregress

import cellbox_nb as cb
from cellbox_nb import config
from cellbox_nb.data.network import load_network
from conftest import random_problem, run_with_threads
from reference import flat, fsens_grad, rel_err, solve_ref

TIGHT = dict(rtol=1e-10, atol=1e-10)


def _setup(name, M, T, missing=0.0, seed=0):
    if name.startswith("random"):
        W, alpha, U, _ = random_problem(int(name[6:]), M, seed=seed)
    else:
        net = load_network(name)
        W, alpha = net.W, net.alpha
        r = np.random.default_rng(seed)
        U = np.zeros((M, W.shape[0]))
        for c in range(M):
            idx = r.choice(W.shape[0], size=2, replace=False)
            U[c, idx] = r.uniform(0, 1, 2)
    t = 20.0 * np.arange(1, T + 1) / T
    r = np.random.default_rng(seed + 1)
    Y = solve_ref(W, alpha, U, t) + 0.01 * r.normal(size=(M, T, W.shape[0]))
    mask = r.uniform(size=Y.shape) >= missing
    Y[~mask] = np.nan
    # evaluate the gradient away from the truth: a perturbed W and alpha
    W0 = W + 0.1 * r.normal(size=W.shape) * (W != 0)
    alpha0 = alpha * (1 + 0.05 * r.normal(size=alpha.shape))
    return W0, alpha0, U, t, Y, mask


CASES = [
    ("LI", "mse", 5, 0.0), ("LI", "mae", 5, 0.0), ("LI", "mae", 1, 0.0), ("LI", "mse", 20, 0.0),
    ("LI", "mae", 5, 0.3),
    ("GSD", "mse", 5, 0.0), ("GSD", "mae", 20, 0.2),
    ("random30", "mae", 5, 0.0), ("random30", "mse", 1, 0.1),
]


@pytest.mark.parametrize("name, loss, T, missing", CASES)
def test_adjoint_matches_forward_sensitivities(name, loss, T, missing):
    """Relative error <= 1e-6 of the full gradient (W, alpha, d), both methods at rtol = atol = 1e-10, with lam
    integrated by each integrator (the default, DOP853 at these n, and Tsit5)."""
    M = 3 if name == "random30" else 4
    W, alpha, U, t, Y, mask = _setup(name, M, T, missing)
    L_ref, g_ref = fsens_grad(W, alpha, U, t, Y, mask, loss)
    for integrator in ("auto", "tsit5"):
        L, g = cb.loss_and_grad(W, alpha, U, t, Y, mask=mask, loss=loss, adjoint_integrator=integrator, **TIGHT)
        assert abs(L - L_ref) <= 1e-8 * abs(L_ref)
        err = rel_err(flat(g, ("W", "alpha", "d")), flat(g_ref, ("W", "alpha", "d")))
        assert err <= 1e-6, (integrator, err)


def _directional_fd(W, alpha, U, t, Y, mask, loss, V, va, h):
    kw = dict(mask=mask, loss=loss, rtol=1e-12, atol=1e-12)
    Lp, _ = cb.loss_and_grad(W + h * V, alpha + h * va, U, t, Y, **kw)
    Lm, _ = cb.loss_and_grad(W - h * V, alpha - h * va, U, t, Y, **kw)
    return (Lp - Lm) / (2 * h)


@pytest.mark.parametrize("name, loss", [("LI", "mae"), ("GSD", "mse"), ("random30", "mse")])
def test_central_differences_agree(name, loss):
    """Central differences along 3 random unit directions, h = 1e-5, loss at 1e-12: relative gap <= 1e-5."""
    W, alpha, U, t, Y, mask = _setup(name, 5, 5, 0.1)
    _, g = cb.loss_and_grad(W, alpha, U, t, Y, mask=mask, loss=loss, **TIGHT)
    r = np.random.default_rng(7)
    for _ in range(3):
        V, va = r.normal(size=W.shape), r.normal(size=alpha.shape)
        norm = np.sqrt((V**2).sum() + (va**2).sum())
        V, va = V / norm, va / norm
        fd = _directional_fd(W, alpha, U, t, Y, mask, loss, V, va, 1e-5)
        ad = (g["W"] * V).sum() + (g["alpha"] * va).sum()
        assert abs(fd - ad) <= 1e-5 * abs(ad), (fd, ad)


def test_taylor_remainder_slope_is_two():
    """r(h) = |L(th + h v) - L(th) - h <g, v>| for h = 1e-1 .. 1e-4 has log-log slope 2 +- 0.1."""
    W, alpha, U, t, Y, mask = _setup("GSD", 5, 5)
    kw = dict(mask=mask, loss="mse", rtol=1e-12, atol=1e-12)
    L0, g = cb.loss_and_grad(W, alpha, U, t, Y, **kw)
    r = np.random.default_rng(3)
    V, va = r.normal(size=W.shape), r.normal(size=alpha.shape)
    hs = np.array([1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4])
    dot = (g["W"] * V).sum() + (g["alpha"] * va).sum()
    res = [abs(cb.loss_and_grad(W + h * V, alpha + h * va, U, t, Y, **kw)[0] - L0 - h * dot) for h in hs]
    slope = linregress(np.log(hs), np.log(res)).slope
    assert abs(slope - 2.0) <= 0.1, slope


@pytest.mark.parametrize("integrator", ["dop853", "tsit5"])
def test_gradient_error_shrinks_with_tolerance(integrator):
    """The gap to the forward-sensitivity gradient (at 1e-12) decreases as rtol = atol goes 1e-4 -> 1e-10,
    overall by at least 1e4."""
    W, alpha, U, t, Y, mask = _setup("LI", 5, 5)
    _, g_ref = fsens_grad(W, alpha, U, t, Y, mask, "mse", rtol=1e-12, atol=1e-12)
    errs = []
    for tol in (1e-4, 1e-6, 1e-8, 1e-10):
        _, g = cb.loss_and_grad(W, alpha, U, t, Y, mask=mask, loss="mse", rtol=tol, atol=tol,
                                adjoint_integrator=integrator)
        errs.append(rel_err(flat(g), flat(g_ref)))
    assert all(b < a for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] <= 1e-4 * errs[0], errs


def test_dop853_backward_error_shrinks_at_its_order():
    """With the forward pass at 1e-12 (so only the backward pass's error is left, MAE: jumps independent of x),
    the gradient's gap to the Tsit5 backward at adjoint_rtol 1e-12 falls as adjoint_rtol goes 1e-4 -> 1e-8 by at
    least 1e3 overall (measured: 4.8e-8 -> 1.8e-11), and DOP853's gap at each tolerance is at most Tsit5's at the
    same tolerance (measured: 5 to 25 times smaller), with at most 0.7x its steps (0.40x at 1e-6)."""
    W, alpha, U, t, Y, mask = _setup("GSD", 4, 5)
    kw = dict(mask=mask, rtol=1e-12, atol=1e-12, full_output=True)
    _, g_ref, _ = cb.loss_and_grad(W, alpha, U, t, Y, adjoint_integrator="tsit5", adjoint_rtol=1e-12, **kw)
    errs = {}
    steps = {}
    for integrator in ("dop853", "tsit5"):
        for tol in (1e-4, 1e-6, 1e-8):
            _, g, info = cb.loss_and_grad(W, alpha, U, t, Y, adjoint_integrator=integrator, adjoint_rtol=tol, **kw)
            errs[integrator, tol] = rel_err(flat(g), flat(g_ref))
            steps[integrator, tol] = info["stats"][:, 3].sum()
    assert errs["dop853", 1e-8] <= 1e-3 * errs["dop853", 1e-4], errs
    for tol in (1e-4, 1e-6, 1e-8):
        assert errs["dop853", tol] <= errs["tsit5", tol], errs
        assert steps["dop853", tol] <= 0.7 * steps["tsit5", tol], steps


def test_w_mask_zeroes_gradient_entries():
    W, alpha, U, t, Y, mask = _setup("LI", 4, 5)
    w_mask = np.ones(W.shape, dtype=bool)
    np.fill_diagonal(w_mask, False)
    _, g = cb.loss_and_grad(W, alpha, U, t, Y, mask=mask, w_mask=w_mask)
    _, g_all = cb.loss_and_grad(W, alpha, U, t, Y, mask=mask)
    assert np.all(np.diag(g["W"]) == 0.0)
    assert np.array_equal(g["W"][w_mask], g_all["W"][w_mask])


_THREAD_SCRIPT = """
import numpy as np, sys
sys.path.insert(0, {tests!r})
import cellbox_nb as cb
from conftest import random_problem
W, alpha, U, t = random_problem(25, 37, seed=5)
Y = cb.solve(W * 0.9, alpha, U, t)
L, g = cb.loss_and_grad(W, alpha, U, t, Y, adjoint_integrator={integrator!r})
sys.stdout.write(np.float64(L).tobytes().hex() + g["W"].tobytes().hex() + g["alpha"].tobytes().hex())
"""


@pytest.mark.parametrize("integrator", ["dop853", "tsit5"])
@pytest.mark.parametrize("defer_min_n", ["1000000", "1"])
def test_bitwise_identical_across_thread_counts(monkeypatch, defer_min_n, integrator):
    """Both dL/dW paths (direct rank-6 or rank-8 updates; buffered matrix products), each forced for n = 25, and
    both integrators of lam."""
    monkeypatch.setenv("CELLBOX_NB_DEFER_DW_MIN_N", defer_min_n)
    script = _THREAD_SCRIPT.replace("{integrator!r}", repr(integrator))
    outs = [run_with_threads(script, threads) for threads in (1, 2)]
    assert outs[0] == outs[1] and len(outs[0]) > 0


def test_chunk_sum_is_in_chunk_order():
    """The per-chunk gradient accumulators are summed chunks[0] + chunks[1] + ... elementwise (compiled loop), bitwise
    the sequential Python sum; the data make the order matter (a reversed sum differs), so another order fails."""
    from cellbox_nb.core.quadrature import ordered_sum

    rng = np.random.default_rng(3)
    chunks = rng.standard_normal((40, 6, 5)) * 10.0 ** rng.integers(-8, 9, size=(40, 6, 5))
    ref = chunks[0].copy()
    for c in range(1, chunks.shape[0]):
        ref += chunks[c]
    rev = chunks[-1].copy()
    for c in range(chunks.shape[0] - 2, -1, -1):
        rev += chunks[c]
    assert not np.array_equal(rev, ref)
    assert np.array_equal(ordered_sum(chunks), ref)
    rows = np.ascontiguousarray(chunks[:, 0, :])  # the (chunks, n) accumulators of alpha and d
    ref_rows = rows[0].copy()
    for c in range(1, rows.shape[0]):
        ref_rows += rows[c]
    assert np.array_equal(ordered_sum(rows), ref_rows)
    assert np.array_equal(ordered_sum(chunks[:1]), chunks[0])


@pytest.mark.parametrize("integrator, nodes", [("tsit5", 6), ("dop853", 8)])
def test_buffered_dW_products_match_direct_updates(monkeypatch, integrator, nodes):
    """The buffered dL/dW (matrix products of up to DEFER_DW_ROWS terms, the nodes of long runs in one forward step
    regrouped through its dense output) is the same sum in another order: equal to rounding (1e-13 relative), and
    with the smallest buffer (the most terms one step may hand on, so several flushes per condition) too; it also
    matches the forward-sensitivity reference like the direct path (1e-6).  Both integrators of lam (six and eight
    quadrature nodes a step)."""
    from cellbox_nb import config
    from cellbox_nb.core.adjoint import QROWS_STEP
    from cellbox_nb.core.adjoint8 import QROWS_STEP8

    W, alpha, U, t, Y, mask = _setup("random30", 6, 5)
    kw = dict(mask=mask, full_output=True, adjoint_integrator=integrator, **TIGHT)
    monkeypatch.setattr(config, "DEFER_DW_MIN_N", 10**9)
    monkeypatch.setattr(config, "DEFER_DW_MIN_N_DOP853", 10**9)
    L0, g0, i0 = cb.loss_and_grad(W, alpha, U, t, Y, **kw)
    assert np.array_equal(i0["stats"][:, 6], nodes * i0["stats"][:, 3])  # direct: a term per node and step
    monkeypatch.setattr(config, "DEFER_DW_MIN_N", 1)
    monkeypatch.setattr(config, "DEFER_DW_MIN_N_DOP853", 1)
    for rows in (384, 1):  # 1: raised to max(QROWS_STEP, QROWS_STEP8), the least one step may need
        monkeypatch.setattr(config, "DEFER_DW_ROWS", rows)
        L1, g1, i1 = cb.loss_and_grad(W, alpha, U, t, Y, **kw)
        assert L1 == L0
        assert rel_err(g1["W"], g0["W"]) <= 1e-13
        assert np.array_equal(g1["alpha"], g0["alpha"])
        # runs of more than 5 nodes were regrouped (fewer terms), and a condition needs several flushes
        assert np.all(i1["stats"][:, 6] < nodes * i1["stats"][:, 3])
        assert np.all(i1["stats"][:, 6] > 2 * max(QROWS_STEP, QROWS_STEP8))
    _, ref = fsens_grad(W, alpha, U, t, Y, mask, "mae")
    assert rel_err(g1["W"], ref["W"]) <= 1e-6


@pytest.mark.parametrize("lockstep", [False, True])
@pytest.mark.parametrize("integrator", ["dop853", "tsit5"])
@pytest.mark.parametrize("gap", [1e-9, 1e-13, 3e-15])
def test_observation_times_a_few_ulps_apart(monkeypatch, gap, integrator, lockstep):
    """Two observation times `gap` apart (e.g. replicates nudged apart to make t strictly increasing): the gradient
    stays within tolerance of forward sensitivities, and the segment between them costs the backward pass no extra
    steps.  Before the fix the next segment started from the short segment's step (underflow below ~1e-14, nine
    extra steps at 1e-9), and the tanh interpolant of the step before took W k_7 from the short step's stage
    difference (relative gradient errors 3e-7 at 1e-13, 2e-4 at 3e-15).  Bound: 1e-6 at rtol 1e-8 (measured
    ~1e-8 at every gap)."""
    if lockstep:  # the lockstep kernels, blocks of 2
        monkeypatch.setattr(config, "LOCKSTEP_MIN_N", 1)
        monkeypatch.setattr(config, "LOCKSTEP_BLOCK", 2)
    W, alpha, U, _ = random_problem(6, 3, seed=7)
    t = np.array([2.0, 5.0, 5.0 + gap, 10.0])
    Y = solve_ref(W, alpha, U, t) + 0.01 * np.random.default_rng(0).normal(size=(3, 4, 6))
    mask = np.ones(Y.shape, dtype=bool)
    W0 = W + 0.05 * (W != 0)
    opts = dict(rtol=1e-8, atol=1e-10, adjoint_integrator=integrator, full_output=True)
    _, g, info = cb.loss_and_grad(W0, alpha, U, t, Y, **opts)
    _, ref = fsens_grad(W0, alpha, U, t, Y, mask, "mae")
    for k in ("W", "alpha"):
        assert rel_err(g[k], ref[k]) <= 1e-6, k
    # backward steps against the same data without the extra time (noise-free, so the jumps at the other times
    # keep their signs): at most 3 more (its own step, 1-2 for the transient after its jump)
    Yc = solve_ref(W, alpha, U, t)
    _, _, info4 = cb.loss_and_grad(W0, alpha, U, t, Yc, **opts)
    _, _, info3 = cb.loss_and_grad(W0, alpha, U, t[[0, 1, 3]], Yc[:, [0, 1, 3]], **opts)
    assert np.all(np.abs(info4["stats"][:, 3] - info3["stats"][:, 3]) <= 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(Y=np.zeros((2, 2, 2))), "Y"),
    (dict(mask=np.ones((2, 2, 3))), "mask"),
    (dict(mask=np.zeros((2, 2, 3), dtype=bool)), "mask"),
    (dict(Y=np.full((2, 2, 3), np.nan)), "Y"),
    (dict(loss="huber"), "loss"),
    (dict(w_mask=np.ones((2, 2), dtype=bool)), "w_mask"),
    (dict(adjoint_rtol=0.0), "adjoint_rtol"),
    (dict(adjoint_rtol=1e-20), "adjoint_rtol: 1e-20 is below what float64 can resolve"),  # (12942 steps)
    (dict(adjoint_rtol="1e-6"), "adjoint_rtol: must be a number"),
    (dict(adjoint_integrator="rk4"), "adjoint_integrator"),
    (dict(adjoint_integrator="tsit5", adjoint="discrete"), "adjoint_integrator"),
    (dict(mask=[[[True, True, True], [True]]] * 2), "mask"),
    (dict(w_mask=[[True], [True, False]]), "w_mask"),
    (dict(Y=np.zeros((2, 2, 3), dtype=complex)), "Y"),
    (dict(full_output="yes"), "full_output"),
])
def test_bad_inputs(kwargs, match):
    args = dict(Y=np.zeros((2, 2, 3)))
    args.update(kwargs)
    Y = args.pop("Y")
    with pytest.raises(ValueError, match=match):
        cb.loss_and_grad(np.zeros((3, 3)), np.ones(3), np.zeros((2, 3)), np.array([1.0, 2.0]), Y, **args)
