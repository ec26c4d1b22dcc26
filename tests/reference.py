"""Slow, independent references: NumPy right-hand side and VJPs, scipy DOP853 solutions, forward-sensitivity
gradients.  Nothing here imports cellbox_nb's kernels."""

import numpy as np
from scipy.integrate import solve_ivp

REF_TOL = 1e-12


def rhs(W, alpha, d, u, x):
    return alpha * np.tanh(W @ x - u) - d * x


def solve_ref(W, alpha, U, t, d=None, rtol=REF_TOL, atol=REF_TOL):
    """x(t_k) for every condition by scipy's DOP853; (M, T, n)."""
    n = W.shape[0]
    d = np.ones(n) if d is None else d
    out = np.empty((U.shape[0], len(t), n))
    for c, u in enumerate(U):
        sol = solve_ivp(lambda _t, x: rhs(W, alpha, d, u, x), (0.0, t[-1]), np.zeros(n), method="DOP853",
                        t_eval=t, rtol=rtol, atol=atol)
        assert sol.success, sol.message
        out[c] = sol.y.T
    return out


def tol_units_rms(x, x_ref, rtol, atol):
    """RMS of (x - x_ref) / (atol + rtol |x_ref|) over the last axis (scipy's test_ivp convention)."""
    e = (x - x_ref) / (atol + rtol * np.abs(x_ref))
    return np.sqrt(np.mean(e**2, axis=-1))


def loss_ref(X, Y, mask, kind):
    r = (X - Y)[mask]
    return float(np.mean(np.abs(r)) if kind == "mae" else np.mean(r**2))


def dloss_ref(X, Y, mask, kind):
    """dL/dX (M, T, n) of the mean loss."""
    count = mask.sum()
    r = np.where(mask, X - Y, 0.0)
    return (np.sign(r) if kind == "mae" else 2 * r) / count


def fsens_grad(W, alpha, U, t, Y, mask, kind, d=None, rtol=1e-10, atol=1e-10):
    """Gradient of the mean loss w.r.t. (W, alpha, d) by forward sensitivities (DOP853 on the augmented system).

    S_W[i, (j, k)] = dx_i/dW_jk obeys S' = J S + df/dW with J = diag(alpha s) W - diag(d),
    (df/dW)[i, (j, k)] = delta_ij alpha_i s_i x_k; S_a' = J S_a + diag(tanh z); S_d' = J S_d - diag(x).
    """
    n = W.shape[0]
    d = np.ones(n) if d is None else d
    M, T = U.shape[0], len(t)
    X = np.empty((M, T, n))
    sens = np.empty((M, T, n, n * n + 2 * n))

    def f(_t, y, u):
        x = y[:n]
        S = y[n:].reshape(n, n * n + 2 * n)
        z = W @ x - u
        th = np.tanh(z)
        s = alpha * (1 - th**2)
        J = s[:, None] * W - np.diag(d)
        dS = J @ S
        dW = dS[:, : n * n].reshape(n, n, n)
        dW[np.arange(n), np.arange(n), :] += s[:, None] * x[None, :]
        dS[np.arange(n), n * n + np.arange(n)] += th
        dS[np.arange(n), n * n + n + np.arange(n)] -= x
        return np.concatenate([alpha * th - d * x, dS.ravel()])

    for c, u in enumerate(U):
        y0 = np.zeros(n + n * (n * n + 2 * n))
        sol = solve_ivp(f, (0.0, t[-1]), y0, method="DOP853", t_eval=t, rtol=rtol, atol=atol, args=(u,))
        assert sol.success, sol.message
        X[c] = sol.y[:n].T
        sens[c] = sol.y[n:].T.reshape(T, n, n * n + 2 * n)
    dl = dloss_ref(X, Y, mask, kind)
    g = np.einsum("mtn,mtnp->p", dl, sens)
    return loss_ref(X, Y, mask, kind), {"W": g[: n * n].reshape(n, n), "alpha": g[n * n: n * n + n],
                                        "d": g[n * n + n:]}


def flat(grads, keys=("W", "alpha")):
    return np.concatenate([np.ravel(grads[k]) for k in keys])


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))
