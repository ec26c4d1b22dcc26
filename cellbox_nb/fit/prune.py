"""Prune and refit (config key ``prune``): after the fit, refit W on the support of its largest entries.

Why.  With the seed paper's data budgets (10-100 conditions, noise sd 0.01 on responses of about 0.2) the full
model's n^2 + n parameters are poorly determined along some directions, and its maximum-likelihood W lies far
from the truth even where the *ranking* of |W| finds the edges almost perfectly (AUROC 0.99-1.00 on BFC and TF).
An estimator that knew the support would do much better: ``bench/estimation_floor.py`` computes the
Cramer-Rao floor of both (e.g. TF: expected r(W) 0.75-0.85 for the full model, 0.92-0.97 on the true support).
Prune and refit is the standard way to get there without knowing the support (select, then refit without the
shrinkage of the selection; cf. the relaxed lasso): the support is chosen from the fit itself, and the refit
is an ordinary fit with the other entries of W fixed at zero.

What it does, after the fit has ended (finished or early stopped):

1. Candidates: for each level tau in :data:`LEVELS`, the entries with |W_ij| >= tau * max |W| among the free
   off-diagonal entries of the fit's best W; the diagonal (self-loops) stays free unless ``prune_diagonal``,
   because a self-loop is confounded with the node's gain and decay (for small responses alpha_i tanh(W_ii x_i
   + ...) - x_i changes only the effective decay 1 - alpha_i W_ii), so its fitted size says little about
   whether it exists.  Equal supports are refitted once.
2. Refit: each candidate support is trained from the fit's best parameters (W restricted to the support) with
   the same config, except ``epochs = prune_epochs`` and ``patience = prune_patience``; best parameters by
   validation loss, as in the fit.
3. Selection among the unpruned fit and the refits: ``prune_select = "bic"`` (default) minimises the Bayesian
   information criterion c N ln(L_train) + k ln N, with N the observed training entries, k the free parameters
   (support size, plus n for alpha and n for d when learned), L_train the training loss of the candidate's
   best parameters over all training conditions and time points, and c = 1 for MSE (Gaussian likelihood),
   c = 2 for MAE (Laplace likelihood); ``"val"`` minimises the validation loss.  Ties go to the smaller support.

The results file then holds the selected candidate's parameters as ``params/best`` and ``params/final``
(predictions and metrics from them) and the whole path in the group ``prune/`` (:mod:`cellbox_nb.fit.store`);
``history`` stays the fit's.  A kill during the refits leaves the fit's complete file; ``--resume`` redoes the
refits from it, which are deterministic, so the result has the same bits as an uninterrupted run.
"""

import math

import numpy as np

from ..errors import ConfigError, NumericalError
from .config import resolve

# thresholds, as fractions of the largest free |W_ij| of the fit (candidates with equal supports are refitted once)
LEVELS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)


def candidate_masks(W, free, prune_diagonal=False, levels=LEVELS):
    """The candidate supports of :func:`prune_and_refit`: a list of (level, (n, n) bool mask), distinct masks
    only, in the order of ``levels``.  ``free`` is the fit's W mask (None = all free); entries outside it stay
    fixed at zero in every candidate."""
    W = np.asarray(W, dtype=np.float64)
    n = W.shape[0]
    free = np.ones((n, n), dtype=bool) if free is None else np.asarray(free, dtype=bool)
    prunable = free.copy()
    if not prune_diagonal:
        prunable &= ~np.eye(n, dtype=bool)
    kept = free & ~prunable  # free entries that are never pruned (the diagonal by default)
    big = float(np.max(np.abs(W[prunable]))) if prunable.any() else 0.0
    out, seen = [], set()
    if big == 0.0:
        return out
    for tau in levels:
        mask = kept | (prunable & (np.abs(W) >= tau * big))
        key = mask.tobytes()
        if key not in seen:
            seen.add(key)
            out.append((float(tau), mask))
    return out


def n_parameters(mask, n, cfg):
    """Free parameters of a fit with W mask ``mask`` (None = all n^2 entries) under config ``cfg``."""
    k = n * n if mask is None else int(np.count_nonzero(mask))
    return k + (n if cfg["learn_alpha"] else 0) + (n if cfg["learn_decay"] else 0)


def criterion(select, loss_kind, train_loss, val_loss, n_obs, k):
    """The selection criterion of one candidate (smaller is better; inf when it cannot be evaluated)."""
    if select == "val":
        return val_loss if math.isfinite(val_loss) else math.inf
    if not (math.isfinite(train_loss) and train_loss > 0.0 and n_obs > 0):
        return math.inf
    c = 2.0 if loss_kind == "mae" else 1.0
    return c * n_obs * math.log(train_loss) + k * math.log(n_obs)


def check_config(cfg, split):
    """ConfigError before the fit starts when pruning by validation loss has no validation conditions."""
    if cfg["prune"] and cfg["prune_select"] == "val" and len(split[1]) == 0:
        raise ConfigError("config key 'prune_select': 'val' needs validation conditions (set n_val or val_frac, "
                          "or use prune_select: bic)")


def prune_and_refit(make_trainer, ds, cfg, split, free, stage1, loss_of):
    """Run the candidates of the module docstring; return (selected params, path dict).

    make_trainer(refit_cfg, init_params, w_mask) -> a Trainer that writes nothing; loss_of(params, idx) -> the
    training loss kind's value over conditions idx (NaN when the solve fails); stage1: the fit's best params.
    The path dict holds arrays levels (0 = the unpruned fit), support, train_loss, val_loss, criterion, epochs,
    the index ``chosen``, the selected ``mask`` (n, n) and ``stage1`` (the fit's best parameters)."""
    n = ds.n
    train, val, _ = split
    n_obs = int(np.count_nonzero(ds.observed()[train]))
    sel, kind = cfg["prune_select"], cfg["loss"]
    refit_cfg = resolve(cfg, {"epochs": cfg["prune_epochs"], "patience": cfg["prune_patience"], "prune": False})
    full = np.ones((n, n), dtype=bool) if free is None else np.asarray(free, dtype=bool)
    rows = []  # (level, mask, params, train_loss, val_loss, epochs)
    tl, vl = loss_of(stage1, train), loss_of(stage1, val)
    rows.append((0.0, full, stage1, tl, vl, 0))
    for level, mask in candidate_masks(stage1["W"], free, cfg["prune_diagonal"]):
        if mask.sum() == full.sum():
            continue  # nothing pruned at this level: the fit itself
        init = {k: v.copy() for k, v in stage1.items()}
        init["W"] = np.where(mask, init["W"], 0.0)
        try:
            res = make_trainer(refit_cfg, init, mask).start()
        except NumericalError:
            continue  # this support cannot be fitted (the solver failed repeatedly): not a candidate
        best = res["best"]
        rows.append((level, mask, best, loss_of(best, train), loss_of(best, val), int(res["metrics"]["epochs"])))
    crit = [criterion(sel, kind, r[3], r[4], n_obs, n_parameters(r[1], n, cfg)) for r in rows]
    # ties (and all-infinite criteria) go to the smaller support
    chosen = min(range(len(rows)), key=lambda j: (crit[j], int(rows[j][1].sum())))
    path = {
        "select": sel, "chosen": chosen,
        "levels": np.array([r[0] for r in rows]), "support": np.array([int(r[1].sum()) for r in rows]),
        "train_loss": np.array([r[3] for r in rows]), "val_loss": np.array([r[4] for r in rows]),
        "criterion": np.array(crit), "epochs": np.array([r[5] for r in rows], dtype=np.int64),
        "mask": rows[chosen][1].copy(), "stage1": {k: v.copy() for k, v in stage1.items()},
    }
    return {k: v.copy() for k, v in rows[chosen][2].items()}, path

