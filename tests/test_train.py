"""Training: optimiser step by hand, config handling, results store, kill/resume and thread determinism, CLI."""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from cellbox_nb.errors import ConfigError
from cellbox_nb.fit.config import DEFAULTS, load_config_file, resolve
from cellbox_nb.fit.optim import adam_step, init_moments
from cellbox_nb.fit.store import read_fit

CLI = [sys.executable, "-m", "cellbox_nb._cli.main"]


# -- optimiser ----------------------------------------------------------------------------------------------
def test_adam_first_step_matches_hand_computation():
    """Step 1 of Adam moves each entry by lr * g / (|g| + eps) (bias-corrected m/sqrt(v)); tolerance 1e-15."""
    cfg = resolve({"lr": 0.1})
    W = np.array([[0.5, -0.2], [0.0, 1.0]])
    g = {"W": np.array([[0.3, -0.1], [2.0, 0.0]])}
    m, v = init_moments({"W": W})
    new, _, _ = adam_step({"W": W}, g, m, v, 1, 0.1, cfg)
    expected = W - 0.1 * g["W"] / (np.abs(g["W"]) + cfg["eps"])
    np.testing.assert_allclose(new["W"], expected, rtol=0, atol=1e-15)


def test_l1_prox_mask_adamw_and_alpha_projection():
    cfg = resolve({"optimizer": "adamw", "weight_decay": 0.5, "l1": 1.0, "lr": 0.1})
    W = np.array([[0.5, 0.05], [-0.5, 0.0]])
    g = {"W": np.zeros((2, 2)), "alpha": np.array([1.0, -1.0])}
    m, v = init_moments({"W": W, "alpha": np.array([1e-4, 1.0])})
    mask = np.array([[True, True], [False, True]])
    new, _, _ = adam_step({"W": W, "alpha": np.array([1e-4, 1.0])}, g, m, v, 1, 0.1, cfg, mask)
    # zero gradient: W -> W - lr*wd*W = 0.95 W, then soft threshold by lr*l1 = 0.1
    np.testing.assert_allclose(new["W"], [[0.375, 0.0], [0.0, 0.0]], atol=1e-15)
    assert new["alpha"][0] == cfg["alpha_min"]  # projected back to the bound


# -- config -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, hint", [("epoch", "epochs"), ("learning_rate", "lr"), ("lerning_rate", "lr"),
                                       ("n_iter_max", "epochs"), ("grad_max", "clip_norm"), ("l1lambda", "l1"),
                                       ("Batch-Size", "batch_size"), ("weigth_decay", "weight_decay"),
                                       ("prune_levels", "prune"), ("prune_criterion", "prune_select")])
def test_unknown_key_names_the_closest_valid_one(key, hint):
    """Spelling slips get the nearest key; names from CellBox configs and other tools get their counterpart."""
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'.*did you mean '{hint}'"):
        resolve({key: 3})


@pytest.mark.parametrize("layer, match", [
    ({"lr": -1}, "lr"), ({"epochs": 0}, "epochs"), ({"loss": "huber"}, "loss"), ({"epochs": "many"}, "epochs"),
    ({"val_frac": 0.6, "test_frac": 0.5}, "val_frac"), ({"learn_alpha": "maybe"}, "learn_alpha"),
    ({"adjoint": "backsolve"}, "adjoint"), ({"adjoint": "discrete", "backend": "cuda"}, "cpu backend only"),
    ({"adjoint_rtol": 0}, "adjoint_rtol"), ({"adjoint": "discrete", "adjoint_rtol": 1e-5}, "adjoint_rtol"),
    ({"adjoint_integrator": "rk4"}, "adjoint_integrator"),
    ({"adjoint": "discrete", "adjoint_integrator": "tsit5"}, "adjoint_integrator"),
    ({"backend": "cuda", "adjoint_integrator": "dop853"}, "adjoint_integrator"),
    ({"epochs": "--5"}, "epochs"), ({"epochs": "-"}, "epochs"), ({"rtol": 1e-15}, "rtol"), ({"rtol": 2.0}, "rtol"),
    ({"adjoint_rtol": 1.0}, "adjoint_rtol"),
])
def test_bad_values(layer, match):
    with pytest.raises(ConfigError, match=match):
        resolve(layer)


@pytest.mark.parametrize("ext, text", [(".yaml", "lr: 0.05\nepochs: 7\n"), (".json", '{"lr": 0.05, "epochs": 7}'),
                                       (".toml", "lr = 0.05\nepochs = 7\n")])
@pytest.mark.parametrize("bom", [False, True], ids=["plain", "bom"])
def test_config_files(tmp_path, ext, text, bom):
    """All three formats, also with the UTF-8 byte-order mark Windows editors write (YAML took it, JSON and TOML
    refused it)."""
    p = tmp_path / f"c{ext}"
    p.write_text(text, encoding="utf-8-sig" if bom else "utf-8")
    cfg = resolve(load_config_file(p))
    assert cfg["lr"] == 0.05 and cfg["epochs"] == 7 and cfg["loss"] == DEFAULTS["loss"]


def test_a_key_given_twice_is_refused(tmp_path):
    """The YAML and JSON loaders refuse a mapping key given twice, naming it and its lines (PyYAML's safe_load and
    json.loads kept the last value silently), at any depth; YAML merge keys may still be overridden; TOML refuses
    them itself; the parsed values are those of safe_load and json.loads otherwise."""
    import yaml

    from cellbox_nb.cellbox_import import load_cellbox_config
    from cellbox_nb.fit.config import load_yaml, loads_json, parse_set

    for text, where in [("lr: 0.01\nepochs: 2\nlr: 0.5\n", "'lr' (lines 1 and 3)"),
                        ("base:\n  x: {a: 1, a: 2}\n", "'a' (twice on line 2)"),
                        ("- {b: 1}\n- b: 1\n  c: 2\n  b: 3\n  b: 4\n", "'b' (lines 2, 4 and 5)"),
                        ("1: a\n1: b\n", "1 (lines 1 and 2)")]:
        with pytest.raises(ConfigError) as refused:
            load_yaml(text)
        assert str(refused.value) == f"duplicate key {where}", text
    merged = "a: &x {lr: 1, epochs: 2}\nb:\n  <<: *x\n  lr: 3\nc: [1, {d: null}]\n"
    assert load_yaml(merged) == yaml.safe_load(merged) and load_yaml(merged)["b"] == {"lr": 3, "epochs": 2}
    for text, where in [('{\n "lr": 0.01,\n "epochs": 2,\n "lr": 0.5\n}', "'lr' (lines 2 and 4)"),
                        ('[1, {"a": {"b": [1, {"c": 2}],\n "b" : 2}}]', "'b' (lines 1 and 2)"),
                        ('{"base": {"lr": 1}, "grid": {"lr": [1]}, "base": 3}', "'base' (twice on line 1)")]:
        with pytest.raises(ConfigError) as refused:
            loads_json(text)
        assert str(refused.value) == f"duplicate key {where}", text
    with pytest.raises(ConfigError, match="^JSON nested too deeply to parse$"):  # (RecursionError: exit 1)
        loads_json("[" * 100000 + "]" * 100000)
    plain = '{"a": [1, 2.5, "x\\u00e9", null, true, {}], "b": {"c": -1e3, "d": NaN}, "e": []}'
    parsed = loads_json(plain)
    assert json.dumps(parsed) == json.dumps(json.loads(plain)) and parsed["a"][2] == "x\u00e9"
    for ext, text, where in [(".yaml", "lr: 1\nlr: 2\n", "'lr' (lines 1 and 2)"),
                             (".json", '{"lr": 1,\n"lr": 2}', "'lr' (lines 1 and 2)")]:
        p = tmp_path / f"c{ext}"
        p.write_text(text)
        with pytest.raises(ConfigError, match=rf"^config file .*c{ext}: duplicate key {where}$".replace("(", r"\(")
                           .replace(")", r"\)")):
            load_config_file(p)
    p.write_text('{"lr": 1,\n"lr": 2}')
    with pytest.raises(ConfigError, match=r"^CellBox config .*: duplicate key 'lr'"):
        load_cellbox_config(p)
    with pytest.raises(ConfigError, match=r"^--set 'w=\{a: 1, a: 2\}': duplicate key 'a'"):
        parse_set(["w={a: 1, a: 2}"])
    (tmp_path / "c.toml").write_text("lr = 1\nlr = 2\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config_file(tmp_path / "c.toml")


# -- end to end ---------------------------------------------------------------------------------------------
def _run(args, env=None, check=True):
    res = subprocess.run(CLI + args, capture_output=True, text=True, env=env)
    if check and res.returncode != 0:
        raise AssertionError(res.stderr)
    return res


def _same_fit(a, b):
    for key in ("final", "best"):
        for name in a[key]:
            assert np.array_equal(a[key][name], b[key][name]), (key, name)
    for col in a["history"]:
        if col != "wall_s":
            assert np.array_equal(a["history"][col], b["history"][col]), col
    assert a["best_epoch"] == b["best_epoch"]
    for s_a, s_b in zip(a["split"], b["split"]):
        assert np.array_equal(s_a, s_b)


TRAIN_ARGS = ["train", "--network", "LI", "--quiet", "--epochs", "600", "--set", "patience=100000",
              "--set", "checkpoint_every=25", "--set", "checkpoint_seconds=1e9", "--set", "batch_size=5",
              "--set", "time_points=3"]


def test_resume_of_a_file_written_before_a_config_key_existed(tmp_path):
    """A results file whose stored config lacks a key added later (here: adjoint) resumes as if it held the key's
    default, which is how the version that wrote it behaved; a different value of that key is still refused."""
    import json

    import h5py

    out = str(tmp_path / "fit.h5")
    args = ["train", "--network", "LI", "--quiet", "--epochs", "3", "--out", out]
    _run(args)
    with h5py.File(out, "r+") as f:  # as an older version would have left it, mid-run
        cfg = json.loads(f["config"][()])
        del cfg["adjoint"]
        del f["config"]
        f.create_dataset("config", data=json.dumps(cfg))
        f.attrs["status"] = "running"
    res = _run(args + ["--resume", "--set", "adjoint=discrete"], check=False)
    assert res.returncode == 2 and "config differs" in res.stderr and "(keys: adjoint)" in res.stderr
    _run(args + ["--resume"])
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "finished"


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    """SIGKILL mid-run: the file still opens; --resume ends with bitwise the parameters and history of an
    uninterrupted run (mini-batches and time sampling on, so the RNG state must be restored too)."""
    ref = tmp_path / "ref.h5"
    _run(TRAIN_ARGS + ["--out", str(ref)])
    out = tmp_path / "killed.h5"
    proc = subprocess.Popen(CLI + TRAIN_ARGS + ["--out", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120  # a hang guard, not a timing assertion
    while time.time() < deadline and proc.poll() is None:
        # a failed read would be a bug: the file is replaced atomically
        if out.exists() and len(read_fit(out)["history"]["epoch"]) >= 100:
            break
        time.sleep(0.002)
    # freeze the run where it is, so that however fast it trains it cannot reach its end between this look and
    # the kill; the kill then lands mid-run whatever the machine's speed
    proc.send_signal(signal.SIGSTOP)
    rows = len(read_fit(out)["history"]["epoch"]) if out.exists() else 0
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 100 <= rows < 600, rows
    partial = read_fit(out)
    assert partial["status"] == "running"
    # what a kill in the middle of a checkpoint rewrite leaves beside the results file; --resume removes it
    stale = tmp_path / ".killed.h5.abcd1234.tmp"
    stale.write_bytes(b"half-written")
    other = tmp_path / ".ref.h5.abcd1234.tmp"  # another file's temporary is left alone
    other.write_bytes(b"x")
    _run(["train", "--resume", "--out", str(out)] + TRAIN_ARGS[1:])
    _same_fit(read_fit(ref), read_fit(out))
    assert not stale.exists() and other.exists()


def test_sigterm_writes_checkpoint_and_exits_75(tmp_path):
    out = tmp_path / "term.h5"
    args = [a if a != "600" else "200000" for a in TRAIN_ARGS]
    proc = subprocess.Popen(CLI + args + ["--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not out.exists():
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 75, err
    assert "resume" in err and "Traceback" not in err
    fit = read_fit(out)
    assert fit["status"] == "interrupted" and len(fit["history"]["epoch"]) > 0


def test_thread_count_does_not_change_the_results_file(tmp_path):
    fits = []
    for threads in ("1", "2"):
        out = tmp_path / f"t{threads}.h5"
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        _run(["train", "--network", "GSD", "--quiet", "--epochs", "60", "--out", str(out),
              "--set", "conditions=40"], env=env)
        fits.append(read_fit(out))
    _same_fit(*fits)
    np.testing.assert_array_equal(fits[0]["predictions"], fits[1]["predictions"])


def test_train_json_keys_and_store_contents(tmp_path):
    out = tmp_path / "fit.h5"
    res = _run(["train", "--network", "LI", "--json", "--epochs", "200", "--out", str(out)])
    summary = json.loads(res.stdout)
    for key in ("mae_train", "mae_val", "mae_test", "pearson_test", "pearson_W", "pearson_alpha", "auroc", "aupr",
                "epochs", "wall_s", "status"):
        assert key in summary
    assert summary["pearson_alpha"] is None  # the true alpha of LI is constant
    fit = read_fit(out)
    assert fit["status"] == summary["status"]
    assert fit["predictions"].shape == (30, 5, 7)
    assert len(fit["history"]["epoch"]) == summary["epochs"]
    assert fit["nodes"] == fit["dataset"].nodes
    assert sorted(np.concatenate(fit["split"]).tolist()) == list(range(30))
    # the stored recovery metrics, recomputed by hand from the stored best W and the truth (scipy's pearsonr)
    W_hat, W_true = fit["best"]["W"], fit["dataset"].W_true
    off = ~np.eye(7, dtype=bool)
    m = fit["metrics"]
    assert m["pearson_W"] == pytest.approx(stats.pearsonr(W_hat.ravel(), W_true.ravel()).statistic, abs=1e-12)
    assert m["pearson_W_offdiag"] == pytest.approx(stats.pearsonr(W_hat[off], W_true[off]).statistic, abs=1e-12)
    # the checkpoint's current parameters are the final ones, stored once (hard links: an n = 4000 fit saves 128 MB
    # a rewrite) and read back equal
    ck = read_fit(out, with_checkpoint=True)["checkpoint"]
    with h5py.File(out, "r") as f:
        for key in ("W", "alpha"):
            assert f[f"checkpoint/p_{key}"].id == f[f"params/final/{key}"].id
            assert np.array_equal(ck[f"p_{key}"], fit["final"][key])


@pytest.mark.parametrize("args, code, needle", [
    (["--set", "lerning_rate=0.1"], 2, "did you mean"),
    (["--data", "/nonexistent/data.h5"], 3, "not found"),
    (["--config", "/nonexistent.yaml"], 2, "cannot read"),
    (["--network", "NOPE"], 2, "NOPE"),
])
def test_cli_errors_are_one_line(tmp_path, args, code, needle):
    res = _run(["train", "--out", str(tmp_path / "x.h5"), "--epochs", "2"] + args, check=False)
    assert res.returncode == code, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.stderr
    assert not (tmp_path / "x.h5").exists()


def test_existing_output_is_not_overwritten(tmp_path):
    out = tmp_path / "fit.h5"
    out.write_bytes(b"precious")
    res = _run(["train", "--out", str(out), "--epochs", "2"], check=False)
    assert res.returncode == 2 and out.read_bytes() == b"precious"


def test_mismatched_data_file_is_refused(tmp_path):
    import h5py

    bad = tmp_path / "bad.h5"
    _run(["simulate", "--network", "LI", "--conditions", "6", "--out", str(bad)])
    with h5py.File(bad, "r+") as f:
        del f["U"]
        f.create_dataset("U", data=np.zeros((6, 5)))
    res = _run(["train", "--data", str(bad), "--out", str(tmp_path / "f.h5"), "--epochs", "2"], check=False)
    assert res.returncode == 3 and "U" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("adjoint, integrator", [("interpolating", "auto"), ("interpolating", "tsit5"),
                                                 ("discrete", "auto")])
def test_gradcheck_cli_ok_and_catches_a_wrong_gradient(adjoint, integrator):
    opts = ["--adjoint", adjoint, "--adjoint-integrator", integrator]
    res = _run(["gradcheck", "--network", "GSD", "--seed", "0", "--json"] + opts)
    out = json.loads(res.stdout)
    assert out["ok"] is True and out["adjoint"] == adjoint and out["adjoint_integrator"] == integrator
    res = _run(["gradcheck", "--network", "LI", "--seed", "0", "--json", "--corrupt", "1e-3"] + opts, check=False)
    assert res.returncode == 4 and json.loads(res.stdout)["ok"] is False


def test_cli_runner_smoke():
    from cellbox_nb._cli.main import cli

    res = CliRunner().invoke(cli, ["train", "--help"])
    assert res.exit_code == 0 and "--resume" in res.output


def test_init_params_start_the_fit_where_given(tmp_path):
    """A warm start: with a learning rate of 1e-12 the fit ends where it started (to 1e-9), the W mask still
    applies to the given W, and malformed starting values are a ConfigError naming the key."""
    from cellbox_nb.data.dataset import simulate
    from cellbox_nb.data.network import load_network
    from cellbox_nb.fit.train import train

    net = load_network("LI")
    ds = simulate(net, conditions=12, times=3, noise=0.0, seed=3)
    cfg = resolve({"epochs": 2, "lr": 1e-12, "schedule": "constant", "no_self_loops": True,
                   "checkpoint_seconds": 1e9, "n_val": 2, "n_test": 2})
    W0 = net.W.astype(float) + 0.25
    alpha0 = np.linspace(0.5, 1.5, net.n)
    res = train(ds, cfg, tmp_path / "warm.h5", init_params={"W": W0, "alpha": alpha0})
    expect = W0 - np.diag(np.diag(W0))  # the self-loop mask zeroes the given diagonal
    assert np.max(np.abs(res["final"]["W"] - expect)) < 1e-9
    assert np.max(np.abs(res["final"]["alpha"] - alpha0)) < 1e-9
    for bad, needle in [({"W": np.zeros((3, 3))}, "shape"), ({"alpha": np.full(net.n, np.nan)}, "NaN"),
                        ({"beta": 1.0}, "unknown key")]:
        with pytest.raises(ConfigError, match=needle):
            train(ds, cfg, tmp_path / "bad.h5", init_params=bad)
        assert not (tmp_path / "bad.h5").exists()  # refused before anything is written


def test_adjoint_rtol_reaches_the_gradient(tmp_path):
    """Config key adjoint_rtol: unset, the fit's history is bitwise that of adjoint_rtol = rtol (the default); a
    looser one changes the gradients (the grad_norm column), by about the backward pass's error (under 1e-3
    relative at 1e-3 here)."""
    from cellbox_nb.data.dataset import simulate
    from cellbox_nb.data.network import load_network
    from cellbox_nb.fit.store import read_fit
    from cellbox_nb.fit.train import train

    ds = simulate(load_network("LI"), conditions=12, times=3, noise=0.0, seed=4)
    runs = {}
    for tag, extra in [("unset", {}), ("rtol", {"adjoint_rtol": 1e-6}), ("loose", {"adjoint_rtol": 1e-3})]:
        cfg = resolve({"epochs": 3, "checkpoint_seconds": 1e9, "n_val": 2, "n_test": 2, "rtol": 1e-6, **extra})
        train(ds, cfg, tmp_path / f"{tag}.h5")
        runs[tag] = read_fit(tmp_path / f"{tag}.h5")["history"]["grad_norm"]
    assert np.array_equal(runs["unset"], runs["rtol"])
    assert not np.array_equal(runs["unset"], runs["loose"])
    assert np.max(np.abs(runs["loose"] / runs["unset"] - 1.0)) < 1e-3


def test_a_fresh_fit_removes_stale_temporaries_of_its_output(tmp_path):
    """Like --resume (tested with SIGKILL above), a new fit over the same path removes what a killed rewrite left."""
    from cellbox_nb.data.dataset import simulate
    from cellbox_nb.data.network import load_network
    from cellbox_nb.fit.train import train

    ds = simulate(load_network("LI"), conditions=8, times=2, noise=0.0, seed=1)
    cfg = resolve({"epochs": 2, "checkpoint_seconds": 1e9, "n_val": 2, "n_test": 2})
    stale = tmp_path / ".fit.h5.zz99yy88.tmp"
    stale.write_bytes(b"half-written")
    other = tmp_path / ".other.h5.zz99yy88.tmp"
    other.write_bytes(b"x")
    train(ds, cfg, tmp_path / "fit.h5")
    assert not stale.exists() and other.exists()
    assert read_fit(tmp_path / "fit.h5")["status"] in ("finished", "early_stopped")


def test_metrics_leave_out_conditions_whose_solve_failed():
    """evaluate() with NaN predictions for one condition (its solve failed): that condition is counted in
    failed_predictions and left out of the MAE, which equals the hand-computed MAE of the others (it used to raise
    a ValueError, and `train` ended with an internal error and a results file left 'running')."""
    from cellbox_nb.data.dataset import simulate
    from cellbox_nb.fit.train import evaluate

    ds = simulate("CY", conditions=6, times=2, seed=0)
    params = {"W": ds.W_true, "alpha": ds.alpha_true, "d": np.ones(ds.n)}
    X = ds.Y_clean + 0.01
    X[4] = np.nan
    split = (np.array([0, 1, 4]), np.array([2]), np.array([3, 5]))
    m = evaluate(ds, split, params, X)
    assert m["failed_predictions"] == 1
    assert m["mae_train"] == pytest.approx(np.mean(np.abs(X[[0, 1]] - ds.Y_clean[[0, 1]])), rel=1e-12)
    assert m["mae_test"] == pytest.approx(0.01, rel=1e-9) and m["pearson_test"] is not None
    X[[3, 5]] = np.nan
    m = evaluate(ds, split, params, X)
    assert m["failed_predictions"] == 3 and m["mae_test"] is None and m["pearson_test"] is None


def test_slow_checkpoint_writes_are_spaced_out(tmp_path, monkeypatch):
    """A timed checkpoint waits at least WRITE_SHARE_INVERSE times as long as the last write took, so rewriting a
    large results file cannot take most of the run (a write slower than checkpoint_seconds used to follow every
    epoch: 32 writes in 30 epochs here); checkpoint_seconds = 0 still writes after every epoch.  The trainer's clock
    is a fake one (no real time is measured): each write takes 0.2 s of it, anything else 1e-6 s per reading."""
    import types

    import cellbox_nb.fit.train as tr
    from cellbox_nb.data.dataset import simulate
    from cellbox_nb.data.network import load_network

    ds = simulate(load_network("CY"), conditions=8, times=2, noise=0.0, seed=0)
    clock = [0.0]

    def perf_counter():
        clock[0] += 1e-6
        return clock[0]

    real = tr.write_fit
    calls = []

    def slow_write(*args, **kwargs):
        calls.append(kwargs["status"])
        clock[0] += 0.2
        return real(*args, **kwargs)

    monkeypatch.setattr(tr, "time", types.SimpleNamespace(perf_counter=perf_counter))
    monkeypatch.setattr(tr, "write_fit", slow_write)
    base = {"epochs": 30, "patience": 1000, "n_val": 2, "n_test": 2}
    res = tr.train(ds, resolve(dict(base, checkpoint_seconds=1e-9)), tmp_path / "spaced.h5")
    assert res["status"] == "finished" and len(res["history"]["epoch"]) == 30
    # the first write takes 0.2 s, so the next timed one may come 1.8 s later: the 30 epochs take far less
    assert calls == ["running", "finished"], calls
    calls.clear()
    tr.train(ds, resolve(dict(base, checkpoint_seconds=0)), tmp_path / "every.h5")
    assert len(calls) == 1 + 30 + 1, len(calls)  # before epoch 1, after every epoch, the final write


@pytest.mark.parametrize("network, seed, conditions, times", [("BF", 4, 8, 5), ("random:5", 0, 1, 1)])
def test_gradcheck_taylor_slope_on_correct_and_wrong_gradients(network, seed, conditions, times):
    """The Taylor slope of gradcheck's setup on two cases whose correct gradients failed the 2 +- 0.1 band before
    (a direction of length sqrt(n^2 + n), h up to 0.1: slopes 2.42 and 2.13); now within 0.1 of 2, and a gradient
    1e-3 off (relative) gives a slope outside the band by itself, not only through the other two checks."""
    from cellbox_nb import loss_and_grad
    from cellbox_nb.data.dataset import simulate
    from cellbox_nb.data.network import load_network
    from cellbox_nb.gradcheck import TOL_SLOPE, run_gradcheck

    net = load_network(network, seed=seed)  # as `cellbox-nb gradcheck` builds its problem
    ds = simulate(net, conditions=conditions, times=times, noise=0.01, seed=seed)
    rng = np.random.default_rng(seed + 1)
    W = net.W + 0.1 * rng.normal(size=net.W.shape)
    alpha = net.alpha * (1 + 0.05 * rng.normal(size=net.n))
    kw = dict(mask=ds.observed(), loss="mae", seed=seed)
    good = run_gradcheck(W, alpha, ds.U, ds.t, ds.Y, **kw)
    assert good["ok"] and abs(good["taylor_slope"] - 2) <= TOL_SLOPE, good["taylor_slope"]

    def wrong(W_, a_, kind):
        L, g = loss_and_grad(W_, a_, ds.U, ds.t, ds.Y, mask=ds.observed(), loss=kind, rtol=1e-10, atol=1e-10)
        return L, {k: v * (1 + 1e-3) for k, v in g.items()}

    bad = run_gradcheck(W, alpha, ds.U, ds.t, ds.Y, grad_fn=wrong, **kw)
    assert abs(bad["taylor_slope"] - 2) > TOL_SLOPE and not bad["ok"], bad["taylor_slope"]


def test_optional_numeric_keys_take_none_as_written_in_the_docs():
    """The README's defaults table writes unset optional values as "none"; `--set clip_norm=none` was refused
    ("must be a number"), only `null` worked.  A key that needs a value still refuses it."""
    cfg = resolve({"clip_norm": "none", "n_val": "None", "adjoint_rtol": "null"})
    assert cfg["clip_norm"] is None and cfg["n_val"] is None and cfg["adjoint_rtol"] is None
    assert resolve({"drug": "none"})["drug"] == "none"  # a node name
    with pytest.raises(ConfigError, match="'epochs': must be an integer, got 'none'"):
        resolve({"epochs": "none"})
