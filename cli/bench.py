"""``cellbox-nb bench``: the standard benchmark grid as one command, so a node (or a GPU) is measured in one line.

The problems, timings and record fields live in :mod:`cellbox_nb.benchmark` (the scripts in bench/ use the same
code); the machine's floor rates (``--floor``) in :mod:`cellbox_nb.floor`.
"""

from __future__ import annotations

import json
import time

import click

from cellbox_nb.errors import ConfigError

from ._common import info, run_command, seed_option


def _header():
    from cellbox_nb import benchmark as bm

    return {"machine": bm.machine(), "versions": bm.versions(), "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                      time.gmtime())}


@click.command()
@click.option("--backend", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Compute backend (cuda without a usable GPU: one error line, exit code 2).")
@click.option("--sizes", default=None, metavar="N,...|N:M:T,...",
              help="Sizes to run, in this order: n values of the standard grid (7,19,99,300,1000; their M and T "
                   "are the grid's) and/or triples n:M:T. Default: the whole grid.")
@click.option("--repeats", type=click.IntRange(min=1), default=None,
              help="Timed solve / loss+grad pairs per size (default: enough for --time-budget, at least 3).")
@click.option("--time-budget", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Seconds of timed calls per size when --repeats is not given.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Numba threads (default: Numba's default, one per core).")
@click.option("--precision", type=click.Choice(["float64", "float32"]), default="float64", show_default=True,
              help="Arithmetic precision; float32 on the cuda backend only.")
@click.option("--rtol", type=click.FloatRange(min=0, min_open=True), default=1e-6, show_default=True)
@click.option("--atol", type=click.FloatRange(min=0, min_open=True), default=1e-8, show_default=True)
@click.option("--adjoint", type=click.Choice(["interpolating", "discrete"]), default="interpolating",
              show_default=True, help="loss_and_grad's adjoint (discrete: cpu backend only).")
@click.option("--adjoint-integrator", type=click.Choice(["auto", "dop853", "tsit5"]), default="auto",
              show_default=True, help="loss_and_grad's adjoint_integrator (auto: dop853 on cpu, tsit5 on cuda).")
@seed_option
@click.option("--floor", "with_floor", is_flag=True,
              help="First measure this machine's floor rates: float64 GEMM, tanh, memory copy (a few seconds).")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON lines on stdout, one per size (and one for --floor), instead of a table.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output on stderr.")
@run_command
def bench(backend, sizes, repeats, time_budget, threads, precision, rtol, atol, adjoint, adjoint_integrator, seed,
          with_floor, as_json, quiet):
    """Time the forward solve and loss+gradient on the standard benchmark grid.

    Problems: seeded random networks (3 in-edges per node, spectral radius 0.9), M conditions perturbing 1-2
    nodes, T observation times up to t = 20, MAE loss against noisy data; the grid (n, M, T) is (7, 30, 5),
    (19, 120, 5), (99, 89, 5), (300, 100, 5), (1000, 50, 5). Per size: the first call of each in this process
    (at the first size it includes loading or compiling the kernels), then medians of interleaved repeats, with
    threads and solver step counts. The full grid takes about a minute on 2 cores.

    Exit codes: 0 ok, 2 bad option (or --backend cuda without a usable GPU), 4 solver failure.
    """
    from cellbox_nb import benchmark as bm

    grid = bm.parse_sizes(sizes) if sizes is not None else list(bm.GRID)
    if precision == "float32" and backend != "cuda":
        raise ConfigError("--precision float32 needs --backend cuda")
    if adjoint == "discrete" and backend != "cpu":
        raise ConfigError("--adjoint discrete is available on the cpu backend only")
    if adjoint == "discrete" and adjoint_integrator != "auto":
        raise ConfigError("--adjoint-integrator: the discrete adjoint has no integrator of its own")
    if adjoint_integrator == "dop853" and backend != "cpu":
        raise ConfigError("--adjoint-integrator dop853 is available on the cpu backend only")
    bm.set_threads(threads)
    device = None
    if backend == "cuda":
        from cellbox_nb.cuda import require_cuda

        require_cuda()
        device = bm.cuda_device()
    head = _header()
    log = None if quiet else info
    if with_floor:
        from cellbox_nb import floor

        if log:
            log("[bench] floor rates: GEMM, tanh, copy")
        rec = floor.measure(grid=grid)
        _emit(rec | {"threads": bm.threads()} | head, as_json, _floor_lines)
    for k, (n, M, T) in enumerate(grid):
        rec = bm.bench_size(n, M, T, backend=backend, precision=precision, rtol=rtol, atol=atol, seed=seed,
                            repeats=repeats, time_budget=time_budget, log=log, adjoint=adjoint,
                            adjoint_integrator=adjoint_integrator)
        rec["device"] = device
        _emit(rec | head, as_json, (lambda r: _table_lines(r, not with_floor)) if k == 0 else _row_lines)


def _emit(rec, as_json, lines):
    if as_json:
        click.echo(json.dumps(rec, allow_nan=False))
        return
    for line in lines(rec):
        click.echo(line)


_COLS = (("n", "n", "{:d}"), ("M", "M", "{:d}"), ("T", "T", "{:d}"), ("solve s", "solve_s", "{:.4g}"),
         ("loss+grad s", "grad_s", "{:.4g}"), ("ratio", "ratio", "{:.2f}"), ("1st solve s", "solve_first_s", "{:.3g}"),
         ("1st grad s", "grad_first_s", "{:.3g}"), ("fwd steps", "steps_per_cond", "{:.1f}"),
         ("bwd steps", "bwd_steps_per_cond", "{:.1f}"), ("repeats", "repeats", "{:d}"))
_WIDTHS = [max(len(h), 8) for h, _, _ in _COLS]


def _machine_line(rec):
    m, v = rec["machine"], rec["versions"]
    return (f"# {m['cpu_model']}, {m['cpu_count']} CPUs, {m['uname']}; Python {v['python']}, numpy {v['numpy']}, "
            f"numba {v['numba']}, cellbox_nb {v['cellbox_nb']}; {rec['utc']}")


def _table_lines(rec, machine_line=True):
    where = f"backend {rec['backend']}" + (f" ({rec['device']})" if rec.get("device") else "")
    if machine_line:
        yield _machine_line(rec)
    yield (f"# {where}, {rec['precision']}, {rec['threads']} threads ({rec['threading_layer']}), rtol {rec['rtol']:g}, "
           f"atol {rec['atol']:g}, {rec['adjoint']} adjoint"
           + ("" if rec["adjoint"] == "discrete" else f" (lam: {rec['adjoint_integrator']})")
           + f", seed {rec['seed']}; medians of interleaved repeats; steps per condition")
    yield "  ".join(h.rjust(w) for (h, _, _), w in zip(_COLS, _WIDTHS))
    yield from _row_lines(rec)


def _row_lines(rec):
    yield "  ".join(fmt.format(rec[key]).rjust(w) for (_, key, fmt), w in zip(_COLS, _WIDTHS))


def _floor_lines(rec):
    yield _machine_line(rec)
    sq = rec["gemm_square"]
    yield (f"# floor: GEMM {sq['n']}x{sq['n']} {sq['gflops']:.1f} GFLOP/s; tanh {rec['tanh']['numpy_ns']:.2f} ns "
           f"(numpy), {rec['tanh']['numba_libm_ns']:.2f} ns (one thread, libm)"
           + ("" if rec["tanh"]["core_ns"] is None else f", {rec['tanh']['core_ns']:.2f} ns (one thread, core.tanh)")
           + f"; copy {rec['copy']['gbps']:.1f} GB/s")
    for g, mv in zip(rec["gemm"], rec["matvec_1thread"]):
        yield (f"# floor: n={g['n']} M={g['M']}: GEMM (n x n)@(n x M) {g['gflops']:.2f} GFLOP/s, one-thread matvecs "
               f"{mv['gflops']:.2f} GFLOP/s")
