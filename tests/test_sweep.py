"""Sweeps (`cellbox-nb sweep`): a 4-fit sweep on a 2-worker LocalCluster equals the same fits run one by one
(bitwise), killing it midway and rerunning redoes only the unfinished fits, `--task-index` (and
$SLURM_ARRAY_TASK_ID) reproduces a row, failed fits are reported and retried, SIGTERM exits 75 and the rerun
finishes the sweep, and the thread budget never exceeds the cores given.  Bad specs: tests/bad_inputs (sweep/).
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

pytest.importorskip("distributed", reason="cellbox-nb sweep runs on Dask distributed (pip install -e '.[test]')")

from cellbox_nb._cli.main import cli  # noqa: E402
from cellbox_nb.data.dataset import simulate  # noqa: E402
from cellbox_nb.fit.config import resolve  # noqa: E402
from cellbox_nb.fit.store import read_fit  # noqa: E402
from cellbox_nb.fit.train import train  # noqa: E402
from cellbox_nb.sweep import expand, thread_budget, worker_env  # noqa: E402

CLI = [sys.executable, "-m", "cellbox_nb._cli.main"]
# Four short LI fits that use every piece of state a resume restores (mini-batches, sampled time points, random
# init, plateau schedule), with a checkpoint every 10 epochs; about 1-3 s each.
BASE = {"network": "LI", "conditions": 12, "epochs": 300, "batch_size": 4, "time_points": 2, "init": "random",
        "patience": 100000, "lr_patience": 10, "checkpoint_every": 10, "checkpoint_seconds": 1e9}
GRID = {"data_seed": [0, 1], "lr": [0.01, 0.03]}
POINTS = [{"data_seed": s, "lr": lr} for s in GRID["data_seed"] for lr in GRID["lr"]]  # row order: last key fastest


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("CELLBOX_NB_DEBUG", "SLURM_ARRAY_TASK_ID",
                                                            "SLURM_CPUS_PER_TASK")}
    env.update(extra)
    return env


def _write_spec(folder, spec):
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def _fits(out):
    return sorted(p for p in os.listdir(out) if p.startswith("fit-") and p.endswith(".h5"))


def _done(out):
    """Names of the results files that are complete with a final status."""
    done = []
    if not os.path.isdir(out):
        return done
    for name in _fits(out):
        try:
            if read_fit(os.path.join(out, name))["status"] in ("finished", "early_stopped"):
                done.append(name)
        except Exception:  # a file being replaced right now
            pass
    return done


def _assert_same_fit(a, b):
    """Bitwise equality of everything but wall-clock times."""
    for key in ("final", "best"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert np.array_equal(a[key][name], b[key][name]), (key, name)
    for col in a["history"]:
        if col != "wall_s":
            assert np.array_equal(a["history"][col], b["history"][col], equal_nan=True), col
    assert a["best_epoch"] == b["best_epoch"] and a["status"] == b["status"] and a["config"] == b["config"]
    for s_a, s_b in zip(a["split"], b["split"]):
        assert np.array_equal(s_a, s_b)
    assert np.array_equal(a["predictions"], b["predictions"], equal_nan=True)
    assert {k: v for k, v in a["metrics"].items() if k != "wall_s"} == \
        {k: v for k, v in b["metrics"].items() if k != "wall_s"}


@pytest.fixture(scope="module")
def one_by_one(tmp_path_factory):
    """The four fits run one by one in this process through the plain Python API (not through the sweep code)."""
    folder = tmp_path_factory.mktemp("serial")
    out = []
    for j, point in enumerate(POINTS):
        cfg = resolve(BASE, point)
        ds = simulate(cfg["network"], conditions=cfg["conditions"], times=cfg["times"], tfinal=cfg["tfinal"],
                      noise=cfg["noise"], max_targets=cfg["max_targets"], seed=cfg["data_seed"])
        out.append(train(ds, cfg, folder / f"serial{j}.h5"))
    return out


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """Run the sweep on a 2-worker LocalCluster, SIGKILL its whole process group once 1-3 fits are done, run it
    again; return what each run saw."""
    folder = tmp_path_factory.mktemp("sweep")
    spec = _write_spec(folder, {"base": BASE, "grid": GRID})
    out = folder / "out"
    args = CLI + ["sweep", str(spec), "--out", str(out), "--workers", "2", "--threads", "1", "--json"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(),
                            start_new_session=True)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline and not _done(out):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Dask scheduler, nannies and workers
    proc.wait()
    done_at_kill = _done(out)
    stats = {name: os.stat(out / name) for name in done_at_kill}
    for _ in range(100):  # every process of the killed sweep is gone
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("processes of the killed sweep are still running")
    rerun = subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=300)
    return {"spec": spec, "out": out, "done_at_kill": done_at_kill, "stats": stats, "rerun": rerun}


def test_sweep_equals_fits_run_one_by_one_bitwise(swept, one_by_one):
    rows = expand({"base": BASE, "grid": GRID})
    assert swept["rerun"].returncode == 0, swept["rerun"].stderr
    assert len(_fits(swept["out"])) == 4
    for row, ref in zip(rows, one_by_one):
        _assert_same_fit(read_fit(swept["out"] / row["file"]), ref)


def test_killed_sweep_reruns_only_unfinished_fits(swept):
    done = swept["done_at_kill"]
    assert 1 <= len(done) <= 3, done  # the kill landed midway
    report = json.loads(swept["rerun"].stdout)
    actions = {r["file"]: r["action"] for r in report["rows"]}
    assert {f for f, a in actions.items() if a == "skipped"} == set(done), actions
    assert all(actions[f] in ("ran", "resumed") for f in actions if f not in done), actions
    for name, before in swept["stats"].items():  # a done fit's file was not rewritten
        after = os.stat(swept["out"] / name)
        assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    assert report["status"] == {"finished": 4} and report["fits"] == 4
    summary = json.loads((swept["out"] / "summary.json").read_text())
    assert summary["counts"] == {"fits": 4, "finished": 4}
    assert [r["numba_threads"] for r in summary["rows"] if r["action"] != "skipped"] == \
        [1] * (4 - len(done))  # one Numba thread per worker: 2 workers x 1 thread on 2 cores
    csv = (swept["out"] / "summary.csv").read_text().splitlines()
    header = csv[0].split(",")
    assert len(csv) == 5 and {"status", "data_seed", "lr", "pearson_W", "auroc", "mae_test"} <= set(header)
    # a second rerun has nothing to do and starts no cluster
    again = subprocess.run(CLI + ["sweep", str(swept["spec"]), "--out", str(swept["out"]), "--json"],
                           capture_output=True, text=True, env=_env(), timeout=120)
    assert again.returncode == 0 and json.loads(again.stdout)["actions"] == {"skipped": 4}, again.stderr


def test_task_index_reproduces_the_sweep_row(swept, tmp_path):
    rows = expand({"base": BASE, "grid": GRID})
    out = tmp_path / "array"
    res = subprocess.run(CLI + ["sweep", str(swept["spec"]), "--out", str(out), "--task-index", "2", "--json"],
                         capture_output=True, text=True, env=_env(), timeout=120)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["index"] == 2 and summary["status"] == "finished" and summary["file"] == rows[2]["file"]
    # $SLURM_ARRAY_TASK_ID is the default task index; SLURM_CPUS_PER_TASK sets the Numba threads
    res = subprocess.run(CLI + ["sweep", str(swept["spec"]), "--out", str(out), "--json"], capture_output=True,
                         text=True, env=_env(SLURM_ARRAY_TASK_ID="1", SLURM_CPUS_PER_TASK="1"), timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["index"] == 1 and json.loads(res.stdout)["numba_threads"] == 1
    assert _fits(out) == sorted([rows[1]["file"], rows[2]["file"]])  # one task writes one fit, no summary
    for i in (1, 2):
        _assert_same_fit(read_fit(out / rows[i]["file"]), read_fit(swept["out"] / rows[i]["file"]))
    res = subprocess.run(CLI + ["sweep", str(swept["spec"]), "--out", str(out), "--task-index", "4"],
                         capture_output=True, text=True, env=_env(), timeout=120)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == \
        ["error: --task-index 4 is out of range: the spec has 4 fit(s), rows 0..3"]
    # the job-array workflow's last step: collect the summary without running anything
    res = subprocess.run(CLI + ["sweep", str(swept["spec"]), "--out", str(out), "--collect", "--json"],
                         capture_output=True, text=True, env=_env(), timeout=120)
    assert res.returncode == 75, res.stderr  # rows 0 and 3 have not run here: resumable, not an error of theirs
    assert json.loads(res.stdout)["status"] == {"finished": 2, "pending": 2}
    assert "2 of 4 fit(s) did not end ok: rows 0 (pending), 3 (pending)" in res.stderr
    # the threads each fit ran with come from its results file (row 1's task ran with SLURM_CPUS_PER_TASK=1)
    collected = json.loads((out / "summary.json").read_text())["rows"]
    assert [r["numba_threads"] for r in collected] == [None, 1, summary["numba_threads"], None]


def test_failed_fits_are_reported_and_retried(tmp_path):
    """Row 1 ends in a numerical failure (a result: not retried); row 2 raises an error inside the fit (prune by
    validation loss without validation conditions, which only the fit's split shows) and is retried --retries
    times; the sweep exits with row 1's code, 4."""
    spec = _write_spec(tmp_path, {"base": {"network": "LI", "conditions": 12, "epochs": 10, "times": 3},
                                  "fits": [{}, {"learn_decay": True, "lr": 100.0, "schedule": "constant",
                                                "max_rejections": 1},
                                           {"prune": True, "prune_select": "val", "val_frac": 0, "n_val": 0}]})
    out = tmp_path / "out"
    res = subprocess.run(CLI + ["sweep", str(spec), "--out", str(out), "--retries", "2", "--workers", "1",
                                "--json"], capture_output=True, text=True, env=_env(), timeout=300)
    assert res.returncode == 4, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: 2 of 3 fit(s) did not end ok: rows 1 (numerical_failure), 2 (failed); messages in "
                      f"'{out / 'summary.csv'}'"], res.stderr
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert [r["status"] for r in rows] == ["finished", "numerical_failure", "failed"]
    assert [r["attempts"] for r in rows] == [1, 1, 3]
    assert "consecutive rejected steps" in rows[1]["message"] and rows[1]["exit_code"] == 4
    assert "prune_select" in rows[2]["message"] and rows[2]["exit_code"] == 2
    assert read_fit(out / rows[1]["file"])["status"] == "numerical_failure"


def test_sigterm_stops_the_sweep_with_75_and_the_rerun_finishes_it(tmp_path, one_by_one):
    spec = _write_spec(tmp_path, {"base": BASE, "grid": GRID})
    out = tmp_path / "out"
    args = CLI + ["sweep", str(spec), "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + 240  # a hang guard, not a timing assertion

    def checkpointed():  # some fit has written its first checkpoint (every 10 epochs), so SIGTERM lands mid-sweep
        return out.is_dir() and any(len(read_fit(out / f)["history"]["epoch"]) >= 10 for f in _fits(out))

    while proc.poll() is None and time.monotonic() < deadline and not checkpointed():
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 75, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "sweep stopped by SIGTERM" in errors[0] and "run the same command" in errors[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"].get("finished", 0) < 4
    interrupted = [r for r in summary["rows"] if r["status"] == "interrupted"]
    for r in interrupted:  # running fits wrote a checkpoint and stopped
        assert read_fit(out / r["file"])["status"] == "interrupted"
    res = subprocess.run(args + ["--json"], capture_output=True, text=True, env=_env(), timeout=300)
    assert res.returncode == 0, res.stderr
    for row, ref in zip(expand({"base": BASE, "grid": GRID}), one_by_one):
        _assert_same_fit(read_fit(out / row["file"]), ref)


# -- thread budget ------------------------------------------------------------------------------------------
def test_thread_budget_never_exceeds_the_cores():
    assert thread_budget(cores=8) == (8, 1)
    assert thread_budget(threads=2, cores=8) == (4, 2)
    assert thread_budget(threads=3, cores=8) == (2, 3)
    assert thread_budget(workers=2, threads=4, cores=8) == (2, 4)
    for workers, threads in ((3, 3), (9, 1), (1, 9)):
        with pytest.raises(ValueError, match="core"):
            thread_budget(workers=workers, threads=threads, cores=8)
    assert thread_budget(cores=8, fits=3) == (3, 1)  # (no more workers than fits)
    assert thread_budget(workers=5, cores=8, fits=3) == (5, 1)  # (as asked)
    env = worker_env(2)
    assert env["NUMBA_NUM_THREADS"] == "2"
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"


def test_cores_come_from_slurm_or_the_affinity_mask(tmp_path):
    spec = _write_spec(tmp_path, {"base": {"network": "LI", "epochs": 1}, "grid": {"seed": [0, 1, 2]}})
    runner = CliRunner()
    res = runner.invoke(cli, ["sweep", str(spec), "--dry-run", "--json"], env={"SLURM_CPUS_PER_TASK": "3"})
    plan = json.loads(res.stdout)
    assert res.exit_code == 0 and (plan["cores"], plan["workers"], plan["threads"]) == (3, 3, 1)
    res = runner.invoke(cli, ["sweep", str(spec), "--dry-run", "--json", "--threads", "2"],
                        env={"SLURM_CPUS_PER_TASK": "5"})
    assert json.loads(res.stdout)["workers"] == 2
    res = runner.invoke(cli, ["sweep", str(spec), "--dry-run", "--workers", "2"], env={"SLURM_CPUS_PER_TASK": "1"})
    assert res.exit_code == 2 and "exceed the 1 core(s)" in res.stderr
    res = runner.invoke(cli, ["sweep", str(spec), "--dry-run", "--json"], env={"SLURM_CPUS_PER_TASK": "64"})
    assert json.loads(res.stdout)["workers"] == 3  # one per fit
    res = runner.invoke(cli, ["sweep", str(spec), "--dry-run", "--json"], env={"SLURM_CPUS_PER_TASK": None})
    assert json.loads(res.stdout)["cores"] == len(os.sched_getaffinity(0))
    assert not (tmp_path / "spec_sweep").exists()  # a dry run writes nothing
    # SLURM_ARRAY_TASK_ID is not a row with --dry-run (or --collect), so it is not read there; elsewhere it is
    res = runner.invoke(cli, ["sweep", str(spec), "--dry-run", "--json"], env={"SLURM_ARRAY_TASK_ID": "abc"})
    assert res.exit_code == 0, res.stderr
    res = runner.invoke(cli, ["sweep", str(spec)], env={"SLURM_ARRAY_TASK_ID": "abc"})
    assert res.exit_code == 2 and res.stderr.splitlines() == [
        "error: SLURM_ARRAY_TASK_ID 'abc' is not a row index (a whole number >= 0); unset it to run the whole sweep "
        "on Dask"]
    (tmp_path / "afile").write_text("")
    res = runner.invoke(cli, ["sweep", str(spec), "--out", str(tmp_path / "afile" / "sub"), "--task-index", "0"])
    assert res.exit_code == 2 and res.stderr.splitlines() == [
        f"error: output folder '{tmp_path / 'afile'}' is a file, not a folder"]
    assert not (tmp_path / "spec_sweep").exists()


def test_spec_rows_order_and_varying_keys():
    rows = expand({"base": {"network": "LI", "epochs": 5}, "grid": {"seed": [0, 1], "lr": [0.1, 0.2]},
                   "fits": [{"network": "CY"}, {"data": "skmel133"}]})
    assert len(rows) == 8
    assert [(r["vars"].get("data"), r["vars"]["network"], r["vars"]["seed"], r["vars"]["lr"]) for r in rows[:5]] == \
        [(None, "CY", 0, 0.1), (None, "CY", 0, 0.2), (None, "CY", 1, 0.1), (None, "CY", 1, 0.2),
         ("skmel133", "LI", 0, 0.1)]
    assert "epochs" not in rows[0]["vars"]  # the same in every row
    names = [r["file"] for r in rows]
    assert len(set(names)) == 8 and names[3].startswith("fit-0003-")
    # the file name depends on the row's resolved config: a changed value is a different file
    assert expand({"fits": [{"lr": 0.1}]})[0]["file"] != expand({"fits": [{"lr": 0.2}]})[0]["file"]
    assert expand({"fits": [{"lr": 0.1}]})[0]["file"] == expand({"fits": [{"lr": 0.1, "epochs": 3000}]})[0]["file"]


def test_row_names_do_not_change_when_a_config_key_is_added():
    """A key added later (fit.config.LATE_KEYS) is left out of a row's hash while at its default, so a sweep folder
    written before it existed keeps its file names; set to another value, it names another file."""
    import hashlib

    from cellbox_nb.fit.config import DEFAULTS, LATE_KEYS

    row = expand({"fits": [{"lr": 0.1}]})[0]
    old_cfg = {k: v for k, v in row["config"].items() if k not in LATE_KEYS}  # the config as an older version had it
    old_key = json.dumps({"config": old_cfg, "data": None}, sort_keys=True)
    assert row["file"] == f"fit-0000-{hashlib.sha256(old_key.encode()).hexdigest()[:10]}.h5"
    assert "adjoint_rtol" in LATE_KEYS and DEFAULTS["adjoint_rtol"] is None
    assert "adjoint_integrator" in LATE_KEYS and DEFAULTS["adjoint_integrator"] == "auto"
    assert expand({"fits": [{"lr": 0.1, "adjoint_rtol": 1e-5}]})[0]["file"] != row["file"]
    assert expand({"fits": [{"lr": 0.1, "adjoint_integrator": "tsit5"}]})[0]["file"] != row["file"]


# A process whose environment gets NUMBA_NUM_THREADS changed after Numba started its thread pool (what a Dask
# worker's env does) and that then compiles a function: Numba rereads the variable at every compilation.
POOL_SCRIPT = """
import os
import numpy as np
from numba import njit, prange, get_num_threads

@njit(parallel=True)
def total(x):
    s = 0.0
    for i in prange(x.size):
        s += x[i]
    return s

total(np.ones(8))                      # the pool starts with NUMBA_NUM_THREADS = 2 threads
os.environ["NUMBA_NUM_THREADS"] = "1"  # the worker's env, applied after the import
{guard}

@njit
def one_more(x):                       # a compilation, as with an empty or stale kernel cache
    return x + 1

print(one_more(1), get_num_threads())
"""


@pytest.mark.parametrize("guard", [False, True])
def test_changed_numba_thread_variable_is_made_consistent_before_compiling(guard):
    """Without the guard the compilation fails with Numba's "Cannot set NUMBA_NUM_THREADS ... once the threads have
    been launched" (this is how every sweep fit failed on a cold cache); limit_threads (called by every sweep row)
    restores the variable to the pool's size and lowers the threads used to the budget instead."""
    code = POOL_SCRIPT.format(guard="from cellbox_nb.fit.threads import limit_threads; limit_threads(1)"
                              if guard else "")
    res = subprocess.run([sys.executable, "-c", code], env=_env(NUMBA_NUM_THREADS="2"), capture_output=True,
                         text=True, timeout=300)
    if guard:
        assert res.returncode == 0, res.stderr
        assert res.stdout.split() == ["2", "1"]
    else:
        assert res.returncode != 0 and "once the threads have been launched" in res.stderr


def test_sweep_on_a_cold_kernel_cache(tmp_path):
    """A sweep whose workers must compile the kernels (CELLBOX_NB_CACHE=0: as on a fresh install, after an upgrade,
    or with a read-only cache) ends ok, with the fit equal (bitwise W) to the same fit run in this process."""
    cfg = {"network": "CY", "conditions": 6, "epochs": 5, "checkpoint_seconds": 1e9}
    spec = _write_spec(tmp_path, {"base": cfg, "grid": {"seed": [0]}})
    out = tmp_path / "out"
    res = subprocess.run(CLI + ["sweep", str(spec), "--out", str(out), "--workers", "1"],
                         env=_env(CELLBOX_NB_CACHE="0"), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    (name,) = _fits(out)
    fit = read_fit(out / name)
    assert fit["status"] == "finished"
    ref = train(simulate("CY", conditions=6, times=5, noise=0.01, max_targets=2, seed=0), resolve(cfg),
                str(tmp_path / "ref.h5"))
    np.testing.assert_array_equal(fit["best"]["W"], ref["best"]["W"])


def test_summary_keeps_a_varied_epochs_and_a_resume_checks_the_data(tmp_path):
    """In-process rows (run_row, as --task-index runs them): (1) with `epochs` varied, the summary keeps each row's
    config value and puts the epochs run under epochs_run (the metric used to overwrite the column, so two rows
    looked the same); (2) an interrupted row whose data file now holds other data is not resumed on the stored
    data but fails with the reason (it used to resume silently on the old data); (3) the interrupted row's
    message says to run the sweep again (it said --resume, which sweep does not have)."""
    from cellbox_nb.data.dataset import write_dataset
    from cellbox_nb.sweep import run_row

    data = tmp_path / "d.h5"
    write_dataset(data, simulate("CY", conditions=6, times=2, seed=0))
    rows = expand({"base": {"data": str(data), "patience": 10000, "checkpoint_seconds": 0},
                   "grid": {"epochs": [3, 4]}})
    done = [run_row(r, str(tmp_path)) for r in rows]
    assert [(s["epochs"], s["epochs_run"], s["status"]) for s in done] == [(3, 3, "finished"), (4, 4, "finished")]
    row = expand({"base": {"data": str(data), "checkpoint_seconds": 0}, "fits": [{"epochs": 50}]})[0]
    stopped = run_row(row, str(tmp_path), stop_requested=lambda: "SIGTERM")
    assert stopped["status"] == "interrupted" and "run the same sweep again" in stopped["message"]
    assert "--resume" not in stopped["message"]
    write_dataset(data, simulate("CY", conditions=6, times=2, seed=1), overwrite=True)
    again = run_row(row, str(tmp_path))
    assert again["status"] == "failed" and again["exit_code"] == 2
    assert "holds an unfinished fit started on other data than" in again["message"]
    assert "--resume" not in again["message"]  # (sweep has no such option)
    assert read_fit(tmp_path / row["file"])["status"] == "interrupted"  # the stored fit is untouched


def test_rows_read_their_data_where_the_spec_was_read_and_a_done_row_checks_it(tmp_path, monkeypatch):
    """(1) A relative data path is read from the folder where the spec is expanded, not from the folder a
    worker runs in (a cluster's workers started elsewhere read their own file of that name); (2) a finished row
    whose data file now holds other data is not skipped as done but fails with the reason (its file name hashes the
    path, not the data)."""
    from cellbox_nb.data.dataset import data_digest, write_dataset
    from cellbox_nb.sweep import run_row

    here, there, out = tmp_path / "here", tmp_path / "there", tmp_path / "out"
    for folder, seed in ((here, 0), (there, 1)):
        folder.mkdir()
        write_dataset(folder / "d.h5", simulate("CY", conditions=6, times=2, seed=seed))
    out.mkdir()
    monkeypatch.chdir(here)
    row = expand({"base": {"data": "d.h5", "epochs": 3}, "fits": [{}]})[0]
    monkeypatch.chdir(there)  # a worker in another folder, with another d.h5
    assert run_row(row, str(out))["status"] == "finished"
    stored = read_fit(out / row["file"])["dataset"]
    assert data_digest(stored) == data_digest(simulate("CY", conditions=6, times=2, seed=0))
    assert run_row(row, str(out))["action"] == "skipped"
    write_dataset(here / "d.h5", simulate("CY", conditions=6, times=2, seed=2), overwrite=True)
    again = run_row(row, str(out))
    assert (again["status"], again["action"], again["exit_code"]) == ("failed", "skipped", 2)
    assert "holds a finished fit on other data than 'd.h5'" in again["message"]
    assert read_fit(out / row["file"])["status"] == "finished"  # left as it was


def test_a_row_interrupted_before_an_upgrade_resumes_and_damage_and_write_errors_are_reported(tmp_path,
                                                                                               monkeypatch):
    """(1) An interrupted row whose stored config lacks keys added later (at their defaults) resumes, as
    `train --resume` does (the sweep compared the configs as stored and started the fit again); (2) --collect
    reports an unreadable results file as failed with the reason (it read as pending), and a rerun replaces it,
    saying so; (3) an error of the file system is the command line's exit code 2 and wording, not an internal
    error."""
    import h5py

    from cellbox_nb import sweep as sw
    from cellbox_nb.data.h5atomic import writer_lock
    from cellbox_nb.fit.config import LATE_KEYS

    row = expand({"base": {"network": "CY", "conditions": 6, "times": 2, "epochs": 40, "patience": 10000,
                           "checkpoint_seconds": 0}, "fits": [{}]})[0]
    out = tmp_path / "out"
    out.mkdir()
    stopped = sw.run_row(row, str(out), stop_requested=lambda: "SIGTERM")
    assert stopped["status"] == "interrupted"
    path = out / row["file"]
    epochs_before = len(read_fit(path)["history"]["epoch"])
    with h5py.File(path, "r+") as f:  # as an older version wrote it
        cfg = json.loads(f["config"][()])
        for key in LATE_KEYS:
            cfg.pop(key)
        del f["config"]
        f["config"] = json.dumps(cfg, sort_keys=True)
    resumed = sw.run_row(row, str(out))
    assert (resumed["status"], resumed["action"]) == ("finished", "resumed")
    whole = sw.run_row(row, str(tmp_path))  # the same row uninterrupted
    assert whole["action"] == "ran"
    _assert_same_fit(read_fit(path), read_fit(tmp_path / row["file"]))
    assert epochs_before < 40
    # (2) a file left saying running (a SIGKILL after a checkpoint), then a damaged one
    saved = path.read_bytes()
    with h5py.File(path, "r+") as f:
        f.attrs["status"] = "running"
    killed = sw.collect([row], str(out))[0]
    assert (killed["status"], killed["exit_code"]) == ("interrupted", 75)
    assert killed["message"].startswith("no process is writing it")
    before = path.read_bytes()
    with writer_lock(path):  # a fit being written now
        assert sw.collect([row], str(out))[0]["status"] == "running"
        refused = sw.run_row(row, str(out))  # a second writer of the row: refused, not "resumed", file untouched
    assert (refused["status"], refused["action"], refused["exit_code"]) == ("failed", "refused", 2)
    assert "being written by another cellbox-nb process" in refused["message"] and path.read_bytes() == before
    # collect's probe of a lock left by a killed writer holds it a moment; a writer starting then still gets it
    import fcntl

    lock = out / f".{row['file']}.lock"
    lock.write_text("12345\n")
    fd = os.open(lock, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    with pytest.raises(sw.ConfigError, match="being written by another cellbox-nb process"):
        with writer_lock(path):  # held throughout: refused
            pass
    import types

    def sleep(_seconds):  # the probe ends while the writer waits to try again
        os.close(fd)

    monkeypatch.setattr("cellbox_nb.data.h5atomic.time", types.SimpleNamespace(sleep=sleep))
    with writer_lock(path):
        pass
    monkeypatch.undo()
    path.write_bytes(saved)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    collected = sw.collect([row], str(out))[0]
    assert (collected["status"], collected["exit_code"]) == ("failed", 3)
    assert collected["message"].startswith("results file") and "run the sweep again" in collected["message"]
    redone = sw.run_row(row, str(out))
    assert redone["status"] == "finished" and redone["message"].startswith("an unreadable results file was replaced")
    _assert_same_fit(read_fit(path), read_fit(tmp_path / row["file"]))

    # (3) the file system refuses
    def refuse(*args, **kwargs):
        raise OSError(30, "Read-only file system", str(out / "x.h5"))

    monkeypatch.setattr("cellbox_nb.fit.train.train", refuse)
    path.unlink()
    failed = sw.run_row(row, str(out))
    assert (failed["status"], failed["exit_code"]) == ("failed", 2)
    assert failed["message"] == f"cannot write or read '{out / 'x.h5'}': Read-only file system"


def _ignores_sigint(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        mask = next(int(ln.split()[1], 16) for ln in fh if ln.startswith("SigIgn:"))
    return bool(mask & (1 << (signal.SIGINT - 1)))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads signal masks from /proc (Linux)")
def test_every_local_cluster_worker_ignores_sigint_a_restarted_one_too():
    """A Ctrl-C at the terminal reaches the whole process group; the sweep's own process turns it into a stop with
    checkpoints, so workers must ignore it.  The first workers inherit an ignored SIGINT; one the nanny starts
    after a crash did not (the driver's handler was back), and a later Ctrl-C killed its fit without a
    checkpoint."""
    from cellbox_nb.sweep import _client

    client, cluster = _client(None, 1, 1)
    try:
        first = next(iter(client.run(os.getpid).values()))
        assert _ignores_sigint(first)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pids = list(client.run(os.getpid, on_error="ignore").values())  # (the dead one may still be listed)
            if pids and pids[0] != first:
                break
            time.sleep(0.2)
        restarted = pids[0]
        assert restarted != first and _ignores_sigint(restarted)
    finally:
        client.close()
        cluster.close()


def test_a_failed_row_without_a_message_names_its_status(capsys):
    """A done row that ended in a numerical failure has no message; its error line names the status (it was
    'error: row 0 (...): ' with nothing after it)."""
    import click

    from cellbox_nb._cli.sweep import _fail_row

    with pytest.raises(click.exceptions.Exit) as ended:
        _fail_row({"index": 0, "file": "fit-0000-x.h5", "message": "", "status": "numerical_failure",
                   "action": "skipped", "exit_code": 4})
    assert ended.value.exit_code == 4
    assert capsys.readouterr().err == "error: row 0 (fit-0000-x.h5): numerical_failure (skipped)\n"
