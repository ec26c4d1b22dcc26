"""Backward pass: the interpolating continuous adjoint, fused with the forward pass per condition.

For one condition (DESIGN.md section 3; reversed time tau = t_T - t):

    d lam / d tau = W^T g - d * lam,      g = alpha * (1 - tanh(z)**2) * lam,   z = W x(t) - u
    dL/dW += int g x^T dt,   dL/dalpha += int lam * tanh(z) dt,   dL/dd += -int lam * x dt
    lam(t_k-) = lam(t_k+) + dl/dx(t_k)   at every observation time, lam(t_T+) = 0

* x(t) and tanh(z(t)) are read back from the forward pass's stored steps (Tsit5's dense output for x, a quartic
  interpolant for tanh(z), see forward.tanh_interpolant); only lam is integrated, and a stage costs no tanh.
* lam is integrated with its own adaptive Tsit5, hard stops at every t_k; after each jump the first stage is
  recomputed (FSAL does not hold across a jump).
* The parameter integrals are accumulated from the accepted step's stages with the weights b_i (they are the
  quadrature the augmented system would do) and stay out of the error norm (seminorm).
* Each condition's loss is the *unnormalised* sum over its observed entries, so lam is O(1) and the adjoint
  tolerances mean the same thing for any data size; the caller divides by the number of observed entries.
* Memory: the dense store lives only while its condition is in flight (forward then backward in one task), so
  it is bounded by (threads x steps x (10n + 1)) floats, and by MAX_DENSE_BYTES per condition (status
  DENSE_OVERFLOW beyond it).
* loss_grad_batch runs the discrete adjoint instead (discrete.py, ``adjoint="discrete"``) when asked.
"""

import numpy as np
from numba import prange

from .._jit import driver, kernel, leaf
from . import status as st
from .controller import rms_error_norm, step_factor, step_limit
from .discrete import discrete_backward_one
from .forward import (NPOLY, NQUAD, NSTAGE, STORE_DENSE, STORE_STAGES, dense_eval_xth, error_estimate, forward_one,
                      stage_state)
from .quadrature import add_dw_direct, flush_dw
from .rhs import adjoint_rhs_th, rmatvec
from .tableau import B, C

LOSS_MAE = 0
LOSS_MSE = 1
ADJOINT_INTERPOLATING = 0  # lam by Tsit5 (backward_one)
ADJOINT_DISCRETE = 1
ADJOINT_INTERPOLATING8 = 2  # lam by DOP853 (adjoint8.backward_one8)


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
def jump(W, alpha, d, dlk, t, p, dt, dx, dc, dz, n_st, lam, LS, KL, XS, TH, GS, PS, TS):
    """lam += dlk (the jump dl/dx at an observation time t), then its first stage (row 0 of the stage arrays: lam,
    x and tanh(z) at t from the dense store, g and d lam / d tau); returns the dense-store step index of t.  (The
    backward kernels of both integrators and the lockstep blocks.)"""
    for i in range(lam.shape[0]):
        lam[i] += dlk[i]
        LS[0, i] = lam[i]
    p = _locate(dt, n_st, p, t)
    TS[0] = dense_eval_xth(dt, dx, dc, dz, p, t, XS[0], TH[0])
    PS[0] = p
    adjoint_rhs_th(W, alpha, d, TH[0], LS[0], GS[0], KL[0])
    return p


@leaf
def _locate(dt, n_st, p, t):
    """Index of the stored step containing t, searching from p (t moves mostly backward)."""
    while p > 0 and t < dt[p]:
        p -= 1
    while p < n_st - 1 and t > dt[p + 1]:
        p += 1
    return p


QRUN = NPOLY + 1  # a run of more quadrature nodes than this in one forward step is kept as 5 terms (x_p, c_1..c_4)
QROWS_STEP = NQUAD * QRUN  # most dL/dW terms one accepted backward step can hand to the buffers


@leaf
def _emit_run(dt, dx, dc, QS, QA, QG, QX, Gq, Xq, q):
    """Hand the current run's dL/dW terms to the buffers Gq, Xq and start an empty run; returns the new count.

    A run is the quadrature nodes, in order, whose x was interpolated from the same forward step p = QS[0]; QS[1]
    counts them, QS[2] the terms handed on so far.  Up to QRUN nodes are kept as they are (rows c g of QG, x of
    QX); a longer run as the QRUN terms QA[0] x_p^T + sum_j QA[j + 1] c_j^T of forward step p (see
    :func:`add_step_integrals`).
    """
    k = QS[1]
    if k == 0:
        return q
    n = QA.shape[1]
    p = QS[0]
    if k <= QRUN:
        for r in range(k):
            for i in range(n):
                Gq[q, i] = QG[r, i]
                Xq[q, i] = QX[r, i]
            q += 1
        QS[2] += k
    else:
        for i in range(n):
            Gq[q, i] = QA[0, i]
            Xq[q, i] = dx[p, i]
        q += 1
        for j in range(NPOLY):
            for i in range(n):
                Gq[q, i] = QA[j + 1, i]
                Xq[q, i] = dc[p, j, i]
            q += 1
        QS[2] += QRUN
    QS[1] = 0
    return q


@leaf
def _add_moments(h, s0, s1, TS, GS, QA, fresh):
    """QA[j] (+)= sum over the nodes s0 <= s < s1 of h b_s theta_s**j GS[s], j = 0..NPOLY (= instead of += when
    fresh): one pass over each row of QA for the whole group (weights of the other nodes zero, so the loop body is
    fixed and vectorises) instead of one per node."""
    n = GS.shape[1]
    a0 = h * B[0] if s0 <= 0 < s1 else 0.0
    a1 = h * B[1] if s0 <= 1 < s1 else 0.0
    a2 = h * B[2] if s0 <= 2 < s1 else 0.0
    a3 = h * B[3] if s0 <= 3 < s1 else 0.0
    a4 = h * B[4] if s0 <= 4 < s1 else 0.0
    a5 = h * B[5] if s0 <= 5 < s1 else 0.0
    for j in range(QRUN):
        if fresh:
            for i in range(n):
                QA[j, i] = ((a0 * GS[0, i] + a1 * GS[1, i]) + (a2 * GS[2, i] + a3 * GS[3, i])
                            + (a4 * GS[4, i] + a5 * GS[5, i]))
        else:
            for i in range(n):
                QA[j, i] += ((a0 * GS[0, i] + a1 * GS[1, i]) + (a2 * GS[2, i] + a3 * GS[3, i])
                             + (a4 * GS[4, i] + a5 * GS[5, i]))
        a0 *= TS[0]
        a1 *= TS[1]
        a2 *= TS[2]
        a3 *= TS[3]
        a4 *= TS[4]
        a5 *= TS[5]


@leaf
def add_step_integrals(h, GS, XS, LS, TH, PS, TS, dt, dx, dc, QS, QA, QG, QX, gW, galpha, gd, Gq, Xq, q):
    """Add one accepted backward step's parameter integrals, quadrature with the weights h * b_i on its stages.

    GS, XS, LS, TH (7, n): g, x, lam and tanh(z) at the stages; PS (7,) and TS (7,): the forward step each
    stage's x was interpolated from and theta there, x = dx[p] + sum_j theta**(j + 1) dc[p, j].

    dL/dalpha += sum_s h b_s lam_s tanh(z_s);  dL/dd -= sum_s h b_s lam_s x_s.
    dL/dW += sum_s h b_s g_s x_s^T.  Without buffers (Q = 0, small n) the six rank-one terms go straight into gW.
    With buffers the nodes are summed per run of nodes in the same forward step p: a run of k nodes is k
    rank-one terms, or, when k > 5, the same sum regrouped through x's dense output as 5 terms,
    (sum c_s g_s) x_p^T + sum_j (sum c_s theta_s**(j + 1) g_s) dc[p, j]^T.  The backward takes about twice the forward's
    steps, six nodes each, so runs are long in the late segments and this halves the dL/dW work there
    (bench/RESULTS.md).  The terms go to the buffers Gq, Xq (Q, n), q of them in use, which the caller adds to gW
    with :func:`flush_dw` before they overflow (q + QROWS_STEP > Q) and at the end (after
    :func:`finish_integrals`); QS, QA, QG, QX hold the open run (see :func:`_emit_run`).  Returns the new number
    of buffered terms.
    (A leaf: the flush, which allocates, stays with the caller.)
    """
    n = GS.shape[1]
    if Gq.shape[0] == 0:
        # no buffers (small n): the six rank-one terms straight into gW, one pass over it
        QS[2] += NQUAD
        add_dw_direct(h, B, GS, XS[0], XS[1:], gW)
    else:
        s0 = 0
        while s0 < NQUAD:  # the step's nodes in groups of consecutive nodes from the same forward step
            p = PS[s0]
            s1 = s0 + 1
            while s1 < NQUAD and PS[s1] == p:
                s1 += 1
            if p != QS[0]:
                q = _emit_run(dt, dx, dc, QS, QA, QG, QX, Gq, Xq, q)
                QS[0] = p
            k = QS[1]
            for s in range(s0, min(s1, s0 + QRUN - k)):  # the run's first QRUN nodes as they are
                c = h * B[s]
                r = k + s - s0
                for i in range(n):
                    QG[r, i] = c * GS[s, i]
                    QX[r, i] = XS[s, i]
            _add_moments(h, s0, s1, TS, GS, QA, k == 0)
            QS[1] = k + s1 - s0
            s0 = s1
    for i in range(n):
        acc_a = 0.0
        acc_d = 0.0
        for s in range(NQUAD):
            c = h * B[s]
            acc_a += c * LS[s, i] * TH[s, i]
            acc_d += c * LS[s, i] * XS[s, i]
        galpha[i] += acc_a
        gd[i] -= acc_d
    return q


@kernel
def finish_integrals(dt, dx, dc, QS, QA, QG, QX, gW, Gq, Xq, q):
    """Hand a condition's open run to the buffers (flushing them into gW first if it would not fit; nothing without
    buffers); the caller flushes them at the end.  Returns the new count.  Once per condition, so it may allocate."""
    if Gq.shape[0] == 0:
        return q
    if q + QRUN > Gq.shape[0]:
        q = flush_dw(gW, Gq, Xq, q)
    return _emit_run(dt, dx, dc, QS, QA, QG, QX, Gq, Xq, q)


@leaf
def adjoint_stages(W, alpha, d, lam, h_step, t, t_stop, hit, dt, dx, dc, dz, n_st, p, LS, KL, XS, TH, GS, PS, TS):
    """Stages 2..7 of one backward step of size h_step from (t, lam), stage 1 given in row 0 of LS, KL, XS, TH, GS.

    Stage s sits at t - C[s] h_step (exactly t_stop for the last stage of a step that lands on it); x and tanh(z)
    there come from the forward dense store.  Fills rows 1..6; returns the dense-store step index of the last stage.
    (One leaf call per step, so the row views below cost no reference counting.)  The dense output and g are
    written out here with the operations of dense_eval_xth and adjoint_rhs_th (results bitwise the same) instead of
    called: at n = 7 the calls cost more than their loops (loss + gradient 9 % faster at n = 7, 6 % at n = 19;
    bench/RESULTS.md, seventh session).
    """
    n = lam.shape[0]
    for s in range(1, NSTAGE):
        ts = t_stop if (hit and C[s] == 1.0) else t - C[s] * h_step
        p = _locate(dt, n_st, p, ts)
        th = (ts - dt[p]) / (dt[p + 1] - dt[p])  # as dense_eval_xth
        TS[s] = th
        PS[s] = p  # stage s's x came from forward step p at theta TS[s] (for the dL/dW quadrature)
        stage_state(lam, KL, h_step, s, LS[s])
        for i in range(n):
            XS[s, i] = dx[p, i] + th * (dc[p, 0, i] + th * (dc[p, 1, i] + th * (dc[p, 2, i] + th * dc[p, 3, i])))
        for i in range(n):
            ti = dz[p, 0, i] + th * (dz[p, 1, i] + th * (dz[p, 2, i] + th * (dz[p, 3, i] + th * dz[p, 4, i])))
            TH[s, i] = ti
            GS[s, i] = alpha[i] * (1.0 - ti * ti) * LS[s, i]
        rmatvec(W, GS[s], KL[s])
        for i in range(n):
            KL[s, i] -= d[i] * LS[s, i]
    return p


@leaf
def first_stage_from(lam, LS, XS, TH, PS, TS, r_lam, r_x):
    """After an accepted backward step: lam = LS[r_lam], its end value, which becomes row 0 of LS with x, tanh(z)
    and place (PS, TS) from row r_x, the stage at the same time (both integrators end a step on a stage at c = 1)."""
    PS[0] = PS[r_x]
    TS[0] = TS[r_x]
    for i in range(lam.shape[0]):
        lam[i] = LS[r_lam, i]
        LS[0, i] = LS[r_lam, i]
        XS[0, i] = XS[r_x, i]
        TH[0, i] = TH[r_x, i]


@leaf
def fsal_rows(lam, LS, KL, XS, TH, GS, PS, TS):
    """After an accepted Tsit5 backward step: lam = its end value, and the last stage (derivative and g included)
    becomes the next step's first."""
    last = NSTAGE - 1
    first_stage_from(lam, LS, XS, TH, PS, TS, last, last)
    for i in range(lam.shape[0]):
        KL[0, i] = KL[last, i]
        GS[0, i] = GS[last, i]


@kernel
def backward_one(W, alpha, d, t_obs, dl, rtol, atol, h_init, max_steps, beta,
                 dt, dx, dc, dz, n_st, gW, galpha, gd, Gq, Xq):
    """Integrate lam from t_T back to 0 and add this condition's parameter integrals to gW, galpha, gd.

    dl : (T, n) jumps dl/dx(t_k).  dt, dx, dc, dz, n_st : the forward dense store (x and tanh(W x - u) are both
    interpolated from it, so a stage costs one product, W^T g, plus the quadrature).  gW (n, n), galpha, gd (n,) are
    accumulated into (+=).  Gq, Xq (Q, n), Q = 0 or Q >= QROWS_STEP: with Q > 0 the dL/dW terms of accepted steps
    (see add_step_integrals) are buffered and added as one matrix product gW += Gq^T Xq whenever the buffers could
    overflow and at the end
    (one pass over gW per many steps instead of one per step: for large n, where gW does not fit in cache); with
    Q = 0 they are added to gW directly.  Returns status, n_accepted, n_rejected, n_fev, n_terms (rank-one dL/dW
    terms added).
    """
    n = dl.shape[1]
    T = t_obs.shape[0]
    lam = np.zeros(n)
    LS = np.empty((NSTAGE, n))   # stage values of lam
    KL = np.empty((NSTAGE, n))   # stage derivatives d lam / d tau
    XS = np.empty((NSTAGE, n))   # x at the stage times
    TH = np.empty((NSTAGE, n))   # tanh(z) at the stages
    GS = np.empty((NSTAGE, n))   # g at the stages
    err = np.empty(n)
    PS = np.zeros(NSTAGE, dtype=np.int64)  # forward step and theta of each stage's x
    TS = np.zeros(NSTAGE)
    QS = np.array([-1, 0, 0])  # open quadrature run: forward step, nodes; dL/dW terms so far
    QA = np.empty((QRUN, n))
    QG = np.empty((QRUN, n))
    QX = np.empty((QRUN, n))
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
        p = jump(W, alpha, d, dl[k], t, p, dt, dx, dc, dz, n_st, lam, LS, KL, XS, TH, GS, PS, TS)
        nfev += 1
        t_stop = t_obs[k - 1] if k > 0 else 0.0
        rejected_last = False
        err_prev = 1.0
        while t > t_stop:
            limit = step_limit(n_acc + n_rej, max_steps, h, t)
            if limit != st.SUCCESS:
                return limit, n_acc, n_rej, nfev, QS[2]
            hit = t - h <= t_stop
            h_step = t - t_stop if hit else h
            p = adjoint_stages(W, alpha, d, lam, h_step, t, t_stop, hit, dt, dx, dc, dz, n_st, p, LS, KL, XS, TH,
                               GS, PS, TS)
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
            if Gq.shape[0] > 0 and q + QROWS_STEP > Gq.shape[0]:
                q = flush_dw(gW, Gq, Xq, q)
            q = add_step_integrals(h_step, GS, XS, LS, TH, PS, TS, dt, dx, dc, QS, QA, QG, QX, gW, galpha, gd, Gq,
                                   Xq, q)
            if seg_start:  # (a step clipped to a short segment's end says nothing about the transient)
                h_first = h if hit else h_step
                seg_start = False
            t = t_stop if hit else t - h_step
            fsal_rows(lam, LS, KL, XS, TH, GS, PS, TS)
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
                return st.NONFINITE, n_acc, n_rej, nfev, QS[2]
    q = finish_integrals(dt, dx, dc, QS, QA, QG, QX, gW, Gq, Xq, q)
    flush_dw(gW, Gq, Xq, q)
    return status, n_acc, n_rej, nfev, QS[2]


@kernel
def grad_outputs(M, T, n, n_chunks):
    """The outputs of the loss-and-gradient drivers, zeroed: loss_c (M,), xobs (M, T, n), status (M,), stats (M, 7),
    and the per-chunk accumulators gW (n_chunks, n, n), galpha, gd (n_chunks, n)."""
    return (np.zeros(M), np.empty((M, T, n)), np.zeros(M, dtype=np.int64), np.zeros((M, 7), dtype=np.int64),
            np.zeros((n_chunks, n, n)), np.zeros((n_chunks, n)), np.zeros((n_chunks, n)))


def worker_scratch_shapes(rows, cap, n, defer_rows, stages):
    """Shapes of the scratch of one worker of the loss-and-gradient drivers, reused by the chunks it runs: a store
    for `rows` conditions of `cap` steps (dt, dx, dc, dz in lockstep.forward_block's layout, STORE_STAGES if
    `stages` else STORE_DENSE) and dL/dW buffers Gq, Xq (defer_rows, n).  The caller allocates them with a leading
    axis of one entry per worker (api._SCRATCH keeps them between calls, see there); their contents are undefined
    on entry and never read before they are written."""
    return ((rows, cap + 1), (rows, cap, n), (rows, cap, 0 if stages else NPOLY, n),
            (rows, cap, NQUAD if stages else NPOLY + 1, n), (defer_rows, n), (defer_rows, n))


@driver
def loss_grad_batch(W, alpha, d, U, t_obs, Y, mask, loss_kind, rtol, atol, artol, aatol, h_init,
                    max_steps, beta, n_chunks, max_dense_steps, adjoint_kind, workers, sdt, sdx, sdc, sdz, sGq, sXq):
    """Loss and gradient over all conditions, in parallel over fixed chunks of conditions.

    adjoint_kind: ADJOINT_INTERPOLATING (backward_one, artol and aatol its tolerances), ADJOINT_INTERPOLATING8
    (adjoint8.backward_one8, the same with DOP853 for lam) or ADJOINT_DISCRETE (discrete.discrete_backward_one;
    artol and aatol unused).

    U (M, n), Y and mask (M, T, n) (mask as float 0/1).  Conditions are split into n_chunks contiguous chunks
    (boundaries c * M // n_chunks, independent of the thread count); each chunk runs its conditions in order
    (forward with dense store, loss, backward) into its own accumulators, which the caller sums in chunk order.
    `workers` run contiguous ranges of the chunks in parallel, worker w with the scratch sdt[w] .. sXq[w] (shapes
    worker_scratch_shapes(1, cap, n, defer_rows, ...) each; cap the store's initial capacity in steps).  Buffers of
    defer_rows > 0 rows hold that many dL/dW terms per chunk and add them by matrix products (see backward_one).

    Returns loss_c (M,) unnormalised per-condition losses, gW (n_chunks, n, n), galpha, gd (n_chunks, n),
    xobs (M, T, n), status (M,), stats (M, 7) = forward accepted, rejected, fev, backward accepted, rejected, fev,
    dL/dW rank-one terms.
    """
    M, n = U.shape
    T = t_obs.shape[0]
    WT = np.ascontiguousarray(W.T)
    loss_c, xobs, status, stats, gW, galpha, gd = grad_outputs(M, T, n, n_chunks)
    discrete = adjoint_kind == ADJOINT_DISCRETE
    store = STORE_STAGES if discrete else STORE_DENSE
    for w in prange(workers):  # each worker runs a contiguous range of chunks with one scratch
        wdt, wdx, wdc, wdz, Gq, Xq = sdt[w], sdx[w], sdc[w], sdz[w], sGq[w], sXq[w]
        dl = np.empty((T, n))
        for ch in range(w * n_chunks // workers, (w + 1) * n_chunks // workers):
            _chunk_batch(W, WT, alpha, d, U, t_obs, Y, mask, loss_kind, rtol, atol, artol, aatol, h_init, max_steps,
                         beta, max_dense_steps, ch * M // n_chunks, (ch + 1) * M // n_chunks, adjoint_kind, store,
                         wdt[0], wdx[0], wdc[0], wdz[0], dl, Gq, Xq, loss_c, xobs, status, stats, gW[ch],
                         galpha[ch], gd[ch])
    return loss_c, gW, galpha, gd, xobs, status, stats


@kernel
def _chunk_batch(W, WT, alpha, d, U, t_obs, Y, mask, loss_kind, rtol, atol, artol, aatol, h_init, max_steps, beta,
                 max_dense_steps, c_lo, c_hi, adjoint_kind, store, dt, dx, dc, dz, dl, Gq, Xq, loss_c, xobs, status,
                 stats, gW, galpha, gd):
    """The conditions c_lo..c_hi-1 of loss_grad_batch one after the other (forward with the store in dt, dx, dc, dz,
    the caller's scratch, loss, backward), into the chunk's accumulators gW, galpha, gd."""
    for c in range(c_lo, c_hi):
        res = forward_one(WT, alpha, d, U[c], t_obs, rtol, atol, h_init, max_steps, beta, xobs[c],
                          store, dt, dx, dc, dz, max_dense_steps)
        dt = res[6]  # grown if the condition needed more room (kept for the chunk's later conditions)
        dx = res[7]
        dc = res[8]
        dz = res[9]
        stats[c, 0] = res[1]
        stats[c, 1] = res[2]
        stats[c, 2] = res[3]
        if res[0] != st.SUCCESS:
            status[c] = res[0]
            continue
        loss_c[c] = observation_loss(xobs[c], Y[c], mask[c], loss_kind, dl)
        if adjoint_kind == ADJOINT_DISCRETE:
            bres = discrete_backward_one(W, alpha, d, t_obs, dl, dt, dx, dz, res[4], gW, galpha, gd, Gq, Xq)
        elif adjoint_kind == ADJOINT_INTERPOLATING8:
            bres = backward_one8(W, alpha, d, t_obs, dl, artol, adjoint_atol(dl, artol, aatol), res[5],
                                 max_steps, beta, dt, dx, dc, dz, res[4], gW, galpha, gd, Gq, Xq)
        else:
            bres = backward_one(W, alpha, d, t_obs, dl, artol, adjoint_atol(dl, artol, aatol), res[5],
                                max_steps, beta, dt, dx, dc, dz, res[4], gW, galpha, gd, Gq, Xq)
        status[c] = bres[0]
        stats[c, 3] = bres[1]
        stats[c, 4] = bres[2]
        stats[c, 5] = bres[3]
        stats[c, 6] = bres[4]



# adjoint8 builds on this module's leaves, so it is imported last; the kernels above resolve backward_one8 when
# they are compiled, after both modules are loaded.
from .adjoint8 import backward_one8  # noqa: E402
