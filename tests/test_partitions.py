"""Partitions on SK-MEL-133: each protocol's test set against an independent computation from pert.csv."""

import csv
import warnings

import numpy as np
import pytest

from cellbox_nb.data import load_data
from cellbox_nb.data.cellbox_format import CellboxDataWarning
from cellbox_nb.data.skmel133 import FOLDER as SKMEL
from cellbox_nb.errors import ConfigError
from cellbox_nb.fit.config import resolve
from cellbox_nb.fit.splits import make_split, partition_info, perturbed_nodes

DRUGS = ["aMEK", "aAKT", "aHDAC", "aMDM2", "aJAK", "aBRAFm", "aPKC", "aSTAT3", "amTOR", "aPI3K", "aCDK4", "aSRC"]


@pytest.fixture(scope="module")
def ds():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CellboxDataWarning)
        return load_data("skmel133")


@pytest.fixture(scope="module")
def raw():
    """Independent reading of the shipped files with the csv module: names -> set of perturbed node names per row."""
    names = [ln.strip() for ln in (SKMEL / "node_Index.csv").read_text().splitlines() if ln.strip()]
    with open(SKMEL / "pert.csv", newline="") as fh:
        rows = [[float(v) for v in row] for row in csv.reader(fh) if row]
    return [{names[j] for j, v in enumerate(row) if v != 0} for row in rows]


def _check_partition(split, M):
    train, val, test = split
    all_idx = np.concatenate(split)
    assert len(set(all_idx.tolist())) == all_idx.size == M  # disjoint and covering
    assert train.size > 0 and val.size > 0 and test.size > 0
    for part in split:
        assert np.all(np.diff(part) > 0)


def test_drugs_are_the_perturbed_columns_by_name(ds, raw):
    assert [ds.nodes[j] for j in perturbed_nodes(ds.U)] == DRUGS
    assert set().union(*raw) == set(DRUGS)
    assert sum(len(r) == 1 for r in raw) == 23 and sum(len(r) == 2 for r in raw) == 66


def test_random_partition_is_the_default_and_seeded(ds):
    cfg = resolve({})
    split = make_split(ds, cfg)
    _check_partition(split, ds.M)
    assert [len(s) for s in split] == [59, 15, 15]
    assert partition_info(ds, cfg) == {"partition": "random", "drug": None}
    again = make_split(ds, resolve({"split_seed": 0}))
    other = make_split(ds, resolve({"split_seed": 1}))
    assert all(np.array_equal(a, b) for a, b in zip(split, again))
    assert not np.array_equal(split[2], other[2])


@pytest.mark.parametrize("drug", DRUGS)
@pytest.mark.parametrize("partition", ["loo", "loo_with_singles"])
def test_leave_one_drug_out(ds, raw, partition, drug):
    cfg = resolve({"partition": partition, "drug": drug})
    split = make_split(ds, cfg)
    _check_partition(split, ds.M)
    if partition == "loo":
        expected = [i for i, r in enumerate(raw) if drug in r]
    else:
        expected = [i for i, r in enumerate(raw) if drug in r and len(r) >= 2]
    assert split[2].tolist() == expected
    train_val = np.concatenate(split[:2])
    if partition == "loo":
        assert not any(drug in raw[i] for i in train_val)  # the drug is never seen in training
    else:
        singles = [i for i, r in enumerate(raw) if r == {drug}]
        assert singles and set(singles) <= set(train_val.tolist())  # its singles stay in training/validation
    rest = ds.M - len(expected)
    assert split[1].size == round(rest / 5)  # val share val_frac / (1 - test_frac) = 1/5 of the rest
    assert partition_info(ds, cfg) == {"partition": partition, "drug": drug}


def test_drug_by_index_is_reported_by_name(ds):
    for i, name in enumerate(DRUGS):
        by_index = resolve({"partition": "loo", "drug": i})
        by_name = resolve({"partition": "loo", "drug": name})
        assert partition_info(ds, by_index)["drug"] == name
        assert all(np.array_equal(a, b) for a, b in zip(make_split(ds, by_index), make_split(ds, by_name)))
    assert partition_info(ds, resolve({"partition": "loo", "drug": "9"}))["drug"] == "aPI3K"  # --drug 9


def test_single_to_combo(ds, raw):
    cfg = resolve({"partition": "single_to_combo"})
    split = make_split(ds, cfg)
    _check_partition(split, ds.M)
    assert split[2].tolist() == [i for i, r in enumerate(raw) if len(r) >= 2]
    assert all(len(raw[i]) == 1 for i in np.concatenate(split[:2]))
    assert partition_info(ds, cfg) == {"partition": "single_to_combo", "drug": None}


@pytest.mark.parametrize("layer, needle, lists_drugs", [
    ({"partition": "loo", "drug": "aFOO"}, "no node named 'aFOO'", True),
    ({"partition": "loo", "drug": "G2M"}, "no condition perturbs node 'G2M'", True),
    ({"partition": "loo_with_singles", "drug": 12}, "not a drug index 0..11", True),
    ({"partition": "loo"}, "needs config key 'drug'", False),
    ({"partition": "random", "drug": "aMEK"}, "used only by the loo partitions", False),
    ({"partition": "single_to_combo", "drug": "aMEK"}, "used only by the loo partitions", False),
])
def test_bad_drug_is_a_config_error(ds, layer, needle, lists_drugs):
    with pytest.raises(ConfigError, match=needle) as info:
        make_split(ds, resolve(layer))
    assert "\n" not in str(info.value)
    if lists_drugs:  # the message lists the drugs by name, with their indices
        assert "0=aMEK" in str(info.value) and "11=aSRC" in str(info.value)


def test_n_val_and_empty_test_sets(ds):
    split = make_split(ds, resolve({"partition": "loo", "drug": "aMEK", "n_val": 7}))
    assert split[1].size == 7
    singles_only = ds.subset([i for i in range(ds.M) if np.count_nonzero(ds.U[i]) == 1])
    with pytest.raises(ConfigError, match="empty test set"):
        make_split(singles_only, resolve({"partition": "single_to_combo"}))
    with pytest.raises(ConfigError, match="empty test set"):
        make_split(singles_only, resolve({"partition": "loo_with_singles", "drug": "aMEK"}))


def test_results_file_records_partition_and_split(ds, tmp_path):
    from cellbox_nb.fit.train import train

    cfg = resolve({"partition": "loo_with_singles", "drug": "aPI3K", "epochs": 1, "checkpoint_seconds": 1e9})
    fit = train(ds, cfg, tmp_path / "fit.h5")
    assert fit["config"]["partition"] == "loo_with_singles" and fit["config"]["drug"] == "aPI3K"
    assert fit["metrics"]["partition"] == "loo_with_singles" and fit["metrics"]["drug"] == "aPI3K"
    for saved, made in zip(fit["split"], make_split(ds, cfg)):
        np.testing.assert_array_equal(saved, made)
