"""The ten BEELINE ground-truth networks shipped with cellbox-nb, as signed adjacency CSVs.

Source: BEELINE (Pratapa et al., Nature Methods 2020), in the layout of the CellBox.jl ``beeline_networks/``
folder (MIT licence): header ``Genes,<name_1>,...,<name_n>``, then one row per target gene (its name, then n
entries); entry (i, j) is the effect of regulator j on target i (+1 activation, -1 inhibition, 0 none).

The files are byte-for-byte copies except ``Curated_GSD.csv``, whose data rows 4 and 5 carried the labels
DKK1, DHH while the header reads DHH, DKK1. The header order matches the published Boolean rules
(DHH <- SOX9; DKK1 <- SRY or SOX9), so the two row labels are swapped back here; the numbers are unchanged.
Load them with :func:`cellbox_nb.data.network.load_network`.
"""
