"""Validate the adjoint gradient three independent ways (``cellbox-nb gradcheck``).

1. Forward sensitivities: along k random unit directions v = (V, va) in (W, alpha) space, the directional
   derivative dL.v = sum_k dl/dx(t_k) . s(t_k), with s' = J s + alpha (1 - tanh(z)^2) (V x) + va tanh(z),
   s(0) = 0, solved together with x by scipy's DOP853 at rtol = atol = 1e-12 (no code shared with the adjoint).
2. Central finite differences of the loss along the same directions (loss solved at 1e-12).
3. The Taylor-remainder test: r(h) = |L(theta + h v) - L(theta) - h g.v| along one more random unit direction
   must fall as h^2 (slope 2) for h = 3e-3 .. 3e-5.  (Earlier versions took a direction of length
   sqrt(n^2 + n) and h up to 0.1, where the cubic term still bends the fit: slopes 1.35-2.42 on correct
   gradients, BF failing on five seeds of six.  Smaller h would let the gradient's own error, h * (g - g_true).v,
   bend the fit the other way when the gradient under test is solved at a loose --rtol.)

The check passes when rel_err_fsens <= 1e-6, rel_err_fd <= 1e-5 and |taylor_slope - 2| <= 0.1 (MSE loss is used
for the Taylor test, whose kinks-free remainder is what the slope assumes).
"""

import numpy as np
from scipy.integrate import solve_ivp

from .api import loss_and_grad
from .errors import NumericalError

TOL_FSENS = 1e-6
TOL_FD = 1e-5
TOL_SLOPE = 0.1
REF_TOL = 1e-12
TAYLOR_STEPS = np.array([3e-3, 1e-3, 3e-4, 1e-4, 3e-5])


def _jvp_fsens(W, alpha, U, t, Y, maskf, loss, V, va):
    """Directional derivative of the mean loss along (V, va) by forward sensitivities (DOP853, 1e-12)."""
    n = W.shape[0]
    count = maskf.sum()
    total = 0.0
    for c, u in enumerate(U):
        def f(_t, y):
            x, s = y[:n], y[n:]
            z = W @ x - u
            th = np.tanh(z)
            sa = alpha * (1.0 - th * th)
            return np.concatenate([alpha * th - x, sa * (W @ s) - s + sa * (V @ x) + va * th])

        sol = solve_ivp(f, (0.0, t[-1]), np.zeros(2 * n), method="DOP853", t_eval=t, rtol=REF_TOL, atol=REF_TOL)
        if not sol.success:
            raise NumericalError(f"gradcheck: the forward-sensitivity reference failed ({sol.message})")
        x, s = sol.y[:n].T, sol.y[n:].T
        r = np.where(maskf[c] > 0, x - np.nan_to_num(Y[c]), 0.0)
        dl = np.sign(r) if loss == "mae" else 2.0 * r
        total += float(np.sum(dl * s))
    return total / count


def run_gradcheck(W, alpha, U, t, Y, *, mask=None, loss="mae", directions=3, seed=0, rtol=1e-10, atol=1e-10,
                  grad_fn=None, adjoint="interpolating", adjoint_integrator="auto"):
    """Check the adjoint gradient at (W, alpha) on data Y; returns a dict of results.

    Parameters
    ----------
    W (n, n), alpha (n,), U (M, n), t (T,), Y (M, T, n), mask (M, T, n) bool : the problem.
    loss : "mae" or "mse" (the Taylor test always uses "mse").
    directions : number of random directions.   rtol, atol : tolerances of the gradient under test.
    adjoint, adjoint_integrator : loss_and_grad's options of these names.
    grad_fn : optional replacement for the gradient under test, ``grad_fn(W, alpha, loss) -> (L, grads)``
        (used to show that the checker catches a wrong gradient).

    Returns
    -------
    dict with rel_err_fd, rel_err_fsens, taylor_slope, ok, and the per-direction values.
    """
    W = np.asarray(W, float)
    alpha = np.asarray(alpha, float)
    mask = np.ones(np.shape(Y), bool) if mask is None else np.asarray(mask, bool)
    maskf = mask.astype(float)
    kw = dict(mask=mask, rtol=rtol, atol=atol)
    tight = dict(mask=mask, rtol=REF_TOL, atol=REF_TOL)

    def gradient(loss_kind):
        if grad_fn is not None:
            return grad_fn(W, alpha, loss_kind)
        return loss_and_grad(W, alpha, U, t, Y, loss=loss_kind, adjoint=adjoint,
                             adjoint_integrator=adjoint_integrator, **kw)

    L, g = gradient(loss)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(directions):
        V = rng.normal(size=W.shape)
        va = rng.normal(size=alpha.shape)
        scale = np.sqrt((V**2).sum() + (va**2).sum())
        V, va = V / scale, va / scale
        adj = float((g["W"] * V).sum() + (g["alpha"] * va).sum())
        fs = _jvp_fsens(W, alpha, U, t, Y, maskf, loss, V, va)
        h = 1e-5
        lp = loss_and_grad(W + h * V, alpha + h * va, U, t, Y, loss=loss, **tight)[0]
        lm = loss_and_grad(W - h * V, alpha - h * va, U, t, Y, loss=loss, **tight)[0]
        fd = (lp - lm) / (2 * h)
        rows.append({"adjoint": adj, "fsens": fs, "fd": fd})
    denom = max(max(abs(r["fsens"]) for r in rows), 1e-300)
    rel_fsens = max(abs(r["adjoint"] - r["fsens"]) for r in rows) / denom
    rel_fd = max(abs(r["adjoint"] - r["fd"]) for r in rows) / denom
    # Taylor remainder (MSE, smooth)
    _, gm = gradient("mse")
    V = rng.normal(size=W.shape)
    va = rng.normal(size=alpha.shape)
    scale = np.sqrt((V**2).sum() + (va**2).sum())
    V, va = V / scale, va / scale
    dot = float((gm["W"] * V).sum() + (gm["alpha"] * va).sum())
    L0t = loss_and_grad(W, alpha, U, t, Y, loss="mse", **tight)[0]
    rem = []
    for h in TAYLOR_STEPS:
        Lh = loss_and_grad(W + h * V, alpha + h * va, U, t, Y, loss="mse", **tight)[0]
        rem.append(max(abs(Lh - L0t - h * dot), 1e-300))
    slope = float(np.polyfit(np.log(TAYLOR_STEPS), np.log(rem), 1)[0])
    ok = bool(rel_fsens <= TOL_FSENS and rel_fd <= TOL_FD and abs(slope - 2.0) <= TOL_SLOPE)
    return {"rel_err_fd": float(rel_fd), "rel_err_fsens": float(rel_fsens), "taylor_slope": slope, "ok": ok,
            "directions": rows, "loss": loss, "loss_value": float(L),
            "thresholds": {"rel_err_fsens": TOL_FSENS, "rel_err_fd": TOL_FD, "taylor_slope": [2 - TOL_SLOPE,
                                                                                           2 + TOL_SLOPE]}}
