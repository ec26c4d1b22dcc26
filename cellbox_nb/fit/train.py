"""The training loop: Adam(W, alpha[, d]) on the adjoint gradient, early stopping, checkpoints, metrics.

One epoch is one pass over the training conditions in batches of ``batch_size`` (0 = all at once, in index
order; otherwise a seeded permutation per epoch).  After each epoch the validation loss is computed with the
current parameters; its moving average (``ma_window``) drives early stopping (after ``burnin`` epochs, stop when
it has not improved for ``patience`` epochs), the raw validation loss picks the best parameters, and the
learning-rate schedule reacts to it (``plateau``) or to the epoch count (``step``).

Numerical faults: a step whose solve fails (max steps, step underflow, non-finite) or whose loss or gradient
is non-finite is rejected: the parameters and Adam moments go back to their values before the last accepted
update (which led to the failure; it is redone with the smaller step), the event is counted in the history, and
the learning rate is multiplied by ``lr_factor``; after ``max_rejections`` consecutive rejections the fit stops
with status ``numerical_failure`` (exit code 4 on the command line).  Parameters never become NaN.

Everything that influences the trajectory (parameters, Adam moments, step, lr, RNG state, counters, history)
is saved at each checkpoint, so a resumed fit ends with the same bits as an uninterrupted one.
"""

import contextlib
import math
import os
import time

import numpy as np

from ..api import SolveError, _backend, loss_and_grad, solve
from ..data.dataset import data_digest
from ..data.h5atomic import remove_stale_temps, writer_lock
from ..errors import ConfigError, InputDataError, Interrupted, NumericalError
from .config import config_differences
from . import metrics as mt
from .optim import adam_step, grad_norm, init_moments
from .masks import apply_node_roles, build_w_mask
from .splits import make_split, partition_info
from .steady import steady_state_init
from .prune import check_config as check_prune_config, prune_and_refit
from .store import read_fit, write_fit

FINAL_STATUSES = ("finished", "early_stopped")
RESUME_HINT = "(continue with --resume)"  # the end of the message of a stopped fit
WRITE_SHARE_INVERSE = 9.0  # a timed checkpoint waits at least this many times the last write's duration


def _loss_value(X, Y, mask, kind):
    r = (X - Y)[mask]
    if r.size == 0:
        return float("nan")
    return float(np.mean(np.abs(r)) if kind == "mae" else np.mean(r * r))


class _State:
    """Everything that evolves during training (and goes into a checkpoint)."""

    def __init__(self, params, cfg):
        self.params = params
        self.m, self.v = init_moments(params)
        self.step = 0
        self.epoch = 0
        self.lr = cfg["lr"]
        self.best_val = math.inf
        self.best = {k: v.copy() for k, v in params.items()}
        self.best_epoch = 0
        self.best_ma = math.inf
        self.bad_epochs = 0
        self.plateau_best = math.inf
        self.plateau_bad = 0
        self.ma_buffer = []
        self.consecutive_rejections = 0
        self.undo = None  # (params, m, v, step) before the last accepted update; restored on a rejected step
        self.history = []
        self.wall = 0.0
        self.rng_state = None

    def checkpoint(self):
        ck = {f"p_{k}": v for k, v in self.params.items()}
        ck.update({f"m_{k}": v for k, v in self.m.items()})
        ck.update({f"v_{k}": v for k, v in self.v.items()})
        ck.update({"step": self.step, "epoch": self.epoch, "lr": self.lr, "best_val": _num(self.best_val),
                   "best_ma": _num(self.best_ma), "bad_epochs": self.bad_epochs,
                   "plateau_best": _num(self.plateau_best), "plateau_bad": self.plateau_bad,
                   "ma_buffer": self.ma_buffer, "consecutive_rejections": self.consecutive_rejections,
                   "wall": self.wall, "rng_state": self.rng_state, "best_epoch": self.best_epoch})
        ck["undo_step"] = None if self.undo is None else self.undo[3]
        if self.undo is not None:
            for prefix, values in zip(("up_", "um_", "uv_"), self.undo[:3]):
                ck.update({f"{prefix}{k}": v for k, v in values.items()})
        return ck

    @classmethod
    def restore(cls, ck, best, history, cfg):
        keys = [k[2:] for k in ck if k.startswith("p_")]
        st = cls({k: np.array(ck[f"p_{k}"]) for k in keys}, cfg)
        st.m = {k: np.array(ck[f"m_{k}"]) for k in keys}
        st.v = {k: np.array(ck[f"v_{k}"]) for k in keys}
        for name in ("step", "epoch", "lr", "bad_epochs", "plateau_bad", "ma_buffer", "consecutive_rejections",
                     "wall", "rng_state", "best_epoch"):
            setattr(st, name, ck[name])
        st.best_val = _unnum(ck["best_val"])
        st.best_ma = _unnum(ck["best_ma"])
        st.plateau_best = _unnum(ck["plateau_best"])
        if ck.get("undo_step") is not None:
            st.undo = tuple({k: np.array(ck[f"{prefix}{k}"]) for k in keys} for prefix in ("up_", "um_", "uv_"))
            st.undo += (ck["undo_step"],)
        st.best = {k: np.array(best[k]) for k in keys}
        st.history = _history_rows(history)
        return st


def _history_rows(history):
    """The history columns of read_fit (dict column -> array) as the trainer's list of row tuples."""
    return [tuple(float(history[c][i]) for c in history) for i in range(len(history["epoch"]))]


def _split_loss(solve, ds, mask, cfg, params, idx):
    """The config's loss of params' responses over conditions idx, every time point (NaN for no conditions or a
    failed solve): the validation loss of the fit, and the prune candidates' training and validation losses."""
    if idx.size == 0:
        return math.nan
    try:
        X = solve(params["W"], params["alpha"], ds.U[idx], ds.t, rtol=cfg["rtol"], atol=cfg["atol"],
                  decay=params["d"], backend=cfg["backend"])
    except SolveError:
        return math.nan
    return _loss_value(X, np.nan_to_num(ds.Y[idx]), mask[idx], cfg["loss"])


def _predict(solve, ds, cfg, params):
    """params' responses (M, T, n) on every condition (NaN for a condition whose solve fails)."""
    try:
        return solve(params["W"], params["alpha"], ds.U, ds.t, rtol=cfg["rtol"], atol=cfg["atol"],
                     decay=params["d"], on_failure="nan", backend=cfg["backend"])
    except SolveError:  # pragma: no cover - on_failure="nan" does not raise
        return None


def _num(x):
    return None if not math.isfinite(x) else float(x)


def _unnum(x):
    return math.inf if x is None else float(x)


def _check_init_params(init_params, n):
    """Validated copies of the starting values given to :func:`train` (keys W, alpha, d; any subset)."""
    out = {}
    shapes = {"W": (n, n), "alpha": (n,), "d": (n,)}
    for key, val in (init_params or {}).items():
        if key not in shapes:
            raise ConfigError(f"init_params: unknown key '{key}' (expected W, alpha, d)")
        arr = np.array(val, dtype=np.float64)
        if arr.shape != shapes[key]:
            raise ConfigError(f"init_params['{key}']: shape {arr.shape}, expected {shapes[key]}")
        if not np.all(np.isfinite(arr)):
            raise ConfigError(f"init_params['{key}']: contains NaN or infinite values")
        out[key] = arr
    return out


class Trainer:
    """Fit one dataset with one resolved config, writing ``out_path`` (see :mod:`cellbox_nb.fit.store`)."""

    def __init__(self, dataset, cfg, out_path, *, progress=None, stop_requested=None, parallel=None,
                 init_params=None, write=True, w_mask=None, split=None):
        # parallel: None, or a condition splitter (cellbox_nb.fit.mpi.Conditions) whose loss_and_grad and solve
        # sum over all ranks; then only its root writes the results file.  write=False: no file at all (the prune
        # refits); w_mask: entries fixed at zero on top of the config's mask; split: this split, not make_split's
        self.parallel = parallel
        self._loss_and_grad = parallel.loss_and_grad if parallel else loss_and_grad
        self._solve = parallel.solve if parallel else solve
        self._writes = write and (parallel is None or parallel.is_root)
        dataset.validate()
        dataset = apply_node_roles(cfg, dataset)
        self.ds = dataset
        self.cfg = cfg
        self.out = os.fspath(out_path)
        self.progress = progress
        self.stop_requested = stop_requested or (lambda: None)
        self.w_mask = build_w_mask(cfg, dataset)
        if w_mask is not None:
            w_mask = np.asarray(w_mask, dtype=bool)
            self.w_mask = w_mask if self.w_mask is None else self.w_mask & w_mask
        self.mask = dataset.observed()
        self.created = None
        self._last_ckpt = 0.0
        self._ckpt_gap = 0.0  # seconds until the next timed checkpoint may be written (see _write)
        self.then_prune = False  # set by train(): prune refits follow the fit (see _write)
        self.init_params = _check_init_params(init_params, dataset.n)
        self._given_split = split

    # -- set-up ---------------------------------------------------------------------------------------------
    def _initial_state(self):
        cfg, n = self.cfg, self.ds.n
        rng = np.random.default_rng(cfg["seed"])
        W = cfg["init_scale"] * rng.normal(size=(n, n)) if cfg["init"] == "random" else np.zeros((n, n))
        params = {"W": W, "alpha": np.full(n, cfg["init_alpha"]), "d": np.ones(n)}
        if cfg["init"] == "steady_state" and "W" not in self.init_params:
            train = self.split[0]
            fixed = None if cfg["learn_alpha"] else params["alpha"]
            params["W"], params["alpha"] = steady_state_init(self.ds.U[train], self.ds.Y[train], self.mask[train],
                                                             self.w_mask, alpha=fixed)
        for key, val in self.init_params.items():  # given starting values replace the configured ones
            params[key] = val.copy()
        if self.w_mask is not None:
            params["W"] = np.where(self.w_mask, params["W"], 0.0)
        st = _State(params, cfg)
        st.rng_state = rng.bit_generator.state
        return st

    def start(self, resume=False, check_data=False):
        _backend(self.cfg["backend"])  # a cuda backend without a usable GPU is refused before anything is written
        digest = data_digest(self.ds) if self.parallel else None  # the data this rank read (a resume replaces them)
        if self._writes:  # a kill during an earlier rewrite of this file left its temporary; the file itself is whole
            remove_stale_temps(self.out)
        if resume:
            saved = read_fit(self.out, with_checkpoint=True)
            if check_data and data_digest(self.ds) != data_digest(saved["dataset"]):
                raise ConfigError(f"--resume: the data differ from those the fit in '{self.out}' was started on "
                                  f"(resume with the same data, or start a new fit)")
            # a key the saved config lacks was added after that file was written, by a version that behaved as
            # the key's default does (one exception: adjoint_integrator, whose default "auto" now means DOP853 on
            # the cpu where older versions ran Tsit5; the gradients differ at the solver's tolerance, and old fits
            # and sweeps resume without a flag, on DOP853: README, sweeps)
            diff = config_differences(saved["config"], self.cfg)
            if diff:
                raise ConfigError(f"--resume: the config differs from the one in '{self.out}' (keys: "
                                  f"{', '.join(diff)}); give the original run's options again")
            saved["status"] = fit_status(saved)
            if saved["status"] in FINAL_STATUSES:  # nothing to continue: its results as they are
                saved["already_ended"] = True
                self._settle(digest)
                return saved
            self.split = tuple(saved["split"])
            self.state = _State.restore(saved["checkpoint"], saved["best"], saved["history"], self.cfg)
            self.ds = saved["dataset"]
            self.mask = self.ds.observed()
            self.w_mask = build_w_mask(self.cfg, self.ds)
        else:
            self.split = make_split(self.ds, self.cfg) if self._given_split is None else self._given_split
            check_prune_config(self.cfg, self.split)
            for name, idx in zip(("training", "validation"), self.split[:2]):
                if idx.size and not self.mask[idx].any():
                    raise InputDataError(f"the {name} conditions have no observed entries (mask all false)")
            self.state = self._initial_state()
            self._settle(digest)
            self._write("running")
            return self._run()
        self._settle(digest)
        return self._run()

    def _settle(self, digest):
        """With MPI ranks, the end of the set-up: every rank has checked its inputs and config (and read the same
        data) before the root writes or the fit goes on (cellbox_nb.fit.mpi.Conditions.settle, collective)."""
        if self.parallel and not self.parallel.settled:  # (a prune refit's trainer comes after it)
            self.parallel.settle(digest=digest)

    # -- loop -----------------------------------------------------------------------------------------------
    def _free_keys(self):
        keys = ["W"]
        if self.cfg["learn_alpha"]:
            keys.append("alpha")
        if self.cfg["learn_decay"]:
            keys.append("d")
        return keys

    def _batches(self, rng, train):
        B = self.cfg["batch_size"]
        if B == 0 or B >= train.size:
            return [train]
        perm = train[rng.permutation(train.size)]
        return [np.sort(perm[i:i + B]) for i in range(0, perm.size, B)]

    def _step(self, rng, idx):
        cfg, st, ds = self.cfg, self.state, self.ds
        t, Y, mask = ds.t, ds.Y[idx], self.mask[idx]
        tp = cfg["time_points"]
        if 0 < tp < ds.T:
            tsel = np.sort(rng.choice(ds.T, size=tp, replace=False))
            t, Y, mask = t[tsel], Y[:, tsel], mask[:, tsel]
        if not mask.any():
            return None, None
        p = st.params
        try:
            L, g = self._loss_and_grad(p["W"], p["alpha"], ds.U[idx], t, Y, mask=mask, loss=cfg["loss"],
                                       rtol=cfg["rtol"], atol=cfg["atol"], decay=p["d"], w_mask=self.w_mask,
                                       backend=cfg["backend"], adjoint=cfg["adjoint"],
                                       adjoint_rtol=cfg["adjoint_rtol"],
                                       adjoint_integrator=cfg["adjoint_integrator"])
        except SolveError:
            return math.nan, None
        keys = self._free_keys()
        grads = {k: g[k] for k in keys}
        if not (math.isfinite(L) and all(np.all(np.isfinite(v)) for v in grads.values())):
            return math.nan, None
        return L, grads

    def _val_loss(self, params, idx):
        return _split_loss(self._solve, self.ds, self.mask, self.cfg, params, idx)

    def _run(self):
        cfg, st = self.cfg, self.state
        train, val, _ = self.split
        rng = np.random.default_rng()
        rng.bit_generator.state = st.rng_state
        t_start = time.perf_counter() - st.wall
        status = "running"
        while st.epoch < cfg["epochs"]:
            losses, rejected, gnorm = [], 0, math.nan
            for idx in self._batches(rng, train):
                L, grads = self._step(rng, idx)
                if grads is None:
                    if L is None:
                        continue
                    rejected += 1
                    st.consecutive_rejections += 1
                    st.lr = max(st.lr * cfg["lr_factor"], 1e-300)
                    if st.undo is not None:  # take back the update that led here; it is redone with the smaller lr
                        st.params, st.m, st.v, st.step = st.undo
                        st.undo = None
                    if st.consecutive_rejections >= cfg["max_rejections"]:
                        status = "numerical_failure"
                        break
                    continue
                st.consecutive_rejections = 0
                st.undo = tuple({k: x.copy() for k, x in d.items()} for d in (st.params, st.m, st.v)) + (st.step,)
                st.step += 1
                gnorm = grad_norm(grads)
                free = {k: st.params[k] for k in grads}
                new, m, v = adam_step(free, grads, {k: st.m[k] for k in grads}, {k: st.v[k] for k in grads},
                                      st.step, st.lr, cfg, self.w_mask)
                st.params.update(new)
                st.m.update(m)
                st.v.update(v)
                losses.append(L)
            st.epoch += 1
            train_loss = float(np.mean(losses)) if losses else math.nan
            val_loss = self._val_loss(st.params, val) if val.size else train_loss
            stop = self._end_of_epoch(train_loss, val_loss)
            st.wall = time.perf_counter() - t_start
            st.history.append((st.epoch, train_loss, val_loss, st.lr, gnorm, rejected, st.wall))
            st.rng_state = rng.bit_generator.state
            if self.progress is not None:
                self.progress(st.epoch, cfg["epochs"], train_loss, val_loss)
            if status == "numerical_failure":
                break
            if stop:
                status = "early_stopped"
                break
            signame = self.stop_requested()
            if self.parallel:
                signame = self.parallel.first(signame)
            if signame:
                self._write("interrupted")
                raise Interrupted(f"stopped by {signame} after epoch {st.epoch}; checkpoint written to "
                                  f"'{self.out}' {RESUME_HINT}", signal=signame)
            due = cfg["checkpoint_every"] and st.epoch % cfg["checkpoint_every"] == 0
            if due or time.perf_counter() - self._last_ckpt >= max(cfg["checkpoint_seconds"], self._ckpt_gap):
                self._write("running")
        if status == "running":
            status = "finished"
        return self._finish(status)

    def _end_of_epoch(self, train_loss, val_loss):
        cfg, st = self.cfg, self.state
        if math.isfinite(val_loss) and val_loss < st.best_val:
            st.best_val = val_loss
            st.best = {k: v.copy() for k, v in st.params.items()}
            st.best_epoch = st.epoch
        st.ma_buffer = (st.ma_buffer + [val_loss if math.isfinite(val_loss) else None])[-cfg["ma_window"]:]
        vals = [x for x in st.ma_buffer if x is not None]
        ma = float(np.mean(vals)) if vals else math.inf
        if ma < st.best_ma * (1 - cfg["min_delta"]):
            st.best_ma = ma
            st.bad_epochs = 0
        else:
            st.bad_epochs += 1
        if cfg["schedule"] == "plateau":
            if math.isfinite(val_loss) and val_loss < st.plateau_best:
                st.plateau_best = val_loss
                st.plateau_bad = 0
            else:
                st.plateau_bad += 1
                if st.plateau_bad >= cfg["lr_patience"]:
                    st.lr = max(st.lr * cfg["lr_factor"], cfg["lr_min"])
                    st.plateau_bad = 0
        elif cfg["schedule"] == "step" and st.epoch % cfg["lr_step"] == 0:
            st.lr = max(st.lr * cfg["lr_factor"], cfg["lr_min"])
        return st.epoch >= cfg["burnin"] and st.bad_epochs >= cfg["patience"]

    # -- output ---------------------------------------------------------------------------------------------
    def _write(self, status, predictions=None, metrics=None):
        if not self._writes:
            return
        st = self.state
        started = time.perf_counter()
        fit_ended = None
        if self.then_prune and status in FINAL_STATUSES:  # refits follow: not done yet for anyone reading the file
            status, fit_ended = "running", status
        write_fit(self.out, status=status, config=self.cfg, dataset=self.ds, split=self.split,
                  history=st.history, final=st.params, best=st.best, best_epoch=st.best_epoch,
                  checkpoint=st.checkpoint(), predictions=predictions, metrics=metrics, created=self.created,
                  fit_ended=fit_ended)
        self._last_ckpt = time.perf_counter()
        # Timed checkpoints take at most about a tenth of the run: the whole file is rewritten each time, which
        # for a large network (n = 4000: 1.2 GB, 7-10 s here) could otherwise take longer than checkpoint_seconds
        # and be repeated after every epoch.  checkpoint_seconds = 0 (every epoch) is left as asked.
        if self.cfg["checkpoint_seconds"] > 0:
            self._ckpt_gap = WRITE_SHARE_INVERSE * (self._last_ckpt - started)

    def _finish(self, status):
        st = self.state
        best = st.best
        X = _predict(self._solve, self.ds, self.cfg, best)
        metrics = evaluate(self.ds, self.split, best, X, self.cfg["loss"])
        metrics.update({"epochs": st.epoch, "best_epoch": st.best_epoch, "wall_s": st.wall, "status": status,
                        "steps": st.step})
        metrics.update(partition_info(self.ds, self.cfg))
        self._write(status, predictions=X, metrics=metrics)
        if status == "numerical_failure":
            raise NumericalError(f"training stopped after {self.cfg['max_rejections']} consecutive rejected steps "
                                 f"(solver failure or non-finite gradient) at epoch {st.epoch}; the results file "
                                 f"'{self.out}' keeps the last good parameters (try a smaller lr)")
        if not self._writes:
            return {"status": status, "metrics": metrics, "final": st.params, "best": best,
                    "best_epoch": st.best_epoch}
        return read_fit(self.out)


def evaluate(ds, split, params, X, loss_kind="mae"):
    """Metrics of a fit: MAE per split, test Pearson r, and network recovery against the truth if known.

    MAE and pearson_test compare with the noise-free responses (Y_clean) when the dataset has them (simulated
    data), else with the measured Y; ``targets`` says which.
    """
    target = ds.Y_clean if ds.Y_clean is not None else ds.Y
    mask = ds.observed()
    out = {"targets": "clean" if ds.Y_clean is not None else "measured"}
    # conditions whose solve failed (NaN predictions) are left out of the response metrics and counted
    solved = np.zeros(ds.M, dtype=bool) if X is None else np.all(np.isfinite(X) | ~mask, axis=(1, 2))
    out["failed_predictions"] = int(ds.M - solved.sum())
    split = tuple(idx[solved[idx]] for idx in split)
    for name, idx in zip(("train", "val", "test"), split):
        if idx.size == 0 or not mask[idx].any():
            out[f"mae_{name}"] = None
            continue
        out[f"mae_{name}"] = mt.mae(X[idx], np.nan_to_num(target[idx]), mask[idx])
    test = split[2]
    if test.size and mask[test].sum() >= 2:
        m = mask[test]
        out["pearson_test"] = mt.pearson(X[test][m], target[test][m])
    else:
        out["pearson_test"] = None
    if ds.W_true is not None:
        rec = mt.network_recovery(params["W"], ds.W_true, params["alpha"], ds.alpha_true)
        # r over the off-diagonal entries too: the self-loops are confounded with the gains and the decay, and
        # with small gains their fitted values are loose enough to dominate pearson_W (bench/RESULTS.md, run 10)
        off = mt.network_recovery(params["W"], ds.W_true, include_diagonal=False)["pearson_W"]
        out.update({"pearson_W": rec["pearson_W"], "pearson_W_offdiag": off, "pearson_alpha": rec["pearson_alpha"],
                    "auroc": rec["auroc"], "aupr": rec["aupr"], "sign_accuracy": rec["sign_accuracy"]})
    else:
        out.update({"pearson_W": None, "pearson_W_offdiag": None, "pearson_alpha": None, "auroc": None,
                    "aupr": None, "sign_accuracy": None})
    for k, v in list(out.items()):
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = None
    return out


def train(dataset, cfg, out_path, *, resume=False, progress=None, stop_requested=None, parallel=None,
          init_params=None, check_data=False, new_file=False):
    """Fit ``dataset`` with the resolved config ``cfg``; write and return the results (see read_fit).

    ``parallel``: split the conditions across MPI ranks (:func:`cellbox_nb.fit.mpi.from_environment`); ranks other
    than the root write nothing and return only status, metrics and parameters.
    ``init_params``: starting values {"W": (n, n), "alpha": (n,), "d": (n,)} (any subset) instead of the configured
    initialisation, e.g. a warm start from an earlier fit (the W mask still applies); ignored by ``resume``, which
    continues from the checkpoint; ``check_data``: with ``resume``, refuse (ConfigError) a ``dataset`` other than
    the one stored in the file (the resumed fit always continues on the stored one); ``new_file``: refuse
    (ConfigError) an ``out_path`` that exists.  The file is locked while it is written (data.h5atomic.writer_lock):
    a second process writing the same path gets ConfigError.
    With config key ``prune``, the fit is followed by the prune refits of :mod:`cellbox_nb.fit.prune` (a resumed
    fit whose file has no prune results yet redoes them)."""
    trainer = Trainer(dataset, cfg, out_path, progress=progress, stop_requested=stop_requested,
                      parallel=parallel, init_params=init_params)
    trainer.then_prune = bool(cfg["prune"])
    with writer_lock(out_path) if trainer._writes else contextlib.nullcontext():
        if new_file and os.path.exists(out_path):  # (checked again under the lock: another run may have made it)
            raise ConfigError(f"output file '{os.fspath(out_path)}' exists; pass --overwrite to replace it")
        res = trainer.start(resume=resume, check_data=check_data)
        res["status"] = fit_status(res)
        if not cfg["prune"] or res["status"] not in FINAL_STATUSES or res.get("prune") is not None:
            return res
        try:
            return _prune(trainer, res, stop_requested, parallel)
        except Interrupted as exc:  # a stop signal during the refits: the file says so (it would read running)
            if trainer._writes:
                _rewrite(trainer.out, status="interrupted")
            # (the refit's own message names its epoch and a checkpoint it did not write: the refits start again)
            raise Interrupted(f"stopped by {exc.signal or 'a signal'} during the prune refits; the fit itself is "
                              f"complete in '{trainer.out}' and the refits are redone {RESUME_HINT}",
                              signal=exc.signal) from None


def fit_status(fit):
    """The status of the fit a results file (read_fit) holds: the file's, or how the fit ended where it was
    written with its prune refits still to run (status running or interrupted, root attribute fit_ended)."""
    if fit["status"] in ("running", "interrupted") and fit.get("fit_ended") in FINAL_STATUSES:
        return fit["fit_ended"]
    return fit["status"]


def _rewrite(path, **changes):
    """Rewrite the results file ``path`` with its contents and ``changes`` (write_fit's keywords)."""
    saved = read_fit(path, with_checkpoint=True)
    args = dict(status=saved["status"], config=saved["config"], dataset=saved["dataset"], split=saved["split"],
                history=_history_rows(saved["history"]), final=saved["final"], best=saved["best"],
                best_epoch=saved["best_epoch"], checkpoint=saved["checkpoint"], predictions=saved["predictions"],
                metrics=saved["metrics"], created=saved["created"] or None, prune=saved["prune"],
                fit_ended=saved["fit_ended"])
    args.update(changes)
    write_fit(path, **args)


def _prune(trainer, res, stop_requested, parallel):
    """The prune refits after a fit that ended (module cellbox_nb.fit.prune); rewrites the results file."""
    cfg = trainer.cfg
    ds = res.get("dataset", trainer.ds)
    split = tuple(res["split"]) if "split" in res else trainer.split
    free = build_w_mask(cfg, ds)
    stage1 = {k: np.array(v) for k, v in res["best"].items()}

    def make_trainer(refit_cfg, init, mask):
        return Trainer(ds, refit_cfg, trainer.out, stop_requested=stop_requested, parallel=parallel,
                       init_params=init, write=False, w_mask=mask, split=split)

    observed = ds.observed()

    def loss_of(params, idx):
        return _split_loss(trainer._solve, ds, observed, cfg, params, np.asarray(idx))

    t0 = time.perf_counter()
    best, path = prune_and_refit(make_trainer, ds, cfg, split, free, stage1, loss_of)
    X = _predict(trainer._solve, ds, cfg, best)
    refit_wall = time.perf_counter() - t0
    old = res["metrics"] or {}
    metrics = evaluate(ds, split, best, X, cfg["loss"])
    for key in ("epochs", "best_epoch", "status", "steps", "partition", "drug"):
        if key in old:
            metrics[key] = old[key]
    # wall_s is the whole training's (the fit's plus the refits'); epochs stay the fit's
    metrics["wall_s"] = float(old.get("wall_s", 0.0)) + refit_wall
    j = path["chosen"]
    metrics["prune"] = {"select": path["select"], "level": float(path["levels"][j]),
                        "support": int(path["support"][j]), "candidates": int(path["levels"].size),
                        "epochs": int(np.sum(path["epochs"])), "wall_s": refit_wall}
    if not trainer._writes:
        return {"status": res["status"], "metrics": metrics, "final": best, "best": best,
                "best_epoch": res["best_epoch"], "prune": path}
    _rewrite(trainer.out, status=res["status"], config=cfg, final=best, best=best, predictions=X, metrics=metrics,
             prune=path, fit_ended=None)
    return read_fit(trainer.out)
