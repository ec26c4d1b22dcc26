"""Backward pass, discrete variant: the exact adjoint of the accepted Tsit5 steps (``adjoint="discrete"``).

The forward pass keeps, for every accepted step p (size h, from x_p), x_p and th_s = tanh(W X_s - u) at its six
stages (forward.STORE_STAGES, 7n numbers a step); the stage arguments X_s follow from them without a product
(:func:`stage_args`).  The step is the map

    k_s = f(X_s),   X_s = x_p + h sum_{j<s} A[s, j] k_j,   x_{p+1} = x_p + h sum_s B[s] k_s     (s = 1..6; B[7] = 0)

and, with lam' = dL/dx_{p+1} and the step sizes held fixed, its adjoint is, for s = 6 down to 1,

    nu_s = h (B[s] lam' + sum_{j>s} A[j, s] mu_j)        (dL/dk_s)
    g_s  = alpha * (1 - th_s**2) * nu_s,   mu_s = W^T g_s - d * nu_s       (dL/dX_s)
    dL/dW += g_s X_s^T,   dL/dalpha += nu_s * th_s,   dL/dd -= nu_s * X_s

and lam = dL/dx_p = lam' + sum_s mu_s, plus the jump dl/dx(t_k) where step p ends on an observation time.

This is the gradient of the loss the forward pass actually computed (to rounding), whatever the tolerance, where the
interpolating adjoint approximates the gradient of the exact solution's loss; the two differ by about the forward
pass's own error and agree as the tolerance tightens.  It costs one product W^T g per stage of each *accepted*
forward step (the interpolating adjoint takes its own, about twice as many, steps), reads no interpolant and
evaluates no tanh, and has no tolerance of its own.  The step sizes are treated as constants: their (piecewise)
dependence on the parameters through the error control is not differentiated, as in diffrax and torchdiffeq when
they differentiate through a solver.
"""

import numpy as np

from .._jit import kernel, leaf
from . import status as st
from .forward import NQUAD, stage_state
from .quadrature import add_dw_direct, flush_dw
from .rhs import rmatvec
from .tableau import A, B

STAGE_STORE_FLOATS = 1 + NQUAD  # per component and accepted step: x_p and tanh at the six stages (plus one time)
UNIT = np.ones(NQUAD)  # quadrature weights for add_dw_direct: the g_s of the discrete adjoint are its terms as they are


@leaf
def stage_args(alpha, d, h, X1, TH, XR, KS):
    """The stage arguments X_2..X_6 of a stored step into XR (5, n), from X_1 = x_p (X1) and tanh at the stages
    (TH (6, n)): k_s = alpha * th_s - d * X_s (KS (6, n)) and X_s = x_p + h sum_{j<s} A[s, j] k_j, with the
    forward pass's operations in its order (forward.stage_state, rhs.rhs_z_th), so the values are its own."""
    n = X1.shape[0]
    for i in range(n):
        KS[0, i] = alpha[i] * TH[0, i] - d[i] * X1[i]
    for s in range(1, NQUAD):
        stage_state(X1, KS, h, s, XR[s - 1])
        for i in range(n):
            KS[s, i] = alpha[i] * TH[s, i] - d[i] * XR[s - 1, i]


@leaf
def stage_nu(alpha, h, s, lam, ACC, X1, XR, TH, NU, g, galpha, gd):
    """Stage s of a step's adjoint, before the product: NU[s] = nu_s from lam = dL/dx_{p+1} and ACC[s] (the sum
    over later stages), g = alpha * (1 - th_s**2) * nu_s; adds the stage's dL/dalpha and dL/dd terms."""
    b = B[s]
    for i in range(lam.shape[0]):
        nu = h * (b * lam[i] + ACC[s, i])
        th = TH[s, i]
        xs = X1[i] if s == 0 else XR[s - 1, i]
        NU[s, i] = nu
        g[i] = alpha[i] * (1.0 - th * th) * nu
        galpha[i] += nu * th
        gd[i] -= nu * xs


@leaf
def stage_mu(d, s, r, NU, ACC, lam_out):
    """Stage s after the product r = W^T g: mu_s = r - d * nu_s (left in r), added to lam_out and, with the weights
    A[s, j], to the sums ACC[j] of the earlier stages j < s."""
    n = r.shape[0]
    for i in range(n):
        r[i] -= d[i] * NU[s, i]
        lam_out[i] += r[i]
    for j in range(s):
        a = A[s, j]
        for i in range(n):
            ACC[j, i] += a * r[i]


@leaf
def step_adjoint_start(lam, ACC, lam_out):
    """Before a step's stages: ACC = 0, lam_out = lam (the caller also rebuilds the stage arguments)."""
    for s in range(NQUAD):
        for i in range(lam.shape[0]):
            ACC[s, i] = 0.0
    for i in range(lam.shape[0]):
        lam_out[i] = lam[i]


@leaf
def step_adjoint(W, alpha, d, h, lam, X1, XR, TH, ACC, NU, GS, r, lam_out, galpha, gd):
    """The adjoint of one accepted step: lam = dL/dx_{p+1} in, lam_out = dL/dx_p out, GS (6, n) = g_s.

    X1 (n,) = x_p, XR (5, n) = X_2..X_6, TH (6, n) = tanh at the stages; ACC, NU (6, n), r (n,) scratch.  Adds
    the step's dL/dalpha and dL/dd terms; the caller adds sum_s GS[s] X_s^T to dL/dW.
    """
    step_adjoint_start(lam, ACC, lam_out)
    for s in range(NQUAD - 1, -1, -1):
        stage_nu(alpha, h, s, lam, ACC, X1, XR, TH, NU, GS[s], galpha, gd)
        rmatvec(W, GS[s], r)
        stage_mu(d, s, r, NU, ACC, lam_out)


@leaf
def buffer_dw(GS, X1, XR, Gq, Xq, q):
    """Append the six terms (g_s, X_s) of one step to the buffers Gq, Xq (room for them is the caller's);
    returns the new count."""
    n = X1.shape[0]
    for s in range(NQUAD):
        for i in range(n):
            Gq[q, i] = GS[s, i]
            Xq[q, i] = X1[i] if s == 0 else XR[s - 1, i]
        q += 1
    return q


@kernel
def discrete_backward_one(W, alpha, d, t_obs, dl, dt, dx, dz, n_st, gW, galpha, gd, Gq, Xq):
    """Adjoint of one condition's accepted steps (STORE_STAGES store dt, dx, dz, n_st of them), adding its
    parameter gradients to gW, galpha, gd.  dl (T, n): dl/dx(t_k).  Gq, Xq (Q, n): with Q >= 6 the dL/dW terms are
    buffered and added by matrix products (large n), with Q = 0 directly.  Returns status, accepted steps, rejected
    (0), products W^T g, dL/dW terms (as backward_one)."""
    n = dl.shape[1]
    T = t_obs.shape[0]
    lam = np.zeros(n)
    lam_out = np.empty(n)
    XR = np.empty((NQUAD - 1, n))
    KS = np.empty((NQUAD, n))
    ACC = np.empty((NQUAD, n))
    NU = np.empty((NQUAD, n))
    GS = np.empty((NQUAD, n))
    r = np.empty(n)
    q = 0
    k = T - 1
    for p in range(n_st - 1, -1, -1):
        while k >= 0 and dt[p + 1] == t_obs[k]:  # the forward pass lands on each t_k exactly
            for i in range(n):
                lam[i] += dl[k, i]
            k -= 1
        h = dt[p + 1] - dt[p]
        stage_args(alpha, d, h, dx[p], dz[p], XR, KS)
        step_adjoint(W, alpha, d, h, lam, dx[p], XR, dz[p], ACC, NU, GS, r, lam_out, galpha, gd)
        if Gq.shape[0] == 0:
            add_dw_direct(1.0, UNIT, GS, dx[p], XR, gW)
        else:
            if q + NQUAD > Gq.shape[0]:
                q = flush_dw(gW, Gq, Xq, q)
            q = buffer_dw(GS, dx[p], XR, Gq, Xq, q)
        finite = True
        for i in range(n):
            lam[i] = lam_out[i]
            if not np.isfinite(lam_out[i]):
                finite = False
        if not finite:
            return st.NONFINITE, n_st - p, 0, NQUAD * (n_st - p), NQUAD * (n_st - p)
    flush_dw(gW, Gq, Xq, q)
    return st.SUCCESS, n_st, 0, NQUAD * n_st, NQUAD * n_st
