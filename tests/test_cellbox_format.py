"""CellBox data folders: the shipped SK-MEL-133, one-line refusals of bad folders, warnings, load_data, masks."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from cellbox_nb.data import load_data, node_roles, read_cellbox
from cellbox_nb.data.cellbox_format import CellboxDataWarning
from cellbox_nb.data.dataset import simulate, write_dataset
from cellbox_nb.data.skmel133 import FOLDER as SKMEL
from cellbox_nb.errors import ConfigError, InputDataError
from cellbox_nb.fit.config import resolve
from cellbox_nb.fit.masks import build_w_mask

CLI = [sys.executable, "-m", "cellbox_nb._cli.main"]
SHARED = "/work/shared/data/skmel133"


def _load_quietly(spec="skmel133", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CellboxDataWarning)
        return load_data(spec, **kw)


# -- the shipped SK-MEL-133 ---------------------------------------------------------------------------------
def test_skmel133_shape_sign_names_and_roles():
    ds = _load_quietly()
    pert = np.loadtxt(SKMEL / "pert.csv", delimiter=",")
    expr = np.loadtxt(SKMEL / "expr.csv", delimiter=",")
    names = (SKMEL / "node_Index.csv").read_text().split()
    assert (ds.M, ds.n, ds.T) == (89, 99, 1)
    np.testing.assert_array_equal(ds.U, -pert)  # CellBox writes +u; our model has -u
    assert ds.U.max() > 0 and ds.U.min() == 0  # pert is negative on the activity nodes
    np.testing.assert_array_equal(ds.Y[:, 0, :], expr)
    np.testing.assert_array_equal(ds.t, [20.0])
    assert ds.nodes == names and ds.nodes[0] == "4EBP1pS65" and ds.nodes[-1] == "aSRC"
    assert ds.conditions[:2] == ["901|1.5", "901|1.5,HN|6"] and ds.conditions[-1] == "ZS|1.2"
    roles = node_roles(ds)
    assert roles == ["protein"] * 82 + ["phenotype"] * 5 + ["activity"] * 12
    assert ds.nodes[82:87] == ["G2M", "G1arrest", "G2arrest", "Sarrest", "cellviab"]
    assert "U = -pert" in ds.meta["sign_convention"] and ds.meta["t_end"] == 20.0
    assert ds.meta["parameter_map"] == {"eps": "alpha", "alpha": "d", "W": "W", "+u": "-u"}


def test_shipped_files_are_copies_of_the_reference_data():
    if not os.path.isdir(SHARED):
        pytest.skip("reference data folder not available")
    for name in ("pert.csv", "expr.csv", "node_Index.csv", "expr_index.txt", "loo_label.csv"):
        assert (SKMEL / name).read_bytes() == open(os.path.join(SHARED, name), "rb").read(), name


def test_skmel133_duplicate_rows_warn_but_load():
    with pytest.warns(CellboxDataWarning, match=r"conditions 34 \(P6\|20\), 41 \(P6\|40\).*differ by up to 1.15"):
        ds = load_data("skmel133")
    assert ds.M == 89


def test_t_end_option_and_folder_path_give_the_same_data():
    ds = _load_quietly(str(SKMEL), t_end=40.0)
    ref = _load_quietly()
    np.testing.assert_array_equal(ds.t, [40.0])
    np.testing.assert_array_equal(ds.U, ref.U)
    assert node_roles(ds) is None  # a plain folder records no roles ...
    ds = _load_quietly(str(SKMEL), n_protein_nodes=82, n_phenotype_nodes=5)
    assert node_roles(ds) == node_roles(ref)  # ... unless given


# -- bad folders --------------------------------------------------------------------------------------------
PERT = "0,0,-1,0\n0,0,0,-0.5\n0,0,-1,-0.5\n"
EXPR = "0.1,0.2,-0.7,0.0\n0.0,-0.1,0.0,-0.4\n0.2,0.1,-0.6,-0.4\n"
NODES = "p1\np2\nd1\nd2\n"


def _folder(tmp_path, **files):
    d = tmp_path / "cb"
    d.mkdir()
    content = {"pert.csv": PERT, "expr.csv": EXPR, "node_Index.csv": NODES}
    content.update(files)
    for name, text in content.items():
        if text is not None:
            (d / name).write_text(text)
    return d


def test_small_folder_reads(tmp_path):
    ds = read_cellbox(_folder(tmp_path, **{"expr_index.txt": "A 1 0\nB 1 0\nA+B 1 1\n"}))
    assert (ds.M, ds.n) == (3, 4) and ds.conditions == ["A", "B", "A+B"]
    np.testing.assert_array_equal(ds.U[2], [0, 0, 1, 0.5])


@pytest.mark.parametrize("files, needle", [
    ({"pert.csv": None}, "pert.csv: file not found"),
    ({"expr.csv": None}, "expr.csv: file not found"),
    ({"node_Index.csv": None}, "node_Index.csv: file not found"),
    ({"pert.csv": ""}, "pert.csv: file is empty"),
    ({"expr.csv": "\n\n"}, "expr.csv: file is empty"),
    ({"pert.csv": "0,0,-1,0\n0,0,-0.5\n0,0,-1,-0.5\n"}, "pert.csv row 2 has 3 columns, expected 4"),
    # row 1 the odd one: it is named (row 2 was, "expected 5 (as in row 1)")
    ({"pert.csv": "0,0,-1,0,0\n0,0,0,-0.5\n0,0,-1,-0.5\n"},
     "pert.csv row 1 has 5 columns, expected 4 (as in the other rows)"),
    ({"expr.csv": "0.1,0.2,-0.7,0.0\n0.0,1_0,0.0,-0.4\n0.2,0.1,-0.6,-0.4\n"},
     "expr.csv row 2, column 2: '1_0' is not a number"),  # (float() reads it as 10)
    ({"expr.csv": "0.1;0.2;-0.7;0.0\n0.0;0.1;0.0;-0.4\n0.2;0.1;-0.6;-0.4\n"},
     "expr.csv row 1, column 1: '0.1;0.2;-0.7;0.0' is not a number (CellBox tables are comma-separated)"),
    ({"expr.csv": "0.1,0.2,-0.7,0.0\n0.0,abc,0.0,-0.4\n0.2,0.1,-0.6,-0.4\n"},
     "expr.csv row 2, column 2: 'abc' is not a number"),
    ({"expr.csv": "a,b,c,d\n" + EXPR}, "expr.csv row 1, column 1: 'a' is not a number (CellBox tables have no header"),
    ({"pert.csv": "0,,-1,0\n0,0,0,-0.5\n0,0,-1,-0.5\n"}, "pert.csv row 1, column 2: an empty cell is not a number"),
    ({"expr.csv": "0.1,0.2,-0.7,0.0\n0.0,-0.1,nan,-0.4\n0.2,0.1,-0.6,-0.4\n"},
     "expr.csv row 2, column 3: non-finite value 'nan'"),
    ({"pert.csv": "0,0,-1,0\n0,0,0,-inf\n0,0,-1,-0.5\n"}, "pert.csv row 2, column 4: non-finite value '-inf'"),
    ({"pert.csv": "0,0,-1,0\n\n0,0,-1,-0.5\n"}, "pert.csv row 2: blank line"),
    ({"expr.csv": "0.1,0.2,-0.7,0.0\n0.0,-0.1,0.0,-0.4\n"}, "expr.csv has shape 2 x 4 (rows x columns) but pert.csv has 3 x 4"),
    ({"expr.csv": "0.1,0.2,-0.7\n0.0,-0.1,0.0\n0.2,0.1,-0.6\n"}, "expr.csv has shape 3 x 3"),
    ({"node_Index.csv": "p1\np2\nd1\n"}, "node_Index.csv has 3 names but pert.csv has 4 columns"),
    ({"node_Index.csv": "p1\np2\np1\nd2\n"}, "node_Index.csv row 3 repeats the name 'p1' of row 1"),
    ({"expr_index.txt": "A\nB\n"}, "expr_index.txt has 2 labels but pert.csv has 3 rows"),
    ({"expr_index.txt": "A\nB\nA\n"}, "expr_index.txt row 3 repeats the name 'A' of row 1"),
])
def test_bad_folders_are_refused_with_one_line(tmp_path, files, needle):
    with pytest.raises(InputDataError) as info:
        read_cellbox(_folder(tmp_path, **files))
    message = str(info.value)
    assert needle in message and "\n" not in message


def test_missing_folder_and_load_data_not_found(tmp_path):
    with pytest.raises(InputDataError, match="folder not found"):
        read_cellbox(tmp_path / "nope")
    with pytest.raises(InputDataError, match="not found"):
        load_data(str(tmp_path / "nope.h5"))


def test_roles_refuse_a_perturbed_non_activity_node(tmp_path):
    d = _folder(tmp_path)
    ds = read_cellbox(d, n_protein_nodes=2, n_phenotype_nodes=0)
    assert node_roles(ds) == ["protein", "protein", "activity", "activity"]
    with pytest.raises(InputDataError, match="perturbs node 'd1' .* protein node"):
        read_cellbox(d, n_protein_nodes=3, n_phenotype_nodes=0)
    with pytest.raises(ConfigError, match="both"):
        read_cellbox(d, n_protein_nodes=2)
    with pytest.raises(ConfigError, match="exceeds"):
        read_cellbox(d, n_protein_nodes=4, n_phenotype_nodes=1)


def test_duplicate_rows_warn_only_when_responses_differ(tmp_path):
    same = _folder(tmp_path, **{"pert.csv": "0,0,-1,0\n0,0,-1,0\n0,0,-1,-0.5\n",
                                "expr.csv": "0.1,0.2,-0.7,0.0\n0.1,0.2,-0.7,0.0\n0.2,0.1,-0.6,-0.4\n"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_cellbox(same)  # identical responses: no warning
    (same / "expr.csv").write_text("0.1,0.2,-0.7,0.0\n0.1,0.5,-0.7,0.0\n0.2,0.1,-0.6,-0.4\n")
    with pytest.warns(CellboxDataWarning, match=r"conditions 0 \(c0000\), 1 \(c0001\).*0.3"):
        read_cellbox(same)


def test_flipped_sign_warns(tmp_path):
    d = _folder(tmp_path, **{"pert.csv": PERT.replace("-", "")})  # written with -u by mistake
    with pytest.warns(CellboxDataWarning, match="opposite sign"):
        read_cellbox(d, n_protein_nodes=2, n_phenotype_nodes=0)


def test_time_series_layout(tmp_path):
    d = _folder(tmp_path, **{"expr.csv": None, "times.csv": "5\n10\n", "expr_t1.csv": EXPR,
                             "expr_t2.csv": EXPR.replace("0.1", "0.15")})
    ds = read_cellbox(d)
    np.testing.assert_array_equal(ds.t, [5.0, 10.0])
    assert ds.Y.shape == (3, 2, 4) and ds.Y[0, 1, 0] == 0.15 and ds.Y[0, 0, 0] == 0.1
    ds = read_cellbox(d, times=[5.0])  # the argument overrides times.csv
    assert ds.T == 1
    (d / "times.csv").write_text("5\n3\n")
    with pytest.raises(InputDataError, match="strictly increasing"):
        read_cellbox(d)
    (d / "times.csv").write_text("5\n10\n15\n")
    with pytest.raises(InputDataError, match="expr_t3.csv: file not found"):
        read_cellbox(d)
    # more response files than times: refused (expr_t3.csv was dropped silently), unless times= asks for fewer
    (d / "times.csv").write_text("5\n")
    with pytest.raises(InputDataError, match="times.csv lists 1 times but the folder also has expr_t2.csv"):
        read_cellbox(d)
    assert read_cellbox(d, times=[5.0]).T == 1


def test_load_data_reads_hdf5_and_sets_roles(tmp_path):
    ds = simulate("LI", conditions=6, times=2, seed=0)
    path = tmp_path / "d.h5"
    write_dataset(path, ds)
    back = load_data(str(path), t_end=20.0)  # t_end does not apply to HDF5 files and is ignored
    np.testing.assert_array_equal(back.U, ds.U)
    assert node_roles(back) is None
    with pytest.raises(ConfigError, match="apply to CellBox folders"):
        load_data(str(path), pert="x.csv")


# -- the CellBox W mask -------------------------------------------------------------------------------------
def test_cellbox_mask_rules_on_skmel133():
    ds = _load_quietly()
    mask = build_w_mask(resolve({"cellbox_masks": True}), ds)
    prot, phen, act = slice(0, 82), slice(82, 87), slice(87, 99)
    assert not mask[act, :].any()  # no input to drug-activity nodes
    assert not mask[:, phen].any()  # no output from phenotype nodes
    assert not mask[phen, act].any()  # no direct activity -> phenotype edge
    assert not np.diag(mask).any()  # no self-loops
    off_diag = ~np.eye(99, dtype=bool)
    assert mask[prot, prot][off_diag[prot, prot]].all() and mask[prot, act].all() and mask[phen, prot].all()
    assert int(mask.sum()) == 82 * 81 + 82 * 12 + 5 * 82
    assert build_w_mask(resolve({}), ds) is None


def test_cellbox_masks_needs_roles():
    ds = simulate("LI", conditions=4, times=1, seed=0)
    with pytest.raises(ConfigError, match="node roles"):
        build_w_mask(resolve({"cellbox_masks": True}), ds)
    cfg = resolve({"cellbox_masks": True, "n_protein_nodes": 0, "n_phenotype_nodes": 0})
    from cellbox_nb.fit.masks import apply_node_roles

    mask = build_w_mask(cfg, apply_node_roles(cfg, ds))  # every node an activity node: nothing is free
    assert not mask.any()


def test_trainer_keeps_masked_entries_zero(tmp_path):
    from cellbox_nb.fit.train import train

    ds = _load_quietly()
    cfg = resolve({"cellbox_masks": True, "learn_decay": True, "epochs": 2, "batch_size": 16, "init": "random",
                   "checkpoint_seconds": 1e9})
    fit = train(ds, cfg, tmp_path / "fit.h5")
    mask = build_w_mask(cfg, ds)
    for which in ("final", "best"):
        W = fit[which]["W"]
        assert np.all(W[~mask] == 0) and np.any(W[mask] != 0)
    assert np.any(fit["final"]["d"] != 1.0)  # learn_decay moved d


# -- end to end ---------------------------------------------------------------------------------------------
def test_cli_train_skmel133_prints_pearson_test(tmp_path):
    out = tmp_path / "tmp.h5"
    res = subprocess.run(CLI + ["train", "--data", "skmel133", "--epochs", "3", "--json", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert isinstance(summary["pearson_test"], float) and -1 <= summary["pearson_test"] <= 1
    assert summary["partition"] == "random" and summary["drug"] is None and summary["epochs"] == 3
    warned = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warned) == 1 and "P6|20" in warned[0]
    assert out.exists()
