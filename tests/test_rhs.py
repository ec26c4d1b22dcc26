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


def _tanh_points():
    rng = np.random.default_rng(7)
    pts = [rng.standard_normal(20000), rng.uniform(-25.0, 25.0, 20000),
           np.logspace(-320, 1.35, 4000), np.linspace(0.0, 0.35, 4001),
           # around the range-reduction breakpoints -2|x| = (k + 1/2) ln 2, where k changes
           np.concatenate([(k + 0.5) * np.log(2.0) / 2.0 + np.linspace(-1e-12, 1e-12, 21) for k in range(60)])]
    x = np.concatenate(pts)
    return np.concatenate([x, -x])


def test_vectorised_tanh_within_3_ulp_of_extended_precision():
    """core.tanh against tanh in long double (x87 80-bit: 11 more bits than float64), in float64 ulps."""
    from cellbox_nb.core.tanh import tanh

    x = _tanh_points()
    got = np.array([tanh(v) for v in x])
    extended = np.finfo(np.longdouble).nmant > 52
    ref = np.tanh(x.astype(np.longdouble)) if extended else np.tanh(x)  # else libm, 1 ulp more allowed
    bound = 3.0 if extended else 4.0
    err_ulp = np.abs(got.astype(np.longdouble) - ref) / np.spacing(np.abs(ref.astype(np.float64)))
    assert np.max(err_ulp) <= bound, (np.max(err_ulp), x[np.argmax(err_ulp)])


def test_vectorised_tanh_special_values():
    from cellbox_nb.core.tanh import tanh

    assert np.isnan(tanh(np.nan))
    assert tanh(np.inf) == 1.0 and tanh(-np.inf) == -1.0
    assert tanh(50.0) == 1.0 and tanh(-700.0) == -1.0
    assert tanh(0.0) == 0.0 and not np.signbit(tanh(0.0)) and np.signbit(tanh(-0.0))
    assert tanh(1e-310) == 1e-310 and tanh(-3e-12) == -3e-12
