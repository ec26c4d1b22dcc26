"""Training configuration: every key, its default and its check, in one table.

Config files may be YAML, JSON or TOML, holding a flat mapping of the keys below.  Precedence: command-line
options > config file > defaults.  An unknown key is an error that names the closest valid key.
"""

import difflib
import json
import math
import os

from ..config import RTOL_MIN, RTOL_MIN_TEXT
from ..errors import ConfigError


# key: (default, kind, description)
SCHEMA = {
    # default data (used when no data file is given): a simulated benchmark on a network
    "network": ("LI", "str", "network to simulate when no data file is given (built-in name, CSV, random:N)"),
    "conditions": (30, "int+", "number of simulated conditions"),
    "times": (5, "int+", "number of observation times t_k = tfinal k / T"),
    "tfinal": (20.0, "float+", "last observation time (simulated data; the observation time of steady-state "
                               "CellBox data, default 20 = CellBox's nT*dT)"),
    "noise": (0.01, "float0", "sd of additive Gaussian noise on simulated data (test targets stay clean)"),
    "max_targets": (2, "int+", "at most this many nodes perturbed per simulated condition"),
    "data_seed": (0, "int0", "seed of the simulated data"),
    # node roles of real data (CellBox order: proteins, phenotypes, then drug-activity nodes); None = from the data
    "n_protein_nodes": (None, "int0?", "number of protein nodes (the first ones); None = as the data records"),
    "n_phenotype_nodes": (None, "int0?", "number of phenotype nodes (after the proteins; the rest are "
                                         "drug-activity nodes); None = as the data records"),
    # split
    "val_frac": (1 / 6, "frac", "fraction of conditions for validation (ignored when n_val is set)"),
    "test_frac": (1 / 6, "frac", "fraction of conditions for testing (ignored when n_test is set)"),
    "n_val": (None, "int0?", "number of validation conditions"),
    "n_test": (None, "int0?", "number of test conditions"),
    "split_seed": (0, "int0", "seed of the random train/val/test split"),
    "partition": ("random", ("random", "loo", "loo_with_singles", "single_to_combo"),
                  "test set: random, leave one drug out (loo), loo keeping the drug's singles in training "
                  "(loo_with_singles), or all combinations (single_to_combo); see cellbox_nb/fit/splits.py"),
    "drug": (None, "name_or_index?", "left-out drug of the loo partitions: node name (e.g. aMEK) or 0-based "
                                     "index in the list of perturbed nodes"),
    # model
    "loss": ("mae", ("mae", "mse"), "training loss on observed entries"),
    "learn_alpha": (True, "bool", "learn alpha (else keep init_alpha)"),
    "positive_alpha": (True, "bool", "keep alpha >= alpha_min by projection after each step"),
    "alpha_min": (1e-3, "float+", "lower bound of alpha when positive_alpha"),
    "learn_decay": (False, "bool", "learn the decay d (else d = 1)"),
    "no_self_loops": (False, "bool", "fix the diagonal of W at zero"),
    "cellbox_masks": (False, "bool", "CellBox's W mask: no self-loops, no input to drug-activity nodes, no "
                                     "output from phenotype nodes, no direct activity -> phenotype edges "
                                     "(needs node roles)"),
    "init": ("zeros", ("zeros", "random", "steady_state"),
             "initial W: zeros, N(0, init_scale) entries, or steady_state: W and alpha regressed on the training "
             "responses at the last time point, taken as a steady state (cellbox_nb/fit/steady.py)"),
    "init_scale": (0.01, "float0", "sd of the random initial W"),
    "init_alpha": (0.5, "float+", "initial alpha (all nodes)"),
    # optimiser
    "optimizer": ("adam", ("adam", "adamw"), "Adam, or AdamW with decoupled weight decay"),
    "lr": (0.02, "float+", "initial learning rate"),
    "beta1": (0.9, "frac", "Adam first-moment decay"),
    "beta2": (0.999, "frac", "Adam second-moment decay"),
    "eps": (1e-8, "float+", "Adam epsilon"),
    "weight_decay": (0.0, "float0", "AdamW decoupled weight decay on W (lr * wd * W per step)"),
    "l1": (0.0, "float0", "L1 penalty on W, applied as a proximal (soft-threshold) step"),
    "l2": (0.0, "float0", "L2 penalty l2 * sum(W^2) on W, added to the gradient"),
    "clip_norm": (None, "float+?", "clip the global gradient norm to this value"),
    "schedule": ("plateau", ("constant", "step", "plateau"), "learning-rate schedule"),
    "lr_factor": (0.5, "frac", "multiply lr by this at each decay"),
    "lr_step": (500, "int+", "step schedule: decay every lr_step epochs"),
    "lr_patience": (30, "int+", "plateau schedule: decay after this many epochs without a new best"),
    "lr_min": (1e-5, "float+", "lr never decays below this"),
    # loop
    "epochs": (3000, "int+", "maximum number of epochs"),
    "batch_size": (0, "int0", "conditions per step (0 = all training conditions; 1 = CellBox.jl)"),
    "time_points": (0, "int0", "observation times sampled per step (0 = all)"),
    "patience": (200, "int+", "early stopping: epochs without improvement of the smoothed validation loss"),
    "burnin": (50, "int0", "early stopping is off for the first burnin epochs"),
    "ma_window": (5, "int+", "moving-average window of the validation loss"),
    "min_delta": (0.0, "float0", "relative improvement needed to count as better"),
    "seed": (0, "int0", "seed of the initialisation and batch order"),
    "backend": ("cpu", ("cpu", "cuda"), "compute backend of the solver and gradient"),
    "rtol": (1e-6, "float+", "solver relative tolerance during training"),
    "atol": (1e-8, "float+", "solver absolute tolerance during training"),
    "adjoint": ("interpolating", ("interpolating", "discrete"),
                "gradient: the continuous adjoint with its own adaptive steps (interpolating), or the exact adjoint "
                "of the forward pass's steps (discrete: the gradient of the computed loss, 0.65-0.9 of the cost; cpu "
                "backend only)"),
    "adjoint_rtol": (None, "float+?", "relative tolerance of the interpolating adjoint's backward pass (default: "
                     "rtol; on the benchmark problems, with DOP853, 10 * rtol takes a fifth fewer backward steps for "
                     "at most 1.7x, mostly under 1.15x, the gradient error, see README)"),
    "adjoint_integrator": ("auto", ("auto", "dop853", "tsit5"),
                           "integrator of lam in the interpolating adjoint (auto: dop853 on the cpu, 0.82-0.88x "
                           "the loss + gradient time of tsit5 for the same or a smaller gradient error; tsit5 on "
                           "cuda)"),
    "prune": (False, "bool", "after the fit, refit W on the support of its largest entries (levels 0.02-0.5 of "
                             "max |W|, the diagonal kept), choosing among the fit and the refits by prune_select "
                             "(cellbox_nb/fit/prune.py)"),
    "prune_select": ("bic", ("bic", "val"), "how prune chooses the support: Bayesian information criterion on the "
                                            "training loss (bic) or validation loss (val)"),
    "prune_diagonal": (False, "bool", "let prune remove self-loops too (default: the diagonal stays free)"),
    "prune_epochs": (2000, "int+", "maximum epochs of each prune refit"),
    "prune_patience": (300, "int+", "early-stopping patience of each prune refit"),
    "max_rejections": (10, "int+", "stop with a numerical failure after this many consecutive rejected steps"),
    "checkpoint_seconds": (5.0, "float0", "rewrite the results file (with checkpoint) at most this often, and "
                                          "no sooner than 9x the last rewrite's time (0 = every epoch)"),
    "checkpoint_every": (0, "int0", "also checkpoint every this many epochs (0 = time-based only)"),
}

DEFAULTS = {k: v[0] for k, v in SCHEMA.items()}

# Keys added after sweep row names (cellbox_nb.sweep: a hash of the resolved config) were first written: left out of
# that hash while at their default, so a sweep folder written before a key existed keeps its row names and a rerun
# after an upgrade still finds its finished rows.  Append every key added from now on.
LATE_KEYS = ("adjoint_rtol", "adjoint_integrator", "prune", "prune_select", "prune_diagonal", "prune_epochs",
             "prune_patience")


# Names users bring from CellBox's configs (TF/PyTorch, CellBox.jl) and from common training tools, for the hint
# of an unknown key (spelling distance alone would suggest lr_step for learning_rate).  Only hints: nothing is
# renamed silently.  (cellbox-nb import-config converts a whole CellBox config file.)
ALIASES = {
    "learning_rate": "lr", "lr_val": "lr", "lr_init": "lr",
    "n_iter_max": "epochs", "max_epochs": "epochs", "num_epochs": "epochs", "n_epoch": "epochs", "n_iter": "epochs",
    "grad_max": "clip_norm", "max_grad_norm": "clip_norm", "gradient_clip": "clip_norm", "clip": "clip_norm",
    "l1lambda": "l1", "l1_lambda": "l1", "l2lambda": "l2", "l2_lambda": "l2",
    "batchsize": "batch_size", "n_batch": "batch_size",
    "ntotal": "times", "n_mu": "max_targets", "n_exp": "conditions", "noise_level": "noise",
    "n_iter_patience": "patience", "n_iter_buffer": "ma_window", "seed_data": "data_seed",
    "prune_level": "prune", "prune_levels": "prune", "prune_threshold": "prune", "refit": "prune",
    "prune_criterion": "prune_select", "prune_self_loops": "prune_diagonal", "init_method": "init",
}


def _closest(key):
    norm = key.strip().lower().replace("-", "_").replace(" ", "_")
    match = difflib.get_close_matches(norm, list(SCHEMA) + list(ALIASES), n=1, cutoff=0.5)
    if not match:
        return ""
    return f" (did you mean '{ALIASES.get(match[0], match[0])}'?)"


def _coerce(key, value):
    kind = SCHEMA[key][1]
    if isinstance(kind, tuple):
        if value not in kind:
            raise ConfigError(f"config key '{key}': must be one of {', '.join(kind)}, got {value!r}")
        return value
    optional = kind.endswith("?")
    base = kind.rstrip("?")
    if optional and base != "name_or_index" and isinstance(value, str) and value.strip().lower() in ("none", "null"):
        value = None  # `--set clip_norm=none`, as the docs write the default (a node may be named "none")
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key '{key}': a value is required")
    if base == "name_or_index":  # a name, or a non-negative integer index (digit strings too)
        if isinstance(value, str) and value.strip().isdecimal():
            return int(value)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise ConfigError(f"config key '{key}': must be a name or a non-negative integer index, got {value!r}")
    if base == "str":
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}': must be a string, got {value!r}")
        return value
    if base == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"config key '{key}': must be true or false, got {value!r}")
    if base.startswith("int"):
        text = value.strip() if isinstance(value, str) else ""
        is_int_text = (text[1:] if text[:1] in "+-" else text).isdecimal() and text[:1] != ""
        if isinstance(value, bool) or not (isinstance(value, int) or is_int_text):
            if not (isinstance(value, float) and value.is_integer()):
                raise ConfigError(f"config key '{key}': must be an integer, got {value!r}")
        v = int(value)
        low = 1 if base == "int+" else 0
        if v < low:
            raise ConfigError(f"config key '{key}': must be >= {low}, got {v}")
        return v
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{key}': must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(v):
        raise ConfigError(f"config key '{key}': must be a finite number, got {value!r}")
    if base == "float+" and v <= 0:
        raise ConfigError(f"config key '{key}': must be > 0, got {v}")
    if base == "float0" and v < 0:
        raise ConfigError(f"config key '{key}': must be >= 0, got {v}")
    if base == "frac" and not 0 <= v < 1:
        raise ConfigError(f"config key '{key}': must be in [0, 1), got {v}")
    return v


def resolve(*layers):
    """Merge mappings (later layers win) over the defaults; check every key and value; return a new dict."""
    cfg = dict(DEFAULTS)
    for layer in layers:
        for key, value in (layer or {}).items():
            if key not in SCHEMA:
                raise ConfigError(f"unknown config key '{key}'{_closest(str(key))}")
            cfg[key] = _coerce(key, value)
    if cfg["adjoint"] == "discrete" and cfg["adjoint_rtol"] is not None:
        raise ConfigError("config key 'adjoint_rtol': the discrete adjoint has no tolerance of its own (leave it "
                          "unset or use adjoint: interpolating)")
    for key in ("rtol", "adjoint_rtol"):  # (checked here, before a results file is written, and by the solver)
        if cfg[key] is not None and cfg[key] < RTOL_MIN:
            raise ConfigError(f"config key '{key}': {cfg[key]} is below what float64 can resolve (use >= "
                              f"{RTOL_MIN_TEXT})")
    for key in ("rtol", "adjoint_rtol"):  # (the API takes rtol >= 1 for a fixed mesh from h0; training does not)
        if cfg[key] is not None and cfg[key] >= 1:
            raise ConfigError(f"config key '{key}': must be below 1 (a relative tolerance), got {cfg[key]}")
    if cfg["val_frac"] + cfg["test_frac"] >= 1:
        raise ConfigError("config keys 'val_frac' + 'test_frac' must leave conditions for training (sum < 1)")
    if cfg["adjoint"] == "discrete" and cfg["backend"] == "cuda":
        raise ConfigError("config key 'adjoint': 'discrete' is available on the cpu backend only")
    if cfg["adjoint_integrator"] != "auto" and cfg["adjoint"] == "discrete":
        raise ConfigError("config key 'adjoint_integrator': the discrete adjoint follows the forward pass's Tsit5 "
                          "steps (leave it at auto or use adjoint: interpolating)")
    if cfg["adjoint_integrator"] == "dop853" and cfg["backend"] == "cuda":
        raise ConfigError("config key 'adjoint_integrator': the cuda backend integrates lam with tsit5 only")
    return cfg


def _lines(numbers):
    if len(set(numbers)) == 1:
        return f"{'twice' if len(numbers) == 2 else f'{len(numbers)} times'} on line {numbers[0]}"
    numbers = [str(n) for n in numbers]
    return f"lines {', '.join(numbers[:-1])} and {numbers[-1]}"


def _unique_key_loader():
    """A yaml.SafeLoader subclass whose mappings refuse a key given twice (ConfigError naming the key and its
    lines; safe_load keeps the last one silently).  Keys brought in by a merge (``<<: *anchor``) may be overridden
    as YAML allows."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        seen.setdefault(key, []).append(key_node.start_mark.line + 1)
                    except TypeError:  # an unhashable key: refused by SafeLoader itself
                        continue
                for key, lines in seen.items():
                    if len(lines) > 1:
                        raise ConfigError(f"duplicate key {key!r} ({_lines(lines)})")
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def load_yaml(text):
    """``yaml.safe_load(text)``, refusing a mapping key given twice (ConfigError naming the key and its lines)."""
    import yaml

    return yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader subclass


def loads_json(text):
    """``json.loads(text)``, refusing an object key given twice (ConfigError naming the key and its lines; the
    json module keeps the last one silently) and nesting too deep for the parser (ConfigError)."""

    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except _DuplicateJSONKey:  # parsed again, slowly, to name the lines (an error path only)
        _raise_duplicate_json_key(text)
    except RecursionError:
        raise ConfigError("JSON nested too deeply to parse") from None


def _unique_pairs(pairs):
    """A JSON object's dict; _DuplicateJSONKey for the first key given twice."""
    keys = [k for k, _ in pairs]
    if len(set(keys)) < len(keys):
        raise _DuplicateJSONKey(next(k for i, k in enumerate(keys) if k in keys[:i]))
    return dict(pairs)


def _raise_duplicate_json_key(text):
    """Parse ``text`` (which has a duplicate object key) with the pure-Python scanner, whose object parser can
    see each key's position, and raise ConfigError naming the first duplicate key and its lines."""
    from json import decoder, scanner

    def parse_object(s_and_end, strict, scan_once, object_hook, object_pairs_hook, memo=None):
        try:
            return decoder.JSONObject(s_and_end, strict, scan_once, object_hook, _unique_pairs, memo)
        except _DuplicateJSONKey as dup:  # the object's own keys again, with their lines
            s, pos = s_and_end
            lines = []
            while True:
                pos = decoder.WHITESPACE.match(s, pos).end()
                if s[pos:pos + 1] != '"':
                    break
                key, pos = decoder.scanstring(s, pos + 1, strict)
                if key == dup.key:
                    lines.append(s.count("\n", 0, pos) + 1)
                pos = decoder.WHITESPACE.match(s, pos).end() + 1  # the ':'
                _, pos = scan_once(s, decoder.WHITESPACE.match(s, pos).end())
                pos = decoder.WHITESPACE.match(s, pos).end() + 1  # the ',' (or the closing brace)
            raise ConfigError(f"duplicate key {dup.key!r} ({_lines(lines)})") from None

    dec = json.JSONDecoder()
    dec.parse_object = parse_object
    dec.scan_once = scanner.py_make_scanner(dec)  # (the C scanner would not call parse_object)
    try:
        dec.decode(text)
    except RecursionError:
        pass
    raise ConfigError("a duplicate key") from None  # pragma: no cover - the slow parse finds it


class _DuplicateJSONKey(Exception):
    def __init__(self, key):
        super().__init__(key)
        self.key = key


def load_config_file(path):
    """Read a YAML, JSON or TOML mapping by the file's extension (ConfigError on any problem)."""
    ext = os.path.splitext(str(path))[1].lower()
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read ({exc.strerror})") from None
    try:
        if ext in (".yaml", ".yml"):
            try:
                data = load_yaml(raw.decode("utf-8"))
            except ConfigError as exc:  # a duplicate key
                raise ConfigError(f"config file {path}: {exc}") from None
        elif ext == ".json":
            try:
                data = loads_json(raw.decode("utf-8-sig"))
            except ConfigError as exc:  # a duplicate key
                raise ConfigError(f"config file {path}: {exc}") from None
        elif ext == ".toml":
            import tomllib

            data = tomllib.loads(raw.decode("utf-8-sig"))
        else:
            raise ConfigError(f"config file {path}: unknown extension '{ext}' (use .yaml, .yml, .json or .toml)")
    except ConfigError:
        raise
    except Exception as exc:  # parser errors of the three formats
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"config file {path}: cannot parse ({first})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: must hold a mapping of keys to values")
    return data


def parse_set(items):
    """Parse ``key=value`` overrides from the command line (values parsed as YAML scalars)."""
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = load_yaml(value)
        except ConfigError as exc:  # a duplicate key in a mapping value
            raise ConfigError(f"--set {item!r}: {exc}") from None
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def config_differences(saved, cfg):
    """The keys whose values differ between a results file's stored config ``saved`` and the resolved ``cfg``
    (sorted; empty when a resume may continue).  A key the stored config lacks was added after the file was
    written, by a version that behaved as the key's default does, so it counts at its default."""
    stored = json.loads(json.dumps(DEFAULTS)) | saved
    current = json.loads(json.dumps(cfg))  # as JSON stores it (tuples become lists)
    return sorted(k for k in set(stored) | set(current) if stored.get(k, None) != current.get(k, None))
