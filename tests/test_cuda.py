"""CUDA backend against the CPU backend (run under NUMBA_ENABLE_CUDASIM=1 in CI; skipped without CUDA).

Tiny blocks (4 threads, 4 x 4 tiles) with n = 5 and M = 5 leave partial blocks in every kernel.  The backend
runs the CPU algorithm (same controller, same step sequence), so the results agree to rounding: tolerance
1e-10 relative; the step counts are compared exactly.
"""

import numpy as np
import pytest

from numba import cuda

if not cuda.is_available():
    pytest.skip("CUDA is not available (set NUMBA_ENABLE_CUDASIM=1 to run these tests on the simulator)",
                allow_module_level=True)

import cellbox_nb as cb  # noqa: E402
from cellbox_nb import config  # noqa: E402
from conftest import random_problem  # noqa: E402


@pytest.fixture(autouse=True)
def tiny_blocks(monkeypatch):
    monkeypatch.setattr(config, "CUDA_TPB", 4)
    monkeypatch.setattr(config, "CUDA_TILE", 4)


def _problem():
    # short horizon and two observation times keep the simulator fast
    W, alpha, U, _ = random_problem(5, 5, seed=4)
    return W, alpha, U, np.array([0.7, 1.5])


def _rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def test_forward_matches_cpu():
    W, alpha, U, t = _problem()
    Xc, ic = cb.solve(W, alpha, U, t, full_output=True)
    Xg, ig = cb.solve(W, alpha, U, t, backend="cuda", full_output=True)
    assert _rel(Xg, Xc) <= 1e-10
    np.testing.assert_array_equal(ig["stats"], ic["stats"])
    np.testing.assert_array_equal(ig["status"], ic["status"])


def test_loss_and_gradient_match_cpu():
    W, alpha, U, t = _problem()
    Y = cb.solve(W * 0.9, alpha, U, t) + 0.01
    mask = np.ones(Y.shape, dtype=bool)
    mask[1, 0, 2] = False
    # the cuda backend integrates lam with Tsit5; on the cpu that is adjoint_integrator="tsit5"
    Lc, gc, ic = cb.loss_and_grad(W, alpha, U, t, Y, mask=mask, adjoint_integrator="tsit5", full_output=True)
    Lg, gg, ig = cb.loss_and_grad(W, alpha, U, t, Y, mask=mask, backend="cuda", full_output=True)
    assert abs(Lg - Lc) <= 1e-10 * abs(Lc)
    for key in ("W", "alpha", "d"):
        assert _rel(gg[key], gc[key]) <= 1e-10, key
    np.testing.assert_array_equal(ig["stats"], ic["stats"])


def test_close_observation_times_match_cpu():
    """Two observation times 1e-13 apart (the case the backward kernels' first step of a segment got wrong:
    step-size underflow below ~1e-14, many extra steps above): the cuda backward takes the CPU's steps, its
    gradient agrees to 1e-10, and both are within 1e-5 of forward sensitivities at rtol 1e-7."""
    from reference import fsens_grad, rel_err

    W, alpha, U, _ = _problem()
    U = U[:1]  # (one condition and three times keep the simulator's share of CI short)
    t = np.array([0.7, 0.7 + 1e-13, 1.5])
    Y = cb.solve(W * 0.9, alpha, U, t) + 0.01
    opts = dict(rtol=1e-7, atol=1e-9, full_output=True)
    Lc, gc, ic = cb.loss_and_grad(W, alpha, U, t, Y, adjoint_integrator="tsit5", **opts)
    Lg, gg, ig = cb.loss_and_grad(W, alpha, U, t, Y, backend="cuda", **opts)
    np.testing.assert_array_equal(ig["stats"], ic["stats"])
    for key in ("W", "alpha"):
        assert _rel(gg[key], gc[key]) <= 1e-10, key
    _, ref = fsens_grad(W, alpha, U, t, Y, np.ones(Y.shape, dtype=bool), "mae")
    assert rel_err(gg["W"], ref["W"]) <= 1e-5


def test_dop853_is_refused_on_cuda():
    W, alpha, U, t = _problem()
    Y = cb.solve(W, alpha, U, t)
    with pytest.raises(cb.ConfigError, match="adjoint_integrator"):
        cb.loss_and_grad(W, alpha, U, t, Y, backend="cuda", adjoint_integrator="dop853")


def test_failure_status_matches_cpu():
    W, alpha, U, t = _problem()
    stiff = np.full(5, 1e5)
    _, ic = cb.solve(W, alpha, U, t, decay=stiff, max_steps=8, on_failure="nan", full_output=True)
    _, ig = cb.solve(W, alpha, U, t, decay=stiff, max_steps=8, on_failure="nan", backend="cuda", full_output=True)
    np.testing.assert_array_equal(ig["status"], ic["status"])
    assert np.all(ic["status"] != 0)


def test_gemm_kernel_partial_tiles():
    """The tiled product against numpy for shapes that are not multiples of the tile, all transpose flags."""
    from cellbox_nb.cuda.kernels import build

    k = build(4, 4)
    rng = np.random.default_rng(0)
    for ta in (0, 1):
        for tb in (0, 1):
            A = rng.normal(size=(6, 5) if not ta else (5, 6))
            B = rng.normal(size=(5, 7) if not tb else (7, 5))
            C0 = rng.normal(size=(6, 7))
            dC = cuda.to_device(C0)
            k["gemm"][(2, 2), (4, 4)](cuda.to_device(A), cuda.to_device(B), dC, ta, tb, 0.5)
            ref = (A.T if ta else A) @ (B.T if tb else B) + 0.5 * C0
            np.testing.assert_allclose(dC.copy_to_host(), ref, rtol=1e-13, atol=1e-13)


def test_uninitialised_device_memory_is_not_read(monkeypatch):
    """Every cuda.device_array the drivers allocate is filled with inf (cuda.device_array is not zeroed): no kernel
    reads an entry before writing it, so no inf * 0 in the products (the simulator warns) and the results are the
    CPU's.  The dense store's slots past a condition's last step went into the tanh-interpolant products.  With
    room for 4 steps at first, the store grows twice on the device (4 -> 8 -> 16 for 15 steps), so the new slots
    of a grown store are checked too."""
    import warnings

    from cellbox_nb.cuda import driver

    empty = cuda.device_array

    def poisoned(shape, dtype=np.float64, **kwargs):
        a = empty(shape, dtype=dtype, **kwargs)
        if np.dtype(dtype).kind == "f":
            a.copy_to_device(np.full(a.shape, np.inf, dtype=dtype))
        return a

    monkeypatch.setattr(driver.cuda, "device_array", poisoned)
    monkeypatch.setattr(config, "DENSE_INITIAL_STEPS", 4)
    W, alpha, U, t = _problem()
    U = U[:1]  # (one condition keeps the simulator short)
    Y = cb.solve(W * 0.9, alpha, U, t) + 0.01
    Lc, gc, ic = cb.loss_and_grad(W, alpha, U, t, Y, adjoint_integrator="tsit5", full_output=True)
    assert ic["stats"][0, 0] > 8  # the store grows twice
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        Xg = cb.solve(W, alpha, U, t, backend="cuda")
        Lg, gg = cb.loss_and_grad(W, alpha, U, t, Y, backend="cuda")
    assert _rel(Xg, cb.solve(W, alpha, U, t)) <= 1e-10
    assert abs(Lg - Lc) <= 1e-10 * abs(Lc)
    for key in ("W", "alpha", "d"):
        assert np.all(np.isfinite(gg[key])) and _rel(gg[key], gc[key]) <= 1e-10, key
