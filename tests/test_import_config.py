"""import-cellbox-config: an original-style CellBox JSON config mapped onto cellbox-nb keys."""

import json
import subprocess
import sys

import pytest
import yaml

from cellbox_nb.cellbox_import import import_cellbox_config
from cellbox_nb.errors import ConfigError
from cellbox_nb.fit.config import resolve

CLI = [sys.executable, "-m", "cellbox_nb._cli.main"]

# In the style of the original's configs/Example.*.json, typos included ("envelop_form", "envelop").
ORIGINAL = {
    "experiment_id": "Example_RP",
    "experiment_type": "random partition",
    "model": "CellBox",
    "sparse_data": False,
    "pert_file": "data/pert.csv",
    "expr_file": "data/expr.csv",
    "node_index_file": "data/node_Index.csv",
    "n_protein_nodes": 82,
    "n_activity_nodes": 87,
    "n_x": 99,
    "trainset_ratio": 0.7,
    "validset_ratio": 0.8,
    "batchsize": 4,
    "add_noise_level": 0,
    "envelop_form": "tanh",
    "dT": 0.1,
    "envelop": 0,
    "ode_degree": 1,
    "ode_solver": "heun",
    "ode_last_steps": 2,
    "l1lambda": 1e-4,
    "l2lambda": 1e-4,
    "n_epoch": 10000,
    "n_iter": 10000,
    "n_iter_buffer": 50,
    "n_iter_patience": 100,
    "stages": [
        {"nT": 100, "sub_stages": [{"lr_val": 0.1, "l1lambda": 0.01, "n_iter_patience": 1000},
                                   {"lr_val": 0.01, "l1lambda": 0.01}]},
        {"nT": 200, "sub_stages": [{"lr_val": 0.001, "l1lambda": 0.0001}]},
    ],
    "export_verbose": 3,
    "ckpt_name": "model11.ckpt",
}


def _messages(res, kind):
    return [text for k, text in res.messages if k == kind]


def test_mapping_of_an_original_config():
    res = import_cellbox_config(ORIGINAL)
    cfg = res.config
    assert cfg["partition"] == "random"
    assert cfg["test_frac"] == pytest.approx(0.3) and cfg["val_frac"] == pytest.approx(0.14)
    assert cfg["batch_size"] == 4 and cfg["epochs"] == 10000
    assert cfg["lr"] == 0.1  # the first substage's lr_val
    assert cfg["l1"] == 0.01 and cfg["l2"] == 1e-4  # the first substage overrides the global l1lambda
    assert cfg["patience"] == 1000 and cfg["ma_window"] == 50  # copied (iterations; no --conditions)
    assert cfg["tfinal"] == pytest.approx(20.0)  # dT * nT of the last stage
    assert cfg["n_protein_nodes"] == 82 and cfg["n_phenotype_nodes"] == 5
    assert cfg["cellbox_masks"] is True and cfg["learn_decay"] is True and cfg["loss"] == "mse"
    assert "n_val" not in cfg and "seed" not in cfg
    resolve(cfg)  # valid cellbox-nb config
    assert res.data == {"files": {"pert_file": "data/pert.csv", "expr_file": "data/expr.csv",
                                  "node_index_file": "data/node_Index.csv"}, "folder": "data"}


def test_typos_the_original_ignored_are_named():
    res = import_cellbox_config(ORIGINAL)
    typos = _messages(res, "typo")
    assert len(typos) == 2
    assert typos[0].startswith("envelop_form:") and "typo of envelope_form" in typos[0] and "ignored" in typos[0]
    assert typos[1].startswith("envelop:") and "typo of envelope?" in typos[1]
    assert {"envelop_form", "envelop", "n_iter", "stages"} == set(res.unmapped_keys())
    not_needed = " ".join(_messages(res, "not needed"))
    for key in ("experiment_id", "ode_solver", "ode_last_steps", "export_verbose", "ckpt_name"):
        assert key in not_needed


def test_original_split_counts_with_conditions():
    res = import_cellbox_config(ORIGINAL, conditions=89)
    cfg = res.config
    n_trval = int(0.7 * 89)  # 62
    n_train = int(n_trval * 0.8)  # floor(floor(0.7 n) * 0.8) = 49
    assert (cfg["n_test"], cfg["n_val"]) == (89 - n_trval, n_trval - n_train) == (27, 13)
    per_epoch = -(-n_train // 4)  # 13 iterations per epoch at batchsize 4
    assert cfg["patience"] == -(-1000 // per_epoch) and cfg["ma_window"] == -(-50 // per_epoch)
    resolve(cfg)


@pytest.mark.parametrize("etype, partition", [
    ("leave one out (w/o single)", "loo"), ("leave one out (w/ single)", "loo_with_singles"),
    ("single to combo", "single_to_combo"), ("full data", "random"),
])
def test_experiment_types(etype, partition):
    res = import_cellbox_config({**ORIGINAL, "experiment_type": etype}, conditions=89)
    assert res.config["partition"] == partition
    if partition != "random":
        assert "n_val" not in res.config  # protocol partitions keep the fractions
        assert res.config["val_frac"] / (1 - res.config["test_frac"]) == pytest.approx(0.2)


def test_unmappable_values_and_unknown_keys_are_reported():
    raw = {**ORIGINAL, "ode_degree": 2, "envelope_form": "hill", "model": "NN", "drug_index": 3,
           "experiment_type": "random partition with replicates", "zzz_totally_new": 1}
    res = import_cellbox_config(raw)
    cannot = " | ".join(_messages(res, "cannot map"))
    for key in ("ode_degree", "envelope_form", "model", "drug_index", "experiment_type"):
        assert key + ":" in cannot
    assert "--drug NAME" in cannot
    assert any(t.startswith("zzz_totally_new:") for t in _messages(res, "unknown"))
    assert res.config["partition"] == "random"
    # another model is reported and mapped as CellBox, all of it (its mask, learned decay and squared-error loss)
    assert res.config["cellbox_masks"] and res.config["learn_decay"] and res.config["loss"] == "mse"


def test_typo_inside_a_substage_and_defaults():
    raw = {"model": "CellBox", "n_protein_nodes": 2, "n_activity_nodes": 3, "n_epoch": 5,
           "stages": [{"nT": 200, "sub_stages": [{"lr_val": 0.01, "l1_lambda": 0.1}]}]}
    res = import_cellbox_config(raw)
    assert any("stages[0].sub_stages[0].l1_lambda" in t and "l1lambda" in t for t in _messages(res, "typo"))
    cfg = res.config  # CellBox defaults where the JSON is silent
    assert cfg["batch_size"] == 8 and cfg["l1"] == 0.0 and cfg["patience"] == 100 and cfg["ma_window"] == 5
    assert cfg["tfinal"] == pytest.approx(20.0)


@pytest.mark.parametrize("raw, needle", [
    ([1, 2], "JSON object"),
    ({**ORIGINAL, "batchsize": "four"}, "batchsize"),
    ({**ORIGINAL, "n_protein_nodes": 90}, "n_protein_nodes"),
    ({**ORIGINAL, "experiment_type": ["x"]}, "experiment_type"),
    ({**ORIGINAL, "stages": [{"nT": 100, "sub_stages": 5}]}, "sub_stages"),
    ({**ORIGINAL, "stages": [{"nT": [1], "sub_stages": [{"lr_val": 0.1}]}, {"nT": 100, "sub_stages": []}]}, "nT"),
])
def test_bad_configs(raw, needle):
    with pytest.raises(ConfigError, match=needle):
        import_cellbox_config(raw)


def test_cli_prints_yaml_and_reports_on_stderr(tmp_path):
    src = tmp_path / "orig.json"
    src.write_text(json.dumps(ORIGINAL))
    res = subprocess.run(CLI + ["import-cellbox-config", str(src), "--conditions", "89"], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load(res.stdout)
    assert cfg["partition"] == "random" and cfg["n_test"] == 27 and cfg["n_val"] == 13
    resolve(cfg)
    assert "typo: envelop_form" in res.stderr and "envelope_form" in res.stderr
    assert "typo: envelop:" in res.stderr
    out = tmp_path / "cfg.yaml"
    res = subprocess.run(CLI + ["import-cellbox-config", str(src), "--out", str(out)], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0 and res.stdout == "" and yaml.safe_load(out.read_text())["lr"] == 0.1
    again = subprocess.run(CLI + ["import-cellbox-config", str(src), "--out", str(out)], capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 2 and "exists" in again.stderr


def test_cli_bad_json_is_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    res = subprocess.run(CLI + ["import-cellbox-config", str(bad)], capture_output=True, text=True, timeout=300)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1 and "not valid JSON" in lines[0]


def test_a_utf8_bom_is_accepted(tmp_path):
    """Windows editors may start a JSON file with a UTF-8 BOM: it was 'not valid JSON (Unexpected UTF-8 BOM)' here,
    while the data readers and training configs accept it.  The same mapping as without it."""
    from cellbox_nb.cellbox_import import load_cellbox_config

    raw = {"model": "CellBox", "lr_val": 0.1, "n_x": 99}
    plain, bom = tmp_path / "plain.json", tmp_path / "bom.json"
    plain.write_text(json.dumps(raw), encoding="utf-8")
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(raw).encode("utf-8"))
    assert load_cellbox_config(bom) == load_cellbox_config(plain) == raw
