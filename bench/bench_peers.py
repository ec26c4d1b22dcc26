"""Loss + gradient of cellbox-nb against peer engines (torchdiffeq, diffrax) on the benchmark grid: the same seeded
problem for every engine, float64, the same tolerances, calls interleaved per size; one JSON object per line on
stdout (and in --out), a Markdown summary on stderr.

    python bench/bench_peers.py --sizes 7,19,99 --out peers.jsonl      # a subset
    python bench/bench_peers.py --out peers.jsonl                      # full grid (10-25 min on 2 cores)
    python bench/bench_peers.py --sizes 7 --variants torchdiffeq_backprop,diffrax_stacked_checkpoint

The peers are an optional extra (`pip install -e .[peers]`). Each peer variant runs in its own worker process
(started per size, killed when its first call or a timed call runs past --max-seconds or its memory past
--max-rss-gb); cellbox-nb runs in this process. See bench/README.md ("Peers") for the fields and the thread limits.
"""

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OURS = "cellbox_nb"  # the default (interpolating) adjoint; ratios peer / ours are against it
OURS_DISCRETE = "cellbox_nb_discrete"  # loss_and_grad(adjoint="discrete"), timed in the same rounds
OURS_ADJOINT = {OURS: "interpolating", OURS_DISCRETE: "discrete"}
OURS_LABEL = {OURS: "continuous adjoint (interpolating)", OURS_DISCRETE: "discrete adjoint of the accepted steps"}

# variant -> engine, gradient method, how the M conditions are solved
VARIANTS = {
    "torchdiffeq_adjoint": {"engine": "torchdiffeq", "adjoint": "odeint_adjoint", "layout": "stacked"},
    "torchdiffeq_backprop": {"engine": "torchdiffeq", "adjoint": "backprop through the solver", "layout": "stacked"},
    "diffrax_vmap_checkpoint": {"engine": "diffrax", "adjoint": "RecursiveCheckpointAdjoint", "layout": "vmap"},
    "diffrax_vmap_backsolve": {"engine": "diffrax", "adjoint": "BacksolveAdjoint", "layout": "vmap"},
    "diffrax_stacked_checkpoint": {"engine": "diffrax", "adjoint": "RecursiveCheckpointAdjoint",
                                   "layout": "stacked"},
    "diffrax_stacked_backsolve": {"engine": "diffrax", "adjoint": "BacksolveAdjoint", "layout": "stacked"},
}
GRAD_KEYS = ("W", "alpha", "d")  # everything cellbox-nb's loss_and_grad returns; every peer gives all three


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=None, help="comma-separated n values from the grid (7,19,99,300,1000); "
                                                  "default: all")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help=f"comma-separated peer variants (default: all of {', '.join(VARIANTS)}); "
                         "cellbox-nb always runs")
    ap.add_argument("--repeats", type=int, default=15, help="at most this many timed calls per variant and size")
    ap.add_argument("--min-repeats", type=int, default=3, help="at least this many timed calls (unless a variant "
                                                               "reaches --max-seconds of timed calls first)")
    ap.add_argument("--time-budget", type=float, default=3.0,
                    help="stop timing a variant once --min-repeats calls are done and its timed calls add up to "
                         "this many seconds")
    ap.add_argument("--max-seconds", type=float, default=60.0,
                    help="per variant and size: a first call (compile + one run) or a single timed call longer "
                         "than this kills the worker and records 'skipped' (or a 'note' if some calls were timed); "
                         "timing also stops once the timed calls add up to this")
    ap.add_argument("--max-rss-gb", type=float, default=8.0,
                    help="kill a peer worker whose resident memory passes this, recording the reason")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for every engine (default: Numba's default, one per core); below the CPU count "
                         "every process is also pinned to that many CPUs")
    ap.add_argument("--peer-omp-wait-policy", choices=("passive", "active", "default"), default="passive",
                    help="OMP_WAIT_POLICY of the peer workers (default passive: idle OpenMP threads sleep instead of "
                         "spinning; 'default' leaves the environment as it is). cellbox-nb keeps the environment's")
    ap.add_argument("--warm-below", type=float, default=5.0,
                    help="an engine whose first call took less than this many seconds gets one untimed call right "
                         "before each timed call, so every timed call finds its threads awake (with 2 threads an "
                         "idle gap of 50 ms made a 2 ms cellbox-nb call take 6.6 ms here: the second thread had "
                         "gone to sleep; the interleaved peers' calls are such gaps); 0 turns it off")
    ap.add_argument("--no-discrete", dest="discrete", action="store_false",
                    help="do not also time cellbox-nb with adjoint='discrete' (by default both of cellbox-nb's "
                         "adjoints are timed in the same rounds; ratios peer / ours are against the default, "
                         "interpolating, and the tables give them against the discrete one too)")
    ap.add_argument("--out", default=None, help="also write the JSON lines to this file (overwritten)")
    ap.add_argument("--markdown", default=None, help="also write the summary tables to this file")
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--atol", type=float, default=1e-8)
    ap.add_argument("--ref-rtol", type=float, default=1e-10,
                    help="tolerance of the reference gradient (cellbox-nb) every engine is also compared with; "
                         "0 skips the reference")
    ap.add_argument("--ref-atol", type=float, default=1e-12)
    ap.add_argument("--grad-tol", type=float, default=1e-4,
                    help="gradients agree when the relative L2 difference of W, alpha and d is at most this")
    ap.add_argument("--loss", choices=("mae", "mse"), default="mae")
    ap.add_argument("--mask-frac", type=float, default=0.0,
                    help="fraction of data entries masked out (seeded; default 0: all observed)")
    ap.add_argument("--seed", type=int, default=0, help="problem seed (bench/problems.py)")
    # worker mode (internal)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--problem", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result-dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    bad = [v for v in args.variants.split(",") if v and v not in VARIANTS]
    if bad:
        ap.error(f"--variants: unknown {', '.join(bad)} (known: {', '.join(VARIANTS)})")
    args.variant_list = [v for v in args.variants.split(",") if v]
    return args


# ---------------------------------------------------------------------------------------------------------------
# Thread limits (set before numpy, numba, torch or jax are imported; the worker processes inherit them)


def default_threads():
    env = os.environ.get("NUMBA_NUM_THREADS")
    return int(env) if env else os.cpu_count()


def limit_threads(threads, peer_omp_wait_policy):
    """Environment and CPU affinity for ``threads`` threads in this process and its workers; returns what was set.

    XLA's CPU client sizes its thread pool from the CPUs the process may run on (its intra-op flag did not limit
    it in jaxlib 0.10.2 here), so below the CPU count the processes are pinned to the first ``threads`` CPUs.
    The peers' OMP_WAIT_POLICY (``peer_env``) is set on the workers only: with spinning OpenMP threads, torch's
    2-thread odeint_adjoint at n = 7 ran 5-15x slower whenever another process wanted the second core.
    """
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(threads),
           "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + f" --xla_cpu_multi_thread_eigen={str(threads > 1).lower()}"
                         f" intra_op_parallelism_threads={threads}").strip()}
    os.environ.update(env)
    cpus = sorted(os.sched_getaffinity(0))
    pinned = None
    if threads < len(cpus):
        pinned = cpus[:threads]
        os.sched_setaffinity(0, pinned)
    peer_env = {} if peer_omp_wait_policy == "default" else {"OMP_WAIT_POLICY": peer_omp_wait_policy.upper()}
    return {"threads": threads, "env": env, "peer_env": peer_env, "pinned_cpus": pinned,
            "ours_omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "torch": f"set_num_threads({threads}), set_num_interop_threads({threads})",
            "numba": f"set_num_threads({threads})"}


# ---------------------------------------------------------------------------------------------------------------
# Worker side: one peer variant in its own process. Protocol: commands on stdin ("first", "call", "quit"), one
# JSON line per command on the original stdout (fd 1 is redirected to stderr so library output cannot corrupt it).


class TorchRunner:
    def __init__(self, variant, p, rtol, atol, loss, threads):
        import torch
        import torchdiffeq
        from torchdiffeq._impl.odeint import SOLVERS

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:
            pass
        self.torch = torch
        self.method = "tsit5" if "tsit5" in SOLVERS else "dopri5"  # torchdiffeq 0.2.5 has no tsit5
        self.versions = {"torch": torch.__version__, "torchdiffeq": torchdiffeq.__version__}
        f64 = torch.float64

        class Rhs(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.W = torch.nn.Parameter(torch.tensor(p["W"], dtype=f64))
                self.alpha = torch.nn.Parameter(torch.tensor(p["alpha"], dtype=f64))
                self.d = torch.nn.Parameter(torch.tensor(p["d"], dtype=f64))
                self.register_buffer("U", torch.tensor(p["U"], dtype=f64))
                self.nfe = 0

            def forward(self, t, x):  # x: (M, n), all conditions in one state
                self.nfe += 1
                return self.alpha * torch.tanh(x @ self.W.T - self.U) - self.d * x

        self.rhs = Rhs()
        self.x0 = torch.zeros(p["U"].shape, dtype=f64)
        self.tt = torch.tensor([0.0, *p["t"]], dtype=f64)
        self.Y = torch.tensor(p["Y"], dtype=f64)
        self.mask = torch.tensor(p["mask"], dtype=f64)
        self.count = float(p["mask"].sum())
        self.mae = loss == "mae"
        self.adjoint = variant == "torchdiffeq_adjoint"
        self.odeint = torchdiffeq.odeint_adjoint if self.adjoint else torchdiffeq.odeint
        self.kw = {"rtol": rtol, "atol": atol, "method": self.method}
        self.settings = {"method": self.method, "rtol": rtol, "atol": atol,
                         "method_note": None if self.method == "tsit5" else
                         f"torchdiffeq {torchdiffeq.__version__} has no tsit5; dopri5 used",
                         "adjoint_tolerances": "torchdiffeq defaults (forward rtol/atol)" if self.adjoint else None,
                         "norm": "torchdiffeq default (RMS over the whole (M, n) state)"}
        torch.zeros(2, dtype=f64).sum().item()  # library start-up outside the first call

    def call(self):
        f = self.rhs
        f.nfe = 0
        if self.adjoint:
            X = self.odeint(f, self.x0, self.tt, adjoint_params=(f.W, f.alpha, f.d), **self.kw)
        else:
            X = self.odeint(f, self.x0, self.tt, **self.kw)
        nfe_fwd = f.nfe
        r = X[1:].transpose(0, 1) - self.Y  # (M, T, n)
        e = r.abs() if self.mae else r * r
        L = (self.mask * e).sum() / self.count
        grads = self.torch.autograd.grad(L, (f.W, f.alpha, f.d))
        return L, grads, {"fev_fwd": nfe_fwd, "fev_bwd": f.nfe - nfe_fwd}

    def result(self, out):
        L, grads, stats = out
        return float(L.item()), {k: g.detach().numpy() for k, g in zip(GRAD_KEYS, grads)}, stats


class DiffraxRunner:
    def __init__(self, variant, p, rtol, atol, loss, threads):
        import jax

        jax.config.update("jax_enable_x64", True)
        import diffrax
        import equinox
        import jax.numpy as jnp
        import jaxlib

        self.jax = jax
        self.method = "Tsit5"
        self.versions = {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "diffrax": diffrax.__version__,
                         "equinox": equinox.__version__}
        vmap = "_vmap_" in variant
        adjoint = diffrax.BacksolveAdjoint() if variant.endswith("backsolve") else diffrax.RecursiveCheckpointAdjoint()
        t = jnp.asarray(p["t"])
        mae = loss == "mae"
        count = float(p["mask"].sum())

        def rhs(_t, y, args):  # y: (n,) one condition, or (M, n) all conditions
            W, alpha, d, u = args
            return alpha * jnp.tanh(y @ W.T - u) - d * y

        def solve(params, u):
            W, alpha, d = params
            sol = diffrax.diffeqsolve(
                diffrax.ODETerm(rhs), diffrax.Tsit5(), t0=0.0, t1=t[-1], dt0=None, y0=jnp.zeros_like(u),
                args=(W, alpha, d, u), saveat=diffrax.SaveAt(ts=t),
                stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), adjoint=adjoint)
            return sol.ys, sol.stats["num_accepted_steps"], sol.stats["num_rejected_steps"]

        def loss_fn(params, data):
            U, Y, mask = data
            if vmap:
                ys, acc, rej = jax.vmap(solve, in_axes=(None, 0))(params, U)  # (M, T, n)
            else:
                ys, acc, rej = solve(params, U)
                ys = jnp.swapaxes(ys, 0, 1)  # (T, M, n) -> (M, T, n)
            r = ys - Y
            e = jnp.abs(r) if mae else r * r
            return jnp.sum(mask * e) / count, (acc, rej)

        self.f = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
        self.params = tuple(jnp.asarray(p[k]) for k in GRAD_KEYS)
        self.data = (jnp.asarray(p["U"]), jnp.asarray(p["Y"]), jnp.asarray(p["mask"]))
        self.settings = {"method": "Tsit5", "rtol": rtol, "atol": atol,
                         "controller": "PIDController(rtol, atol) defaults (I controller, RMS norm)",
                         "adjoint": type(adjoint).__name__, "max_steps": 4096, "x64": True,
                         "norm": "RMS over one condition (vmap)" if vmap else "RMS over the whole (M, n) state"}
        jnp.zeros(2).sum().block_until_ready()  # backend start-up outside the first call

    def call(self):
        out = self.f(self.params, self.data)
        return self.jax.block_until_ready(out)

    def result(self, out):
        import numpy as np

        (L, (acc, rej)), grads = out
        stats = {"accepted_steps": float(np.mean(np.asarray(acc))), "rejected_steps": float(np.mean(np.asarray(rej)))}
        if np.ndim(acc):  # vmap: per condition
            stats["accepted_steps_max"] = float(np.max(np.asarray(acc)))
        return float(L), {k: np.asarray(g) for k, g in zip(GRAD_KEYS, grads)}, stats


def worker_main(args):
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    import numpy as np

    t0 = time.perf_counter()
    p = dict(np.load(args.problem))
    cls = TorchRunner if VARIANTS[args.worker]["engine"] == "torchdiffeq" else DiffraxRunner
    runner = cls(args.worker, p, args.rtol, args.atol, args.loss, args.threads)
    proto.write(json.dumps({"ready": True, "import_s": time.perf_counter() - t0, "versions": runner.versions,
                            "method": runner.method, "settings": runner.settings}) + "\n")
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit" or not cmd:
            break
        c0 = time.process_time()
        w0 = time.perf_counter()
        out = runner.call()
        rec = {"t": time.perf_counter() - w0, "cpu": time.process_time() - c0}
        if cmd == "first":
            loss, grads, stats = runner.result(out)
            path = os.path.join(args.result_dir, f"{args.worker}_grads.npz")
            np.savez(path, **grads)
            rec.update(loss=loss, grad_file=path, stats=stats)
        proto.write(json.dumps(rec) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# Main side


class WorkerStopped(Exception):
    pass


class Worker:
    def __init__(self, variant, problem_path, tmp, args, threads, env):
        self.variant = variant
        self.err_path = os.path.join(tmp, f"{variant}.stderr")
        self.err = open(self.err_path, "w")
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", variant, "--problem", problem_path,
               "--result-dir", tmp, "--rtol", repr(args.rtol), "--atol", repr(args.atol), "--loss", args.loss,
               "--threads", str(threads)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True,
                                     bufsize=1, env={**os.environ, **env})
        self.q = queue.Queue()
        self.peak_rss_gb = 0.0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.q.put(line)
        self.q.put(None)

    def rss_gb(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 2**20
        except OSError:
            pass
        return 0.0

    def peak_gb(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        self.peak_rss_gb = max(self.peak_rss_gb, int(line.split()[1]) / 2**20)
        except OSError:
            pass
        return self.peak_rss_gb

    def stderr_tail(self, lines=8):
        self.err.flush()
        try:
            with open(self.err_path) as f:
                return " | ".join(f.read().strip().splitlines()[-lines:])
        except OSError:
            return ""

    def request(self, cmd, limit_s, max_rss_gb):
        """Send a command and wait for its reply; kill the worker past limit_s seconds or max_rss_gb of memory."""
        if cmd is not None:
            self.proc.stdin.write(cmd + "\n")
            self.proc.stdin.flush()
        t0 = time.monotonic()
        while True:
            try:
                line = self.q.get(timeout=0.25)
            except queue.Empty:
                rss = self.rss_gb()
                self.peak_rss_gb = max(self.peak_rss_gb, rss)
                if limit_s is not None and time.monotonic() - t0 > limit_s:
                    self.kill()
                    raise WorkerStopped(f"'{cmd}' ran past {limit_s:g} s (--max-seconds); worker killed")
                if rss > max_rss_gb:
                    self.kill()
                    raise WorkerStopped(f"memory {rss:.1f} GB passed --max-rss-gb {max_rss_gb:g}; worker killed")
                continue
            if line is None:
                self.proc.wait()
                raise WorkerStopped(f"worker exited (rc {self.proc.returncode}): {self.stderr_tail()}")
            return json.loads(line)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
        self.err.close()


def rel_diffs(g, ref):
    import numpy as np

    out = {}
    for k in GRAD_KEYS:
        a, b = np.asarray(g[k], dtype=float), np.asarray(ref[k], dtype=float)
        nb, mb = float(np.linalg.norm(b)), float(np.max(np.abs(b)))
        out[k] = {"l2": float(np.linalg.norm(a - b)) / nb if nb > 0 else float(np.linalg.norm(a - b)),
                  "max": float(np.max(np.abs(a - b))) / mb if mb > 0 else float(np.max(np.abs(a - b)))}
    return out


def rel(a, b):
    return abs(a - b) / abs(b) if b != 0 else abs(a - b)


def timing_fields(times, cpus):
    import numpy as np

    if not times:
        return {"median_s": None, "min_s": None, "max_s": None, "repeats": 0, "cpu_per_wall": None}
    return {"median_s": float(np.median(times)), "min_s": float(np.min(times)), "max_s": float(np.max(times)),
            "repeats": len(times), "cpu_per_wall": float(np.median(np.array(cpus) / np.array(times)))}


def wants_more(times, args):
    """Another timed call? At most --repeats, at least --min-repeats, then until --time-budget; never past
    --max-seconds of timed calls."""
    total = sum(times)
    if len(times) >= args.repeats or (times and total >= args.max_seconds):
        return False
    return len(times) < args.min_repeats or total < args.time_budget


def bench_size(n, M, T, args, threads, base):
    import numpy as np

    import common
    from cellbox_nb import loss_and_grad
    from problems import make_problem

    load_start = common.loadavg()
    common.log(f"[peers] n={n} M={M} T={T}: problem")
    p = make_problem(n, M, T, seed=args.seed, rtol=args.rtol, atol=args.atol)
    mask = None
    if args.mask_frac > 0:
        mask = np.random.default_rng([args.seed, n, M, T, 1]).random(p["Y"].shape) >= args.mask_frac
        if not mask.any():
            mask.flat[0] = True
    p["mask"] = np.ones(p["Y"].shape) if mask is None else mask.astype(float)
    p["d"] = np.ones(n)
    W, alpha, U, t, Y = p["W"], p["alpha"], p["U"], p["t"], p["Y"]
    size = {"n": n, "M": M, "T": T}

    def ours(rtol=args.rtol, atol=args.atol, adjoint="interpolating"):
        return loss_and_grad(W, alpha, U, t, Y, mask=mask, loss=args.loss, rtol=rtol, atol=atol, full_output=True,
                             adjoint=adjoint)

    def ours_discrete():
        return ours(adjoint="discrete")

    records = []
    with tempfile.TemporaryDirectory(prefix="cellbox_peers_") as tmp:
        path = os.path.join(tmp, "problem.npz")
        np.savez(path, **p)
        peer_env = base["thread_settings"]["peer_env"]
        workers = {v: Worker(v, path, tmp, args, threads, peer_env) for v in args.variant_list}
        state = {v: {"times": [], "cpus": [], "skipped": None, "note": None, "first": None, "ready": None}
                 for v in workers}
        for v, w in workers.items():  # they import their libraries side by side; nothing is timed yet
            try:
                state[v]["ready"] = w.request(None, 600.0, args.max_rss_gb)
                common.log(f"[peers] n={n} {v}: ready ({state[v]['ready']['method']})")
            except WorkerStopped as e:
                state[v]["skipped"] = f"start-up failed: {e}"
                common.log(f"[peers] n={n} {v}: {state[v]['skipped']}")

        # cellbox-nb: first call in this process (at the first size this includes loading or compiling the
        # kernels), then the reference at a tight tolerance
        first_ours, (loss_o, g_o, info_o) = common.timed(ours)
        first_od, (loss_od, g_od, info_od) = common.timed(ours_discrete) if args.discrete else (None, (None,) * 3)
        ref = None
        if args.ref_rtol > 0:
            common.log(f"[peers] n={n}: reference gradient at rtol {args.ref_rtol:g}")
            ref_s, (loss_ref, g_ref, _) = common.timed(lambda: ours(args.ref_rtol, args.ref_atol))
            ref = {"loss": loss_ref, "grads": g_ref, "s": ref_s}

        # peers: first calls one at a time (compile + one run), results checked against ours
        for v, w in workers.items():
            s = state[v]
            if s["skipped"]:
                continue
            common.log(f"[peers] n={n} {v}: first call")
            try:
                s["first"] = w.request("first", args.max_seconds, args.max_rss_gb)
            except WorkerStopped as e:
                s["skipped"] = f"first call: {e}"
                common.log(f"[peers] n={n} {v}: skipped ({s['skipped']})")
                continue
            common.log(f"[peers] n={n} {v}: first call {s['first']['t']:.3g} s")

        # timed calls, interleaved: each round runs cellbox-nb once, then every peer still being timed once
        t_o, c_o = [], []
        t_od, c_od = [], []

        def time_ours(fn, first, times, cpus):  # a warm call right before the timed one when calls are short
            if first < args.warm_below:
                fn()
            c0 = time.process_time()
            times.append(common.timed(fn)[0])
            cpus.append(time.process_time() - c0)

        while True:
            active = [v for v in workers if not state[v]["skipped"] and state[v]["note"] is None
                      and wants_more(state[v]["times"], args)]
            if not active and not wants_more(t_o, args):
                break
            time_ours(ours, first_ours, t_o, c_o)
            if args.discrete:
                time_ours(ours_discrete, first_od, t_od, c_od)
            for v in active:
                s = state[v]
                try:
                    if s["first"]["t"] < args.warm_below:
                        workers[v].request("call", args.max_seconds, args.max_rss_gb)
                    r = workers[v].request("call", args.max_seconds, args.max_rss_gb)
                except WorkerStopped as e:
                    reason = f"timed call {len(s['times']) + 1}: {e}"
                    if s["times"]:
                        s["note"] = reason
                    else:
                        s["skipped"] = reason
                    common.log(f"[peers] n={n} {v}: {reason}")
                    continue
                s["times"].append(r["t"])
                s["cpus"].append(r["cpu"])
        for v, s in state.items():
            if s["times"] and s["note"] is None and len(s["times"]) < args.min_repeats:
                s["note"] = f"fewer than --min-repeats: timed calls reached --max-seconds {args.max_seconds:g} s"
        peaks = {v: workers[v].peak_gb() for v in workers}
        for w in workers.values():
            w.close()

        load_end = common.loadavg()
        ours_t = timing_fields(t_o, c_o)
        common_fields = {"threads": threads, "warm_below_s": args.warm_below, "rtol": args.rtol, "atol": args.atol,
                         "loss_kind": args.loss,
                         "mask_frac": args.mask_frac, "seed": args.seed, "grad_tol": args.grad_tol,
                         "loadavg_start": load_start,
                         "loadavg_end": load_end, "machine": base["machine"],
                         "thread_settings": base["thread_settings"]}
        ours_runs = [(OURS, first_ours, loss_o, g_o, info_o, ours_t)]
        if args.discrete:
            od_t = timing_fields(t_od, c_od)
            ours_runs.append((OURS_DISCRETE, first_od, loss_od, g_od, info_od, od_t))
        for name, first, loss_x, g_x, info_x, tf in ours_runs:
            st = info_x["stats"]
            rec_x = {"bench": "peers", "engine": "cellbox_nb", "variant": name, "method": "Tsit5 (Numba)",
                     "adjoint": OURS_LABEL[name], "adjoint_option": OURS_ADJOINT[name], "layout": "per condition",
                     **size, "first_call_s": first, **tf, "compile_s": first - tf["median_s"],
                     "ratio_vs_ours": tf["median_s"] / ours_t["median_s"],
                     "ratio_min_vs_ours": tf["min_s"] / ours_t["min_s"], "loss": float(loss_x),
                     "loss_rel_diff_vs_ours": rel(float(loss_x), float(loss_o)),
                     "grad_rel_diff_vs_ours": None if name == OURS else rel_diffs(g_x, g_o),
                     "steps": {"accepted_steps": float(st[:, 0].mean()), "rejected_steps": float(st[:, 1].mean()),
                               "fev_fwd": float(st[:, 2].mean()), "bwd_accepted_steps": float(st[:, 3].mean()),
                               "bwd_fev": float(st[:, 5].mean()), "per": "condition (mean)"},
                     "skipped": None, "note": None, "versions": base["versions"], **common_fields}
            if name != OURS:
                rec_x["grad_ok"] = all(d["l2"] <= args.grad_tol for d in rec_x["grad_rel_diff_vs_ours"].values())
            if ref is not None:
                rec_x.update(ref_rtol=args.ref_rtol, ref_atol=args.ref_atol, ref_s=ref["s"],
                             loss_rel_diff_vs_ref=rel(float(loss_x), float(ref["loss"])),
                             grad_rel_diff_vs_ref=rel_diffs(g_x, ref["grads"]))
            records.append(rec_x)
            if name == OURS:
                rec_o = rec_x
        od_median = od_t["median_s"] if args.discrete else None

        for v, s in state.items():
            meta = VARIANTS[v]
            ready = s["ready"] or {}
            rec = {"bench": "peers", "engine": meta["engine"], "variant": v, "method": ready.get("method"),
                   "adjoint": meta["adjoint"], "layout": meta["layout"], **size,
                   "first_call_s": s["first"]["t"] if s["first"] else None,
                   "import_s": ready.get("import_s"), **timing_fields(s["times"], s["cpus"])}
            rec["compile_s"] = (rec["first_call_s"] - rec["median_s"]) if s["first"] and s["times"] else None
            rec["ratio_vs_ours"] = rec["median_s"] / ours_t["median_s"] if s["times"] else None
            rec["ratio_min_vs_ours"] = rec["min_s"] / ours_t["min_s"] if s["times"] else None
            rec["ratio_vs_ours_discrete"] = rec["median_s"] / od_median if s["times"] and od_median else None
            rec.update(loss=None, loss_rel_diff_vs_ours=None, grad_rel_diff_vs_ours=None, grad_ok=None, steps=None)
            if s["first"]:
                g = dict(np.load(s["first"]["grad_file"]))
                lp = float(s["first"]["loss"])
                rec.update(loss=lp, loss_rel_diff_vs_ours=rel(lp, float(loss_o)),
                           grad_rel_diff_vs_ours=rel_diffs(g, g_o), steps=s["first"]["stats"])
                rec["grad_ok"] = all(d["l2"] <= args.grad_tol for d in rec["grad_rel_diff_vs_ours"].values())
                if args.discrete:
                    rec["grad_rel_diff_vs_ours_discrete"] = rel_diffs(g, g_od)
                    rec["grad_ok_discrete"] = all(d["l2"] <= args.grad_tol
                                                  for d in rec["grad_rel_diff_vs_ours_discrete"].values())
                if ref is not None:
                    rec.update(loss_rel_diff_vs_ref=rel(lp, float(ref["loss"])),
                               grad_rel_diff_vs_ref=rel_diffs(g, ref["grads"]))
                    peer_e = rec["grad_rel_diff_vs_ref"]["W"]["l2"]
                    ours_e = rec_o["grad_rel_diff_vs_ref"]["W"]["l2"]
                    rec["closer_to_ref"] = "peer" if peer_e < ours_e else "cellbox_nb"
            rec.update(peak_rss_gb=round(peaks[v], 3), settings=ready.get("settings"), skipped=s["skipped"],
                       note=s["note"], versions={**base["versions"], **ready.get("versions", {})}, **common_fields)
            records.append(rec)
    return records


def fmt(x, spec=".3g"):
    return "—" if x is None else format(x, spec)


def summary(records, args):
    sizes = []
    for r in records:
        if (r["n"], r["M"], r["T"]) not in sizes:
            sizes.append((r["n"], r["M"], r["T"]))
    by = {(r["n"], r["variant"]): r for r in records}
    discrete = any(r["variant"] == OURS_DISCRETE for r in records)
    variants = [OURS] + ([OURS_DISCRETE] if discrete else []) + args.variant_list
    lines = []
    for mine, key, label in ((OURS, "ratio_vs_ours", "default, interpolating adjoint"),
                             (OURS_DISCRETE, "ratio_vs_ours_discrete", "adjoint='discrete'")):
        if mine == OURS_DISCRETE and not discrete:
            continue
        lines += [f"Time ratios peer / cellbox-nb {label} (median loss + gradient wall time; rtol {args.rtol:g}, "
                  f"atol {args.atol:g}, {args.loss.upper()}, float64, {records[0]['threads']} thread(s)):", "",
                  "| (n, M, T) | cellbox-nb median (s) | " + " | ".join(args.variant_list) + " |",
                  "|---|---:|" + "---:|" * len(args.variant_list)]
        for n, M, T in sizes:
            cells = []
            for v in args.variant_list:
                r = by.get((n, v))
                if r is None:
                    cells.append("—")
                elif r.get(key) is None:
                    cells.append("skipped")
                else:
                    cells.append(f"{r[key]:.3g}")
            lines.append(f"| {n}, {M}, {T} | {fmt(by[(n, mine)]['median_s'])} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.pop()
    ref = (f"against cellbox-nb at rtol {args.ref_rtol:g}, atol {args.ref_atol:g}" if args.ref_rtol > 0
           else "not computed (--ref-rtol 0)")
    lines += ["", f"Per variant (rel diff: relative L2 difference from cellbox-nb; vs ref: {ref}; vs discrete: from "
                  f"cellbox-nb's discrete adjoint; agree: W, alpha and d within {args.grad_tol:g}):", "",
              "| (n, M, T) | variant | method | first call (s) | median (s) | min (s) | repeats | peer/ours "
              "| loss rel diff | grad W rel diff | grad alpha rel diff | grad W vs ref | grad W vs discrete | agree |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for n, M, T in sizes:
        for v in variants:
            r = by.get((n, v))
            if r is None:
                continue
            gd = r.get("grad_rel_diff_vs_ours") or {}
            gref = r.get("grad_rel_diff_vs_ref") or {}
            agree = "" if v == OURS else ("skipped" if r["grad_ok"] is None else ("yes" if r["grad_ok"] else "NO"))
            if r.get("grad_ok_discrete") is not None:
                agree += ", discrete: " + ("yes" if r["grad_ok_discrete"] else "NO")
            gdd = r.get("grad_rel_diff_vs_ours_discrete") or {}
            if r.get("skipped"):
                agree = "skipped: " + r["skipped"][:60]
            lines.append(f"| {n}, {M}, {T} | {v} | {r['method'] or '—'} | {fmt(r['first_call_s'])} | "
                         f"{fmt(r['median_s'])} | "
                         f"{fmt(r['min_s'])} | {r['repeats']} | {fmt(r['ratio_vs_ours'])} | "
                         f"{fmt(r.get('loss_rel_diff_vs_ours'), '.1e')} | "
                         f"{fmt(gd.get('W', {}).get('l2'), '.1e')} | {fmt(gd.get('alpha', {}).get('l2'), '.1e')} | "
                         f"{fmt(gref.get('W', {}).get('l2'), '.1e')} | {fmt(gdd.get('W', {}).get('l2'), '.1e')} | "
                         f"{agree} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    threads = args.threads or default_threads()
    thread_settings = limit_threads(threads, args.peer_omp_wait_policy)  # before numpy and numba are imported
    sys.path.insert(0, HERE)
    import common
    from problems import GRID, parse_sizes

    common.apply_threads(threads)
    sizes = parse_sizes(args.sizes, GRID) if args.sizes else GRID
    base = {"machine": common.machine(), "versions": common.versions(), "thread_settings": thread_settings}
    common.log(f"[peers] {threads} thread(s) for every engine; variants: {', '.join(args.variant_list)}")
    out = open(args.out, "w") if args.out else None
    records = []
    try:
        for n, M, T in sizes:
            for rec in bench_size(n, M, T, args, threads, base):
                records.append(rec)
                common.emit(rec)
                if out:
                    out.write(json.dumps(rec) + "\n")
                    out.flush()
    finally:
        if out:
            out.close()
    if records:
        table = summary(records, args)
        print("\n" + table, file=sys.stderr)
        if args.markdown:
            with open(args.markdown, "w") as f:
                f.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
