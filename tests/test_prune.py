"""Prune and refit (config key prune) and the steady-state initialisation (init: steady_state)."""

import math
import os

import numpy as np
import pytest

from cellbox_nb.data.dataset import simulate
from cellbox_nb.data.network import load_network
from cellbox_nb.errors import ConfigError, Interrupted
from cellbox_nb.fit.config import resolve
from cellbox_nb.fit.prune import LEVELS, candidate_masks, criterion, n_parameters
from cellbox_nb.fit.steady import steady_state_init
from cellbox_nb.fit.store import read_fit
from cellbox_nb.fit.train import Trainer, train
from reference import solve_ref


# -- candidates and criterion, by hand ------------------------------------------------------------------------
def test_candidate_masks_by_hand():
    """Levels of max |off-diagonal W| = 1.0; the diagonal stays; equal supports appear once; masked entries never."""
    W = np.array([[5.0, 1.0, 0.01],
                  [-0.3, 0.0, 0.12],
                  [0.04, -0.6, 0.9]])
    got = candidate_masks(W, None)
    off = {(0, 1): 1.0, (0, 2): 0.01, (1, 0): 0.3, (1, 2): 0.12, (2, 0): 0.04, (2, 1): 0.6}
    expected = []
    for tau in LEVELS:
        m = np.eye(3, dtype=bool)
        for (i, j), v in off.items():
            m[i, j] = v >= tau
        if not any((m == e).all() for _, e in expected):
            expected.append((tau, m))
    assert [t for t, _ in got] == [t for t, _ in expected] == [0.02, 0.05, 0.15, 0.4]
    for (_, a), (_, b) in zip(got, expected):
        np.testing.assert_array_equal(a, b)
    # prune_diagonal: the diagonal competes too (max |W| is now W00 = 5)
    diag = candidate_masks(W, None, prune_diagonal=True)
    assert diag[0][1][0, 0] and not diag[0][1][1, 1]  # |0.0| < 0.02 * 5
    # a W mask: (0, 1) is fixed at zero, so the largest free off-diagonal entry is 0.6
    free = np.ones((3, 3), dtype=bool)
    free[0, 1] = False
    for _, m in candidate_masks(W, free):
        assert not m[0, 1]
    assert candidate_masks(W, free)[-1][1].sum() == 3 + 2  # at 0.5 * 0.6: the diagonal, (2, 1) and (1, 0)


def test_criterion_by_hand():
    """BIC: c N ln L + k ln N with c = 2 for MAE (Laplace), 1 for MSE (Gaussian); val: the validation loss."""
    assert criterion("bic", "mae", 0.01, 9.0, 100, 7) == pytest.approx(2 * 100 * math.log(0.01) + 7 * math.log(100),
                                                                      rel=1e-15)
    assert criterion("bic", "mse", 1e-4, 9.0, 50, 3) == pytest.approx(50 * math.log(1e-4) + 3 * math.log(50),
                                                                     rel=1e-15)
    assert criterion("val", "mae", 0.01, 0.5, 100, 7) == 0.5
    assert criterion("bic", "mae", math.nan, 0.5, 100, 7) == math.inf
    assert criterion("val", "mae", 0.01, math.nan, 100, 7) == math.inf
    cfg = resolve({"learn_decay": True})
    assert n_parameters(None, 4, cfg) == 16 + 4 + 4
    assert n_parameters(np.eye(4, dtype=bool), 4, resolve({"learn_alpha": False})) == 4


def test_prune_select_val_without_validation_conditions_is_refused_before_fitting(tmp_path):
    ds = simulate("LI", conditions=6, times=3, noise=0.01, seed=0)
    cfg = resolve({"prune": True, "prune_select": "val", "n_val": 0, "n_test": 1, "epochs": 2})
    out = tmp_path / "fit.h5"
    with pytest.raises(ConfigError, match="prune_select"):
        train(ds, cfg, out)
    assert not out.exists()


# -- the whole path --------------------------------------------------------------------------------------------
LI_CFG = {"prune": True, "epochs": 1500, "patience": 1500, "lr": 0.01, "schedule": "step", "lr_step": 500,
          "prune_epochs": 600, "prune_patience": 200, "n_val": 5, "n_test": 5, "checkpoint_seconds": 1e9}


@pytest.fixture(scope="module")
def li_fit(tmp_path_factory):
    ds = simulate("LI", conditions=30, times=5, noise=0.01, seed=3)
    cfg = resolve(LI_CFG)
    out = tmp_path_factory.mktemp("prune") / "fit.h5"
    res = train(ds, cfg, out)
    return ds, cfg, out, res


def test_prune_results_are_consistent_with_an_independent_evaluation(li_fit):
    """The stored path: the chosen candidate minimises the BIC recomputed by hand from the stored training losses;
    its training loss matches scipy's DOP853 solution (rtol 1e-12) of the stored best parameters to 1e-4 relative
    (the fit solves at rtol 1e-6); best W is zero off the selected support; the unpruned fit is candidate 0."""
    ds, cfg, out, res = li_fit
    pr = res["prune"]
    assert pr is not None and pr["select"] == "bic"
    assert pr["levels"][0] == 0.0 and pr["support"][0] == 49 and pr["epochs"][0] == 0
    train_idx = res["split"][0]
    n_obs = int(ds.observed()[train_idx].sum())
    k = pr["support"] + ds.n
    bic = 2 * n_obs * np.log(pr["train_loss"]) + k * np.log(n_obs)
    np.testing.assert_allclose(pr["criterion"], bic, rtol=1e-12)
    assert pr["chosen"] == int(np.argmin(bic))
    best = res["best"]
    assert not np.any(best["W"][~pr["mask"]])
    X = solve_ref(best["W"], best["alpha"], ds.U[train_idx], ds.t)
    loss = float(np.mean(np.abs(X - ds.Y[train_idx])))
    assert pr["train_loss"][pr["chosen"]] == pytest.approx(loss, rel=1e-4)
    np.testing.assert_array_equal(res["final"]["W"], best["W"])
    assert res["metrics"]["prune"]["support"] == pr["support"][pr["chosen"]]
    # the history is the fit's (the refits' epochs are in prune/epochs, summed in metrics prune.epochs); wall_s is
    # the whole training's: the fit's last history row plus the refits' (bookkeeping, not a speed check)
    m = res["metrics"]
    assert res["history"]["epoch"].size == m["epochs"]
    assert m["prune"]["epochs"] == int(pr["epochs"].sum()) > 0
    assert m["prune"]["wall_s"] > 0.0
    assert m["wall_s"] == pytest.approx(res["history"]["wall_s"][-1] + m["prune"]["wall_s"], rel=1e-12)


def test_prune_finds_the_support_of_li_and_improves_the_test_error(li_fit):
    """On LI (8 edges, AUROC 1 for the full fit) the selected support holds every true edge and fewer than half of
    the 49 entries, and the test MAE against the clean responses is lower than the unpruned fit's (seeded data;
    both measured by the package's evaluate, the unpruned one from prune/stage1)."""
    ds, cfg, out, res = li_fit
    pr = res["prune"]
    true = ds.W_true != 0
    assert np.all(pr["mask"][true])
    assert pr["mask"].sum() < 49 / 2
    from cellbox_nb import solve

    test = res["split"][2]
    s1 = pr["stage1"]
    X1 = solve(s1["W"], s1["alpha"], ds.U[test], ds.t)
    mae_unpruned = float(np.mean(np.abs(X1 - ds.Y_clean[test])))
    assert res["metrics"]["mae_test"] < mae_unpruned


class _KilledInTheRefits(BaseException):
    pass


@pytest.mark.parametrize("how", ["train", "signal", "older_version"])
def test_resume_after_a_kill_during_the_refits_gives_the_same_bits(li_fit, tmp_path, monkeypatch, how):
    """A kill during the refits leaves the fit's complete file with status ``running`` and ``fit_ended`` (it said
    ``finished``, so a monitor saw the unpruned W as the result and a rerun sweep skipped the row); --resume and
    a rerun sweep's is_done see it is not done, and --resume redoes the refits and ends with the uninterrupted
    run's parameters and path, bitwise.  A file of an older version (the fit's status, no prune/) resumes too."""
    import cellbox_nb.fit.train as tr
    from cellbox_nb.sweep import is_done

    ds, cfg, out, res = li_fit
    killed = tmp_path / "killed.h5"
    if how in ("train", "signal"):  # a kill, or a stop signal (Interrupted from a refit), during the refits
        stop = _KilledInTheRefits if how == "train" else Interrupted("stopped by SIGTERM after epoch 3; ...",
                                                                      signal="SIGTERM")

        def kill(*args, **kwargs):
            raise stop

        with monkeypatch.context() as m:
            m.setattr(tr, "prune_and_refit", kill)
            with pytest.raises(stop if isinstance(stop, type) else type(stop)) as info:
                train(ds, cfg, killed)
        if how == "signal":  # not the refit's epoch: the refits start again
            assert str(info.value) == (f"stopped by SIGTERM during the prune refits; the fit itself is complete in "
                                       f"'{killed}' and the refits are redone (continue with --resume)")
        mid = read_fit(killed)
        assert mid["status"] == ("running" if how == "train" else "interrupted")
        assert mid["fit_ended"] == res["metrics"]["status"] and not is_done(mid)
    else:
        Trainer(ds, cfg, killed).start()  # the fit alone, as earlier versions left it
        mid = read_fit(killed)
        assert mid["status"] in ("finished", "early_stopped") and mid["fit_ended"] is None
        assert not is_done(mid)  # a rerun sweep does its refits too
    assert mid["prune"] is None
    again = train(ds, cfg, killed, resume=True)
    assert again["status"] == res["status"] and again["fit_ended"] is None and is_done(again)
    for key in ("W", "alpha", "d"):
        assert np.array_equal(again["best"][key], res["best"][key])
    for key in ("levels", "support", "train_loss", "criterion", "epochs", "mask"):
        assert np.array_equal(again["prune"][key], res["prune"][key])
    # resuming a file that already has its prune results changes nothing
    third = train(ds, cfg, killed, resume=True)
    assert np.array_equal(third["best"]["W"], again["best"]["W"])


# -- steady-state initialisation -------------------------------------------------------------------------------
def _steady_problem(seed=0, M=30):
    r = np.random.default_rng(seed)
    n = 5
    W = np.where(r.random((n, n)) < 0.4, r.normal(size=(n, n)), 0.0)
    W *= 0.8 / max(np.abs(np.linalg.eigvals(W)).max(), 1e-12)
    alpha = np.full(n, 0.7)
    U = np.zeros((M, n))
    for c in range(M):
        k = r.integers(1, 3)
        U[c, r.choice(n, size=k, replace=False)] = r.uniform(0.2, 1.0, k)
    t = np.array([20.0, 40.0, 60.0])
    return W, alpha, U, t


def test_steady_state_init_recovers_w_and_alpha_from_exact_steady_states():
    """Without noise and ridge, the regression recovers W and alpha from scipy's DOP853 responses at t = 60
    (steady to ~1e-12): tolerance 1e-6."""
    W, alpha, U, t = _steady_problem()
    Y = solve_ref(W, alpha, U, t)
    W_hat, a_hat = steady_state_init(U, Y, ridge=0.0)
    np.testing.assert_allclose(W_hat, W, atol=1e-6)
    np.testing.assert_allclose(a_hat, alpha, atol=1e-6)
    # fixed gains are kept, and W is still recovered
    W_fix, a_fix = steady_state_init(U, Y, alpha=alpha, ridge=0.0)
    np.testing.assert_array_equal(a_fix, alpha)
    np.testing.assert_allclose(W_fix, W, atol=1e-6)


def test_steady_state_init_honours_the_w_mask_and_skips_conditions_with_missing_values():
    W, alpha, U, t = _steady_problem(seed=1)
    Y = solve_ref(W, alpha, U, t)
    free = np.ones_like(W, dtype=bool)
    np.fill_diagonal(free, False)
    W_hat, _ = steady_state_init(U, Y, w_mask=free)
    assert not np.any(np.diag(W_hat))
    mask = np.ones(Y.shape, dtype=bool)
    mask[[2, 7], -1, 1] = False
    Ynan = Y.copy()
    Ynan[~mask] = np.nan
    keep = np.setdiff1d(np.arange(U.shape[0]), [2, 7])
    got = steady_state_init(U, Ynan, mask=mask)
    ref = steady_state_init(U[keep], Y[keep])
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    with pytest.raises(ConfigError, match="at least two"):
        steady_state_init(U[:1], Y[:1])
    with pytest.raises(ConfigError, match="zero"):
        steady_state_init(U, np.zeros_like(Y))


def test_trainer_starts_from_the_steady_state_regression_of_the_training_conditions(tmp_path):
    ds = load_network("BF")
    ds = simulate(ds, conditions=20, times=5, noise=0.01, seed=0)
    cfg = resolve({"init": "steady_state", "n_val": 4, "n_test": 4, "epochs": 1})
    tr = Trainer(ds, cfg, tmp_path / "fit.h5")
    from cellbox_nb.fit.splits import make_split

    tr.split = make_split(ds, cfg)
    st = tr._initial_state()
    W, a = steady_state_init(ds.U[tr.split[0]], ds.Y[tr.split[0]])
    np.testing.assert_array_equal(st.params["W"], W)
    np.testing.assert_array_equal(st.params["alpha"], a)
    # on BF this start is already close to the truth (the fit from zeros is not: bench/RESULTS.md)
    assert np.corrcoef(W.ravel(), ds.W_true.ravel())[0, 1] > 0.9


def test_prune_through_the_cli_does_not_depend_on_the_thread_count(tmp_path):
    """`cellbox-nb train --set prune=true` with NUMBA_NUM_THREADS=1 and =2: the same parameters, path and history,
    bitwise; --json still prints the documented keys."""
    import json
    import subprocess
    import sys

    fits = []
    for threads in ("1", "2"):
        out = tmp_path / f"t{threads}.h5"
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        res = subprocess.run([sys.executable, "-m", "cellbox_nb._cli.main", "train", "--network", "LI", "--quiet",
                              "--json", "--epochs", "150", "--out", str(out), "--set", "prune=true",
                              "--set", "prune_epochs=60"], capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
        summary = json.loads(res.stdout)
        assert {"mae_test", "pearson_W", "auroc", "status"} <= set(summary)
        fits.append(read_fit(out))
    a, b = fits
    assert a["prune"] is not None
    for key in ("W", "alpha", "d"):
        assert np.array_equal(a["best"][key], b["best"][key])
    for key in ("levels", "support", "train_loss", "criterion", "epochs", "mask"):
        assert np.array_equal(a["prune"][key], b["prune"][key])
    for col in a["history"]:
        if col != "wall_s":
            assert np.array_equal(a["history"][col], b["history"][col])


def test_export_writes_the_prune_path_exactly(li_fit, tmp_path):
    """`export_csv` of a pruned fit adds prune.csv (one row per candidate, values read back to the same float64
    bits, the selected one marked) and W_unpruned.csv (the fit's own best W); a fit without prune has neither."""
    import csv

    from cellbox_nb.export import export_csv

    ds, cfg, out, res = li_fit
    pr = res["prune"]
    files = export_csv(out, tmp_path / "exp")
    names = [os.path.basename(f) for f in files]
    assert names[-2:] == ["prune.csv", "W_unpruned.csv"]
    with open(tmp_path / "exp" / "prune.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == pr["levels"].size
    for key in ("levels", "train_loss", "val_loss", "criterion"):
        col = {"levels": "level"}.get(key, key)
        np.testing.assert_array_equal([float(r[col]) for r in rows], pr[key])
    assert [int(r["support"]) for r in rows] == pr["support"].tolist()
    assert [int(r["epochs"]) for r in rows] == pr["epochs"].tolist()
    assert [int(r["chosen"]) for r in rows] == [int(j == pr["chosen"]) for j in range(len(rows))]
    with open(tmp_path / "exp" / "W_unpruned.csv", newline="") as fh:
        W = np.array([[float(v) for v in row[1:]] for row in list(csv.reader(fh))[1:]])
    np.testing.assert_array_equal(W, pr["stage1"]["W"])
    plain = tmp_path / "plain.h5"
    train(ds, resolve(cfg, {"prune": False, "epochs": 3}), plain)
    names = [os.path.basename(f) for f in export_csv(plain, tmp_path / "exp2")]
    assert "prune.csv" not in names and "W_unpruned.csv" not in names
    # into the pruned fit's export folder: its prune files go (they stayed beside the other fit's files)
    names = [os.path.basename(f) for f in export_csv(plain, tmp_path / "exp")]
    assert sorted(os.listdir(tmp_path / "exp")) == sorted(names)
