"""Train / validation / test splits of conditions, seeded and stored with every fit."""

import numpy as np

from ..errors import ConfigError


def random_split(M, cfg):
    """Random partition of range(M) into (train, val, test) index arrays (each sorted).

    Counts: n_test = cfg["n_test"] or round(M * test_frac), n_val likewise; the rest trains.  Seeded by
    cfg["split_seed"].
    """
    n_test = cfg["n_test"] if cfg["n_test"] is not None else int(round(M * cfg["test_frac"]))
    n_val = cfg["n_val"] if cfg["n_val"] is not None else int(round(M * cfg["val_frac"]))
    n_train = M - n_val - n_test
    if n_train < 1:
        raise ConfigError(f"split: {M} conditions leave no training conditions ({n_val} validation, {n_test} test)")
    perm = np.random.default_rng(cfg["split_seed"]).permutation(M)
    return np.sort(perm[:n_train]), np.sort(perm[n_train:n_train + n_val]), np.sort(perm[n_train + n_val:])
