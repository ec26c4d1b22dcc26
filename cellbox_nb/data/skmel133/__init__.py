"""SK-MEL-133 perturbation data (Yuan et al., Cell Systems 2020), in the CellBox folder layout.

Source: github.com/sanderlab/CellBox, ``data/`` (MIT licence); the files are byte-for-byte copies.
SK-MEL-133 melanoma cells, 89 drug conditions (23 single drugs, 66 pairs) x 99 nodes, steady state:

- ``pert.csv``, ``expr.csv``: no header, 89 rows (conditions) x 99 columns (nodes, in ``node_Index.csv`` order).
  pert is nonzero (and negative) only on the 12 drug-activity nodes. CellBox writes +u, so cellbox-nb uses
  U = -pert (see :mod:`cellbox_nb.data.cellbox_format`).
- ``node_Index.csv``: the 99 node names, one per line: 82 RPPA proteins, then 5 phenotypes (G2M, G1arrest,
  G2arrest, Sarrest, cellviab), then 12 drug-activity nodes (aMEK, aAKT, aHDAC, aMDM2, aJAK, aBRAFm, aPKC, aSTAT3,
  amTOR, aPI3K, aCDK4, aSRC).
- ``expr_index.txt``: condition labels (drug|dose pairs, first column; the other two columns are unused).
- ``loo_label.csv``: drug numbers per condition from the original leave-one-drug-out figures. Not read by
  cellbox-nb: it numbers drugs alphabetically by drug code, unlike the original code (CellBox issue #48).

Load it with ``cellbox_nb.data.load_data("skmel133")``.
"""

from pathlib import Path

FOLDER = Path(__file__).resolve().parent
N_PROTEIN_NODES = 82
N_PHENOTYPE_NODES = 5
N_ACTIVITY_NODES = 12
