"""Data layer: ground-truth networks, perturbation design, datasets (HDF5) and simulation.

Imports point down only: this package uses ``cellbox_nb.api.solve`` (lazily, in ``simulate``) and never the CLI.
"""

from .dataset import Dataset, read_dataset, simulate, write_dataset
from .design import design_perturbations, observation_times
from .network import BUILTIN, Network, list_networks, load_network, random_network, read_network_csv

__all__ = ["Dataset", "read_dataset", "write_dataset", "simulate", "design_perturbations", "observation_times",
           "BUILTIN", "Network", "list_networks", "load_network", "random_network", "read_network_csv"]
