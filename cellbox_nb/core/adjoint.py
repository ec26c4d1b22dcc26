"""Backward pass: the interpolating continuous adjoint, fused with the forward pass per condition.

For one condition (DESIGN.md section 3; reversed time tau = t_T - t):

    d lam / d tau = W^T g - d * lam,      g = alpha * (1 - tanh(z)**2) * lam,   z = W x(t) - u
    dL/dW += int g x^T dt,   dL/dalpha += int lam * tanh(z) dt,   dL/dd += -int lam * x dt
    lam(t_k-) = lam(t_k+) + dl/dx(t_k)   at every observation time, lam(t_T+) = 0

* x(t) is read back from the forward pass's stored steps (Tsit5 dense output); only lam is integrated.
* lam is integrated with its own adaptive Tsit5, hard stops at every t_k; after each jump the first stage is
  recomputed (FSAL does not hold across a jump).
* The parameter integrals are accumulated from the accepted step's stages with the weights b_i (they are the
  quadrature the augmented system would do) and stay out of the error norm (seminorm).
* Each condition's loss is the *unnormalised* sum over its observed entries, so lam is O(1) and the adjoint
  tolerances mean the same thing for any data size; the caller divides by the number of observed entries.
* Memory: the dense store lives only while its condition is in flight (forward then backward in one task), so
  it is bounded by (threads x steps x (9n + 2)) floats, and by MAX_DENSE_BYTES per condition (status
  DENSE_OVERFLOW beyond it).
"""

import numpy as np
from numba import prange

from .._jit import driver, kernel, leaf
from . import status as st
from .controller import rms_error_norm, step_factor, step_limit
from .forward import NSTAGE, dense_eval_xz, error_estimate, forward_one, stage_state
from .rhs import adjoint_rhs_z
from .tableau import B, C

LOSS_MAE = 0
LOSS_MSE = 1
NQUAD = 6  # stages with a nonzero weight b_i (b_7 = 0)


@leaf
def observation_loss(xobs, y, mask, loss_kind, dl):
    """Unnormalised loss of one condition and dl/dx at each observation time.

    xobs, y, mask : (T, n) (mask 1.0 observed, 0.0 missing; y is ignored where missing).
    Writes dl (T, n); returns sum of |x - y| (MAE) or (x - y)**2 (MSE) over observed entries.
    """
    T, n = xobs.shape
    total = 0.0
    for k in range(T):
        for i in range(n):
            if mask[k, i] != 0.0:
                r = xobs[k, i] - y[k, i]
                if loss_kind == LOSS_MAE:
                    total += abs(r)
                    dl[k, i] = 1.0 if r > 0.0 else (-1.0 if r < 0.0 else 0.0)
                else:
                    total += r * r
                    dl[k, i] = 2.0 * r
            else:
                dl[k, i] = 0.0
    return total


@leaf
def adjoint_atol(dl, artol, aatol):
    """Absolute tolerance of the adjoint of one condition: ``aatol`` if positive, else artol * max |dl|.

    lam is linear in the jumps dl/dx(t_k), so its natural scale is the largest jump: an absolute tolerance of
    artol * max|dl| asks for the same relative accuracy of the gradient as artol, without resolving lam's decay
    between observations to a relative accuracy far below what the gradient needs (which is what a fixed small
    atol does, at about 2.5x the backward steps).
    """
    if aatol > 0.0:
        return aatol
    big = 0.0
    for k in range(dl.shape[0]):
        for i in range(dl.shape[1]):
            big = max(big, abs(dl[k, i]))
    return artol * big if big > 0.0 else artol


@leaf
def _locate(dt, n_st, p, t):
    """Index of the stored step containing t, searching from p (t moves mostly backward)."""
    while p > 0 and t < dt[p]:
        p -= 1
    while p < n_st - 1 and t > dt[p + 1]:
        p += 1
    return p


@kernel
def flush_dw(gW, Gq, Xq, q):
    """gW += Gq[:q]^T Xq[:q] (one matrix product) and empty the buffers; returns the new count, 0."""
    if q > 0:
        gW += np.dot(Gq[:q].T, Xq[:q])
    return 0


@leaf
def add_step_integrals(h, GS, XS, LS, TH, gW, galpha, gd, Gq, Xq, q):
    """Add one accepted backward step's parameter integrals, quadrature with the weights h * b_i on its stages.

    GS, XS, LS, TH (7, n): g, x, lam and tanh(z) at the stages.  dL/dW += sum_i h b_i g_i x_i^T, directly (rank-6
    update, when Gq has no rows) or into the buffers Gq, Xq (Q, n) holding q terms, which the caller adds to gW
    with :func:`flush_dw` (one matrix product) before they overflow (q + 6 > Q) and at the end;
    dL/dalpha += sum_i h b_i lam_i tanh(z_i); dL/dd -= sum_i h b_i lam_i x_i.  Returns the new number of buffered
    terms.  (A leaf: the flush, which allocates, stays with the caller.)
    """
    n = GS.shape[1]
    nq = Gq.shape[0]
    if nq > 0:
        for s in range(NQUAD):
            c = h * B[s]
            for i in range(n):
                Gq[q, i] = c * GS[s, i]
                Xq[q, i] = XS[s, i]
            q += 1
    for i in range(n):
        if nq == 0:
            c0 = (h * B[0]) * GS[0, i]
            c1 = (h * B[1]) * GS[1, i]
            c2 = (h * B[2]) * GS[2, i]
            c3 = (h * B[3]) * GS[3, i]
            c4 = (h * B[4]) * GS[4, i]
            c5 = (h * B[5]) * GS[5, i]
            for j in range(n):
                gW[i, j] += (c0 * XS[0, j] + c1 * XS[1, j] + c2 * XS[2, j]
                             + c3 * XS[3, j] + c4 * XS[4, j] + c5 * XS[5, j])
        acc_a = 0.0
        acc_d = 0.0
        for s in range(NQUAD):
            c = h * B[s]
            acc_a += c * LS[s, i] * TH[s, i]
            acc_d += c * LS[s, i] * XS[s, i]
        galpha[i] += acc_a
        gd[i] -= acc_d
    return q


@leaf
def adjoint_stages(W, alpha, d, lam, h_step, t, t_stop, hit, dt, dx, dk, dz, n_st, p, LS, KL, XS, TH, GS, w, z):
    """Stages 2..7 of one backward step of size h_step from (t, lam), stage 1 given in row 0 of LS, KL, XS, TH, GS.

    Stage s sits at t - C[s] h_step (exactly t_stop for the last stage of a step that lands on it); x and z there
    come from the forward dense store.  Fills rows 1..6; returns the dense-store step index of the last stage.
    (One leaf call per step, so the row views below cost no reference counting.)
    """
    for s in range(1, NSTAGE):
        stage_state(lam, KL, h_step, s, LS[s])
        ts = t_stop if (hit and C[s] == 1.0) else t - C[s] * h_step
        p = _locate(dt, n_st, p, ts)
        dense_eval_xz(dt, dx, dk, dz, p, ts, w, XS[s], z)
        adjoint_rhs_z(W, alpha, d, z, LS[s], TH[s], GS[s], KL[s])
    return p


@leaf
def fsal_rows(lam, LS, KL, XS, TH, GS):
    """After an accepted backward step: lam = its end value, and the last stage becomes the next step's first."""
    last = NSTAGE - 1
    for i in range(lam.shape[0]):
        lam[i] = LS[last, i]
        LS[0, i] = LS[last, i]
        KL[0, i] = KL[last, i]
        XS[0, i] = XS[last, i]
        TH[0, i] = TH[last, i]
        GS[0, i] = GS[last, i]


@kernel
def backward_one(W, alpha, d, t_obs, dl, rtol, atol, h_init, max_steps, beta,
                 dt, dx, dk, dz, n_st, gW, galpha, gd, Gq, Xq):
    """Integrate lam from t_T back to 0 and add this condition's parameter integrals to gW, galpha, gd.

    dl : (T, n) jumps dl/dx(t_k).  dt, dx, dk, dz, n_st : the forward dense store (x and z = W x - u are both
    interpolated from it, so a stage costs one product, W^T g, plus the quadrature).  gW (n, n), galpha, gd (n,) are
    accumulated into (+=).  Gq, Xq (Q, n): with Q > 0 the dL/dW terms (h b_i g_i, x_i) of accepted steps are
    buffered and added as one matrix product gW += Gq^T Xq whenever Q rows are full and at the end (one pass over
    gW per Q/6 steps instead of one per step: for large n, where gW does not fit in cache); with Q = 0 each
    accepted step adds its rank-6 update directly.  Returns status, n_accepted, n_rejected, n_fev.
    """
    n = dl.shape[1]
    T = t_obs.shape[0]
    lam = np.zeros(n)
    LS = np.empty((NSTAGE, n))   # stage values of lam
    KL = np.empty((NSTAGE, n))   # stage derivatives d lam / d tau
    XS = np.empty((NSTAGE, n))   # x at the stage times
    TH = np.empty((NSTAGE, n))   # tanh(z) at the stages
    GS = np.empty((NSTAGE, n))   # g at the stages
    z = np.empty(n)
    err = np.empty(n)
    w = np.empty(NSTAGE)
    q = 0
    status = st.SUCCESS
    n_acc = 0
    n_rej = 0
    nfev = 0
    t = t_obs[T - 1]
    p = n_st - 1
    h = h_init
    # After a jump lam starts a transient like the one after the previous jump, so each segment after the first
    # starts with the previous segment's first accepted step instead of its last (long) one, which the error
    # control would reject (6 -> 2 rejected steps per condition on the benchmark problems).  Seeding the first
    # segment with the forward pass's first step was tried: no rejections but 24% more accepted steps.
    h_first = 0.0
    for k in range(T - 1, -1, -1):
        # jump at t_k, then recompute the first stage
        if h_first > 0.0:
            h = h_first  # lam restarts a transient like the one after the previous jump
        seg_start = True
        for i in range(n):
            lam[i] += dl[k, i]
            LS[0, i] = lam[i]
        p = _locate(dt, n_st, p, t)
        dense_eval_xz(dt, dx, dk, dz, p, t, w, XS[0], z)
        adjoint_rhs_z(W, alpha, d, z, LS[0], TH[0], GS[0], KL[0])
        nfev += 1
        t_stop = t_obs[k - 1] if k > 0 else 0.0
        rejected_last = False
        err_prev = 1.0
        while t > t_stop:
            limit = step_limit(n_acc + n_rej, max_steps, h, t)
            if limit != st.SUCCESS:
                return limit, n_acc, n_rej, nfev
            hit = t - h <= t_stop
            h_step = t - t_stop if hit else h
            p = adjoint_stages(W, alpha, d, lam, h_step, t, t_stop, hit, dt, dx, dk, dz, n_st, p, LS, KL, XS, TH,
                               GS, w, z)
            nfev += NSTAGE - 1
            error_estimate(KL, h_step, err)
            en = rms_error_norm(err, lam, LS[NSTAGE - 1], rtol, atol)
            accept = en <= 1.0
            factor = step_factor(en, err_prev, rejected_last, accept, beta)
            if not accept:
                n_rej += 1
                rejected_last = True
                h = h_step * factor
                continue
            # parameter integrals from the accepted stages (weights h * b_i), outside the error norm
            if Gq.shape[0] > 0 and q + NQUAD > Gq.shape[0]:
                q = flush_dw(gW, Gq, Xq, q)
            q = add_step_integrals(h_step, GS, XS, LS, TH, gW, galpha, gd, Gq, Xq, q)
            if seg_start:
                h_first = h_step
                seg_start = False
            t = t_stop if hit else t - h_step
            fsal_rows(lam, LS, KL, XS, TH, GS)
            n_acc += 1
            rejected_last = False
            err_prev = max(en, 1e-4)
            h_new = h_step * factor
            h = max(h_new, h) if hit else h_new
            finite = True
            for i in range(n):
                if not np.isfinite(lam[i]):
                    finite = False
            if not finite:
                return st.NONFINITE, n_acc, n_rej, nfev
    flush_dw(gW, Gq, Xq, q)
    return status, n_acc, n_rej, nfev


@kernel
def grad_outputs(M, T, n, n_chunks):
    """The outputs of the loss-and-gradient drivers, zeroed: loss_c (M,), xobs (M, T, n), status (M,), stats (M, 6),
    and the per-chunk accumulators gW (n_chunks, n, n), galpha, gd (n_chunks, n)."""
    return (np.zeros(M), np.empty((M, T, n)), np.zeros(M, dtype=np.int64), np.zeros((M, 6), dtype=np.int64),
            np.zeros((n_chunks, n, n)), np.zeros((n_chunks, n)), np.zeros((n_chunks, n)))


@driver
def loss_grad_batch(W, alpha, d, U, t_obs, Y, mask, loss_kind, rtol, atol, artol, aatol, h_init,
                    max_steps, beta, n_chunks, dense_init, max_dense_steps, defer_rows):
    """Loss and gradient over all conditions, in parallel over fixed chunks of conditions.

    U (M, n), Y and mask (M, T, n) (mask as float 0/1).  Conditions are split into n_chunks contiguous chunks
    (boundaries c * M // n_chunks, independent of the thread count); each chunk runs its conditions in order
    (forward with dense store, loss, backward) into its own accumulators, which the caller sums in chunk order.
    defer_rows > 0 buffers that many dL/dW terms per chunk and adds them by matrix products (see backward_one).

    Returns loss_c (M,) unnormalised per-condition losses, gW (n_chunks, n, n), galpha, gd (n_chunks, n),
    xobs (M, T, n), status (M,), stats (M, 6) = forward accepted, rejected, fev, backward accepted, rejected, fev.
    """
    M, n = U.shape
    T = t_obs.shape[0]
    WT = np.ascontiguousarray(W.T)
    loss_c, xobs, status, stats, gW, galpha, gd = grad_outputs(M, T, n, n_chunks)
    for ch in prange(n_chunks):
        c_lo = ch * M // n_chunks
        c_hi = (ch + 1) * M // n_chunks
        dt = np.empty(dense_init + 1)
        dx = np.empty((dense_init, n))
        dk = np.empty((dense_init, NSTAGE, n))
        dz = np.empty((dense_init, NSTAGE + 1, n))
        dl = np.empty((T, n))
        Gq = np.empty((defer_rows, n))
        Xq = np.empty((defer_rows, n))
        for c in range(c_lo, c_hi):
            res = forward_one(WT, alpha, d, U[c], t_obs, rtol, atol, h_init, max_steps, beta, xobs[c],
                              True, dt, dx, dk, dz, max_dense_steps)
            dt = res[6]
            dx = res[7]
            dk = res[8]
            dz = res[9]
            stats[c, 0] = res[1]
            stats[c, 1] = res[2]
            stats[c, 2] = res[3]
            if res[0] != st.SUCCESS:
                status[c] = res[0]
                continue
            loss_c[c] = observation_loss(xobs[c], Y[c], mask[c], loss_kind, dl)
            bres = backward_one(W, alpha, d, t_obs, dl, artol, adjoint_atol(dl, artol, aatol), res[5],
                                max_steps, beta, dt, dx, dk, dz, res[4], gW[ch], galpha[ch], gd[ch], Gq, Xq)
            status[c] = bres[0]
            stats[c, 3] = bres[1]
            stats[c, 4] = bres[2]
            stats[c, 5] = bres[3]
    return loss_c, gW, galpha, gd, xobs, status, stats
