"""Map an original CellBox (TensorFlow, sanderlab/CellBox) JSON config onto cellbox-nb config keys.

Used by ``cellbox-nb import-cellbox-config FILE.json [--out cfg.yaml] [--conditions M]``. The original reads
its JSON with ``Config.__dict__.update``, so any key is accepted and misspelt keys are silently ignored (its own
example configs write ``envelop_form`` and ``envelop``); here every key is either mapped, reported as having no
counterpart, or reported as unknown to CellBox, with the closest CellBox key named.

Mapping (CellBox -> cellbox-nb; where the JSON omits a key, CellBox's default is mapped):

=======================================  =====================================================================
``experiment_type``                      ``partition``: "random partition" and "full data" -> random,
                                         "leave one out (w/o single)" -> loo, "leave one out (w/ single)" ->
                                         loo_with_singles, "single to combo" -> single_to_combo
``trainset_ratio`` (0.7),                random partition: the original tests the last n - floor(0.7 n)
``validset_ratio`` (0.8)                 conditions, trains on floor(floor(0.7 n) * 0.8) and validates on the
                                         rest: ``test_frac = 1 - tr``, ``val_frac = tr * (1 - vr)``; with
                                         ``conditions=M`` also the exact counts ``n_test``, ``n_val``. In the
                                         loo / single-to-combo protocols validation is the share 1 - vr of the
                                         non-test conditions, which is what these fractions give
``batchsize`` (8)                        ``batch_size``
``l1lambda``, ``l2lambda`` (0, 0)        ``l1``, ``l2`` (same meaning: l1 * sum|W|, l2 * sum W^2), as in
                                         force in the first substage
``stages[0].sub_stages[0].lr_val``       ``lr``
``n_epoch``                              ``epochs``
``n_iter_patience`` (100),               ``patience``, ``ma_window``; the original counts iterations
``n_iter_buffer`` (5)                    (batches), cellbox-nb counts epochs: with ``conditions=M`` (random
                                         partition) they are converted at ceil(n_train / batchsize)
                                         iterations per epoch, otherwise copied as they are (reported)
``seed``                                 ``seed`` and ``split_seed``
``dT`` (0.1) * ``nT``                    ``tfinal``, the observation time of the steady-state data, with the
                                         ``nT`` of the last stage (the horizon of the final model)
``n_protein_nodes``,                     ``n_protein_nodes``, ``n_phenotype_nodes = n_activity_nodes -
``n_activity_nodes``                     n_protein_nodes`` (CellBox's n_activity_nodes is the index where the
                                         activity nodes start)
``model: CellBox``                       ``cellbox_masks: true``, ``learn_decay: true``, ``loss: mse`` (CellBox's
                                         model: its mask, a learned decay, a squared-error loss)
=======================================  =====================================================================

Model parameters map as CellBox eps -> alpha (gain), CellBox alpha -> d (decay), W -> W, and CellBox's +u is
cellbox-nb's -u (the data reader sets U = -pert). Settings without a counterpart (other envelopes or ODE
forms, "fix x" perturbations, loss weighting, added noise, sparse input, LinReg/NN models, later stages and
substages) are reported; output and bookkeeping keys (experiment_id, ckpt_name, export_verbose, ...) and the
fixed-step solver settings (ode_solver, ode_last_steps: cellbox-nb integrates with adaptive Tsit5) are reported
as not needed. The data files (pert_file, expr_file, node_index_file) become a ``--data`` hint.
"""

from __future__ import annotations

import difflib
import math
import os

from .errors import ConfigError

# Every key the original's Config or code reads (cellbox/config.py and its users), with the defaults that matter.
CELLBOX_KEYS = (
    "experiment_id", "experiment_type", "model", "model_prefix", "ckpt_name", "export_verbose", "sparse_data",
    "pert_file", "expr_file", "node_index_file", "root_dir", "n_x", "n_protein_nodes", "n_activity_nodes",
    "trainset_ratio", "validset_ratio", "batchsize", "n_batches_eval", "add_noise_level", "dT", "nT",
    "ode_solver", "envelope_form", "envelope", "pert_form", "ode_degree", "ode_last_steps", "polynomial_k",
    "n_hidden", "weight_loss", "l1lambda", "l2lambda", "lr_val", "n_epoch", "n_iter", "n_iter_buffer",
    "n_iter_patience", "stages", "sub_stages", "seed", "drug_index", "weights", "extra_mask_path", "extra_mask",
)
CELLBOX_DEFAULTS = {
    "experiment_type": "random partition", "model": "CellBox", "sparse_data": False, "batchsize": 8,
    "trainset_ratio": 0.7, "validset_ratio": 0.8, "add_noise_level": 0, "dT": 0.1, "ode_solver": "heun",
    "envelope_form": "tanh", "envelope": 0, "pert_form": "by u", "ode_degree": 1, "ode_last_steps": 2,
    "n_iter_buffer": 5, "n_iter_patience": 100, "weight_loss": "None", "l1lambda": 0.0, "l2lambda": 0.0,
}
PARTITION_OF = {
    "random partition": "random", "full data": "random", "leave one out (w/o single)": "loo",
    "leave one out (w/ single)": "loo_with_singles", "single to combo": "single_to_combo",
}
_NOT_NEEDED = {
    "experiment_id": "output naming", "model_prefix": "output naming", "ckpt_name": "output naming",
    "export_verbose": "output detail", "n_batches_eval": "evaluation batching", "root_dir": "working folder",
    "ode_solver": "cellbox-nb integrates with adaptive Tsit5, not a fixed-step solver",
    "ode_last_steps": "fixed-step convergence summary, not used",
}
# (key, value CellBox runs with by default, why other values cannot be mapped)
_ONLY = {
    "model": ("CellBox", "cellbox-nb fits the CellBox ODE only"),
    "envelope_form": ("tanh", "cellbox-nb's envelope is tanh"),
    "envelope": (0, "cellbox-nb's model is eps*tanh(W x + u) - alpha x (envelope 0)"),
    "pert_form": ("by u", "perturbations enter through u with x(0) = 0"),
    "ode_degree": (1, "the linear W x argument (ode_degree 1) only"),
    "weight_loss": ("None", "no loss weighting"),
    "add_noise_level": (0, "no noise is added to real data"),
    "sparse_data": (False, "dense CSV input only"),
}
_CANNOT = {
    "polynomial_k": "envelope parameter (tanh only)", "n_hidden": "NN model parameter",
    "weights": "initial W from a file", "extra_mask_path": "extra W mask from a file",
    "extra_mask": "extra W mask", "n_iter": "per-substage iteration cap (cellbox-nb stops by epochs and patience)",
}


class ImportResult:
    """The mapped config (``config``, a flat dict of cellbox-nb keys), the report (``messages``: list of
    ``(kind, text)`` with kind one of ``cannot map``, ``typo``, ``unknown``, ``not needed``, ``note``) and a
    ``data`` hint (``folder``, ``files``)."""

    def __init__(self):
        self.config = {}
        self.messages = []
        self.data = {}

    def say(self, kind, text):
        self.messages.append((kind, text))

    def unmapped_keys(self):
        """Keys reported as cannot map / typo / unknown (the things a user must look at)."""
        return [text.split(" ", 1)[0].rstrip(":") for kind, text in self.messages
                if kind in ("cannot map", "typo", "unknown")]


def _check_keys(raw: dict, where: str, res: ImportResult) -> None:
    for key in raw:
        if key in CELLBOX_KEYS:
            continue
        match = difflib.get_close_matches(key, CELLBOX_KEYS, n=1, cutoff=0.6)
        if match:
            default = CELLBOX_DEFAULTS.get(match[0])
            ran = f" (CellBox ran with its default {match[0]} = {default!r})" if default is not None else ""
            res.say("typo", f"{where}{key}: not a CellBox key, a typo of {match[0]}? The original silently "
                            f"ignored it{ran}; ignored here too")
        else:
            res.say("unknown", f"{where}{key}: not a CellBox key; the original silently ignored it; ignored here too")


def _number(raw, key, where="", *, integer=False, positive=False):
    value = raw[key]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok and positive:
        ok = value > 0
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"CellBox config {where}{key}: must be {kind}{' > 0' if positive else ''}, got {value!r}")
    return int(value) if integer else float(value)


def import_cellbox_config(raw: dict, *, conditions: int | None = None) -> ImportResult:
    """Map a CellBox config mapping onto cellbox-nb keys (table in the module docstring).

    Parameters
    ----------
    raw : dict
        The parsed JSON object.
    conditions : int, optional
        Number of conditions M of the data: gives the original's exact split counts and converts iteration
        counts to epochs (random partition).

    Returns
    -------
    ImportResult
        ``config`` passes :func:`cellbox_nb.fit.config.resolve`.

    Raises
    ------
    ConfigError
        ``raw`` is not a mapping, or a mapped value has the wrong type (e.g. a text batchsize).
    """
    if not isinstance(raw, dict):
        raise ConfigError("a CellBox config must be a JSON object")
    res = ImportResult()
    cfg = res.config
    _check_keys(raw, "", res)
    get = lambda key: raw.get(key, CELLBOX_DEFAULTS.get(key))  # noqa: E731

    for key, (value, why) in _ONLY.items():
        if key in raw and raw[key] != value:
            res.say("cannot map", f"{key}: {raw[key]!r} has no counterpart ({why}); mapped as {value!r}")
    for key, why in _NOT_NEEDED.items():
        if key in raw:
            res.say("not needed", f"{key}: {why}")
    for key, why in _CANNOT.items():
        if key in raw:
            res.say("cannot map", f"{key}: {why}")
    if "drug_index" in raw:
        res.say("cannot map", f"drug_index: {raw['drug_index']!r}: name the drug at train time with --drug NAME "
                              f"(the original numbers drugs 1.. by pert column: drug_index d is the node in column "
                              f"n_activity_nodes + d - 1, 0-based; its loo_label.csv numbers them differently, "
                              f"CellBox issue #48)")

    # partition and split sizes
    etype = get("experiment_type")
    if not isinstance(etype, str):
        raise ConfigError(f"CellBox config experiment_type: must be a string, got {etype!r}")
    if etype in PARTITION_OF:
        cfg["partition"] = PARTITION_OF[etype]
        if etype == "full data":
            res.say("note", "experiment_type 'full data': the original handles it as a random partition")
        if cfg["partition"] in ("loo", "loo_with_singles"):
            res.say("note", f"partition {cfg['partition']} needs the left-out drug: pass --drug NAME to train")
    else:
        cfg["partition"] = "random"
        res.say("cannot map", f"experiment_type: {etype!r} has no counterpart; mapped as random partition")
    tr = _number({"trainset_ratio": get("trainset_ratio")}, "trainset_ratio")
    vr = _number({"validset_ratio": get("validset_ratio")}, "validset_ratio")
    if not (0 < tr < 1 and 0 < vr <= 1):
        raise ConfigError(f"CellBox config: trainset_ratio {tr} must be in (0, 1) and validset_ratio {vr} in (0, 1]")
    cfg["test_frac"] = round(1.0 - tr, 12)
    cfg["val_frac"] = round(tr * (1.0 - vr), 12)
    n_train = None
    if conditions is not None:
        if cfg["partition"] == "random":
            n_trval = math.floor(tr * conditions)
            n_train = math.floor(n_trval * vr)
            cfg["n_test"] = conditions - n_trval
            cfg["n_val"] = n_trval - n_train
        else:
            res.say("note", "the loo / single-to-combo validation share is kept as a fraction (the original takes "
                            "ceil((1 - validset_ratio) * rest), cellbox-nb rounds)")

    # optimisation: globals, overridden by the first substage (as the original does)
    stages = raw.get("stages")
    first = {}
    if not isinstance(stages, list) or not stages:
        res.say("cannot map", "stages: missing or empty (CellBox requires it); lr and nT not mapped")
        stages = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict):
            raise ConfigError(f"CellBox config stages[{i}]: must be an object")
        _check_keys({k: v for k, v in stage.items() if k not in ("nT", "sub_stages")}, f"stages[{i}].", res)
        subs = stage.get("sub_stages") or []
        if not isinstance(subs, list):
            raise ConfigError(f"CellBox config stages[{i}].sub_stages: must be a list of objects")
        for j, sub in enumerate(subs):
            if not isinstance(sub, dict):
                raise ConfigError(f"CellBox config stages[{i}].sub_stages[{j}]: must be an object")
            _check_keys(sub, f"stages[{i}].sub_stages[{j}].", res)
        if i == 0 and subs:
            first = subs[0]
    later = sum(len(s.get("sub_stages") or []) for s in stages) - (1 if first else 0)
    if later > 0:
        lrs = [sub.get("lr_val") for s in stages for sub in (s.get("sub_stages") or [])][1:]
        res.say("cannot map", f"stages: {later} later substage(s) (lr_val {', '.join(map(str, lrs))}) have no "
                              f"counterpart: cellbox-nb trains one stage (its plateau schedule lowers lr when the "
                              f"validation loss stalls)")
    eff = {**{k: v for k, v in CELLBOX_DEFAULTS.items()}, **raw, **first}
    if "lr_val" in eff:
        cfg["lr"] = _number(eff, "lr_val", "stages[0].sub_stages[0].", positive=True)
    elif stages:
        res.say("cannot map", "stages[0].sub_stages[0].lr_val: missing; lr not mapped")
    cfg["l1"] = _number(eff, "l1lambda")
    cfg["l2"] = _number(eff, "l2lambda")
    batch = _number(eff, "batchsize", integer=True, positive=True)
    cfg["batch_size"] = batch
    if "n_epoch" in eff:
        cfg["epochs"] = _number(eff, "n_epoch", integer=True, positive=True)
    patience = _number(eff, "n_iter_patience", integer=True, positive=True)
    buffer = _number(eff, "n_iter_buffer", integer=True, positive=True)
    if n_train:
        per_epoch = math.ceil(n_train / batch)
        cfg["patience"] = max(1, math.ceil(patience / per_epoch))
        cfg["ma_window"] = max(1, math.ceil(buffer / per_epoch))
        res.say("note", f"n_iter_patience {patience} and n_iter_buffer {buffer} iterations -> patience "
                        f"{cfg['patience']} and ma_window {cfg['ma_window']} epochs ({per_epoch} iterations per epoch)")
    else:
        cfg["patience"], cfg["ma_window"] = patience, buffer
        res.say("note", f"n_iter_patience {patience} and n_iter_buffer {buffer} count iterations (batches) in "
                        f"CellBox and epochs in cellbox-nb; copied unconverted (pass --conditions M to convert)")
    if "seed" in raw:
        cfg["seed"] = cfg["split_seed"] = _number(raw, "seed", integer=True)

    # time horizon
    dT = _number(eff, "dT", positive=True)
    nTs = [s.get("nT") for s in stages if s.get("nT") is not None] or ([raw["nT"]] if "nT" in raw else [])
    nTs = [_number({"nT": k}, "nT", integer=True, positive=True) for k in nTs]
    if nTs:
        nT = nTs[-1]
        cfg["tfinal"] = dT * nT
        if len(set(nTs)) > 1:
            res.say("note", f"stages integrate to t = {', '.join(f'{dT * k:g}' for k in nTs)}; tfinal is the last "
                            f"({cfg['tfinal']:g})")

    # model and node roles: every model is mapped as CellBox (another one is reported above), with CellBox's mask,
    # decay and loss
    cfg["loss"] = "mse"
    cfg["learn_decay"] = True
    if "n_protein_nodes" in raw and "n_activity_nodes" in raw:
        n_p = _number(raw, "n_protein_nodes", integer=True)
        n_a = _number(raw, "n_activity_nodes", integer=True)
        n_x = _number(raw, "n_x", integer=True) if "n_x" in raw else None
        if not (0 <= n_p <= n_a and (n_x is None or n_a <= n_x)):
            raise ConfigError(f"CellBox config: need 0 <= n_protein_nodes ({n_p}) <= n_activity_nodes ({n_a})"
                              f"{f' <= n_x ({n_x})' if n_x is not None else ''}")
        cfg["n_protein_nodes"] = n_p
        cfg["n_phenotype_nodes"] = n_a - n_p
        cfg["cellbox_masks"] = True
    else:
        res.say("cannot map", "n_protein_nodes / n_activity_nodes: missing (CellBox requires them); cellbox_masks "
                              "left off")

    # data files
    files = {k: raw[k] for k in ("pert_file", "expr_file", "node_index_file") if isinstance(raw.get(k), str)}
    if files:
        folders = {os.path.dirname(v) or "." for v in files.values()}
        res.data = {"files": files, "folder": folders.pop() if len(folders) == 1 else None}
        standard = {"pert_file": "pert.csv", "expr_file": "expr.csv", "node_index_file": "node_Index.csv"}
        if res.data["folder"] is None or any(os.path.basename(v) != standard[k] for k, v in files.items()):
            res.say("note", f"data files {files} are not one folder with the standard names; use "
                            f"cellbox_nb.data.read_cellbox(folder, pert=..., expr=..., node_index=...)")
    from .fit.config import resolve

    resolve(cfg)  # the mapped config must be valid cellbox-nb config
    return res


def load_cellbox_config(path) -> dict:
    """Read a CellBox JSON config file (ConfigError, one line, if unreadable or not a JSON object)."""
    from .fit.config import loads_json

    try:
        with open(path, encoding="utf-8-sig") as fh:  # (a BOM, as some Windows editors write, is accepted)
            raw = loads_json(fh.read())  # (a key given twice is refused, as in cellbox-nb's own config files)
    except ConfigError as exc:
        raise ConfigError(f"CellBox config {path}: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"CellBox config {path}: cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise ConfigError(f"CellBox config {path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"CellBox config {path}: must hold a JSON object")
    return raw


def to_yaml(res: ImportResult, source: str = "") -> str:
    """The mapped config as YAML, with a comment header naming the source and the --data hint."""
    import yaml

    lines = [f"# cellbox-nb config imported from the CellBox config {source}".rstrip(),
             "# (cellbox-nb import-cellbox-config; unmapped keys were reported on stderr)"]
    folder = res.data.get("folder")
    if folder:
        lines.append(f"# data: cellbox-nb train --data {folder} --config <this file>  "
                     f"(or --data skmel133 for the shipped SK-MEL-133)")
    return "\n".join(lines) + "\n" + yaml.safe_dump(res.config, sort_keys=False, default_flow_style=False)
