"""The model's math, and only here: the right-hand side of (1) and its vector-Jacobian products.

    z = W x - u,   th = tanh(z),   s = 1 - th**2
    f(x)          = alpha * th - d * x
    lam^T df/dx   = W^T g - d * lam              with g = alpha * s * lam
    lam^T df/dW   = g x^T          lam^T df/dalpha = lam * th
    lam^T df/dd   = -lam * x       lam^T df/du     = -g

W is passed twice: ``WT`` (= W.T, C-contiguous) for z = W x, computed as a sum of columns so the inner loop is a
vectorisable axpy, and ``W`` for W^T g, computed as a sum of rows for the same reason.  Both loops add in a fixed
order, so results do not depend on threads or SIMD width.  tanh is core.tanh's vectorisable version.
"""

import numpy as np

from .._jit import kernel
from .tanh import tanh


@kernel
def matvec_minus(WT, x, u, z):
    """z = W x - u (W given as its transpose WT, shape (n, n)); writes z (n,)."""
    n = x.shape[0]
    for i in range(n):
        z[i] = -u[i]
    for j in range(n):
        xj = x[j]
        for i in range(n):
            z[i] += WT[j, i] * xj


@kernel
def rmatvec(W, g, r):
    """r = W^T g for W (n, n); writes r (n,)."""
    n = g.shape[0]
    for j in range(n):
        r[j] = 0.0
    for i in range(n):
        gi = g[i]
        for j in range(n):
            r[j] += W[i, j] * gi


@kernel
def rhs(WT, alpha, d, u, x, z, out):
    """out = alpha * tanh(W x - u) - d * x; z (n,) is scratch and holds W x - u on return."""
    matvec_minus(WT, x, u, z)
    for i in range(x.shape[0]):
        out[i] = alpha[i] * tanh(z[i]) - d[i] * x[i]


@kernel
def adjoint_rhs_z(W, alpha, d, z, lam, th, g, out):
    """As :func:`adjoint_rhs` with z = W x - u given (interpolated from the forward pass): no W x product."""
    n = z.shape[0]
    for i in range(n):
        ti = tanh(z[i])
        th[i] = ti
        g[i] = alpha[i] * (1.0 - ti * ti) * lam[i]
    rmatvec(W, g, out)
    for i in range(n):
        out[i] -= d[i] * lam[i]


@kernel
def adjoint_rhs(W, WT, alpha, d, u, x, lam, z, th, g, out):
    """Adjoint right-hand side in reversed time, d lam / d tau = W^T g - d * lam.

    Writes z = W x - u, th = tanh(z), g = alpha * (1 - th**2) * lam and out (all (n,)); th and g are what the
    parameter integrals need.
    """
    matvec_minus(WT, x, u, z)
    adjoint_rhs_z(W, alpha, d, z, lam, th, g, out)
