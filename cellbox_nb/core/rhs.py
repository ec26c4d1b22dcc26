"""The model's math, and only here: the right-hand side of (1) and its vector-Jacobian products.

    z = W x - u,   th = tanh(z),   s = 1 - th**2
    f(x)          = alpha * th - d * x
    lam^T df/dx   = W^T g - d * lam              with g = alpha * s * lam
    lam^T df/dW   = g x^T          lam^T df/dalpha = lam * th
    lam^T df/dd   = -lam * x       lam^T df/du     = -g

W is passed twice: ``WT`` (= W.T, C-contiguous) for z = W x, computed as a sum of columns (four a pass) so the
inner loop is a vectorisable axpy, and ``W`` for W^T g, computed as a sum of rows for the same reason.  Both loops
add in a fixed order, so results do not depend on threads or SIMD width.  tanh is core.tanh's vectorisable version.
"""

from .._jit import leaf
from .tanh import tanh


@leaf
def matvec_minus(WT, x, u, z):
    """z = W x - u (W given as its transpose WT, shape (n, n)); writes z (n,).

    Columns are taken four at a time, z += (w_j x_j + w_j+1 x_j+1) + (w_j+2 x_j+2 + w_j+3 x_j+3), so each pass
    loads and stores z once per four columns; the grouping is fixed, so the result does not depend on threads.
    """
    n = x.shape[0]
    for i in range(n):
        z[i] = -u[i]
    j = 0
    while j + 4 <= n:
        x0 = x[j]
        x1 = x[j + 1]
        x2 = x[j + 2]
        x3 = x[j + 3]
        for i in range(n):
            z[i] += (WT[j, i] * x0 + WT[j + 1, i] * x1) + (WT[j + 2, i] * x2 + WT[j + 3, i] * x3)
        j += 4
    while j < n:
        xj = x[j]
        for i in range(n):
            z[i] += WT[j, i] * xj
        j += 1


@leaf
def rmatvec(W, g, r):
    """r = W^T g for W (n, n), rows taken four at a time as in :func:`matvec_minus`; writes r (n,)."""
    n = g.shape[0]
    for j in range(n):
        r[j] = 0.0
    i = 0
    while i + 4 <= n:
        g0 = g[i]
        g1 = g[i + 1]
        g2 = g[i + 2]
        g3 = g[i + 3]
        for j in range(n):
            r[j] += (W[i, j] * g0 + W[i + 1, j] * g1) + (W[i + 2, j] * g2 + W[i + 3, j] * g3)
        i += 4
    while i < n:
        gi = g[i]
        for j in range(n):
            r[j] += W[i, j] * gi
        i += 1


@leaf
def rhs_z(alpha, d, z, x, out):
    """out = alpha * tanh(z) - d * x, given z = W x - u."""
    for i in range(x.shape[0]):
        out[i] = alpha[i] * tanh(z[i]) - d[i] * x[i]


@leaf
def rhs_z_th(alpha, d, z, x, out, th):
    """As :func:`rhs_z`, also keeping th = tanh(z) (for the discrete adjoint, which reads it back)."""
    for i in range(x.shape[0]):
        ti = tanh(z[i])
        th[i] = ti
        out[i] = alpha[i] * ti - d[i] * x[i]


@leaf
def rhs(WT, alpha, d, u, x, z, out):
    """out = alpha * tanh(W x - u) - d * x; z (n,) is scratch and holds W x - u on return."""
    matvec_minus(WT, x, u, z)
    rhs_z(alpha, d, z, x, out)


@leaf
def adjoint_g_th(alpha, th, lam, g):
    """g = alpha * (1 - th**2) * lam for th = tanh(z) given (interpolated from the forward pass)."""
    for i in range(th.shape[0]):
        ti = th[i]
        g[i] = alpha[i] * (1.0 - ti * ti) * lam[i]


@leaf
def adjoint_rhs_th(W, alpha, d, th, lam, g, out):
    """As :func:`adjoint_rhs` with th = tanh(W x - u) given (interpolated from the forward pass): no W x product,
    no tanh."""
    n = th.shape[0]
    adjoint_g_th(alpha, th, lam, g)
    rmatvec(W, g, out)
    for i in range(n):
        out[i] -= d[i] * lam[i]


@leaf
def adjoint_rhs(W, WT, alpha, d, u, x, lam, z, th, g, out):
    """Adjoint right-hand side in reversed time, d lam / d tau = W^T g - d * lam.

    Writes z = W x - u, th = tanh(z), g = alpha * (1 - th**2) * lam and out (all (n,)); th and g are what the
    parameter integrals need.
    """
    matvec_minus(WT, x, u, z)
    for i in range(z.shape[0]):
        th[i] = tanh(z[i])
    adjoint_rhs_th(W, alpha, d, th, lam, g, out)
