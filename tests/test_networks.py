"""Built-in networks, the network CSV reader and its refusals, random networks, load_network.

Expectations come from outside the code under test: the README table of /work/shared/data (n, edge counts),
the shared upstream CSVs parsed here with plain string splitting, and numpy's eigenvalue solver.
All comparisons are exact unless a tolerance is stated.
"""

import os
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from cellbox_nb.data.network import (BUILTIN, Network, list_networks, load_network, random_network,
                                     read_network_csv)
from cellbox_nb.errors import ConfigError, InputDataError

SHARED = Path("/work/shared/data/beeline")

# name: (file, n, edges, positive, negative, alpha) -- from the data README and the seed-paper configs
TABLE = {
    "LI": ("Synthetic_LI.csv", 7, 8, 7, 1, 1.0),
    "LL": ("Synthetic_LL.csv", 18, 19, 18, 1, 1.0),
    "CY": ("Synthetic_CY.csv", 6, 6, 3, 3, 1.0),
    "BF": ("Synthetic_BF.csv", 7, 12, 7, 5, 1.0),
    "BFC": ("Synthetic_BFC.csv", 10, 18, 13, 5, 0.2),
    "TF": ("Synthetic_TF.csv", 8, 20, 10, 10, 0.2),
    "mCAD": ("Curated_mCAD.csv", 5, 14, 5, 9, 0.2),
    "VSC": ("Curated_VSC.csv", 8, 15, 0, 15, 0.2),
    "HSC": ("Curated_HSC.csv", 11, 30, 15, 15, 0.2),
    "GSD": ("Curated_GSD.csv", 19, 79, 52, 27, 0.2),
}


def packaged_text(file):
    return resources.files("cellbox_nb.data.networks").joinpath(file).read_text(encoding="utf-8")


def split_csv(text):
    """Independent parse: header names, row labels, matrix (plain str.split)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header = lines[0].split(",")[1:]
    labels = [ln.split(",")[0] for ln in lines[1:]]
    matrix = np.array([[float(v) for v in ln.split(",")[1:]] for ln in lines[1:]])
    return header, labels, matrix


@pytest.mark.parametrize("name", list(TABLE))
def test_builtin_matches_table(name):
    file, n, edges, pos, neg, alpha = TABLE[name]
    net = load_network(name)
    assert net.name == name and BUILTIN[name].file == file
    assert (net.n, net.n_edges, net.n_positive, net.n_negative) == (n, edges, pos, neg)
    assert net.W.shape == (n, n) and net.W.dtype == np.float64
    assert set(np.unique(net.W)) <= {-1.0, 0.0, 1.0}
    np.testing.assert_array_equal(net.alpha, np.full(n, alpha))
    assert net.description and "\n" not in net.description


def test_list_networks_order_and_lookup_is_case_insensitive():
    assert [net.name for net in list_networks()] == list(TABLE)
    for spec in ("mcad", "MCAD", "gsd", "Li", " bfc "):
        assert load_network(spec).name.lower() == spec.strip().lower()


@pytest.mark.parametrize("name", [k for k in TABLE if k != "GSD"])
def test_packaged_copies_are_byte_identical(name):
    file = TABLE[name][0]
    assert packaged_text(file) == (SHARED / file).read_text(encoding="utf-8")
    header, labels, matrix = split_csv(packaged_text(file))
    net = load_network(name)
    assert net.nodes == header == labels
    np.testing.assert_array_equal(net.W, matrix)


def test_gsd_copy_is_the_shared_file_with_rows_4_and_5_relabelled():
    shared = (SHARED / "Curated_GSD.csv").read_text(encoding="utf-8").splitlines()
    ours = packaged_text("Curated_GSD.csv").splitlines()
    expected = list(shared)
    # Data rows 4 and 5 (file lines 5 and 6): swap their labels, keep their numbers.
    lab4, rest4 = shared[4].split(",", 1)
    lab5, rest5 = shared[5].split(",", 1)
    assert (lab4, lab5) == ("DKK1", "DHH")
    expected[4], expected[5] = f"{lab5},{rest4}", f"{lab4},{rest5}"
    assert ours == expected
    assert "#" not in packaged_text("Curated_GSD.csv")

    header, _, matrix = split_csv("\n".join(shared))
    net = load_network("GSD")
    assert net.nodes == header
    np.testing.assert_array_equal(net.W, matrix)  # numbers in place; only the labels changed
    # The published Boolean rules: DHH <- SOX9; DKK1 <- SRY or SOX9.
    i = {g: k for k, g in enumerate(net.nodes)}
    assert net.W[i["DHH"], i["SOX9"]] == 1 and net.W[i["DHH"], i["SRY"]] == 0
    assert net.W[i["DKK1"], i["SOX9"]] == 1 and net.W[i["DKK1"], i["SRY"]] == 1


def test_uncorrected_gsd_is_refused_naming_position_and_labels():
    path = SHARED / "Curated_GSD.csv"
    with pytest.raises(InputDataError) as err:
        read_network_csv(path)
    msg = str(err.value)
    assert str(path) in msg and "row 4" in msg and "'DKK1'" in msg and "'DHH'" in msg
    assert "\n" not in msg


GOOD = "Genes,a,b,c\na,0,1,0\nb,-1,0,0\nc,0,0.5,1\n"

BAD = {
    "empty": ("", "empty"),
    "blank_only": ("\n  \n", "empty"),
    "ragged": ("Genes,a,b,c\na,0,1,0\nb,-1,0\nc,0,0,1\n", "ragged"),
    "non_numeric": ("Genes,a,b,c\na,0,1,0\nb,-1,x,0\nc,0,0,1\n", "line 3, column 3 ('b'): 'x' is not a number"),
    "not_square": ("Genes,a,b,c\na,0,1,0\nb,-1,0,0\n", "not square"),
    "too_many_rows": ("Genes,a,b\na,0,1\nb,-1,0\nc,0,0\n", "not square"),
    "duplicate": ("Genes,a,b,a\na,0,1,0\nb,-1,0,0\na,0,0,1\n", "duplicate node name 'a'"),
    "label_mismatch": ("Genes,a,b,c\na,0,1,0\nc,-1,0,0\nb,0,0,1\n", "row 2 (line 3) is 'c' but column 2 is 'b'"),
    "nan": ("Genes,a,b,c\na,0,1,0\nb,-1,nan,0\nc,0,0,1\n", "non-finite value 'nan'"),
    "inf": ("Genes,a,b,c\na,0,1,0\nb,-1,0,0\nc,0,-inf,1\n", "non-finite value '-inf'"),
    "no_nodes": ("Genes\n", "names no nodes"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_csv_is_refused_with_one_line(tmp_path, case):
    text, phrase = BAD[case]
    path = tmp_path / f"{case}.csv"
    path.write_text(text)
    with pytest.raises(InputDataError) as err:
        read_network_csv(path)
    msg = str(err.value)
    assert str(path) in msg and phrase in msg and "\n" not in msg


def test_missing_file_and_directory_are_refused(tmp_path):
    with pytest.raises(InputDataError, match="not found"):
        read_network_csv(tmp_path / "nope.csv")
    with pytest.raises(InputDataError, match="not a regular file"):
        read_network_csv(tmp_path)
    with pytest.raises(InputDataError, match="not found"):
        load_network(str(tmp_path / "nope.csv"))


def test_good_csv_with_spaces_and_blank_lines(tmp_path):
    path = tmp_path / "tiny.csv"
    path.write_text(GOOD.replace(",", " , ") + "\n\n")
    net = read_network_csv(path, alpha=0.7)
    assert net.name == "tiny" and net.nodes == ["a", "b", "c"] and net.kind == "csv"
    np.testing.assert_array_equal(net.W, [[0, 1, 0], [-1, 0, 0], [0, 0.5, 1]])
    np.testing.assert_array_equal(net.alpha, [0.7, 0.7, 0.7])
    assert load_network(str(path)).alpha.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("n", [1, 2, 5, 30, 60])
def test_random_network_is_sparse_signed_and_contracting(n):
    net = random_network(n, seed=3)
    k = min(3, n - 1)
    assert net.W.shape == (n, n) and net.alpha.shape == (n,)
    assert np.all(np.diag(net.W) == 0)
    assert np.all(np.count_nonzero(net.W, axis=1) == k)
    radius = np.max(np.abs(np.linalg.eigvals(net.W)))
    assert radius <= 0.9  # exact bound, as promised by the docstring
    assert np.all((net.alpha >= 0.5) & (net.alpha <= 1.5))
    if n >= 30:
        assert net.n_positive > 0 and net.n_negative > 0
        assert radius == pytest.approx(0.9, rel=1e-6)  # dense enough to have been scaled down to the bound


def test_random_network_is_seeded():
    a, b, c = random_network(20, seed=7), random_network(20, seed=7), random_network(20, seed=8)
    np.testing.assert_array_equal(a.W, b.W)
    np.testing.assert_array_equal(a.alpha, b.alpha)
    assert not np.array_equal(a.W, c.W)
    d = load_network("random:20", seed=7)
    assert d.name == "random:20"
    np.testing.assert_array_equal(d.W, a.W)


def test_random_network_options():
    net = random_network(10, in_degree=1, scale=0.5, seed=0)
    assert np.all(np.count_nonzero(net.W, axis=1) == 1)
    assert np.max(np.abs(np.linalg.eigvals(net.W))) <= 0.5
    for kwargs, word in (({"n": 0}, "n"), ({"n": 5, "in_degree": -1}, "in_degree"),
                         ({"n": 5, "scale": 0.0}, "scale"), ({"n": 5, "seed": -1}, "seed"),
                         ({"n": 2.5}, "n")):
        kwargs.setdefault("seed", 0)
        with pytest.raises(ConfigError, match=word):
            random_network(**kwargs)


def test_unknown_names_list_valid_ones_and_the_closest():
    with pytest.raises(ConfigError) as err:
        load_network("GDS")
    msg = str(err.value)
    assert "did you mean GSD?" in msg
    for name in TABLE:
        assert name in msg
    assert "random:N" in msg
    with pytest.raises(ConfigError, match="did you mean mCAD"):
        load_network("mcda")
    for bad in ("random:", "random:x", "random:0", "random:-3"):
        with pytest.raises(ConfigError, match="positive integer"):
            load_network(bad)


def test_alpha_override_and_network_validation():
    assert np.all(load_network("LI", alpha=0.3).alpha == 0.3)
    assert np.all(load_network("random:4", alpha=2.0).alpha == 2.0)
    with pytest.raises(InputDataError, match="shape"):
        Network(name="x", nodes=["a", "b"], W=np.zeros((2, 3)), alpha=np.ones(2))
    with pytest.raises(InputDataError, match="finite"):
        Network(name="x", nodes=["a"], W=[[np.nan]], alpha=[1.0])


def test_pathlike_spec(tmp_path):
    path = tmp_path / "net.csv"
    path.write_text(GOOD)
    assert load_network(path).nodes == ["a", "b", "c"]
    assert os.path.basename(load_network(str(path)).description.split()[-1]) == "net.csv"
