"""Forward solver: accuracy against scipy DOP853, measured order, determinism, failure statuses, bad inputs."""

import numpy as np
import pytest
from scipy.stats import linregress

import cellbox_nb as cb
from cellbox_nb.core.forward import fixed_step_solve
from cellbox_nb.core.status import Status
from cellbox_nb.data.network import load_network
from conftest import random_problem, run_with_threads
from reference import solve_ref, tol_units_rms


def _problem(name):
    if name == "random100":
        W, alpha, U, t = random_problem(100, 50, seed=3)
        return W, alpha, U, t
    net = load_network(name)
    r = np.random.default_rng(1)
    M = 20
    U = np.zeros((M, net.W.shape[0]))
    for c in range(M):
        idx = r.choice(U.shape[1], size=2, replace=False)
        U[c, idx] = r.uniform(0, 1, 2)
    return net.W, net.alpha, U, 20.0 * np.arange(1, 6) / 5


@pytest.mark.parametrize("name", ["LI", "GSD", "random100"])
def test_matches_dop853_in_tolerance_units(name):
    """At rtol in {1e-4..1e-10}, atol = rtol/100, RMS error in tolerance units <= 5 at every observation time."""
    W, alpha, U, t = _problem(name)
    ref = solve_ref(W, alpha, U, t)
    for rtol in (1e-4, 1e-6, 1e-8, 1e-10):
        atol = rtol / 100
        X = cb.solve(W, alpha, U, t, rtol=rtol, atol=atol)
        e = tol_units_rms(X, ref, rtol, atol)
        assert e.max() <= 5.0, (name, rtol, e.max())


def test_work_budget_regression_guard():
    """Right-hand-side evaluations on LI at rtol 1e-6 stay within 25% of the count measured when written (298)."""
    W, alpha, U, t = _problem("LI")
    _, info = cb.solve(W, alpha, U, t, full_output=True)
    fev = info["stats"][:, 2]
    assert np.all(info["stats"][:, 0] > 0)
    assert fev.mean() < 1.25 * 298, fev.mean()


def _order_errors(W, alpha, u, exact, t_end):
    hs, errs = [], []
    for nsteps in ORDER_STEPS:
        x = fixed_step_solve(W, alpha, np.ones(len(u)), u, t_end, nsteps)
        hs.append(t_end / nsteps)
        errs.append(np.max(np.abs(x - exact)))
    return linregress(np.log(hs), np.log(errs)).slope


# Tsit5 was tuned for small principal error coefficients, so at large steps the h^6 terms dominate and the
# observed slope approaches 5 from above; h = 0.05 .. 0.0125 on t in [0, 2] is in the asymptotic range while the
# errors (1e-11 .. 1e-14) stay well above rounding.
ORDER_STEPS = (40, 80, 160)


def test_order_on_exact_solution():
    """W = 0 gives x(t) = alpha tanh(-u) (1 - e^-t); the error of fixed Tsit5 steps falls as h^5 (5 +- 0.3)."""
    n = 4
    alpha = np.array([0.5, 1.0, 1.5, 2.0])
    u = np.array([0.3, -0.7, 1.1, 0.2])
    t_end = 2.0
    exact = alpha * np.tanh(-u) * (1 - np.exp(-t_end))
    slope = _order_errors(np.zeros((n, n)), alpha, u, exact, t_end)
    assert abs(slope - 5.0) <= 0.3, slope


def test_order_on_nonlinear_network():
    """Full CellBox right-hand side against a DOP853 reference at 1e-13: slope 5 +- 0.3."""
    W, alpha, U, _ = random_problem(6, 1, seed=3, scale=2.0)
    t_end = 2.0
    exact = solve_ref(W, alpha, U[:1], np.array([t_end]), rtol=1e-14, atol=1e-16)[0, 0]
    slope = _order_errors(W, alpha, U[0], exact, t_end)
    assert abs(slope - 5.0) <= 0.3, slope


def test_observation_times_are_hit_exactly():
    """x(t_k) equals a solve that ends at t_k (the step lands on t_k; no interpolation)."""
    W, alpha, U, t = random_problem(8, 3, seed=2)
    X = cb.solve(W, alpha, U, t, rtol=1e-10, atol=1e-12)
    ref = solve_ref(W, alpha, U, t)
    assert np.max(tol_units_rms(X, ref, 1e-10, 1e-12)) <= 5


_THREAD_SCRIPT = """
import numpy as np, sys
sys.path.insert(0, {tests!r})
import cellbox_nb as cb
from conftest import random_problem
W, alpha, U, t = random_problem(30, 40, seed=5)
X = cb.solve(W, alpha, U, t)
sys.stdout.write(X.tobytes().hex())
"""


def test_bitwise_identical_across_thread_counts():
    outs = [run_with_threads(_THREAD_SCRIPT, threads) for threads in (1, 2)]
    assert outs[0] == outs[1] and len(outs[0]) > 0


def test_stiff_problem_reports_max_steps():
    """A stiff system (decay 1e5: eigenvalues near -1e5, explicit steps limited to ~3e-5) exhausts max_steps:
    clear status, SolveError, no hang."""
    W, alpha, U, t = random_problem(5, 2, seed=1)
    stiff = np.full(5, 1e5)
    X, info = cb.solve(W, alpha, U, t, decay=stiff, max_steps=2000, on_failure="nan", full_output=True)
    assert np.all(info["status"] == Status.MAX_STEPS)
    assert np.all(np.isnan(X[:, -1]))
    with pytest.raises(cb.SolveError, match="maximum number of steps"):
        cb.solve(W, alpha, U, t, decay=stiff, max_steps=2000)


def test_blow_up_reports_failure():
    """Negative decay makes x grow like e^t; with t up to 1e6 the solution overflows: NONFINITE or max steps."""
    W, alpha, U, _ = random_problem(4, 2, seed=1)
    with pytest.raises(cb.SolveError):
        cb.solve(W, alpha, U, np.array([1e3, 1e6]), decay=-np.ones(4))


@pytest.mark.parametrize("kwargs, match", [
    (dict(W=np.ones((3, 4))), "W"),
    (dict(W=np.ones(3)), "W"),
    (dict(W=np.full((3, 3), np.nan)), "W"),
    (dict(alpha=np.ones(4)), "alpha"),
    (dict(alpha=np.array([1.0, np.inf, 1.0])), "alpha"),
    (dict(U=np.ones((2, 4))), "U"),
    (dict(U=np.ones((0, 3))), "U"),
    (dict(U=np.array([[1.0, np.nan, 0.0]])), "U"),
    (dict(t=np.array([1.0, 1.0])), "t"),
    (dict(t=np.array([2.0, 1.0])), "t"),
    (dict(t=np.array([0.0, 1.0])), "t"),
    (dict(t=np.array([-1.0, 1.0])), "t"),
    (dict(t=np.array([])), "t"),
    (dict(t=np.array([1.0, np.nan])), "t"),
    (dict(decay=np.ones(2)), "decay"),
    (dict(rtol=-1.0), "rtol"),
    (dict(atol=0.0), "atol"),
    (dict(rtol=1e-20), "rtol"),
    (dict(max_steps=0), "max_steps"),
    (dict(backend="tpu"), "backend"),
    (dict(frobnicate=1), "frobnicate"),
    (dict(W=[["a", "b", "c"]] * 3), "W"),
    (dict(W=np.array([["1", "0", "0"]] * 3)), "W"),  # numeric strings are not parsed
    (dict(W=np.zeros((3, 3)) + 1j), "W"),  # complex: the imaginary part is not dropped silently
    (dict(W=np.zeros((0, 0)), alpha=np.zeros(0), U=np.zeros((2, 0))), "W"),
    (dict(U=[[0.0, 0.0, 0.0], [0.0]]), "U"),  # ragged
    (dict(t=np.array([1e-310, 1.0])), "t"),  # subnormal: 1 / h would overflow in the dense store
    (dict(rtol=True), "rtol"),
    (dict(rtol="1e-6"), "rtol: must be a number"),  # float() would parse it; the API takes numbers only
    (dict(atol=b"1e-8"), "atol: must be a number"),
    (dict(rtol=2.22e-14), r"rtol: 2.22e-14 is below what float64 can resolve \(use >= 2.23e-14\)"),
    (dict(max_steps=True), "max_steps"),
    (dict(max_steps=2**63), "max_steps"),
    (dict(full_output="yes"), "full_output"),
])
def test_bad_inputs_raise_value_error_naming_the_argument(kwargs, match):
    args = dict(W=np.zeros((3, 3)), alpha=np.ones(3), U=np.zeros((2, 3)), t=np.array([1.0, 2.0]))
    args.update(kwargs)
    W, alpha, U, t = (args.pop(k) for k in ("W", "alpha", "U", "t"))
    with pytest.raises(ValueError, match=match):
        cb.solve(W, alpha, U, t, **args)


@pytest.mark.parametrize("atol", [1e-150, 1e-300])
def test_tiny_atol_still_solves(atol):
    """Hairer's initial-step norms squared f0 / atol, which overflowed to inf below atol ~ 1e-154 and gave a zero
    first step (step-size underflow); now they are taken with the largest term factored out.  Against scipy's
    DOP853 at 1e-12, within 100 rtol."""
    W, alpha, U, t = random_problem(5, 2, seed=1)
    X = cb.solve(W, alpha, U, t, rtol=1e-8, atol=atol)
    assert np.max(np.abs(X - solve_ref(W, alpha, U, t))) <= 1e-6


@pytest.mark.parametrize("name", ["LI", "random100"])
def test_dense_store_interpolates_x_and_tanh(name):
    """The stored trajectory the adjoint reads back: Tsit5's 4th-order continuous extension of x and the quartic
    interpolant of tanh(z), z = W x - u, both in Horner form.  At random times inside every stored step, against
    scipy DOP853 at 1e-12: x within 2e-8 absolute and tanh(z) within 2e-8 (steps taken at rtol = atol = 1e-9; 10x
    the 2e-9 measured for x: the interpolants are one order below the method).  At step ends: x continuous
    (1e-12), the tanh interpolant equal to tanh(W x - u) of the stored state (1e-12), and its derivative in t equal
    to (1 - tanh(z)^2) W f(x) there and continuous across steps (1e-9 of the largest derivative: W f(x) is recovered
    from the stage arguments by differences over h)."""
    from cellbox_nb.core.forward import NPOLY, dense_eval_xth, forward_one
    from reference import rhs
    from scipy.integrate import solve_ivp

    W, alpha, U, t = _problem(name)
    n = W.shape[0]
    WT = np.ascontiguousarray(W.T)
    d = np.ones(n)
    rng = np.random.default_rng(7)
    for c in range(3):
        u = U[c]
        xobs = np.empty((t.size, n))
        res = forward_one(WT, alpha, d, u, t, 1e-9, 1e-9, 0.0, 100000, 0.0, xobs, True, np.empty(65),
                          np.empty((64, n)), np.empty((64, NPOLY, n)), np.empty((64, NPOLY + 1, n)), 10**6)
        assert res[0] == 0
        n_st, dt, dx, dc, dz = res[4], res[6], res[7], res[8], res[9]
        assert n_st > 10
        times = dt[:n_st] + rng.uniform(0.05, 0.95, n_st) * np.diff(dt[: n_st + 1])
        sol = solve_ivp(lambda _t, x: rhs(W, alpha, d, u, x), (0.0, t[-1]), np.zeros(n), method="DOP853",
                        t_eval=times, rtol=1e-12, atol=1e-12)
        x, th = np.empty(n), np.empty(n)
        for p in range(n_st):
            theta = dense_eval_xth(dt, dx, dc, dz, p, times[p], x, th)
            assert 0.0 < theta < 1.0
            assert np.max(np.abs(x - sol.y[:, p])) <= 2e-8
            assert np.max(np.abs(th - np.tanh(W @ sol.y[:, p] - u))) <= 2e-8
        # the interpolant's derivative in t at theta = 0 and theta = 1
        h = np.diff(dt[: n_st + 1])[:, None]
        dstart = dz[:n_st, 1] / h
        dend = (dz[:n_st, 1] + 2 * dz[:n_st, 2] + 3 * dz[:n_st, 3] + 4 * dz[:n_st, 4]) / h
        dscale = np.max(np.abs(dstart))
        for p in range(n_st):
            z = W @ dx[p] - u
            exact = (1.0 - np.tanh(z) ** 2) * (W @ (alpha * np.tanh(z) - d * dx[p]))
            assert np.max(np.abs(dz[p, 0] - np.tanh(z))) <= 1e-12
            assert np.max(np.abs(dstart[p] - exact)) <= 1e-9 * dscale
            if p + 1 < n_st:
                dense_eval_xth(dt, dx, dc, dz, p, dt[p + 1], x, th)
                assert np.max(np.abs(x - dx[p + 1])) <= 1e-12 * max(1.0, np.max(np.abs(x)))
                assert np.max(np.abs(th - dz[p + 1, 0])) <= 1e-12
                assert np.max(np.abs(dend[p] - dstart[p + 1])) <= 1e-9 * dscale


def test_input_layouts_give_the_same_bits_and_inputs_stay_unchanged():
    """Inputs are used in place when they are C-contiguous, writeable float64 (no copy), and copied otherwise
    (Fortran order, read-only, views, integer t): every layout gives bitwise the same solution and gradient, and no
    input is modified."""
    W, alpha, U, t = random_problem(9, 6, seed=11)
    Y = cb.solve(0.9 * W, alpha, U, t)
    X0 = cb.solve(W, alpha, U, t)
    L0, g0 = cb.loss_and_grad(W, alpha, U, t, Y)
    frozen = [a.copy() for a in (W, alpha, U, t, Y)]
    ro = [a.copy() for a in (W, alpha, U, t, Y)]
    for a in ro:
        a.setflags(write=False)
    variants = [
        (np.asfortranarray(W), alpha, np.asfortranarray(U), t, np.asfortranarray(Y)),
        tuple(ro),
        (np.hstack([W, W])[:, :9], alpha[::1], U.T.copy().T, t, Y),
    ]
    for Wv, av, Uv, tv, Yv in variants:
        assert np.array_equal(cb.solve(Wv, av, Uv, tv), X0)
        L, g = cb.loss_and_grad(Wv, av, Uv, tv, Yv)
        assert L == L0 and np.array_equal(g["W"], g0["W"]) and np.array_equal(g["alpha"], g0["alpha"])
    for a, b in zip((W, alpha, U, t, Y), frozen):
        assert np.array_equal(a, b)
    t_int = np.arange(1, 6)  # integer observation times are converted
    assert np.array_equal(cb.solve(W, alpha, U, t_int), cb.solve(W, alpha, U, t_int.astype(float)))
