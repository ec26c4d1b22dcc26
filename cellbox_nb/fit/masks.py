"""The W mask of a fit: which entries of W are free (True) and which are fixed at zero (False).

Built from the config and the dataset by :func:`build_w_mask`; the trainer passes it to the gradient and the
optimiser, so masked entries start at zero and stay there.

- ``no_self_loops``: W[i, i] = 0.
- ``cellbox_masks``: the mask of the original CellBox (``model.py``, ``CellBox.get_variables``), for nodes ordered
  proteins, phenotypes, drug-activity nodes (roles from ``dataset.meta["node_roles"]``): no self-loops; no
  input to activity nodes (their rows are zero: a drug-activity node follows only its perturbation); no output
  from phenotype nodes (their columns are zero); no direct edge from an activity node to a phenotype node.
"""

import numpy as np

from ..data.cellbox_format import node_roles
from ..errors import ConfigError


def cellbox_mask(roles):
    """CellBox's mask for per-node roles ('protein', 'phenotype', 'activity'): (n, n) bool, True = free."""
    roles = np.asarray(roles)
    act = roles == "activity"
    phe = roles == "phenotype"
    mask = ~np.eye(roles.size, dtype=bool)
    mask[act, :] = False
    mask[:, phe] = False
    mask[np.ix_(phe, act)] = False
    return mask


def build_w_mask(cfg, ds):
    """The (n, n) bool W mask for config ``cfg`` and dataset ``ds``, or None when every entry is free.

    Raises
    ------
    ConfigError
        ``cellbox_masks`` is on but the dataset records no node roles (set ``n_protein_nodes`` and
        ``n_phenotype_nodes``).
    """
    n = ds.n
    mask = np.ones((n, n), dtype=bool)
    if cfg.get("no_self_loops"):
        mask &= ~np.eye(n, dtype=bool)
    if cfg.get("cellbox_masks"):
        roles = node_roles(ds)
        if roles is None:
            raise ConfigError("cellbox_masks needs node roles (proteins, phenotypes, activity nodes), which this "
                              "dataset does not record: set config keys n_protein_nodes and n_phenotype_nodes")
        mask &= cellbox_mask(roles)
    return None if mask.all() else mask


def apply_node_roles(cfg, ds):
    """``ds`` with the node roles of config keys ``n_protein_nodes`` / ``n_phenotype_nodes`` recorded in its meta.

    Returns ``ds`` itself when both keys are None (the roles the data records, if any, stay); otherwise a copy.

    Raises
    ------
    ConfigError
        Only one of the two keys is set, or the counts exceed the node count.
    InputDataError
        A condition perturbs a node that the roles do not make an activity node.
    """
    from dataclasses import replace

    from ..data.cellbox_format import with_node_roles

    n_protein, n_phenotype = cfg.get("n_protein_nodes"), cfg.get("n_phenotype_nodes")
    if n_protein is None and n_phenotype is None:
        return ds
    if n_protein is None or n_phenotype is None:
        raise ConfigError("set both config keys n_protein_nodes and n_phenotype_nodes, or neither")
    return with_node_roles(replace(ds, meta=dict(ds.meta)), n_protein, n_phenotype)
