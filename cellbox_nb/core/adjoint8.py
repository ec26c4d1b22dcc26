"""The interpolating backward pass with DOP853 for lam (the CPU's default integrator for lam).

The equations, the dense store it reads x(t) and tanh(z(t)) from, the jumps, the first step of each segment and the
seminorm are those of :func:`cellbox_nb.core.adjoint.backward_one` (which integrates lam with Tsit5); only the
integrator of lam and the quadrature nodes differ:

* DOP853 (tableau.D8_*): 12 stages, 8th order, the error norm of DOP853 (5th- and 3rd-order estimates combined,
  :func:`error_norm8`) and the step-size exponent -1/8 (the Tsit5 controller applied to err**(5/8)).  f at the step's
  result is the next step's first stage (FSAL) and is evaluated only once the step is accepted (its weight in both
  error estimates is zero) and not at all when the step ends on an observation time (where a jump follows and the
  first stage is recomputed anyway): 11 products W^T g a rejected step, 12 an accepted one.
* The parameter integrals are the quadrature of the augmented system: weights h b_s on the eight stages with a
  nonzero b_s (tableau.D8_QUAD, taken in increasing c).  Stage 12 and the step's result are both at c = 1, so the
  FSAL stage reuses stage 12's x and tanh(z).

Why: the backward's cost is its number of stages (products W^T g) plus its share of the dL/dW quadrature, and lam,
restarted by a jump at every observation time, costs Tsit5 about 70 steps (about 450 stages) on the benchmark
problems against the forward's 40; DOP853 needs about 27 steps (about 340 stages) for the same or a smaller gradient
error (bench/RESULTS.md, eighth session).  lockstep.backward_block runs the same integrator for blocks of conditions
(n >= LOCKSTEP_MIN_N); the CUDA backend has Tsit5 only, and ``adjoint_integrator="tsit5"`` asks for it on the CPU.
"""

import math

import numpy as np

from .._jit import kernel, leaf
from . import status as st
from .adjoint import QRUN, _emit_run, _locate, finish_integrals, first_stage_from, jump
from .controller import step_factor, step_limit
from .quadrature import flush_dw
from .rhs import adjoint_rhs_th, rmatvec
from .tableau import D8_A, D8_B, D8_C, D8_E3, D8_E5, D8_NSTAGE, D8_QUAD

NS8 = D8_NSTAGE + 1  # rows of the stage arrays: the 12 stages and the step's result (the next step's first stage)
NQ8 = D8_QUAD.shape[0]  # quadrature nodes a step (stages with b_s != 0)
QROWS_STEP8 = NQ8 * QRUN  # most dL/dW terms one accepted step can hand to the buffers
# the nonzero coefficients of each row of D8_A: their number and columns (padded with 0)
D8_NNZ = np.array([np.count_nonzero(D8_A[s]) for s in range(NS8)])
D8_NZ = np.zeros((NS8, NS8), dtype=np.int64)
for _s in range(NS8):
    D8_NZ[_s, :D8_NNZ[_s]] = np.flatnonzero(D8_A[_s])
FACTOR_POWER = 5.0 / 8.0  # the Tsit5 controller (exponent -1/5) on err**(5/8) has the exponent -1/8 of order 8
# the error weights of the eight stages with b_s != 0 as scalars (the others are zero; tests/test_tableau.py)
E5_0, E5_5, E5_6, E5_7, E5_8, E5_9, E5_10, E5_11 = (float(D8_E5[j]) for j in (0, 5, 6, 7, 8, 9, 10, 11))
E3_0, E3_5, E3_6, E3_7, E3_8, E3_9, E3_10, E3_11 = (float(D8_E3[j]) for j in (0, 5, 6, 7, 8, 9, 10, 11))


@leaf
def stage_sum8(y, K, h, s, out):
    """out = y + sum_{j<s} (h D8_A[s, j]) K[j] over the nonzero coefficients (s = 1..12), in increasing j, two
    terms a pass over the components (each pass vectorises; rows with a zero coefficient, which may hold a
    rejected step's values, are not read)."""
    n = y.shape[0]
    m = D8_NNZ[s]
    j0 = D8_NZ[s, 0]
    c0 = h * D8_A[s, j0]
    if m == 1:
        for i in range(n):
            out[i] = y[i] + c0 * K[j0, i]
        return
    j1 = D8_NZ[s, 1]
    c1 = h * D8_A[s, j1]
    for i in range(n):
        out[i] = y[i] + (c0 * K[j0, i] + c1 * K[j1, i])
    k = 2
    while k + 1 < m:
        j0 = D8_NZ[s, k]
        j1 = D8_NZ[s, k + 1]
        c0 = h * D8_A[s, j0]
        c1 = h * D8_A[s, j1]
        for i in range(n):
            out[i] += c0 * K[j0, i] + c1 * K[j1, i]
        k += 2
    if k < m:
        j0 = D8_NZ[s, k]
        c0 = h * D8_A[s, j0]
        for i in range(n):
            out[i] += c0 * K[j0, i]


@leaf
def error_norm8(K, h, y0, y1, rtol, atol):
    """DOP853's scaled error of a step: with e5, e3 the 5th- and 3rd-order estimates sum_j E_j K_j over
    sc = atol + rtol * max(|y0|, |y1|), |h| ||e5||^2 / sqrt(n (||e5||^2 + 0.01 ||e3||^2)) (0 when both vanish;
    NaN propagates).  Only the eight stages with a nonzero weight are read (D8_E5 and D8_E3 vanish on the others)."""
    n = y0.shape[0]
    e5 = 0.0
    e3 = 0.0
    for i in range(n):
        k0 = K[0, i]
        k5 = K[5, i]
        k6 = K[6, i]
        k7 = K[7, i]
        k8 = K[8, i]
        k9 = K[9, i]
        k10 = K[10, i]
        k11 = K[11, i]
        a5 = (((E5_0 * k0 + E5_5 * k5) + (E5_6 * k6 + E5_7 * k7))
              + ((E5_8 * k8 + E5_9 * k9) + (E5_10 * k10 + E5_11 * k11)))
        a3 = (((E3_0 * k0 + E3_5 * k5) + (E3_6 * k6 + E3_7 * k7))
              + ((E3_8 * k8 + E3_9 * k9) + (E3_10 * k10 + E3_11 * k11)))
        sc = atol + rtol * max(abs(y0[i]), abs(y1[i]))
        a5 /= sc
        a3 /= sc
        e5 += a5 * a5
        e3 += a3 * a3
    if e5 == 0.0 and e3 == 0.0:
        return 0.0
    return abs(h) * e5 / math.sqrt(n * (e5 + 0.01 * e3))


@leaf
def stages8(W, alpha, d, lam, h_step, t, t_stop, hit, dt, dx, dc, dz, n_st, p, LS, KL, XS, TH, GS, PS, TS):
    """Stages 2..12 of one backward step of size h_step from (t, lam), stage 1 in row 0 of the arrays; then row 12
    = the step's result lam + h sum b_s K_s (its derivative is left for the caller).  Stage s sits at
    t - D8_C[s] h_step (exactly t_stop at c = 1 on a step that lands on it); x is read back only at the quadrature
    nodes (stages 2..5 have b_s = 0 and need tanh(z) alone).  Returns the dense-store index of the last stage."""
    n = lam.shape[0]
    for s in range(1, D8_NSTAGE):
        ts = t_stop if (hit and D8_C[s] == 1.0) else t - D8_C[s] * h_step
        p = _locate(dt, n_st, p, ts)
        # dense_eval_xth / dense_eval_th and adjoint_g_th written out, as in adjoint.adjoint_stages: calling them
        # (bitwise the same) cost 5 % of loss + gradient at n = 7, 1.4 % at 19, 7 % at 32 (bench/ab_versions.py)
        th = (ts - dt[p]) / (dt[p + 1] - dt[p])
        TS[s] = th
        PS[s] = p
        stage_sum8(lam, KL, h_step, s, LS[s])
        if D8_B[s] != 0.0:  # x only at the quadrature nodes
            for i in range(n):
                XS[s, i] = dx[p, i] + th * (dc[p, 0, i] + th * (dc[p, 1, i] + th * (dc[p, 2, i] + th * dc[p, 3, i])))
        for i in range(n):
            ti = dz[p, 0, i] + th * (dz[p, 1, i] + th * (dz[p, 2, i] + th * (dz[p, 3, i] + th * dz[p, 4, i])))
            TH[s, i] = ti
            GS[s, i] = alpha[i] * (1.0 - ti * ti) * LS[s, i]
        rmatvec(W, GS[s], KL[s])
        for i in range(n):
            KL[s, i] -= d[i] * LS[s, i]
    stage_sum8(lam, KL, h_step, D8_NSTAGE, LS[D8_NSTAGE])
    return p


@leaf
def _add_node(c, g, x, th, QS, QA, QG, QX, QT):
    """Add the node c g x^T (theta th in the open run's forward step) to the open run: kept as it is while the run
    has at most QRUN nodes; at the (QRUN + 1)-th the run becomes its moments QA[j] = sum c theta**j g (see
    adjoint._emit_run), which later nodes are added to."""
    n = g.shape[0]
    r = QS[1]
    if r < QRUN:
        for i in range(n):
            QG[r, i] = c * g[i]
            QX[r, i] = x[i]
        QT[r] = th
    else:
        if r == QRUN:  # the kept nodes become moments
            for j in range(QRUN):
                for i in range(n):
                    QA[j, i] = 0.0
            for k in range(QRUN):
                w = 1.0
                for j in range(QRUN):
                    for i in range(n):
                        QA[j, i] += w * QG[k, i]
                    w *= QT[k]
        w = c
        for j in range(QRUN):
            for i in range(n):
                QA[j, i] += w * g[i]
            w *= th
    QS[1] = r + 1


@leaf
def add_step_integrals8(h, GS, XS, LS, TH, PS, TS, dt, dx, dc, QS, QA, QG, QX, QT, gW, galpha, gd, Gq, Xq, q):
    """One accepted step's parameter integrals, weights h b_s on its eight nodes (as adjoint.add_step_integrals
    for Tsit5's six): straight into gW without buffers (Q = 0), else through the runs of nodes per forward step
    into the buffers Gq, Xq; returns the new number of buffered terms."""
    n = GS.shape[1]
    if Gq.shape[0] == 0:
        QS[2] += NQ8
        for i in range(n):
            c0 = (h * D8_B[0]) * GS[0, i]
            c5 = (h * D8_B[5]) * GS[5, i]
            c6 = (h * D8_B[6]) * GS[6, i]
            c7 = (h * D8_B[7]) * GS[7, i]
            c8 = (h * D8_B[8]) * GS[8, i]
            c9 = (h * D8_B[9]) * GS[9, i]
            c10 = (h * D8_B[10]) * GS[10, i]
            c11 = (h * D8_B[11]) * GS[11, i]
            for j in range(n):
                gW[i, j] += (((c0 * XS[0, j] + c5 * XS[5, j]) + (c6 * XS[6, j] + c7 * XS[7, j]))
                             + ((c8 * XS[8, j] + c9 * XS[9, j]) + (c10 * XS[10, j] + c11 * XS[11, j])))
    else:
        for k in range(NQ8):
            s = D8_QUAD[k]
            if PS[s] != QS[0]:
                q = _emit_run(dt, dx, dc, QS, QA, QG, QX, Gq, Xq, q)
                QS[0] = PS[s]
            _add_node(h * D8_B[s], GS[s], XS[s], TS[s], QS, QA, QG, QX, QT)
    for k in range(NQ8):  # node by node, so each pass vectorises
        s = D8_QUAD[k]
        c = h * D8_B[s]
        for i in range(n):
            cl = c * LS[s, i]
            galpha[i] += cl * TH[s, i]
            gd[i] -= cl * XS[s, i]
    return q


@kernel
def backward_one8(W, alpha, d, t_obs, dl, rtol, atol, h_init, max_steps, beta,
                  dt, dx, dc, dz, n_st, gW, galpha, gd, Gq, Xq):
    """As :func:`cellbox_nb.core.adjoint.backward_one`, with lam integrated by DOP853 (module docstring); Gq, Xq
    hold 0 or at least QROWS_STEP8 rows.  Returns status, n_accepted, n_rejected, n_fev, n_terms."""
    n = dl.shape[1]
    T = t_obs.shape[0]
    lam = np.zeros(n)
    LS = np.empty((NS8, n))
    KL = np.empty((NS8, n))
    XS = np.empty((NS8, n))
    TH = np.empty((NS8, n))
    GS = np.empty((NS8, n))
    PS = np.zeros(NS8, dtype=np.int64)
    TS = np.zeros(NS8)
    QS = np.array([-1, 0, 0])
    QA = np.empty((QRUN, n))
    QG = np.empty((QRUN, n))
    QX = np.empty((QRUN, n))
    QT = np.empty(QRUN)
    q = 0
    n_acc = 0
    n_rej = 0
    nfev = 0
    t = t_obs[T - 1]
    p = n_st - 1
    h = h_init
    h_first = 0.0  # each segment after the first starts with the previous segment's first step (as backward_one)
    for k in range(T - 1, -1, -1):
        if h_first > 0.0:
            h = h_first
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
            p = stages8(W, alpha, d, lam, h_step, t, t_stop, hit, dt, dx, dc, dz, n_st, p, LS, KL, XS, TH, GS,
                        PS, TS)
            nfev += D8_NSTAGE - 1
            en = error_norm8(KL, h_step, lam, LS[D8_NSTAGE], rtol, atol) ** FACTOR_POWER
            accept = en <= 1.0
            factor = step_factor(en, err_prev, rejected_last, accept, beta)
            if not accept:
                n_rej += 1
                rejected_last = True
                h = h_step * factor
                continue
            if Gq.shape[0] > 0 and q + QROWS_STEP8 > Gq.shape[0]:
                q = flush_dw(gW, Gq, Xq, q)
            q = add_step_integrals8(h_step, GS, XS, LS, TH, PS, TS, dt, dx, dc, QS, QA, QG, QX, QT, gW, galpha, gd,
                                    Gq, Xq, q)
            if seg_start:
                h_first = h if hit else h_step  # as backward_one
                seg_start = False
            t = t_stop if hit else t - h_step
            first_stage_from(lam, LS, XS, TH, PS, TS, D8_NSTAGE, D8_NSTAGE - 1)  # stage 12 is at the result's time
            n_acc += 1
            finite = True
            for i in range(n):
                if not np.isfinite(lam[i]):
                    finite = False
            if not finite:
                return st.NONFINITE, n_acc, n_rej, nfev, QS[2]
            if not hit:  # FSAL: the derivative at the result is the next step's first stage
                adjoint_rhs_th(W, alpha, d, TH[0], LS[0], GS[0], KL[0])
                nfev += 1
            rejected_last = False
            err_prev = max(en, 1e-4)
            h_new = h_step * factor
            h = max(h_new, h) if hit else h_new
    q = finish_integrals(dt, dx, dc, QS, QA, QG, QX, gW, Gq, Xq, q)
    flush_dw(gW, Gq, Xq, q)
    return st.SUCCESS, n_acc, n_rej, nfev, QS[2]
