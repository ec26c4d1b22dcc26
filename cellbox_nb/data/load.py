"""One entry point for every data source: ``load_data(spec, **options) -> Dataset``.

``spec`` is, in this order of precedence:

1. a built-in dataset name (``skmel133``: SK-MEL-133, shipped as package data, node roles known);
2. a folder: read as a CellBox data folder (:func:`cellbox_nb.data.cellbox_format.read_cellbox`);
3. a file: read as a cellbox-nb HDF5 dataset (:func:`cellbox_nb.data.dataset.read_dataset`).

A folder that happens to share a built-in name is reached with a path (``./skmel133``).
"""

from __future__ import annotations

import os

from ..errors import ConfigError, InputDataError
from .cellbox_format import read_cellbox, with_node_roles
from .dataset import Dataset, read_dataset

BUILTIN_DATASETS = {
    "skmel133": "SK-MEL-133 melanoma (Yuan et al. 2020): 89 drug conditions x 99 nodes (82 proteins, 5 phenotypes, "
                "12 drug-activity nodes), steady state",
}

_FOLDER_OPTIONS = ("pert", "expr", "node_index", "conditions", "t_end", "times", "name")
_ROLE_OPTIONS = ("n_protein_nodes", "n_phenotype_nodes")


def load_data(spec, **options) -> Dataset:
    """Load a dataset by built-in name, CellBox folder or HDF5 file (see the module docstring).

    Parameters
    ----------
    spec : str or os.PathLike
    **options
        Options whose value is None are ignored (so callers can pass config values through).
        CellBox folders and built-in names: ``t_end`` (steady-state observation time, default 20; ignored for
        HDF5 files, which carry their times), ``times``, ``pert``, ``expr``, ``node_index``, ``conditions``,
        ``name`` (see ``read_cellbox``).
        Any source: ``n_protein_nodes`` and ``n_phenotype_nodes`` (both or neither) declare the node roles
        (proteins, phenotypes, then activity nodes), overriding those the source records.

    Raises
    ------
    InputDataError
        ``spec`` names nothing (one line with "not found"), or the data are invalid.
    ConfigError
        An unknown option, an option that does not apply to the source, or invalid role counts.
    """
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(options) - set(_FOLDER_OPTIONS) - set(_ROLE_OPTIONS))
    if unknown:
        raise ConfigError(f"load_data: unknown option(s) {', '.join(unknown)}")
    roles = {k: options.pop(k) for k in _ROLE_OPTIONS if k in options}
    if len(roles) == 1:
        raise ConfigError("give both n_protein_nodes and n_phenotype_nodes, or neither")
    text = os.fspath(spec)
    if text in BUILTIN_DATASETS:
        return _builtin(text, roles, options)
    if os.path.isdir(text):
        return read_cellbox(text, **options, **roles)
    if not os.path.exists(text):
        raise InputDataError(f"data '{text}' not found: not a built-in dataset ({', '.join(BUILTIN_DATASETS)}), "
                             f"a CellBox folder or an HDF5 dataset file")
    folder_only = sorted(k for k in options if k != "t_end")
    if folder_only:
        raise ConfigError(f"option(s) {', '.join(folder_only)} apply to CellBox folders, not to the HDF5 file "
                          f"'{text}'")
    ds = read_dataset(text)
    if roles:
        with_node_roles(ds, roles["n_protein_nodes"], roles["n_phenotype_nodes"])
    return ds


def _builtin(name: str, roles: dict, options: dict) -> Dataset:
    if name == "skmel133":
        from . import skmel133

        roles = roles or {"n_protein_nodes": skmel133.N_PROTEIN_NODES,
                          "n_phenotype_nodes": skmel133.N_PHENOTYPE_NODES}
        ds = read_cellbox(skmel133.FOLDER, **{"name": "skmel133", **options}, **roles)
        ds.meta["source"] = "cellbox-nb package data (CellBox folder layout)"
        ds.meta["folder"] = "cellbox_nb/data/skmel133"
        ds.meta["reference"] = "Yuan et al., Cell Systems 2020; github.com/sanderlab/CellBox data/ (MIT licence)"
        return ds
    raise AssertionError(name)  # pragma: no cover - BUILTIN_DATASETS and this function list the same names
