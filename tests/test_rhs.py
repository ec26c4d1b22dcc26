"""Right-hand side and vector-Jacobian products against their NumPy definitions (tolerance 1e-12 relative)."""

import numpy as np

from cellbox_nb.core.rhs import adjoint_rhs, rhs
from reference import rhs as rhs_ref


def test_rhs_matches_numpy(rng):
    n = 13
    W, alpha, d, u, x = rng.normal(size=(n, n)), rng.uniform(0.5, 2, n), rng.uniform(0.5, 2, n), rng.normal(size=n), rng.normal(size=n)
    out, z = np.empty(n), np.empty(n)
    rhs(np.ascontiguousarray(W.T), alpha, d, u, x, z, out)
    np.testing.assert_allclose(out, rhs_ref(W, alpha, d, u, x), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(z, W @ x - u, rtol=1e-12, atol=1e-14)


def test_vjp_identities(rng):
    """<lam, J v> = <J^T lam, v> for x, and lam^T df/dtheta . v_theta = directional derivative for W, alpha, d."""
    n = 11
    W, alpha, d, u, x, lam = (rng.normal(size=(n, n)), rng.uniform(0.5, 2, n), rng.uniform(0.5, 2, n),
                              rng.normal(size=n), rng.normal(size=n), rng.normal(size=n))
    z, th, g, out = (np.empty(n) for _ in range(4))
    adjoint_rhs(W, np.ascontiguousarray(W.T), alpha, d, u, x, lam, z, th, g, out)
    zr = W @ x - u
    s = 1 - np.tanh(zr) ** 2
    J = (alpha * s)[:, None] * W - np.diag(d)  # df/dx by definition
    # out is W^T g - d*lam = J^T lam (reversed-time adjoint rhs)
    v = rng.normal(size=n)
    assert abs(lam @ (J @ v) - out @ v) <= 1e-12 * abs(lam @ (J @ v))
    np.testing.assert_allclose(g, alpha * s * lam, rtol=1e-12)
    np.testing.assert_allclose(th, np.tanh(zr), rtol=1e-12)
    # lam^T (df/dW)[V] = sum_i lam_i alpha_i s_i (V x)_i must equal <g x^T, V>
    V = rng.normal(size=(n, n))
    lhs = lam @ (alpha * s * (V @ x))
    assert abs(lhs - np.sum(np.outer(g, x) * V)) <= 1e-12 * abs(lhs)
    va = rng.normal(size=n)
    assert abs(lam @ (va * np.tanh(zr)) - (lam * th) @ va) <= 1e-12 * abs(lam @ (va * np.tanh(zr)))
