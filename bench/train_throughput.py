"""Training throughput of ``cellbox-nb train``: epochs per second on the GSD network problem and on SK-MEL-133.
Prints one JSON object per case on stdout; progress on stderr.

    python bench/train_throughput.py                          # all cases
    python bench/train_throughput.py --cases gsd,skmel133 --epochs 100
    python bench/train_throughput.py --adjoint discrete       # the same with --set adjoint=discrete
    python bench/train_throughput.py --adjoint-integrator tsit5   # --set adjoint_integrator=tsit5

Cases (each a plain ``cellbox-nb train`` command, with ``--set patience=1000000`` so that early stopping cannot end
the run before ``--epochs``):

* ``gsd``: ``--network GSD``, the default simulated data (19 nodes, 30 conditions, 5 times; 20 train / 5 val);
* ``gsd120``: ``--network GSD --set conditions=120``, the size of the seed paper's GSD set-up;
* ``skmel133``: ``--data skmel133`` (99 nodes, 89 conditions, one time), default training config;
* ``skmel133_b8``: the same with the training settings of bench/skmel133.py (CellBox masks, learned decay, MSE,
  lr 0.01, batches of 8 conditions, L1 0.01, L2 1e-4).

Per case: ``first_epoch_s`` (process creation to the first epoch's progress line, with the Numba cache warm after
one warm-up run), ``epochs_per_s`` = epochs / wall_s (the training loop's wall time, from the results file: every
epoch, validation solves and checkpoint writes included), ``s_per_epoch`` its inverse, ``epochs_per_s_steady``
over epochs 2..N (without the first epoch, which loads the kernels), and ``process_s`` (the whole command).
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

NO_EARLY_STOP = ["--set", "patience=1000000"]
CASES = {
    "gsd": (["--network", "GSD"], 300),
    "gsd120": (["--network", "GSD", "--set", "conditions=120"], 100),
    "skmel133": (["--data", "skmel133"], 200),
    "skmel133_b8": (["--data", "skmel133", "--set", "cellbox_masks=true", "--set", "learn_decay=true",
                     "--set", "loss=mse", "--set", "lr=0.01", "--set", "batch_size=8", "--set", "l1=0.01",
                     "--set", "l2=0.0001"], 100),
}


def run_case(name, extra, epochs, threads, adjoint, integrator="auto"):
    from cellbox_nb.fit.store import read_fit

    env = dict(os.environ)
    if threads:
        env["NUMBA_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory(prefix="cellbox_tp_") as tmp:
        out = os.path.join(tmp, "fit.h5")
        base = [common.console_script(), "train", *extra, *NO_EARLY_STOP, "--set", f"adjoint={adjoint}",
                "--set", f"adjoint_integrator={integrator}"]
        args = base + ["--epochs", str(epochs), "--out", out, "--overwrite"]
        common.log(f"[throughput] {name}: warm-up start")
        common.run_to_first_epoch(base + ["--epochs", "2", "--out", out, "--overwrite"], env=env)
        common.log(f"[throughput] {name}: {epochs} epochs")
        load = common.loadavg()
        r = common.run_to_first_epoch(args, env=env)
        if r["returncode"] != 0:
            raise SystemExit(f"{name}: cellbox-nb train failed (exit {r['returncode']}):\n{r['stderr']}")
        fit = read_fit(out)
    h, m = fit["history"], fit["metrics"]
    ds, (train, val, test) = fit["dataset"], fit["split"]
    wall = float(h["wall_s"][-1])
    done = int(h["epoch"][-1])
    cfg = fit["config"]
    return {
        "case": name, "command": " ".join(["cellbox-nb", *base[1:], "--epochs", str(epochs), "--out", "fit.h5"]),
        "n": int(ds.n), "conditions": int(ds.M), "times": int(ds.T), "train": int(train.size),
        "val": int(val.size), "test": int(test.size), "batch_size": cfg["batch_size"], "loss": cfg["loss"],
        "adjoint": cfg["adjoint"], "adjoint_integrator": cfg["adjoint_integrator"],
        "epochs": done, "status": m["status"], "first_epoch_s": r["first_epoch_s"], "process_s": r["total_s"],
        "wall_s": wall, "epochs_per_s": done / wall, "s_per_epoch": wall / done,
        "first_epoch_loop_s": float(h["wall_s"][0]),
        "epochs_per_s_steady": (done - 1) / (wall - float(h["wall_s"][0])) if done > 1 else None,
        "threads": int(threads) if threads else common.threads(), "loadavg_start": load,
        "loadavg_end": common.loadavg(), "machine": common.machine(), "versions": common.versions(),
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per case (default: per case, 100-300)")
    parser.add_argument("--threads", type=int, default=None, help="NUMBA_NUM_THREADS for the runs")
    parser.add_argument("--adjoint", choices=("interpolating", "discrete"), default="interpolating",
                        help="the training key adjoint (default: the library's default)")
    parser.add_argument("--adjoint-integrator", choices=("auto", "dop853", "tsit5"), default="auto",
                        help="the training key adjoint_integrator (default: the library's default)")
    args = parser.parse_args(argv)
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    bad = [c for c in names if c not in CASES]
    if bad:
        raise SystemExit(f"--cases: unknown {', '.join(bad)} (choose from {', '.join(CASES)})")
    for name in names:
        extra, epochs = CASES[name]
        common.emit(run_case(name, extra, args.epochs or epochs, args.threads, args.adjoint,
                             args.adjoint_integrator))


if __name__ == "__main__":
    main()
