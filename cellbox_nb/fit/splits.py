"""Train / validation / test splits of conditions, seeded and stored with every fit.

Partitions (config key ``partition``; the split indices go into the results file, the config names the
partition and the drug):

- ``random`` (default): a seeded random split; ``n_test`` / ``test_frac`` and ``n_val`` / ``val_frac`` give the
  sizes (:func:`random_split`).
- ``loo`` (leave one drug out): test = every condition that perturbs the drug (CellBox "leave one out (w/o
  single)").
- ``loo_with_singles``: test = the conditions that perturb the drug together with at least one other node;
  the drug's single-drug conditions stay in training (CellBox "leave one out (w/ single)").
- ``single_to_combo``: test = every condition that perturbs two or more nodes (CellBox "single to combo").

A *drug* is a perturbed node: a column of U with a nonzero entry in some condition (for CellBox data, the
drug-activity node the drug acts on). The left-out drug (config key ``drug``) is given by node name (``aMEK``)
or by 0-based index into the list of perturbed nodes in column order (SK-MEL-133: 0 = aMEK ... 11 = aSRC; the
original CellBox ``-drug d`` is 1-based in the same order, while its ``loo_label.csv`` numbers drugs
alphabetically, CellBox issue #48), and it is always reported by name. A drug that no condition perturbs, an
index out of range, or a protocol whose test set comes out empty is a ConfigError.

In the protocol partitions the test sizes are fixed by the protocol (``n_test`` / ``test_frac`` are not used)
and the other conditions are split at random (``split_seed``) into training and validation, the validation
set taking ``n_val`` conditions, or else the share ``val_frac / (1 - test_frac)`` of them (the share it has
among the non-test conditions of a random partition: 1/5 with the defaults, as CellBox's ``validset_ratio``
0.8).
"""

import numpy as np

from ..errors import ConfigError

PARTITIONS = ("random", "loo", "loo_with_singles", "single_to_combo")


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


def perturbed_nodes(U):
    """Column indices of U with a nonzero entry in some condition (the drugs), in column order."""
    return [int(j) for j in np.flatnonzero(np.any(np.asarray(U) != 0, axis=0))]


def resolve_drug(ds, drug):
    """The column index and node name of ``drug`` (a node name or an index into :func:`perturbed_nodes`).

    Raises
    ------
    ConfigError
        An unknown name, a node that no condition perturbs, or an index out of range (the message lists the
        drugs by name).
    """
    drugs = perturbed_nodes(ds.U)
    listing = ", ".join(f"{i}={ds.nodes[j]}" for i, j in enumerate(drugs))
    if isinstance(drug, str):
        if drug not in ds.nodes:
            raise ConfigError(f"config key 'drug': no node named {drug!r} in the data (drugs: {listing})")
        col = ds.nodes.index(drug)
        if col not in drugs:
            raise ConfigError(f"config key 'drug': no condition perturbs node {drug!r} (drugs: {listing})")
        return col, drug
    if isinstance(drug, (int, np.integer)) and not isinstance(drug, bool) and 0 <= drug < len(drugs):
        col = drugs[int(drug)]
        return col, ds.nodes[col]
    raise ConfigError(f"config key 'drug': {drug!r} is not a drug index 0..{len(drugs) - 1} or a node name "
                      f"(drugs: {listing})")


def protocol_test_set(U, partition, col=None):
    """Boolean (M,) selector of the test conditions of a protocol partition (``col`` = the drug's column)."""
    U = np.asarray(U)
    n_targets = np.count_nonzero(U, axis=1)
    if partition == "single_to_combo":
        return n_targets >= 2
    uses = U[:, col] != 0
    if partition == "loo":
        return uses
    if partition == "loo_with_singles":
        return uses & (n_targets >= 2)
    raise ConfigError(f"config key 'partition': {partition!r} is not a protocol partition")


def partition_info(ds, cfg):
    """``{"partition": name, "drug": node name or None}`` for a resolved config (ConfigError as in make_split)."""
    partition = cfg.get("partition", "random")
    if partition in ("loo", "loo_with_singles"):
        if cfg.get("drug") is None:
            raise ConfigError(f"partition {partition} needs config key 'drug' (--drug NAME)")
        return {"partition": partition, "drug": resolve_drug(ds, cfg["drug"])[1]}
    if cfg.get("drug") is not None:
        raise ConfigError(f"config key 'drug' is used only by the loo partitions, not by partition {partition}")
    return {"partition": partition, "drug": None}


def make_split(ds, cfg):
    """(train, val, test) sorted index arrays of ``ds``'s conditions under ``cfg["partition"]``.

    Raises
    ------
    ConfigError
        A missing, unknown or unused drug; an empty test set; no conditions left for training.
    """
    info = partition_info(ds, cfg)
    partition = info["partition"]
    if partition == "random":
        return random_split(ds.M, cfg)
    col = resolve_drug(ds, info["drug"])[0] if info["drug"] is not None else None
    is_test = protocol_test_set(ds.U, partition, col)
    what = f"partition {partition}" + (f" with drug {info['drug']}" if info["drug"] else "")
    if not is_test.any():
        why = {"loo": "", "loo_with_singles": " (no condition combines the drug with another node)",
               "single_to_combo": " (no condition perturbs two or more nodes)"}[partition]
        raise ConfigError(f"{what} has an empty test set{why}")
    rest = np.flatnonzero(~is_test)
    if cfg.get("n_val") is not None:
        n_val = cfg["n_val"]
    else:
        n_val = int(round(rest.size * cfg["val_frac"] / (1 - cfg["test_frac"])))
    if rest.size - n_val < 1:
        raise ConfigError(f"{what} leaves no training conditions ({rest.size} non-test conditions, {n_val} "
                          f"for validation)")
    perm = rest[np.random.default_rng(cfg["split_seed"]).permutation(rest.size)]
    return np.sort(perm[n_val:]), np.sort(perm[:n_val]), np.flatnonzero(is_test)
