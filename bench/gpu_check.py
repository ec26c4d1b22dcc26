"""GPU check: parity with the CPU on a small problem, then timings for large networks (one short script).

Run on a machine with an NVIDIA GPU and numba-cuda:   python bench/gpu_check.py [--sizes 1000,5000,20000]
                                                      [--budget 240] [--gemm numba|cublas]
1. Parity: n = 64, M = 20, T = 5 at rtol 1e-8: CUDA vs CPU, forward and loss+gradient (relative difference;
   on real hardware FMA contraction may flip a rare accept/reject, so the check is 1e-6 relative).
2. Timings, M = 100, T = 5, rtol 1e-6 / atol 1e-8, float64 then float32: forward and loss+gradient (median of
   repeats after a warm-up), with the matrix-product rate this implies, beside the device's measured GEMM rate
   (CuPy, if installed).  Sizes are skipped once the time budget is spent.
Prints JSON lines, then a short table last.
"""

import argparse
import json
import os
import sys
import time

import numpy as np



def make_problem(n, M, T, seed=0, backend="cpu"):
    """Sparse W (3 in-edges per node) scaled so that every row's absolute sum is 0.9 (spectral radius <= 0.9,
    no eigenvalue computation, which n = 20000 could not afford); data from 0.9 W plus 0.01 noise."""
    import cellbox_nb as cb

    rng = np.random.default_rng([seed, n, M])
    W = np.zeros((n, n))
    for i in range(n):
        src = rng.choice(n, size=3, replace=False)
        W[i, src] = rng.normal(size=3)
    W *= 0.9 / np.maximum(np.abs(W).sum(axis=1, keepdims=True), 1e-12)
    alpha = rng.uniform(0.5, 1.5, n)
    U = np.zeros((M, n))
    for c in range(M):
        U[c, rng.choice(n, size=2, replace=False)] = rng.uniform(0.0, 1.0, 2)
    t = 20.0 * np.arange(1, T + 1) / T
    Y = cb.solve(0.9 * W, alpha, U, t, backend=backend) + 0.01 * rng.normal(size=(M, T, n))
    return W, alpha, U, t, Y


def _time(fn, repeats):
    fn()
    out = []
    for _ in range(repeats):
        a = time.perf_counter()
        fn()
        out.append(time.perf_counter() - a)
    return float(np.median(out))


def gemm_rate(n, M, dtype):
    try:
        import cupy as cp
    except ImportError:
        return None
    a = cp.random.standard_normal((M, n)).astype(dtype)
    b = cp.random.standard_normal((n, n)).astype(dtype)
    (a @ b.T).sum()
    cp.cuda.Device().synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        c = a @ b.T
    cp.cuda.Device().synchronize()
    del c
    return 10 * 2.0 * M * n * n / (time.perf_counter() - t0) / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,5000,20000")
    ap.add_argument("--M", type=int, default=100)
    ap.add_argument("--budget", type=float, default=240.0, help="seconds for the timing part")
    ap.add_argument("--gemm", choices=["numba", "cublas"], default="numba")
    args = ap.parse_args()
    os.environ["CELLBOX_NB_GEMM"] = args.gemm
    import cellbox_nb as cb
    from numba import cuda

    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    W, alpha, U, t, Y = make_problem(64, 20, 5, seed=0)
    Xc = cb.solve(W, alpha, U, t, rtol=1e-8, atol=1e-10)
    Xg = cb.solve(W, alpha, U, t, rtol=1e-8, atol=1e-10, backend="cuda")
    Lc, gc = cb.loss_and_grad(W, alpha, U, t, Y, rtol=1e-8, atol=1e-10)
    Lg, gg = cb.loss_and_grad(W, alpha, U, t, Y, rtol=1e-8, atol=1e-10, backend="cuda")
    parity = {"check": "parity", "device": name, "rel_fwd": float(np.abs(Xg - Xc).max() / np.abs(Xc).max()),
              "rel_loss": abs(Lg - Lc) / abs(Lc), "rel_gW": float(np.abs(gg["W"] - gc["W"]).max() / np.abs(gc["W"]).max())}
    parity["ok"] = bool(max(parity["rel_fwd"], parity["rel_loss"], parity["rel_gW"]) <= 1e-6)
    print(json.dumps(parity), flush=True)
    rows = []
    start = time.perf_counter()
    for n in map(int, args.sizes.split(",")):
        for precision in ("float64", "float32"):
            if time.perf_counter() - start > args.budget:
                print(json.dumps({"skipped": n, "precision": precision, "reason": "time budget"}), flush=True)
                continue
            W, alpha, U, t, Y = make_problem(n, args.M, 5, seed=0, backend="cuda")
            kw = dict(backend="cuda", precision=precision)
            _, info = cb.solve(W, alpha, U, t, full_output=True, **kw)
            reps = 3 if n <= 5000 else 1
            t_fwd = _time(lambda: cb.solve(W, alpha, U, t, **kw), reps)
            t_grad = _time(lambda: cb.loss_and_grad(W, alpha, U, t, Y, **kw), reps)
            iters = int(info["stats"][:, 0].max() + info["stats"][:, 1].max())
            flops = iters * 6 * 2.0 * args.M * n * n  # stage products of the forward pass
            rate = gemm_rate(n, args.M, np.float64 if precision == "float64" else np.float32)
            row = {"n": n, "M": args.M, "precision": precision, "forward_s": t_fwd, "loss_grad_s": t_grad,
                   "iterations": iters, "solve_gflops": flops / t_fwd / 1e9, "device_gemm_gflops": rate,
                   "fraction_of_gemm": (flops / t_fwd / 1e9 / rate) if rate else None, "gemm": args.gemm}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\ndevice: {name}; parity ok: {parity['ok']} (fwd {parity['rel_fwd']:.1e}, grad {parity['rel_gW']:.1e})")
    print(f"{'n':>6} {'prec':>8} {'fwd s':>9} {'loss+grad s':>12} {'solve GF/s':>11} {'GEMM GF/s':>10} {'frac':>6}")
    for r in rows:
        frac = f"{r['fraction_of_gemm']:.2f}" if r["fraction_of_gemm"] else "-"
        gem = f"{r['device_gemm_gflops']:.0f}" if r["device_gemm_gflops"] else "-"
        print(f"{r['n']:>6} {r['precision']:>8} {r['forward_s']:>9.3f} {r['loss_grad_s']:>12.3f} "
              f"{r['solve_gflops']:>11.1f} {gem:>10} {frac:>6}")
    return 0 if parity["ok"] else 4


if __name__ == "__main__":
    sys.exit(main())
