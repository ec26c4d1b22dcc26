"""Host-side drivers of the CUDA backend: allocate on the device, launch the kernels iteration by iteration,
copy results back.  Same inputs and outputs as the CPU drivers in cellbox_nb.core."""

import os

import numpy as np
from numba import cuda

from .. import config
from ..core import status as st
from ..core.forward import NSTAGE
from .kernels import build


class _Launcher:
    def __init__(self, M, n, dtype):
        self.k = build(config.CUDA_TILE, config.CUDA_TPB, dtype)
        self.M, self.n = M, n
        self.tpb = config.CUDA_TPB
        self.grid_e = ((M * n + self.tpb - 1) // self.tpb,)
        self.grid_c = ((M + self.tpb - 1) // self.tpb,)
        self.use_cublas = os.environ.get("CELLBOX_NB_GEMM", "numba") == "cublas"

    def elem(self, name, *args):
        self.k[name][self.grid_e, self.tpb](*args)

    def cond(self, name, *args):
        self.k[name][self.grid_c, self.tpb](*args)

    def fill(self, a, value):
        """Every entry of the contiguous device array a set to value, on the device (no host array, no copy)."""
        if a.size:
            blocks = min((a.size + self.tpb - 1) // self.tpb, 65535)
            self.k["fill"][(blocks,), self.tpb](a.reshape(a.size), value)

    def full(self, shape, value, dtype):
        """A device array of the given shape and dtype filled with value on the device."""
        a = cuda.device_array(shape, dtype=dtype)
        self.fill(a, value)
        return a

    def gemm(self, A, B, C, ta, tb, beta):
        """C = op(A) op(B) + beta C on the device."""
        if self.use_cublas:
            import cupy as cp

            a, b, c = cp.asarray(A), cp.asarray(B), cp.asarray(C)
            prod = (a.T if ta else a) @ (b.T if tb else b)
            if beta != 0.0:
                c *= beta
                c += prod
            else:
                c[...] = prod
            return
        T = config.CUDA_TILE
        m, p = C.shape
        grid = ((p + T - 1) // T, (m + T - 1) // T)
        self.k["gemm"][grid, (T, T)](A, B, C, ta, tb, beta)


def _to_dev(a, dtype):
    return cuda.to_device(np.ascontiguousarray(a, dtype=dtype))


def _ints(M, value=0):
    return cuda.to_device(np.full(M, value, dtype=np.int64))


def _forward(L, dW, dalpha, dd, dU, t_obs, rtol, atol, h_init, max_steps, beta, store, max_dense_steps, dtype):
    """Run the forward pass on the device; returns device state (xobs, status, stats, dense store, h)."""
    M, n = L.M, L.n
    T = t_obs.shape[0]
    dt_obs = cuda.to_device(np.asarray(t_obs, dtype=np.float64))
    X = L.full((M, n), 0.0, dtype)
    K = cuda.device_array((NSTAGE, M, n), dtype=dtype)
    Xs = cuda.device_array((M, n), dtype=dtype)
    Z = cuda.device_array((M, n), dtype=dtype)
    ERR = cuda.device_array((M, n), dtype=dtype)
    xobs = L.full((M, T, n), np.nan, dtype)
    t = cuda.to_device(np.zeros(M))
    h = cuda.device_array(M, dtype=np.float64)
    hs = cuda.device_array(M, dtype=np.float64)
    err_prev = cuda.to_device(np.ones(M))
    active, status, hit, kobs = _ints(M, 1), _ints(M), _ints(M), _ints(M)
    nacc, nrej, n_fev, nst = _ints(M), _ints(M), _ints(M, 1), _ints(M)
    rejected_last, accepted, obs_slot, nonfinite = _ints(M), _ints(M), _ints(M), _ints(M)
    cap = min(config.DENSE_INITIAL_STEPS, max_dense_steps) if store else 1
    dt = cuda.to_device(np.zeros((M, cap + 1)))
    # zeroed (as _grow's new slots): the slots past a condition's last step go into _tanh_store's products
    dx = L.full((cap, M, n) if store else (1, 1, 1), 0.0, dtype)
    dk = cuda.device_array((cap, NSTAGE, M, n) if store else (1, 1, 1, 1), dtype=dtype)
    # K[0] = f(0)
    L.gemm(X, dW, K[0], 0, 1, 0.0)
    L.elem("rhs_init", dU, dalpha, dd, X, K[0])
    if h_init > 0:
        h.copy_to_device(np.full(M, min(h_init, float(t_obs[0]))))
    else:
        X1 = cuda.device_array((M, n), dtype=dtype)
        L.elem("scale_into", K[0], float(t_obs[0]), X1)
        L.gemm(X1, dW, Z, 0, 1, 0.0)
        L.elem("rhs_init", dU, dalpha, dd, X1, Z)
        L.cond("initial_step", X1, K[0], Z, float(t_obs[0]), rtol, atol, h, n_fev)
    while True:
        if store:
            need = int(nst.copy_to_host().max()) + 1
            if need > cap:
                if need > max_dense_steps:
                    host_status = status.copy_to_host()
                    host_active = active.copy_to_host()
                    full = (nst.copy_to_host() >= max_dense_steps) & (host_active == 1)
                    host_status[full] = st.DENSE_OVERFLOW
                    host_active[full] = 0
                    status.copy_to_device(host_status)
                    active.copy_to_device(host_active)
                else:
                    new_cap = min(max(2 * cap, need), max_dense_steps)
                    dt, dx, dk = _grow(L, dt, dx, dk, cap, new_cap, dtype)
                    cap = new_cap
        L.cond("plan", active, status, t, h, hs, hit, kobs, dt_obs, nacc, nrej, max_steps, nonfinite)
        if not active.copy_to_host().any():
            break
        for s in range(1, NSTAGE):
            L.elem("stage_state", X, K, hs, s, Xs)
            L.gemm(Xs, dW, K[s], 0, 1, 0.0)
            L.elem("rhs_init", dU, dalpha, dd, Xs, K[s])
        L.elem("error_estimate", K, hs, ERR)
        L.cond("control", active, ERR, X, Xs, rtol, atol, beta, t, h, hs, hit, kobs, dt_obs, nacc, nrej, n_fev,
               rejected_last, err_prev, accepted, obs_slot, nst, dt, 1 if store else 0)
        L.elem("commit", accepted, obs_slot, nst, X, Xs, K, xobs, nonfinite, 1 if store else 0, dx, dk)
    return dict(xobs=xobs, status=status, nacc=nacc, nrej=nrej, n_fev=n_fev, nst=nst, dt=dt, dx=dx, dk=dk, h=h,
                dt_obs=dt_obs, X=X, K0=K[0], cap=cap)


def _tanh_store(L, dW, dU, fwd, dtype):
    """The tanh quartic of every stored step, dth (5, cap, M, n), as core.forward.tanh_interpolant: three products
    over all stored steps (x_p, k_1 and m_p = sum_{i<=6} b_i(1/2) k_i times W^T) and two for the last step's end,
    built in dth itself (see the kernels th_prep, th_coeffs), so the store is 13 numbers per component and step
    (x_p, the 7 stages, 5 coefficients) with no other scratch."""
    M, n, cap = L.M, L.n, fwd["cap"]
    dth = cuda.device_array((5, cap, M, n), dtype=dtype)
    L.elem("th_prep", fwd["nst"], fwd["dk"], dth)
    rows = cap * M
    L.gemm(fwd["dx"].reshape(rows, n), dW, dth[2].reshape(rows, n), 0, 1, 0.0)
    L.gemm(dth[0].reshape(rows, n), dW, dth[3].reshape(rows, n), 0, 1, 0.0)
    L.gemm(dth[1].reshape(rows, n), dW, dth[4].reshape(rows, n), 0, 1, 0.0)
    ZE = cuda.device_array((M, n), dtype=dtype)
    WKE = cuda.device_array((M, n), dtype=dtype)
    L.gemm(fwd["X"], dW, ZE, 0, 1, 0.0)
    L.gemm(fwd["K0"], dW, WKE, 0, 1, 0.0)
    L.elem("th_coeffs", fwd["nst"], fwd["dt"], dU, ZE, WKE, dth)
    return dth


def _grow(L, dt, dx, dk, cap, new_cap, dtype):
    """Larger dense store (rare: capacity doubles).  dx and dk are copied on the device (their step axis leads, so
    the old store is one contiguous block of the new); dx's new slots are zeroed (see _forward), dk's are left as
    they come (th_prep zeroes what the products read).  dt (M, cap + 1) is small and goes through the host."""
    M = dt.shape[0]
    host_dt = np.zeros((M, new_cap + 1))
    host_dt[:, : cap + 1] = dt.copy_to_host()
    new_dx = cuda.device_array((new_cap,) + dx.shape[1:], dtype=dtype)
    new_dk = cuda.device_array((new_cap,) + dk.shape[1:], dtype=dtype)
    new_dx[:cap].copy_to_device(dx)
    new_dk[:cap].copy_to_device(dk)
    L.fill(new_dx[cap:], 0.0)
    return cuda.to_device(host_dt), new_dx, new_dk


def solve_cuda(W, alpha, d, U, t_obs, rtol, atol, h_init, max_steps, beta, dtype=np.float64):
    """Forward solve of every condition on the GPU; returns xobs (M, T, n), status (M,), stats (M, 3)."""
    M, n = U.shape
    L = _Launcher(M, n, dtype)
    res = _forward(L, _to_dev(W, dtype), _to_dev(alpha, dtype), _to_dev(d, dtype), _to_dev(U, dtype), t_obs,
                   rtol, atol, h_init, max_steps, beta, False, 0, dtype)
    stats = np.stack([res["nacc"].copy_to_host(), res["nrej"].copy_to_host(), res["n_fev"].copy_to_host()], axis=1)
    return res["xobs"].copy_to_host().astype(np.float64), res["status"].copy_to_host(), stats


def _observation_loss(xobs, Y, mask, loss_kind):
    """Per-condition unnormalised loss and the jumps dl/dx(t_k) (as core.adjoint.observation_loss)."""
    r = np.where(mask != 0, xobs - Y, 0.0)
    if loss_kind == 0:
        return np.abs(r).sum(axis=(1, 2)), np.sign(r)
    return (r * r).sum(axis=(1, 2)), 2.0 * r


def loss_grad_cuda(W, alpha, d, U, t_obs, Y, mask, loss_kind, rtol, atol, artol, aatol, h_init, max_steps, beta,
                   max_dense_steps=None, dtype=np.float64):
    """Loss and adjoint gradient on the GPU; same outputs as core.adjoint.loss_grad_batch with one chunk."""
    M, n = U.shape
    T = t_obs.shape[0]
    if max_dense_steps is None:
        max_dense_steps = max_steps
    L = _Launcher(M, n, dtype)
    dW, dalpha, dd, dU = (_to_dev(a, dtype) for a in (W, alpha, d, U))
    fwd = _forward(L, dW, dalpha, dd, dU, t_obs, rtol, atol, h_init, max_steps, beta, True, max_dense_steps, dtype)
    xobs = fwd["xobs"].copy_to_host().astype(np.float64)
    status = fwd["status"].copy_to_host()
    stats = np.zeros((M, 7), dtype=np.int64)
    stats[:, 0] = fwd["nacc"].copy_to_host()
    stats[:, 1] = fwd["nrej"].copy_to_host()
    stats[:, 2] = fwd["n_fev"].copy_to_host()
    loss_c, dl = _observation_loss(np.nan_to_num(xobs), Y, mask, loss_kind)
    ok = status == st.SUCCESS
    loss_c = np.where(ok, loss_c, 0.0)
    dl[~ok] = 0.0
    if aatol > 0:
        aatol_c = np.full(M, aatol)
    else:  # as core.adjoint.adjoint_atol
        big = np.abs(dl).max(axis=(1, 2))
        aatol_c = np.where(big > 0, artol * big, artol)
    daatol = cuda.to_device(aatol_c)
    # ---- backward, all conditions in lockstep iterations -------------------------------------------------
    dt, dx, dk, nst, dt_obs = fwd["dt"], fwd["dx"], fwd["dk"], fwd["nst"], fwd["dt_obs"]
    dth = _tanh_store(L, dW, dU, fwd, dtype)
    ddl = _to_dev(dl, dtype)
    lam = _to_dev(dl[:, T - 1, :], dtype)
    LS, KL, XS, TH, GS, GSW = (cuda.device_array((NSTAGE, M, n), dtype=dtype) for _ in range(6))
    R = cuda.device_array((M, n), dtype=dtype)
    ERR = cuda.device_array((M, n), dtype=dtype)
    GA = L.full((M, n), 0.0, dtype)
    GD = L.full((M, n), 0.0, dtype)
    GWd = L.full((n, n), 0.0, dtype)
    t = cuda.to_device(np.full(M, float(t_obs[-1])))
    h = fwd["h"]
    hs = cuda.to_device(np.zeros(M))
    theta = cuda.device_array(M, dtype=np.float64)
    hf = cuda.device_array(M, dtype=np.float64)
    ptr = cuda.to_device(np.maximum(fwd["nst"].copy_to_host() - 1, 0))
    seg = _ints(M, T - 1)
    active = cuda.to_device(ok.astype(np.int64))
    bstatus, hit, nacc, nrej, n_fev = _ints(M), _ints(M), _ints(M), _ints(M), _ints(M)
    rejected_last, accepted, jump, nonfinite = _ints(M), _ints(M), _ints(M, -1), _ints(M)
    err_prev = cuda.to_device(np.ones(M))
    h_first = cuda.to_device(np.zeros(M))
    seg_start = _ints(M, 1)
    weight = cuda.device_array(M, dtype=np.float64)
    LS[0].copy_to_device(lam)

    def stage(s):
        L.cond("adj_stage_time", active, t, hs, hit, seg, dt_obs, s, dt, nst, ptr, theta, hf)
        L.elem("dense_eval", active, ptr, theta, hf, dx, dk, dth, XS, TH, s)
        L.elem("adj_g", dalpha, LS, s, TH, GS)
        L.gemm(GS[s], dW, R, 0, 0, 0.0)
        L.elem("adj_finish", R, dd, LS, s, KL)

    stage(0)
    n_fev.copy_to_device(np.ones(M, dtype=np.int64))
    nsm = (NSTAGE - 1) * M
    while True:
        L.cond("adj_plan", active, bstatus, t, h, hs, hit, seg, dt_obs, nacc, nrej, max_steps)
        if not active.copy_to_host().any():
            break
        for s in range(1, NSTAGE):
            L.elem("adj_stage_lam", lam, KL, hs, s, LS)
            stage(s)
        L.elem("error_estimate", KL, hs, ERR)
        L.cond("adj_control", active, ERR, LS, lam, artol, daatol, beta, t, h, hs, hit, seg, dt_obs, nacc, nrej,
               n_fev, rejected_last, err_prev, accepted, weight, jump, nonfinite, h_first, seg_start)
        L.elem("adj_weighted_stages", accepted, weight, GS, LS, TH, XS, GSW, GA, GD)
        # dL/dW += sum_s GSW[s]^T XS[s]: one product with the stages stacked along the inner dimension
        L.gemm(GSW[: NSTAGE - 1].reshape(nsm, n), XS[: NSTAGE - 1].reshape(nsm, n), GWd, 1, 0, 1.0)
        L.elem("adj_commit", accepted, jump, ddl, lam, LS, KL, XS, TH, GS, nonfinite)
        jumped = jump.copy_to_host()
        if (jumped >= 0).any():
            host_fev = n_fev.copy_to_host()
            n_fev.copy_to_device(host_fev + (jumped >= 0))
            stage(0)
    bst = bstatus.copy_to_host()
    status = np.where(status != st.SUCCESS, status, bst)
    nf = nonfinite.copy_to_host()
    status = np.where((status == st.SUCCESS) & (nf != 0), st.NONFINITE, status)
    stats[:, 3] = nacc.copy_to_host()
    stats[:, 4] = nrej.copy_to_host()
    stats[:, 5] = n_fev.copy_to_host()
    stats[:, 6] = 6 * stats[:, 3]  # the CUDA kernels add the six stage terms of every accepted step
    GA_h = GA.copy_to_host().astype(np.float64)
    GD_h = GD.copy_to_host().astype(np.float64)
    galpha = np.zeros(n)
    gd = np.zeros(n)
    for c in range(M):  # condition order, as the CPU path
        galpha += GA_h[c]
        gd += GD_h[c]
    return loss_c, GWd.copy_to_host().astype(np.float64), galpha, gd, xobs, status, stats
