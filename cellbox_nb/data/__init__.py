"""Data layer: ground-truth networks, perturbation design, datasets (HDF5, CellBox folders) and simulation.

Imports point down only: this package uses ``cellbox_nb.api.solve`` (lazily, in ``simulate``) and never the CLI.
"""

from .cellbox_format import node_roles, read_cellbox
from .dataset import Dataset, read_dataset, simulate, write_dataset
from .design import design_perturbations, observation_times
from .load import BUILTIN_DATASETS, load_data
from .network import BUILTIN, Network, list_networks, load_network, random_network, read_network_csv

__all__ = ["Dataset", "read_dataset", "write_dataset", "simulate", "design_perturbations", "observation_times",
           "BUILTIN", "Network", "list_networks", "load_network", "random_network", "read_network_csv",
           "load_data", "BUILTIN_DATASETS", "read_cellbox", "node_roles"]
