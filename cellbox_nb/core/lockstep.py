"""Blocks of conditions stepped in lockstep, so that each stage's products with W are one matrix product.

Same algorithm as forward_one / backward_one (the same tableau, controller, hard stops, jumps, dense store and
quadrature), but B conditions advance together: in each iteration every unfinished condition of the block takes
one trial step *of its own size*, and the B stage arguments of a stage are multiplied by W in one call to
``np.dot`` (BLAS), instead of B matrix-vector products that each stream W through the cache.  Step sizes stay per
condition, so a condition takes the same steps as alone; only the summation order inside the matrix product
differs (results agree with the per-condition kernels to rounding, about 1e-15 relative).

For large n a matrix-vector product runs at memory speed (W no longer fits in cache) and at a fraction of the
machine's matrix-product rate even when it does; a matrix product with B rows reuses each element of W B times.
Used by loss_grad_batch for n >= config.LOCKSTEP_MIN_N; the caller runs BLAS on one thread (the blocks themselves
run in parallel), and results do not depend on the thread count because blocks are fixed by M and n alone.
"""

import numpy as np
from numba import prange

from .._jit import driver, kernel, leaf
from . import status as st
from .adjoint import (ADJOINT_DISCRETE, ADJOINT_INTERPOLATING8, QROWS_STEP, QRUN, _locate, add_step_integrals,
                      adjoint_atol, finish_integrals, first_stage_from, fsal_rows, grad_outputs, jump,
                      observation_loss)
from .adjoint8 import FACTOR_POWER, NS8, QROWS_STEP8, add_step_integrals8, error_norm8, stage_sum8
from .controller import rms_error_norm, step_factor, step_limit
from .discrete import stage_args, stage_mu, stage_nu, step_adjoint_start
from .forward import (NQUAD, NSTAGE, STORE_DENSE, STORE_NONE, STORE_STAGES, dense_eval_th, dense_eval_xth,
                      error_estimate,
                      finish_last_step, initial_step, stage_state, store_step)
from .quadrature import flush_dw
from .rhs import adjoint_g_th, rhs_z, rhs_z_th
from .tableau import C, D8_B, D8_C, D8_NSTAGE
from .tanh import tanh


@leaf
def _gemm_rows(na):
    """Rows to hand to the matrix product for na running conditions: na, or na + 1 when na % 4 == 3 (the spare row
    holds stale, finite values whose products are ignored).  OpenBLAS's double-precision kernels handle row counts
    of 3 mod 4 poorly: at n = 300 on one thread, (7 x n) @ (n x n) took 27.3 us against 22.1 us for 8 rows, and 3
    rows 15.8 us against 11.3 us for 4 (bench/lockstep_block.py, bench/RESULTS.md).  Row i of a product depends
    only on row i of its left factor, so the spare row cannot touch the others."""
    return na + 1 if na % 4 == 3 else na


@kernel
def _grow_block(dt, dx, dc, dz, cap):
    """The block's dense store with room for `cap` steps per condition."""
    nb, m, n = dx.shape
    ndt = np.zeros((nb, cap + 1))
    ndx = np.empty((nb, cap, n))
    ndc = np.empty((nb, cap, dc.shape[2], n))
    ndz = np.empty((nb, cap, dz.shape[2], n))
    ndt[:, : m + 1] = dt
    ndx[:, :m] = dx
    ndc[:, :m] = dc
    ndz[:, :m] = dz
    return ndt, ndx, ndc, ndz


@leaf
def _fwd_stage_args(s, na, act, X, K, hst, Xg):
    """Row r of Xg = stage s's argument of running condition act[r] (forward_block).  (Leaves over the whole block:
    row views made in the kernel would cost reference counting, about a tenth of the forward's time at n = 99.)"""
    for r in range(na):
        b = act[r]
        stage_state(X[b], K[b], hst[b], s, Xg[r])


@leaf
def _fwd_stage_derivs(s, na, act, alpha, d, U, Zg, Xg, ZB, K, n_st, dz, TH7, store):
    """Stage s's arguments z = W X_s - u (from the product rows Zg) and derivatives of the running conditions,
    keeping tanh where the store needs it (STORE_STAGES: every stage, into the step's store slot; STORE_DENSE: the
    last stage, into TH7)."""
    n = Zg.shape[1]
    for r in range(na):
        b = act[r]
        for i in range(n):
            ZB[b, s, i] = Zg[r, i] - U[b, i]
        if store == STORE_STAGES:
            if s < NQUAD:
                rhs_z_th(alpha, d, ZB[b, s], Xg[r], K[b, s], dz[b, n_st[b], s])
            else:
                rhs_z_th(alpha, d, ZB[b, s], Xg[r], K[b, s], TH7[b])
        elif store == STORE_DENSE and s == NSTAGE - 1:
            rhs_z_th(alpha, d, ZB[b, s], Xg[r], K[b, s], TH7[b])
        else:
            rhs_z(alpha, d, ZB[b, s], Xg[r], K[b, s])


@leaf
def _fwd_accept(WT, na, act, t_obs, rtol, atol, beta, t, h, hst, hit, X, Xg, K, ZB, TH1, TH7, err, store, dt, dx, dc,
                dz, PD, n_st, k_obs, xobs, status, n_acc, n_rej, nfev, rejected_last, err_prev, done):
    """Error control and bookkeeping of the trial steps of the running conditions of forward_block: reject, or
    accept (store the step, FSAL, x(t_k) at an observation time).  Xg row r holds condition act[r]'s new state."""
    n = X.shape[1]
    T = t_obs.shape[0]
    dense = store == STORE_DENSE
    stages = store == STORE_STAGES
    for r in range(na):
        b = act[r]
        nfev[b] += NSTAGE - 1
        h_step = hst[b]
        error_estimate(K[b], h_step, err)
        en = rms_error_norm(err, X[b], Xg[r], rtol, atol)
        accept = en <= 1.0
        factor = step_factor(en, err_prev[b], rejected_last[b], accept, beta)
        if not accept:
            n_rej[b] += 1
            rejected_last[b] = True
            h[b] = h_step * factor
            continue
        t_end = t_obs[k_obs[b]] if hit[b] else t[b] + h_step
        if dense or stages:
            p = n_st[b]
            if dense:
                store_step(WT, X[b], K[b], ZB[b], TH1[b], h_step, p, dt[b], dx[b], dc[b], dz[b], PD[b])
            else:
                for i in range(n):
                    dx[b, p, i] = X[b, i]
                    dz[b, p, 0, i] = TH1[b, i]
            for i in range(n):
                TH1[b, i] = TH7[b, i]
            dt[b, p + 1] = t_end
            n_st[b] = p + 1
        t[b] = t_end
        finite = True
        for i in range(n):
            xi = Xg[r, i]
            X[b, i] = xi
            K[b, 0, i] = K[b, NSTAGE - 1, i]
            ZB[b, 0, i] = ZB[b, NSTAGE - 1, i]
            if not np.isfinite(xi):
                finite = False
        n_acc[b] += 1
        rejected_last[b] = False
        err_prev[b] = max(en, 1e-4)
        h_new = h_step * factor
        if hit[b]:
            h_new = max(h_new, h[b])
            for i in range(n):
                xobs[b, k_obs[b], i] = X[b, i]
            k_obs[b] += 1
            if k_obs[b] == T:
                done[b] = True
        h[b] = h_new
        if not finite:
            status[b] = st.NONFINITE
            done[b] = True


@kernel
def forward_block(WT, alpha, d, U, t_obs, rtol, atol, h_init, max_steps, beta, xobs, store, dt, dx, dc, dz,
                  max_dense_steps):
    """Forward pass of the conditions U (nb, n) in lockstep, storing what the adjoint needs of each.

    xobs (nb, T, n) output; store as forward_one's, into dt (nb, cap + 1), dx (nb, cap, n), dc (nb, cap, 4 or 0, n)
    and dz (nb, cap, 5 or 6, n), the caller's scratch (any contents), grown as needed (STORE_NONE: unused).
    Returns status, n_acc, n_rej, n_fev, n_st, h_next (all (nb,)) and the store dt (nb, S+1), dx (nb, S, n), dc, dz
    laid out as forward_one's (STORE_DENSE: (nb, S, 4, n) and (nb, S, 5, n); STORE_STAGES: (nb, S, 0, n) and
    (nb, S, 6, n)), one row per condition (S >= every n_st).
    """
    nb, n = U.shape
    X = np.zeros((nb, n))
    K = np.empty((nb, NSTAGE, n))
    ZB = np.empty((nb, NSTAGE, n))
    XN = np.empty((nb, n))
    err = np.empty(n)
    Xg = np.zeros((nb + 1, n))  # one spare row: see _gemm_rows
    Zg = np.zeros((nb + 1, n))
    t = np.zeros(nb)
    h = np.empty(nb)
    hst = np.empty(nb)
    hit = np.zeros(nb, dtype=np.bool_)
    status = np.zeros(nb, dtype=np.int64)
    n_acc = np.zeros(nb, dtype=np.int64)
    n_rej = np.zeros(nb, dtype=np.int64)
    nfev = np.zeros(nb, dtype=np.int64)
    n_st = np.zeros(nb, dtype=np.int64)
    k_obs = np.zeros(nb, dtype=np.int64)
    rejected_last = np.zeros(nb, dtype=np.bool_)
    err_prev = np.ones(nb)
    done = np.zeros(nb, dtype=np.bool_)
    act = np.empty(nb, dtype=np.int64)
    dense = store == STORE_DENSE
    stages = store == STORE_STAGES
    if dense or stages:
        for b in range(nb):
            dt[b, 0] = 0.0
    PD = np.empty((nb, 2, 4, n)) if dense else np.empty((nb, 2, 4, 0))  # see forward.store_step
    # STORE_STAGES: tanh at the stages goes straight into the store slot of the step (a rejected step's is
    # overwritten by the retry).  Both stores: tanh at x_p (stage 1, FSAL) is the last step's stage 7, kept in TH1
    # until the step is accepted, and the current step's stage 7 in TH7
    TH1 = np.empty((nb, n)) if (stages or dense) else np.empty((nb, 0))
    TH7 = np.empty((nb, n)) if (stages or dense) else np.empty((nb, 0))
    xobs[:] = np.nan
    for b in range(nb):
        for i in range(n):  # x(0) = 0: z = -u
            ZB[b, 0, i] = -U[b, i]
        rhs_z(alpha, d, ZB[b, 0], X[b], K[b, 0])
        if stages or dense:
            for i in range(n):
                TH1[b, i] = tanh(ZB[b, 0, i])
        nfev[b] = 1
        if h_init > 0.0:
            h[b] = min(h_init, t_obs[0])
        else:
            h[b] = initial_step(WT, alpha, d, U[b], X[b], K[b, 0], t_obs[0], rtol, atol, XN[b], err, Xg[b])
            nfev[b] += 1
    while True:
        na = 0
        for b in range(nb):
            if done[b]:
                continue
            status[b] = step_limit(n_acc[b] + n_rej[b], max_steps, h[b], t[b])
            if status[b] != st.SUCCESS:
                done[b] = True
                continue
            if (dense or stages) and n_st[b] == dx.shape[1]:  # room to store this step
                if n_st[b] >= max_dense_steps:
                    status[b] = st.DENSE_OVERFLOW
                    done[b] = True
                    continue
                dt, dx, dc, dz = _grow_block(dt, dx, dc, dz, min(2 * n_st[b], max_dense_steps))
            t_target = t_obs[k_obs[b]]
            hit[b] = t[b] + h[b] >= t_target
            hst[b] = t_target - t[b] if hit[b] else h[b]
            act[na] = b
            na += 1
        if na == 0:
            break
        for s in range(1, NSTAGE):
            _fwd_stage_args(s, na, act, X, K, hst, Xg)
            m = _gemm_rows(na)
            np.dot(Xg[:m], WT, Zg[:m])
            _fwd_stage_derivs(s, na, act, alpha, d, U, Zg, Xg, ZB, K, n_st, dz, TH7, store)
        # Xg rows now hold each condition's last stage argument, the step's end state (FSAL)
        _fwd_accept(WT, na, act, t_obs, rtol, atol, beta, t, h, hst, hit, X, Xg, K, ZB, TH1, TH7, err, store, dt, dx,
                    dc, dz, PD, n_st, k_obs, xobs, status, n_acc, n_rej, nfev, rejected_last, err_prev, done)
    for b in range(nb):
        if dense and n_st[b] > 0 and status[b] == st.SUCCESS:
            for i in range(n):
                err[i] = 0.0
            finish_last_step(WT, K[b, 0], TH1[b], n_st[b] - 1, dt[b], dz[b], PD[b], err, XN[b])
    return status, n_acc, n_rej, nfev, n_st, h, dt, dx, dc, dz


@leaf
def _jump(W, alpha, d, DL, k, b, t, p, dt, dx, dc, dz, n_st, lam, LS, KL, XS, TH, GS, PS, TS):
    """Add the jump dl/dx(t_k) of condition b to lam and recompute its first stage; returns the step index."""
    return jump(W, alpha, d, DL[b, k], t, p, dt[b], dx[b], dc[b], dz[b], n_st[b], lam[b], LS[b], KL[b], XS[b], TH[b],
                GS[b], PS[b], TS[b])


@leaf
def _bwd_stage_args(s, na, act, alpha, t_obs, seg, t, hst, hit, lam, KL, LS, dt, dx, dc, dz, n_st, p, XS, TH, GS,
                    PS, TS, Gg, eight):
    """Stage s of the running conditions act[:na] of backward_block up to the product: lam's stage value (Tsit5's
    tableau, DOP853's if eight), x and tanh(z) at the stage time from the dense store, g into GS and row r of Gg.
    (A leaf over the whole block, so the per-condition row views cost no reference counting: in the kernel they were
    a fifth of the backward's time at n = 99.)"""
    n = lam.shape[1]
    for r in range(na):
        b = act[r]
        if eight:
            stage_sum8(lam[b], KL[b], hst[b], s, LS[b, s])
            cs = D8_C[s]
        else:
            stage_state(lam[b], KL[b], hst[b], s, LS[b, s])
            cs = C[s]
        t_stop = t_obs[seg[b] - 1] if seg[b] > 0 else 0.0
        ts = t_stop if (hit[b] and cs == 1.0) else t[b] - cs * hst[b]
        p[b] = _locate(dt[b], n_st[b], p[b], ts)
        if eight and D8_B[s] == 0.0:  # not a quadrature node: x is not needed
            TS[b, s] = dense_eval_th(dt[b], dz[b], p[b], ts, TH[b, s])
        else:
            TS[b, s] = dense_eval_xth(dt[b], dx[b], dc[b], dz[b], p[b], ts, XS[b, s], TH[b, s])
        PS[b, s] = p[b]
        adjoint_g_th(alpha, TH[b, s], LS[b, s], GS[b, s])
        for i in range(n):
            Gg[r, i] = GS[b, s, i]


@leaf
def _bwd_first_args(na, act, need, alpha, LS, TH, GS, Gg, sel, nfev):
    """DOP853 blocks: the conditions of act[:na] whose first stage (the previous step's result, FSAL) still needs its
    derivative: g into GS[b, 0] and row m of Gg, b into sel[m]; returns their number m."""
    n = LS.shape[2]
    m = 0
    for r in range(na):
        b = act[r]
        if need[b]:
            need[b] = False
            adjoint_g_th(alpha, TH[b, 0], LS[b, 0], GS[b, 0])
            for i in range(n):
                Gg[m, i] = GS[b, 0, i]
            sel[m] = b
            nfev[b] += 1
            m += 1
    return m


@leaf
def _bwd_results8(na, act, lam, KL, LS, hst):
    """DOP853 blocks: each running condition's trial result lam + h sum b_s K_s into row D8_NSTAGE of LS."""
    for r in range(na):
        b = act[r]
        stage_sum8(lam[b], KL[b], hst[b], D8_NSTAGE, LS[b, D8_NSTAGE])


@leaf
def _bwd_stage_derivs(s, na, act, d, Rg, LS, KL):
    """Stage s's derivatives d lam / d tau = W^T g - d * lam of the running conditions, from the product rows Rg."""
    n = LS.shape[2]
    for r in range(na):
        b = act[r]
        for i in range(n):
            KL[b, s, i] = Rg[r, i] - d[i] * LS[b, s, i]


@leaf
def _bwd_accept(r0, na, act, W, alpha, d, t_obs, DL, rtol, atol, beta, seg, t, h, hst, hit, h_first, seg_start,
                lam, LS, KL, XS, TH, GS, PS, TS, err, dt, dx, dc, dz, n_st, p, QS, QA, QG, QX, QT, gW, galpha, gd,
                Gq, Xq, q, status, n_acc, n_rej, nfev, rejected_last, err_prev, done, eight, need):
    """Error control and bookkeeping of the trial steps of the running conditions act[r0:na] of backward_block:
    reject, or accept (parameter integrals, FSAL, jump at an observation time, end).  Returns (r, q): r = na when
    all are done, or the first condition whose accepted step's dL/dW terms would not fit in the buffers (nothing of
    it done yet; the caller flushes them and calls again from r), and the buffers' new count.  With eight (DOP853)
    an accepted step that does not end a segment leaves its result's derivative to the next iteration (need[b])."""
    n = lam.shape[1]
    trial_fev = D8_NSTAGE - 1 if eight else NSTAGE - 1
    rows_step = QROWS_STEP8 if eight else QROWS_STEP
    for r in range(r0, na):
        b = act[r]
        h_step = hst[b]
        if eight:
            en = error_norm8(KL[b], h_step, lam[b], LS[b, D8_NSTAGE], rtol, atol[b]) ** FACTOR_POWER
        else:
            error_estimate(KL[b], h_step, err)
            en = rms_error_norm(err, lam[b], LS[b, NSTAGE - 1], rtol, atol[b])
        accept = en <= 1.0
        factor = step_factor(en, err_prev[b], rejected_last[b], accept, beta)
        if not accept:
            nfev[b] += trial_fev
            n_rej[b] += 1
            rejected_last[b] = True
            h[b] = h_step * factor
            continue
        if Gq.shape[0] > 0 and q + rows_step > Gq.shape[0]:
            return r, q
        nfev[b] += trial_fev
        if eight:
            q = add_step_integrals8(h_step, GS[b], XS[b], LS[b], TH[b], PS[b], TS[b], dt[b], dx[b], dc[b], QS[b],
                                    QA[b], QG[b], QX[b], QT[b], gW, galpha, gd, Gq, Xq, q)
        else:
            q = add_step_integrals(h_step, GS[b], XS[b], LS[b], TH[b], PS[b], TS[b], dt[b], dx[b], dc[b], QS[b],
                                   QA[b], QG[b], QX[b], gW, galpha, gd, Gq, Xq, q)
        if seg_start[b]:
            h_first[b] = h[b] if hit[b] else h_step  # as backward_one
            seg_start[b] = False
        t_stop = t_obs[seg[b] - 1] if seg[b] > 0 else 0.0
        t[b] = t_stop if hit[b] else t[b] - h_step
        if eight:
            first_stage_from(lam[b], LS[b], XS[b], TH[b], PS[b], TS[b], D8_NSTAGE, D8_NSTAGE - 1)
        else:
            fsal_rows(lam[b], LS[b], KL[b], XS[b], TH[b], GS[b], PS[b], TS[b])
        n_acc[b] += 1
        rejected_last[b] = False
        err_prev[b] = max(en, 1e-4)
        h_new = h_step * factor
        h[b] = max(h_new, h[b]) if hit[b] else h_new
        finite = True
        for i in range(n):
            if not np.isfinite(lam[b, i]):
                finite = False
        if not finite:
            status[b] = st.NONFINITE
            done[b] = True
            continue
        if hit[b]:
            if seg[b] == 0:
                done[b] = True
            else:
                seg[b] -= 1
                h[b] = h_first[b]
                seg_start[b] = True
                p[b] = _jump(W, alpha, d, DL, seg[b], b, t[b], p[b], dt, dx, dc, dz, n_st, lam, LS, KL, XS, TH, GS, PS,
                             TS)
                nfev[b] += 1
                rejected_last[b] = False
                err_prev[b] = 1.0
        elif eight:
            need[b] = True
    return na, q


@kernel
def backward_block(W, alpha, d, t_obs, DL, rtol, atol, h_init, max_steps, beta, dt, dx, dc, dz, n_st, run,
                   gW, galpha, gd, Gq, Xq, eight):
    """Backward pass of a block in lockstep (backward_one for each condition b with run[b]; adjoint8.backward_one8
    if eight).

    DL (nb, T, n) jumps, atol and h_init (nb,) per condition, the dense store of forward_block.  gW, galpha, gd
    accumulate (+=); Gq, Xq as in backward_one (Q = 0: direct rank-one updates).  Returns status, n_acc, n_rej,
    n_fev, n_terms (nb,).  With eight (DOP853) the derivatives at the results of the accepted steps (the next
    steps' first stages) are one product for the block at the start of the next iteration.
    """
    nb, T, n = DL.shape
    ns = NS8 if eight else NSTAGE
    n_stage = D8_NSTAGE if eight else NSTAGE
    lam = np.zeros((nb, n))
    LS = np.empty((nb, ns, n))
    KL = np.empty((nb, ns, n))
    XS = np.empty((nb, ns, n))
    TH = np.empty((nb, ns, n))
    GS = np.empty((nb, ns, n))
    Gg = np.zeros((nb + 1, n))  # one spare row: see _gemm_rows
    Rg = np.zeros((nb + 1, n))
    err = np.empty(n)
    PS = np.zeros((nb, ns), dtype=np.int64)  # forward step and theta of each stage's x
    TS = np.zeros((nb, ns))
    QS = np.zeros((nb, 3), dtype=np.int64)  # per condition: open run's forward step and nodes, terms so far
    QS[:, 0] = -1
    QA = np.empty((nb, QRUN, n))
    QG = np.empty((nb, QRUN, n))
    QX = np.empty((nb, QRUN, n))
    QT = np.empty((nb, QRUN))
    need = np.zeros(nb, dtype=np.bool_)  # DOP853: first stage's derivative still to compute
    sel = np.empty(nb, dtype=np.int64)
    t = np.full(nb, t_obs[T - 1])
    h = h_init.copy()
    hst = np.empty(nb)
    hit = np.zeros(nb, dtype=np.bool_)
    seg = np.full(nb, T - 1, dtype=np.int64)
    p = n_st - 1
    status = np.zeros(nb, dtype=np.int64)
    n_acc = np.zeros(nb, dtype=np.int64)
    n_rej = np.zeros(nb, dtype=np.int64)
    nfev = np.zeros(nb, dtype=np.int64)
    rejected_last = np.zeros(nb, dtype=np.bool_)
    err_prev = np.ones(nb)
    h_first = np.zeros(nb)  # first accepted step after the latest jump (see backward_one)
    seg_start = np.ones(nb, dtype=np.bool_)
    done = ~run
    act = np.empty(nb, dtype=np.int64)
    q = 0
    for b in range(nb):
        if run[b]:
            p[b] = _jump(W, alpha, d, DL, T - 1, b, t[b], p[b], dt, dx, dc, dz, n_st, lam, LS, KL, XS, TH, GS, PS, TS)
            nfev[b] = 1
    while True:
        na = 0
        for b in range(nb):
            if done[b]:
                continue
            status[b] = step_limit(n_acc[b] + n_rej[b], max_steps, h[b], t[b])
            if status[b] != st.SUCCESS:
                done[b] = True
                continue
            t_stop = t_obs[seg[b] - 1] if seg[b] > 0 else 0.0
            hit[b] = t[b] - h[b] <= t_stop
            hst[b] = t[b] - t_stop if hit[b] else h[b]
            act[na] = b
            na += 1
        if na == 0:
            break
        if eight:
            m = _bwd_first_args(na, act, need, alpha, LS, TH, GS, Gg, sel, nfev)
            if m > 0:
                mg = _gemm_rows(m)
                np.dot(Gg[:mg], W, Rg[:mg])
                _bwd_stage_derivs(0, m, sel, d, Rg, LS, KL)
        for s in range(1, n_stage):
            _bwd_stage_args(s, na, act, alpha, t_obs, seg, t, hst, hit, lam, KL, LS, dt, dx, dc, dz, n_st, p, XS, TH,
                            GS, PS, TS, Gg, eight)
            m = _gemm_rows(na)
            np.dot(Gg[:m], W, Rg[:m])
            _bwd_stage_derivs(s, na, act, d, Rg, LS, KL)
        if eight:
            _bwd_results8(na, act, lam, KL, LS, hst)
        r = 0
        while r < na:  # stops where an accepted step's dL/dW terms would not fit in the buffers: flush, go on
            r, q = _bwd_accept(r, na, act, W, alpha, d, t_obs, DL, rtol, atol, beta, seg, t, h, hst, hit, h_first,
                               seg_start, lam, LS, KL, XS, TH, GS, PS, TS, err, dt, dx, dc, dz, n_st, p, QS, QA, QG,
                               QX, QT, gW, galpha, gd, Gq, Xq, q, status, n_acc, n_rej, nfev, rejected_last, err_prev,
                               done, eight, need)
            if r < na:
                q = flush_dw(gW, Gq, Xq, q)
    for b in range(nb):
        q = finish_integrals(dt[b], dx[b], dc[b], QS[b], QA[b], QG[b], QX[b], gW, Gq, Xq, q)
    flush_dw(gW, Gq, Xq, q)
    return status, n_acc, n_rej, nfev, QS[:, 2].copy()


@leaf
def _dis_start(j, live, n_st, dt, t_obs, kk, DL, lam, ACC, lam_out, alpha, d, dx, dz, XR, KS, act, pp):
    """Start iteration j of discrete_backward_block: each live condition b with a step left takes the adjoint of its
    step n_st[b] - 1 - j (jumps added where that step ends on an observation time, stage arguments rebuilt); lists
    them in act, their steps in pp, and returns how many."""
    nb = lam.shape[0]
    na = 0
    for b in range(nb):
        if not live[b] or j >= n_st[b]:
            continue
        p = n_st[b] - 1 - j
        while kk[b] >= 0 and dt[b, p + 1] == t_obs[kk[b]]:  # the forward pass lands on each t_k exactly
            for i in range(lam.shape[1]):
                lam[b, i] += DL[b, kk[b], i]
            kk[b] -= 1
        step_adjoint_start(lam[b], ACC[b], lam_out[b])
        stage_args(alpha, d, dt[b, p + 1] - dt[b, p], dx[b, p], dz[b, p], XR[b], KS)
        act[na] = b
        pp[na] = p
        na += 1
    return na


@leaf
def _dis_stage_nu(s, na, act, pp, alpha, dt, lam, ACC, dx, XR, dz, NU, Gg, galpha, gd):
    """Stage s of the running conditions' step adjoints before the product (discrete.stage_nu), g into row r of Gg."""
    for r in range(na):
        b = act[r]
        p = pp[r]
        stage_nu(alpha, dt[b, p + 1] - dt[b, p], s, lam[b], ACC[b], dx[b, p], XR[b], dz[b, p], NU[b], Gg[r], galpha,
                 gd)


@leaf
def _dis_stage_mu(r0, s, na, act, pp, d, Rg, Gg, NU, ACC, lam_out, dx, XR, gW, Gq, Xq, q):
    """Stage s after the product (discrete.stage_mu) for the running conditions act[r0:na], and its dL/dW term
    g_s X_s^T (into gW without buffers, else into the buffers).  Returns (r, q): r = na when done, or the first
    condition whose term found the buffers full (its stage not done yet; the caller flushes them and calls again)."""
    n = Rg.shape[1]
    Q = Gq.shape[0]
    for r in range(r0, na):
        if Q > 0 and q == Q:
            return r, q
        b = act[r]
        p = pp[r]
        stage_mu(d, s, Rg[r], NU[b], ACC[b], lam_out[b])
        xs = dx[b, p] if s == 0 else XR[b, s - 1]
        if Q == 0:
            for i in range(n):
                gi = Gg[r, i]
                for jj in range(n):
                    gW[i, jj] += gi * xs[jj]
        else:
            for i in range(n):
                Gq[q, i] = Gg[r, i]
                Xq[q, i] = xs[i]
            q += 1
    return na, q


@leaf
def _dis_finish(na, act, lam, lam_out, steps, status, live):
    """End of an iteration of discrete_backward_block: lam = dL/dx_p of each running condition."""
    n = lam.shape[1]
    for r in range(na):
        b = act[r]
        steps[b] += 1
        for i in range(n):
            lam[b, i] = lam_out[b, i]
            if not np.isfinite(lam_out[b, i]):
                status[b] = st.NONFINITE
                live[b] = False


@kernel
def discrete_backward_block(W, alpha, d, t_obs, DL, dt, dx, dz, n_st, run, gW, galpha, gd, Gq, Xq):
    """discrete.discrete_backward_one for the conditions of a block with run[b] True, in lockstep: in iteration j
    each condition b takes the adjoint of its step n_st[b] - 1 - j, and the products W^T g of one stage are one
    matrix product over the block.  Store as forward_block's with STORE_STAGES; DL (nb, T, n) jumps.  The dL/dW
    terms go through the buffers Gq, Xq (directly into gW without them).  Returns status, steps, rejected (0),
    products, dL/dW terms (all (nb,))."""
    nb, T, n = DL.shape
    lam = np.zeros((nb, n))
    lam_out = np.empty((nb, n))
    XR = np.empty((nb, NQUAD - 1, n))  # stage arguments X_2..X_6 of each condition's current step
    KS = np.empty((NQUAD, n))
    ACC = np.empty((nb, NQUAD, n))
    NU = np.empty((nb, NQUAD, n))
    Gg = np.zeros((nb + 1, n))  # one spare row: see _gemm_rows
    Rg = np.zeros((nb + 1, n))
    kk = np.full(nb, T - 1, dtype=np.int64)
    act = np.empty(nb, dtype=np.int64)
    pp = np.empty(nb, dtype=np.int64)
    status = np.zeros(nb, dtype=np.int64)
    steps = np.zeros(nb, dtype=np.int64)
    live = run.copy()
    q = 0
    j = 0
    while True:
        na = _dis_start(j, live, n_st, dt, t_obs, kk, DL, lam, ACC, lam_out, alpha, d, dx, dz, XR, KS, act, pp)
        if na == 0:
            break
        for s in range(NQUAD - 1, -1, -1):
            _dis_stage_nu(s, na, act, pp, alpha, dt, lam, ACC, dx, XR, dz, NU, Gg, galpha, gd)
            m = _gemm_rows(na)
            np.dot(Gg[:m], W, Rg[:m])  # rows g^T W = (W^T g)^T
            r = 0
            while r < na:  # stops where the buffers are full: flush, go on
                r, q = _dis_stage_mu(r, s, na, act, pp, d, Rg, Gg, NU, ACC, lam_out, dx, XR, gW, Gq, Xq, q)
                if r < na:
                    q = flush_dw(gW, Gq, Xq, q)
        _dis_finish(na, act, lam, lam_out, steps, status, live)
        j += 1
    flush_dw(gW, Gq, Xq, q)
    return status, steps, np.zeros(nb, dtype=np.int64), NQUAD * steps, NQUAD * steps


@leaf
def _chunk_blocks(M, n_chunks, ch, block):
    """Number of lockstep blocks of chunk ch (conditions ch * M // n_chunks onwards), each at most `block`."""
    size = (ch + 1) * M // n_chunks - ch * M // n_chunks
    return (size + block - 1) // block


@leaf
def _block_bounds(M, n_chunks, ch, n_sub, sb):
    """Conditions b_lo..b_hi-1 of block sb of chunk ch's n_sub blocks (sizes differ by at most one)."""
    c_lo = ch * M // n_chunks
    size = (ch + 1) * M // n_chunks - c_lo
    return c_lo + sb * size // n_sub, c_lo + (sb + 1) * size // n_sub


@driver
def loss_grad_lockstep(W, alpha, d, U, t_obs, Y, mask, loss_kind, rtol, atol, artol, aatol, h_init,
                       max_steps, beta, n_chunks, max_dense_steps, block, adjoint_kind, workers, sdt, sdx, sdc, sdz,
                       sGq, sXq):
    """loss_grad_batch with the conditions of each chunk stepped in lockstep blocks of at most `block` (same inputs
    and outputs; `workers` run contiguous ranges of the chunks in parallel, each chunk into its own accumulators,
    the blocks of a chunk one after the other in the worker's scratch store, so at most workers x block conditions
    hold a dense store at a time)."""
    M, n = U.shape
    T = t_obs.shape[0]
    WT = np.ascontiguousarray(W.T)
    loss_c, xobs, status, stats, gW, galpha, gd = grad_outputs(M, T, n, n_chunks)
    for w in prange(workers):  # each worker runs a contiguous range of chunks with its own scratch
        wdt, wdx, wdc, wdz, Gq, Xq = sdt[w], sdx[w], sdc[w], sdz[w], sGq[w], sXq[w]
        for ch in range(w * n_chunks // workers, (w + 1) * n_chunks // workers):
            n_sub = _chunk_blocks(M, n_chunks, ch, block)
            for sb in range(n_sub):
                b_lo, b_hi = _block_bounds(M, n_chunks, ch, n_sub, sb)
                _loss_grad_block(W, WT, alpha, d, U, t_obs, Y, mask, loss_kind, rtol, atol, artol, aatol, h_init,
                                 max_steps, beta, max_dense_steps, b_lo, b_hi, loss_c, xobs, status, stats,
                                 gW[ch], galpha[ch], gd[ch], Gq, Xq, adjoint_kind, wdt, wdx, wdc, wdz)
    return loss_c, gW, galpha, gd, xobs, status, stats


@kernel
def _loss_grad_block(W, WT, alpha, d, U, t_obs, Y, mask, loss_kind, rtol, atol, artol, aatol, h_init, max_steps,
                     beta, max_dense_steps, c_lo, c_hi, loss_c, xobs, status, stats, gW, galpha, gd,
                     Gq, Xq, adjoint_kind, wdt, wdx, wdc, wdz):
    """Forward, loss and backward of the conditions c_lo..c_hi-1 as one lockstep block; wdt, wdx, wdc, wdz: scratch
    for the store, at least c_hi - c_lo rows (see adjoint.worker_scratch_shapes)."""
    T = t_obs.shape[0]
    n = U.shape[1]
    nb = c_hi - c_lo
    discrete = adjoint_kind == ADJOINT_DISCRETE
    res = forward_block(WT, alpha, d, U[c_lo:c_hi], t_obs, rtol, atol, h_init, max_steps, beta,
                        xobs[c_lo:c_hi], STORE_STAGES if discrete else STORE_DENSE, wdt[:nb], wdx[:nb], wdc[:nb],
                        wdz[:nb], max_dense_steps)
    DL = np.zeros((nb, T, n))
    aat = np.empty(nb)
    run = np.zeros(nb, dtype=np.bool_)
    for b in range(nb):
        c = c_lo + b
        stats[c, 0] = res[1][b]
        stats[c, 1] = res[2][b]
        stats[c, 2] = res[3][b]
        if res[0][b] != st.SUCCESS:
            status[c] = res[0][b]
            continue
        loss_c[c] = observation_loss(xobs[c], Y[c], mask[c], loss_kind, DL[b])
        aat[b] = adjoint_atol(DL[b], artol, aatol)
        run[b] = True
    if discrete:
        bres = discrete_backward_block(W, alpha, d, t_obs, DL, res[6], res[7], res[9], res[4], run, gW, galpha, gd,
                                       Gq, Xq)
    else:
        bres = backward_block(W, alpha, d, t_obs, DL, artol, aat, res[5], max_steps, beta, res[6], res[7], res[8],
                              res[9], res[4], run, gW, galpha, gd, Gq, Xq, adjoint_kind == ADJOINT_INTERPOLATING8)
    for b in range(nb):
        c = c_lo + b
        if run[b]:
            status[c] = bres[0][b]
            stats[c, 3] = bres[1][b]
            stats[c, 4] = bres[2][b]
            stats[c, 5] = bres[3][b]
            stats[c, 6] = bres[4][b]


@driver
def solve_lockstep(W, alpha, d, U, t_obs, rtol, atol, h_init, max_steps, beta, n_chunks, block):
    """solve_batch with the conditions of each chunk stepped in lockstep blocks of at most `block` (same outputs)."""
    M, n = U.shape
    T = t_obs.shape[0]
    WT = np.ascontiguousarray(W.T)
    xobs = np.empty((M, T, n))
    status = np.zeros(M, dtype=np.int64)
    stats = np.zeros((M, 3), dtype=np.int64)
    none_dt = np.zeros((block, 1))  # no store
    none_dx = np.empty((block, 0, n))
    none_dc = np.empty((block, 0, 0, n))
    none_dz = np.empty((block, 0, 0, n))
    for ch in prange(n_chunks):
        n_sub = _chunk_blocks(M, n_chunks, ch, block)
        for sb in range(n_sub):
            b_lo, b_hi = _block_bounds(M, n_chunks, ch, n_sub, sb)
            res = forward_block(WT, alpha, d, U[b_lo:b_hi], t_obs, rtol, atol, h_init, max_steps, beta,
                                xobs[b_lo:b_hi], STORE_NONE, none_dt, none_dx, none_dc, none_dz, 0)
            for b in range(b_hi - b_lo):
                status[b_lo + b] = res[0][b]
                stats[b_lo + b, 0] = res[1][b]
                stats[b_lo + b, 1] = res[2][b]
                stats[b_lo + b, 2] = res[3][b]
    return xobs, status, stats
