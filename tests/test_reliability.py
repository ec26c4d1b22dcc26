"""Crash safety and numerical faults of `cellbox-nb train`.

- 20 SIGKILLs at seeded random points of short runs: the results file always opens with read_fit, and
  ``--resume`` always ends with bitwise the parameters, history (but wall_s), predictions and split of an
  uninterrupted run;
- SIGTERM, SIGUSR1 and SIGINT (Ctrl-C) write a checkpoint and exit 75, and the resumed fit equals the uninterrupted one;
- an existing results file is never replaced without ``--overwrite``;
- an explosive learning rate: rejected steps are recorded, the failed update is taken back, the parameters stay
  finite, and ``max_rejections`` consecutive rejections end with status numerical_failure (exit code 4);
- a second process reads a running fit's history at any moment (the file is replaced atomically).
"""

import math
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from cellbox_nb.data.dataset import simulate
from cellbox_nb.errors import Interrupted
from cellbox_nb.fit.config import resolve
from cellbox_nb.fit.store import read_fit
from cellbox_nb.fit.train import train

CLI = [sys.executable, "-m", "cellbox_nb._cli.main"]
EPOCHS = 400
CKPT = 10
# A short LI fit that uses every piece of state a resume must restore: mini-batches (batch order RNG), sampled
# time points (RNG), the plateau schedule and the early-stopping counters; a checkpoint every CKPT epochs.  Long
# enough (about 1-2 s) that a kill lands mid-run also on a quiet, fast machine.
SHORT = ["train", "--network", "LI", "--quiet", "--epochs", str(EPOCHS), "--set", "conditions=12",
         "--set", "batch_size=4", "--set", "time_points=2", "--set", "patience=100000", "--set", "lr_patience=10",
         "--set", f"checkpoint_every={CKPT}", "--set", "checkpoint_seconds=1e9"]
TRIALS = 20


def _env():
    # one Numba thread: results do not depend on the thread count (tests/test_train.py), and short runs on a busy
    # CI machine are much faster without spinning worker threads
    env = {k: v for k, v in os.environ.items() if k != "CELLBOX_NB_DEBUG"}
    env["NUMBA_NUM_THREADS"] = "1"
    return env


def _run(args, check=True):
    res = subprocess.run(CLI + args, capture_output=True, text=True, env=_env(), timeout=300)
    if check and res.returncode != 0:
        raise AssertionError(res.stderr)
    return res


def _rows(path):
    """Committed history rows of a results file, or -1 while it does not exist yet."""
    if not os.path.exists(path):
        return -1
    with h5py.File(path, "r") as f:
        return int(f["history"].attrs["rows"])


def _assert_same_fit(a, b):
    """Bitwise equality of everything but wall-clock times."""
    for key in ("final", "best"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert np.array_equal(a[key][name], b[key][name]), (key, name)
    assert a["history"].keys() == b["history"].keys()
    for col in a["history"]:
        if col != "wall_s":
            assert np.array_equal(a["history"][col], b["history"][col], equal_nan=True), col
    assert a["best_epoch"] == b["best_epoch"] and a["status"] == b["status"]
    for s_a, s_b in zip(a["split"], b["split"]):
        assert np.array_equal(s_a, s_b)
    assert np.array_equal(a["predictions"], b["predictions"], equal_nan=True)
    drop = ("wall_s",)
    assert {k: v for k, v in a["metrics"].items() if k not in drop} == \
        {k: v for k, v in b["metrics"].items() if k not in drop}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    _run(SHORT + ["--out", str(out)])
    fit = read_fit(out)
    assert fit["status"] == "finished" and len(fit["history"]["epoch"]) == EPOCHS
    return fit


def test_sigkill_at_random_points_then_resume_is_bitwise(reference, tmp_path):
    """20 trials: SIGKILL after a seeded random epoch (between the first checkpoint and the end) plus a random
    delay of up to ~3 epochs, so kills land inside epochs and inside checkpoint writes as well as between them."""
    rng = np.random.default_rng(20261126)
    epoch_s = float(reference["history"]["wall_s"][-1]) / EPOCHS
    killed_at = []
    for trial in range(TRIALS):
        out = tmp_path / f"kill{trial}.h5"
        target = int(rng.integers(CKPT, EPOCHS - 2 * CKPT))
        delay = float(rng.uniform(0.0, 3.0)) * epoch_s
        proc = subprocess.Popen(CLI + SHORT + ["--out", str(out)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=_env())
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and _rows(out) < target:
            time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        partial = read_fit(out, with_checkpoint=True)  # never a half-written file
        rows = len(partial["history"]["epoch"])
        killed_at.append(rows)
        assert partial["status"] in ("running", "finished"), partial["status"]
        assert rows % CKPT == 0 or partial["status"] == "finished", rows
        _run(["train", "--resume", "--out", str(out)] + SHORT[1:])
        _assert_same_fit(reference, read_fit(out))
    # the kills really happened mid-run, spread over the run
    assert sum(0 < r < EPOCHS for r in killed_at) >= TRIALS * 3 // 4, killed_at
    assert len(set(killed_at)) >= 8, killed_at


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT], ids=["SIGTERM", "SIGUSR1", "SIGINT"])
def test_signal_writes_checkpoint_exits_75_and_resume_matches(reference, tmp_path, sig):
    out = tmp_path / "sig.h5"
    # (SIGINT at its default in the child: a test run from a script's background job inherits it ignored, and
    # the command leaves an ignored SIGINT ignored)
    proc = subprocess.Popen(CLI + SHORT + ["--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and _rows(out) < 3:
        time.sleep(0.002)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 75, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if sig == signal.SIGINT:  # Ctrl-C says what it will do first (it used to be an internal error, no checkpoint)
        assert lines[0].startswith("interrupt: stopping after this epoch"), stderr
        lines = lines[1:]
    assert len(lines) == 1 and f"stopped by {sig.name}" in lines[0] and "--resume" in lines[0], stderr
    assert "Traceback" not in stderr and stdout == ""
    fit = read_fit(out, with_checkpoint=True)
    rows = len(fit["history"]["epoch"])
    assert fit["status"] == "interrupted" and 3 <= rows < EPOCHS and fit["checkpoint"]["epoch"] == rows
    _run(["train", "--resume", "--out", str(out)] + SHORT[1:])
    _assert_same_fit(reference, read_fit(out))


def test_existing_results_are_never_replaced_without_overwrite(reference, tmp_path):
    out = tmp_path / "fit.h5"
    _run(["train", "--network", "LI", "--quiet", "--epochs", "2", "--out", str(out)])
    before = out.read_bytes()
    for args in (["train", "--network", "LI", "--epochs", "3"], ["simulate", "--network", "LI"]):
        res = _run(args + ["--out", str(out)], check=False)
        assert res.returncode == 2 and "pass --overwrite" in res.stderr and "Traceback" not in res.stderr
        assert out.read_bytes() == before
    # resuming a finished fit returns it unchanged
    _run(["train", "--resume", "--network", "LI", "--quiet", "--epochs", "2", "--out", str(out)])
    assert out.read_bytes() == before
    _run(["train", "--network", "LI", "--quiet", "--epochs", "3", "--overwrite", "--out", str(out)])
    assert len(read_fit(out)["history"]["epoch"]) == 3
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # no temporary files left


def test_a_results_file_has_one_writer_at_a_time(tmp_path):
    """While one process writes a results file (here: this test holds its lock), a second `train` on the same
    path is refused with exit code 2, also with --overwrite or --resume, and the file is untouched (two runs
    used to write it in turn: the last checkpoint won, and a --resume deleted the other's temporary file)."""
    from cellbox_nb.data.h5atomic import writer_lock

    out = tmp_path / "fit.h5"
    _run(["train", "--network", "LI", "--quiet", "--epochs", "2", "--out", str(out)])
    before = out.read_bytes()
    with writer_lock(out):
        assert (tmp_path / ".fit.h5.lock").read_text().strip() == str(os.getpid())
        for extra in (["--overwrite"], ["--resume"]):
            res = _run(["train", "--network", "LI", "--quiet", "--epochs", "2", "--out", str(out)] + extra,
                       check=False)
            assert res.returncode == 2 and "being written by another cellbox-nb process" in res.stderr
            assert f"pid {os.getpid()}" in res.stderr and len(res.stderr.splitlines()) == 1
    assert out.read_bytes() == before and not (tmp_path / ".fit.h5.lock").exists()
    # released: a run goes ahead, and a resume of the ended fit with another config is refused (it used to print
    # the old fit's metrics as if it had written them)
    res = _run(["train", "--resume", "--network", "LI", "--quiet", "--epochs", "2", "--out", str(out)])
    assert "nothing to resume" in res.stderr and out.read_bytes() == before
    res = _run(["train", "--resume", "--network", "CY", "--quiet", "--epochs", "2", "--out", str(out)], check=False)
    assert res.returncode == 2 and "the config differs" in res.stderr and out.read_bytes() == before


def test_a_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch):
    """Every write of a results or dataset file fails with ENOSPC (the temporary's writes are made to fail as on a
    full disk): exit code 2, one line naming the file, the previous file unchanged, no temporary left.  HDF5 files
    are built in memory first because HDF5's own I/O did not survive a full disk (a segmentation fault in
    File.close during the final write, found on a 300 KiB tmpfs)."""
    import errno

    from click.testing import CliRunner

    from cellbox_nb._cli.main import cli
    from cellbox_nb.data import h5atomic

    out = tmp_path / "d.h5"
    runner = CliRunner()
    assert runner.invoke(cli, ["simulate", "--network", "CY", "--conditions", "2", "--out", str(out)]).exit_code == 0
    before = out.read_bytes()

    class Full:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(h5atomic, "open", Full, raising=False)
    res = runner.invoke(cli, ["simulate", "--network", "CY", "--conditions", "3", "--out", str(out), "--overwrite"])
    assert res.exit_code == 2, res.output
    assert res.stderr.strip() == f"error: cannot write or read '{out}': No space left on device"
    assert out.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["d.h5"]


# -- numerical faults ---------------------------------------------------------------------------------------
# learn_decay with lr = 100: the first Adam step moves every entry by ~lr, which drives some decays d_i to about
# -99, so x grows like exp(99 t): the solve overflows and the next step is rejected.
EXPLOSIVE = {"learn_decay": True, "lr": 100.0, "schedule": "constant", "epochs": 30, "conditions": 12,
             "times": 3, "checkpoint_seconds": 1e9}


@pytest.fixture(scope="module")
def li12():
    return simulate("LI", conditions=12, times=3, seed=0)


def test_explosive_lr_rejects_steps_takes_them_back_and_stays_finite(li12, tmp_path):
    cfg = resolve(EXPLOSIVE)
    fit = train(li12, cfg, tmp_path / "boom.h5")
    h = fit["history"]
    rejected = h["rejected"]
    assert fit["status"] == "finished" and len(h["epoch"]) == cfg["epochs"]
    assert rejected.sum() >= 3, rejected  # the solver really failed, several times
    assert np.all(np.isnan(h["train_loss"][rejected > 0]))  # (one step per epoch: a rejected epoch has no loss)
    # each rejection halves lr and takes back the update that caused it, so the next epoch starts from the last
    # good parameters: its training loss is the one of the epoch before the failed update
    for e in np.flatnonzero(rejected)[:-1]:
        assert h["lr"][e] == h["lr"][e - 1] * cfg["lr_factor"]
    first = int(np.flatnonzero(rejected)[0])
    assert h["train_loss"][first + 1] == h["train_loss"][first - 1]
    last = int(np.flatnonzero(rejected)[-1])
    assert np.all(np.isfinite(h["train_loss"][last + 1:])) and last + 1 < cfg["epochs"]
    for key in ("final", "best"):
        for name, value in fit[key].items():
            assert np.all(np.isfinite(value)), (key, name)
    assert np.all(fit["final"]["d"] > 0)


def test_explosive_lr_resume_across_a_rejection_is_bitwise(li12, tmp_path):
    """Interrupt right after the explosive first update (before its rejection): the checkpoint must hold the
    update to take back, so the resumed fit equals the uninterrupted one."""
    cfg = resolve(EXPLOSIVE)
    ref = train(li12, cfg, tmp_path / "ref.h5")
    out = tmp_path / "int.h5"
    with pytest.raises(Interrupted):
        train(li12, cfg, out, stop_requested=lambda: "SIGTERM")
    ck = read_fit(out, with_checkpoint=True)["checkpoint"]
    assert ck["epoch"] == 1 and ck["undo_step"] == 0
    _assert_same_fit(ref, train(li12, cfg, out, resume=True))


def test_repeated_rejections_stop_with_numerical_failure_exit_4(tmp_path):
    out = tmp_path / "fail.h5"
    args = ["train", "--network", "LI", "--quiet", "--out", str(out), "--epochs", "10", "--lr", "100",
            "--set", "learn_decay=true", "--set", "schedule=constant", "--set", "conditions=12",
            "--set", "max_rejections=1"]
    res = _run(args, check=False)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 4 and len(lines) == 1 and "consecutive rejected steps" in lines[0], res.stderr
    assert "Traceback" not in res.stderr
    fit = read_fit(out)
    assert fit["status"] == "numerical_failure" and fit["history"]["rejected"].tolist() == [0.0, 1.0]
    # the file keeps the last good parameters: here the initial ones, from before the explosive update
    n = fit["final"]["W"].shape[0]
    assert np.array_equal(fit["final"]["W"], np.zeros((n, n)))
    assert np.array_equal(fit["final"]["alpha"], np.full(n, 0.5)) and np.array_equal(fit["final"]["d"], np.ones(n))


# -- monitoring ---------------------------------------------------------------------------------------------
def test_second_process_reads_the_history_of_a_running_fit(tmp_path):
    """Read the results file as fast as possible while `train` rewrites it after every epoch (checkpoint_seconds=0;
    a timed interval as short as 0.02 s is stretched to 9 rewrite times): every read succeeds, the history only
    grows, epochs are 1..rows, and the last read matches the finished fit."""
    out = tmp_path / "live.h5"
    args = ["train", "--network", "LI", "--quiet", "--epochs", "150", "--set", "patience=100000",
            "--set", "checkpoint_seconds=0", "--out", str(out)]
    proc = subprocess.Popen(CLI + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
    seen, reads = [], 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        done = proc.poll() is not None
        if out.exists():
            fit = read_fit(out)  # must never fail, whatever moment the writer is at
            reads += 1
            h = fit["history"]
            rows = len(h["epoch"])
            assert all(len(col) == rows for col in h.values())
            assert np.array_equal(h["epoch"], np.arange(1, rows + 1))
            assert not seen or rows >= seen[-1][1]
            seen.append((fit["status"], rows))
        if done:
            break
        time.sleep(0.005)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    running = {rows for status, rows in seen if status == "running"}
    assert len(running) >= 5, seen  # the history was seen growing
    assert seen[-1] == ("finished", 150)
    assert not math.isnan(read_fit(out)["history"]["train_loss"][-1])
