"""CUDA kernels, built by a factory for a (tile, threads-per-block, dtype) so tests can use tiny blocks.

Layouts (M conditions, n nodes): states X (M, n); stages K (7, M, n); per-condition scalars (M,).
Elementwise kernels use a 1-D grid over the M*n entries; per-condition kernels one thread per condition.
"""

import math

import numpy as np
from numba import cuda

from ..core import status as st
from ..core.controller import rms_error_norm_py, step_factor_py, step_limit_py
from ..core.forward import NSTAGE, ZMID_K7, dense_weights_py, tanh_quartic_py
from ..core.tableau import A, B, C, E, dense_weights as _dense_weights

BMID = _dense_weights(0.5)  # b_i(1/2): x(t_p + h/2) = x_p + h sum_i BMID[i] k_i

_CACHE = {}


def build(tile, tpb, dtype=np.float64):
    """Compile (once) and return the kernel set for this configuration as a dict."""
    key = (tile, tpb, np.dtype(dtype).name)
    if key in _CACHE:
        return _CACHE[key]
    nb_dtype = {"float64": "float64", "float32": "float32"}[np.dtype(dtype).name]
    TILE = tile

    step_factor = cuda.jit(device=True)(step_factor_py)
    step_limit = cuda.jit(device=True)(step_limit_py)
    rms_error_norm = cuda.jit(device=True)(rms_error_norm_py)
    dense_weights = cuda.jit(device=True)(dense_weights_py)
    tanh_quartic = cuda.jit(device=True)(tanh_quartic_py)

    @cuda.jit
    def gemm(Am, Bm, Cm, ta, tb, beta):
        """C = op(A) @ op(B) + beta * C, op = transpose when the flag is 1; shared-memory tiles of TILE x TILE."""
        sA = cuda.shared.array((TILE, TILE), dtype=nb_dtype)
        sB = cuda.shared.array((TILE, TILE), dtype=nb_dtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        row = cuda.blockIdx.y * TILE + ty
        col = cuda.blockIdx.x * TILE + tx
        m = Cm.shape[0]
        p = Cm.shape[1]
        K = Am.shape[0] if ta else Am.shape[1]
        acc = 0.0
        for k0 in range(0, K, TILE):
            ka = k0 + tx
            if row < m and ka < K:
                sA[ty, tx] = Am[ka, row] if ta else Am[row, ka]
            else:
                sA[ty, tx] = 0.0
            kb = k0 + ty
            if kb < K and col < p:
                sB[ty, tx] = Bm[col, kb] if tb else Bm[kb, col]
            else:
                sB[ty, tx] = 0.0
            cuda.syncthreads()
            for kk in range(TILE):
                acc += sA[ty, kk] * sB[kk, tx]
            cuda.syncthreads()
        if row < m and col < p:
            if beta != 0.0:
                Cm[row, col] = acc + beta * Cm[row, col]
            else:
                Cm[row, col] = acc

    # ---------------------------------------------------------------- forward -------------------------------
    @cuda.jit
    def rhs_init(U, alpha, d, X, K0):
        """K0 = f(X) given Z = X W^T already in K0 (in place): K0 = alpha tanh(K0 - U) - d X."""
        idx = cuda.grid(1)
        M, n = X.shape
        if idx < M * n:
            c = idx // n
            i = idx - c * n
            K0[c, i] = alpha[i] * math.tanh(K0[c, i] - U[c, i]) - d[i] * X[c, i]

    @cuda.jit
    def stage_state(X, K, hs, s, Xs):
        """Xs = X + hs[c] * sum_{j<s} A[s, j] K[j]."""
        idx = cuda.grid(1)
        M, n = X.shape
        if idx < M * n:
            c = idx // n
            i = idx - c * n
            acc = 0.0
            for j in range(s):
                acc += A[s, j] * K[j, c, i]
            Xs[c, i] = X[c, i] + hs[c] * acc

    @cuda.jit
    def initial_step(X1, K0, K1, t0, rtol, atol, h, n_fev):
        """Hairer's rule from x0 = 0 (as core.forward.initial_step): needs K0 = f(0), K1 = f(h0 K0)."""
        c = cuda.grid(1)
        M, n = K0.shape
        if c < M:
            d1 = 0.0
            for i in range(n):
                d1 += (K0[c, i] / atol) ** 2
            d1 = math.sqrt(d1 / n)
            if not math.isfinite(d1):  # a square overflowed (atol below about 1e-154): divide after the sum
                d1 = 0.0
                for i in range(n):
                    d1 += K0[c, i] ** 2
                d1 = math.sqrt(d1 / n) / atol
            h0 = min(1e-6, t0)
            d2 = 0.0
            for i in range(n):
                d2 += ((K1[c, i] - K0[c, i]) / atol) ** 2
            d2 = math.sqrt(d2 / n)
            if not math.isfinite(d2):
                d2 = 0.0
                for i in range(n):
                    d2 += (K1[c, i] - K0[c, i]) ** 2
                d2 = math.sqrt(d2 / n) / atol
            d2 /= h0
            if d1 <= 1e-15 and d2 <= 1e-15:
                h1 = max(1e-6, h0 * 1e-3)
            else:
                h1 = (0.01 / max(d1, d2)) ** (1.0 / 5.0)
            h[c] = min(100.0 * h0, h1, t0)
            n_fev[c] += 1

    @cuda.jit
    def scale_into(K0, t0, X1):
        """X1 = h0 * K0 with h0 = min(1e-6, t0): the trial state of the initial-step rule from x0 = 0."""
        idx = cuda.grid(1)
        M, n = K0.shape
        if idx < M * n:
            c = idx // n
            i = idx - c * n
            X1[c, i] = min(1e-6, t0) * K0[c, i]

    @cuda.jit
    def plan(active, status, t, h, hs, hit, kobs, t_obs, nacc, nrej, max_steps, nonfinite):
        """Per condition: stop on max steps / underflow / non-finite, else the step to try (clipped to t_k)."""
        c = cuda.grid(1)
        if c < t.shape[0]:
            hs[c] = 0.0
            if not active[c]:
                return
            if nonfinite[c]:
                status[c] = st.NONFINITE
                active[c] = 0
                return
            limit = step_limit(nacc[c] + nrej[c], max_steps, h[c], t[c])
            if limit != st.SUCCESS:
                status[c] = limit
                active[c] = 0
                return
            target = t_obs[kobs[c]]
            hit[c] = 1 if t[c] + h[c] >= target else 0
            hs[c] = target - t[c] if hit[c] else h[c]

    @cuda.jit
    def error_estimate(K, hs, ERR):
        """ERR = hs[c] * sum_j E[j] K[j]."""
        idx = cuda.grid(1)
        M, n = ERR.shape
        if idx < M * n:
            c = idx // n
            i = idx - c * n
            acc = 0.0
            for j in range(NSTAGE):
                acc += E[j] * K[j, c, i]
            ERR[c, i] = hs[c] * acc

    @cuda.jit
    def control(active, ERR, Y0, Y1, rtol, atol, beta, t, h, hs, hit, kobs, t_obs, nacc, nrej, n_fev,
                rejected_last, err_prev, accepted, obs_slot, nst, dt, store):
        """Per condition: accept or reject the step just tried; update t, h, counters; mark obs hits."""
        c = cuda.grid(1)
        if c < t.shape[0]:
            accepted[c] = 0
            obs_slot[c] = -1
            if not active[c]:
                return
            n_fev[c] += NSTAGE - 1
            en = rms_error_norm(ERR[c], Y0[c], Y1[c], rtol, atol)
            accept = en <= 1.0
            factor = step_factor(en, err_prev[c], rejected_last[c], accept, beta)
            if not accept:
                nrej[c] += 1
                rejected_last[c] = 1
                h[c] = hs[c] * factor
                return
            accepted[c] = 1
            t_new = t_obs[kobs[c]] if hit[c] else t[c] + hs[c]
            if store:
                dt[c, nst[c] + 1] = t_new
            nst[c] += 1
            t[c] = t_new
            nacc[c] += 1
            rejected_last[c] = 0
            err_prev[c] = max(en, 1e-4)
            h_new = hs[c] * factor
            if hit[c]:
                h_new = max(h_new, h[c])
                obs_slot[c] = kobs[c]
                kobs[c] += 1
                if kobs[c] >= t_obs.shape[0]:
                    active[c] = 0
            h[c] = h_new

    @cuda.jit
    def commit(accepted, obs_slot, nst, X, Xs, K, xobs, nonfinite, store, dx, dk):
        """Accepted conditions: store the step (dense output), X <- Xs, FSAL, record x(t_k)."""
        idx = cuda.grid(1)
        M, n = X.shape
        if idx < M * n:
            c = idx // n
            i = idx - c * n
            if accepted[c]:
                if store:
                    slot = nst[c] - 1
                    dx[slot, c, i] = X[c, i]
                    for s in range(NSTAGE):
                        dk[slot, s, c, i] = K[s, c, i]
                v = Xs[c, i]
                X[c, i] = v
                K[0, c, i] = K[NSTAGE - 1, c, i]
                if obs_slot[c] >= 0:
                    xobs[c, obs_slot[c], i] = v
                if not math.isfinite(v):
                    nonfinite[c] = 1

    # ---------------------------------------------------------------- backward ------------------------------
    @cuda.jit
    def adj_plan(active, status, t, h, hs, hit, seg, t_obs, nacc, nrej, max_steps):
        c = cuda.grid(1)
        if c < t.shape[0]:
            hs[c] = 0.0
            if not active[c]:
                return
            limit = step_limit(nacc[c] + nrej[c], max_steps, h[c], t[c])
            if limit != st.SUCCESS:
                status[c] = limit
                active[c] = 0
                return
            k = seg[c]
            t_stop = t_obs[k - 1] if k > 0 else 0.0
            hit[c] = 1 if t[c] - h[c] <= t_stop else 0
            hs[c] = t[c] - t_stop if hit[c] else h[c]

    @cuda.jit
    def adj_stage_time(active, t, hs, hit, seg, t_obs, s, dt, nst, ptr, theta, hstep_fwd):
        """Per condition: time of stage s, the stored forward step containing it, and theta in that step."""
        c = cuda.grid(1)
        if c < t.shape[0]:
            if not active[c]:
                theta[c] = 0.0
                hstep_fwd[c] = 0.0
                return
            if s == 0:
                ts = t[c]
            else:
                k = seg[c]
                t_stop = t_obs[k - 1] if k > 0 else 0.0
                ts = t_stop if (hit[c] and C[s] == 1.0) else t[c] - C[s] * hs[c]
            p = ptr[c]
            n_st = nst[c]
            while p > 0 and ts < dt[c, p]:
                p -= 1
            while p < n_st - 1 and ts > dt[c, p + 1]:
                p += 1
            ptr[c] = p
            hf = dt[c, p + 1] - dt[c, p]
            hstep_fwd[c] = hf
            theta[c] = (ts - dt[c, p]) / hf

    # ---------------------------------------------------------------- tanh interpolant ----------------------
    # The same quartic per stored step as core.forward.tanh_interpolant, built after the forward pass in its own
    # store dth (5, cap, M, n) without other scratch: rows 0 and 1 first hold k_1 and m_p = sum_{i<=6} b_i(1/2) k_i of
    # every stored step, the products x_p W^T, k_1 W^T, m_p W^T go to rows 2, 3, 4, and th_coeffs then overwrites
    # each step's five rows with its coefficients (one thread per component, steps in order, so a step's inputs are
    # read before they are overwritten).  Equal to the CPU's stage-argument differences to rounding.
    @cuda.jit
    def th_prep(nst, dk, dth):
        """dth[0, p] = k_1 and dth[1, p] = sum_{i<=6} b_i(1/2) k_i of every stored step p < nst[c]; zero in the
        slots past the last step, which the products over all slots read (device memory is not zeroed)."""
        idx = cuda.grid(1)
        M = nst.shape[0]
        n = dth.shape[3]
        if idx < M * n:
            c = idx // n
            i = idx - c * n
            for p in range(nst[c]):
                dth[0, p, c, i] = dk[p, 0, c, i]
                acc = 0.0
                for q in range(NSTAGE - 1):
                    acc += BMID[q] * dk[p, q, c, i]
                dth[1, p, c, i] = acc
            for p in range(nst[c], dth.shape[1]):
                dth[0, p, c, i] = 0.0
                dth[1, p, c, i] = 0.0

    @cuda.jit
    def th_coeffs(nst, dt, U, ZE, WKE, dth):
        """dth[:, p]: tanh(z) at the start of stored step p and its quartic's coefficients in theta, from rows 2, 3, 4
        = x_p W^T, k_1 W^T, m_p W^T of every step and ZE, WKE = x W^T, k_7 W^T at the last one's end."""
        idx = cuda.grid(1)
        M, n = U.shape
        if idx < M * n:
            c = idx // n
            i = idx - c * n
            u = U[c, i]
            n_st = nst[c]
            t0 = math.tanh(dth[2, 0, c, i] - u) if n_st > 0 else 0.0
            for p in range(n_st):
                h = dt[c, p + 1] - dt[c, p]
                z0 = dth[2, p, c, i] - u
                wk1 = dth[3, p, c, i]
                wm = dth[4, p, c, i]
                if p + 1 < n_st:
                    z1 = dth[2, p + 1, c, i] - u
                    wk7 = dth[3, p + 1, c, i]
                else:
                    z1 = ZE[c, i] - u
                    wk7 = WKE[c, i]
                t1 = math.tanh(z1)
                tm = math.tanh(z0 + h * wm + h * ZMID_K7 * wk7)
                a0, a1, a2, a3, a4 = tanh_quartic(h, t0, wk1, t1, wk7, tm)
                dth[0, p, c, i] = a0
                dth[1, p, c, i] = a1
                dth[2, p, c, i] = a2
                dth[3, p, c, i] = a3
                dth[4, p, c, i] = a4
                t0 = t1

    @cuda.jit
    def dense_eval(active, ptr, theta, hstep_fwd, dx, dk, dth, XS, TH, s):
        """XS[s] = x and TH[s] = tanh(z) at the stage time, from the stored forward step ptr[c] (Tsit5's continuous
        extension and the step's tanh quartic); zero for inactive conditions, so that they add exact zeros to the
        products that mix conditions."""
        idx = cuda.grid(1)
        M = ptr.shape[0]
        n = XS.shape[2]
        if idx < M * n:
            c = idx // n
            i = idx - c * n
            if not active[c]:
                XS[s, c, i] = 0.0
                TH[s, c, i] = 0.0
                return
            w = cuda.local.array(NSTAGE, dtype=nb_dtype)
            dense_weights(theta[c], w)
            p = ptr[c]
            acc = 0.0
            for q in range(NSTAGE):
                acc += w[q] * dk[p, q, c, i]
            XS[s, c, i] = dx[p, c, i] + hstep_fwd[c] * acc
            th = theta[c]
            TH[s, c, i] = dth[0, p, c, i] + th * (dth[1, p, c, i] + th * (dth[2, p, c, i] + th * (
                dth[3, p, c, i] + th * dth[4, p, c, i])))

    @cuda.jit
    def adj_stage_lam(lam, KL, hs, s, LS):
        idx = cuda.grid(1)
        M, n = lam.shape
        if idx < M * n:
            c = idx // n
            i = idx - c * n
            acc = 0.0
            for j in range(s):
                acc += A[s, j] * KL[j, c, i]
            LS[s, c, i] = lam[c, i] + hs[c] * acc

    @cuda.jit
    def adj_g(alpha, LS, s, TH, GS):
        """GS[s] = alpha (1 - TH[s]^2) LS[s]."""
        idx = cuda.grid(1)
        M = LS.shape[1]
        n = LS.shape[2]
        if idx < M * n:
            c = idx // n
            i = idx - c * n
            ti = TH[s, c, i]
            GS[s, c, i] = alpha[i] * (1.0 - ti * ti) * LS[s, c, i]

    @cuda.jit
    def adj_finish(R, d, LS, s, KL):
        """KL[s] = R - d LS[s], R = GS[s] W."""
        idx = cuda.grid(1)
        M, n = R.shape
        if idx < M * n:
            c = idx // n
            i = idx - c * n
            KL[s, c, i] = R[c, i] - d[i] * LS[s, c, i]

    @cuda.jit
    def adj_control(active, ERR, LS, lam, rtol, atol, beta, t, h, hs, hit, seg, t_obs, nacc, nrej, n_fev,
                    rejected_last, err_prev, accepted, weight, jump, nonfinite, h_first, seg_start):
        c = cuda.grid(1)
        if c < t.shape[0]:
            accepted[c] = 0
            jump[c] = -1
            weight[c] = 0.0
            if not active[c]:
                return
            n_fev[c] += NSTAGE - 1
            en = rms_error_norm(ERR[c], lam[c], LS[NSTAGE - 1, c], rtol, atol[c])
            accept = en <= 1.0
            factor = step_factor(en, err_prev[c], rejected_last[c], accept, beta)
            if not accept:
                nrej[c] += 1
                rejected_last[c] = 1
                h[c] = hs[c] * factor
                return
            accepted[c] = 1
            weight[c] = hs[c]
            if seg_start[c]:  # first accepted step after a jump: the next segment starts with it (the
                h_first[c] = h[c] if hit[c] else hs[c]  # proposal if it was clipped to the segment's end)
                seg_start[c] = 0
            k = seg[c]
            t_stop = t_obs[k - 1] if k > 0 else 0.0
            t[c] = t_stop if hit[c] else t[c] - hs[c]
            nacc[c] += 1
            rejected_last[c] = 0
            err_prev[c] = max(en, 1e-4)
            h_new = hs[c] * factor
            h[c] = max(h_new, h[c]) if hit[c] else h_new
            if hit[c]:
                if k > 0:
                    seg[c] = k - 1
                    jump[c] = k - 1
                    rejected_last[c] = 0
                    err_prev[c] = 1.0
                    h[c] = h_first[c]
                    seg_start[c] = 1
                else:
                    active[c] = 0

    @cuda.jit
    def adj_weighted_stages(accepted, weight, GS, LS, TH, XS, GSW, GA, GD):
        """GSW[s] = h B[s] GS[s] for accepted conditions (0 otherwise) for the W quadrature (a product
        GSW^T XS done next); alpha and d integrals accumulated per condition into GA, GD."""
        idx = cuda.grid(1)
        M = GA.shape[0]
        n = GA.shape[1]
        if idx < M * n:
            c = idx // n
            i = idx - c * n
            w = weight[c] if accepted[c] else 0.0
            acc_a = 0.0
            acc_d = 0.0
            for s in range(NSTAGE - 1):
                coef = w * B[s]
                GSW[s, c, i] = coef * GS[s, c, i] if w != 0.0 else 0.0
                acc_a += coef * LS[s, c, i] * TH[s, c, i]
                acc_d += coef * LS[s, c, i] * XS[s, c, i]
            if w != 0.0:
                GA[c, i] += acc_a
                GD[c, i] -= acc_d

    @cuda.jit
    def adj_commit(accepted, jump, dl, lam, LS, KL, XS, TH, GS, nonfinite):
        """Accepted: lam <- LS[6] (+ the jump at a new observation time), FSAL copy of stage 6 into stage 0."""
        idx = cuda.grid(1)
        M, n = lam.shape
        if idx < M * n:
            c = idx // n
            i = idx - c * n
            if accepted[c]:
                v = LS[NSTAGE - 1, c, i]
                lam[c, i] = v
                LS[0, c, i] = v
                KL[0, c, i] = KL[NSTAGE - 1, c, i]
                XS[0, c, i] = XS[NSTAGE - 1, c, i]
                TH[0, c, i] = TH[NSTAGE - 1, c, i]
                GS[0, c, i] = GS[NSTAGE - 1, c, i]
                if jump[c] >= 0:
                    lam[c, i] += dl[c, jump[c], i]
                    LS[0, c, i] = lam[c, i]
                if not math.isfinite(v):
                    nonfinite[c] = 1

    @cuda.jit
    def fill(a, value):
        """a[:] = value for a flat array (grid-stride, so any size fits the grid)."""
        start = cuda.grid(1)
        for i in range(start, a.shape[0], cuda.gridsize(1)):
            a[i] = value

    kernels = dict(fill=fill, gemm=gemm, rhs_init=rhs_init, stage_state=stage_state, initial_step=initial_step,
                   scale_into=scale_into, plan=plan, error_estimate=error_estimate, control=control,
                   commit=commit, th_prep=th_prep, th_coeffs=th_coeffs, adj_plan=adj_plan,
                   adj_stage_time=adj_stage_time,
                   dense_eval=dense_eval, adj_stage_lam=adj_stage_lam, adj_g=adj_g, adj_finish=adj_finish,
                   adj_control=adj_control, adj_weighted_stages=adj_weighted_stages, adj_commit=adj_commit)
    _CACHE[key] = kernels
    return kernels
