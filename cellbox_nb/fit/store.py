"""Results store: one HDF5 file per fit (DESIGN.md section 5).

Layout (format_version 1)
-------------------------
Root attributes: ``kind = "cellbox-nb fit"``, ``format_version = 1``, ``status`` (running, finished,
early_stopped, interrupted, numerical_failure), ``cellbox_nb_version``, ``created``, ``updated``; while the prune
refits run after a fit that ended, ``status`` is ``running`` and ``fit_ended`` says how the fit ended;
``numba_threads``, the Numba threads of the process that wrote the file (a sweep's ``--collect`` reports it).

- ``config``              JSON string: the resolved training configuration.
- ``data/``               the inputs, in the dataset layout of cellbox_nb.data.dataset (U, t, Y, mask, nodes,
                          conditions, optional Y_clean, truth/W, truth/alpha); attribute ``meta`` (JSON).
- ``split/train|val|test`` int64 condition indices.
- ``history/<column>``    one float64 array per column (epoch, train_loss, val_loss, lr, grad_norm,
                          rejected, wall_s); attribute ``rows`` is the commit marker: readers use the first
                          ``rows`` entries.
- ``params/final/{W,alpha,d}`` and ``params/best/{W,alpha,d}`` (attribute ``epoch``), with ``params/nodes``.
- ``predictions/X``       (M, T, n) model responses with the best parameters (written when the fit ends).
- ``metrics``             JSON string (written when the fit ends).
- ``checkpoint/``         everything a resume needs: parameters, Adam moments (m_*, v_*), and attributes
                          epoch, step, lr, rng_state (JSON), best_val, bad_epochs, plateau_bad, ma_buffer (JSON).
- ``prune/``              only after the prune refits (config key ``prune``, cellbox_nb.fit.prune): one entry per
                          candidate, the unpruned fit first, in ``levels`` (0 for the fit), ``support`` (free
                          W entries), ``train_loss``, ``val_loss``, ``criterion``, ``epochs`` (of the refit);
                          ``mask`` (n, n) the selected support; ``stage1/{W,alpha,d}`` the fit's best
                          parameters; attributes ``select`` and ``chosen`` (index of the selected candidate).
                          ``params/best`` and ``params/final`` then hold the selected candidate's parameters,
                          ``history`` and the checkpoint stay the fit's.

Crash safety: the whole file is rewritten under a temporary name and renamed into place at every checkpoint
(cellbox_nb.data.h5atomic), so a kill at any moment leaves the previous complete file.  History is small
(a few floats per epoch), so this costs little and is stronger than appending in place.  A file is never
shared between writers; a second process may open it read-only at any time (it sees the last checkpoint).
"""

import json
import sys
import time

import numpy as np

from ..data.dataset import read_arrays, write_arrays
from ..data.h5atomic import atomic_h5_write, open_for_reading

KIND = "cellbox-nb fit"
FORMAT_VERSION = 1
HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "lr", "grad_norm", "rejected", "wall_s")
PRUNE_ARRAYS = ("levels", "support", "train_loss", "val_loss", "criterion", "epochs")


def write_fit(path, *, status, config, dataset, split, history, final, best, best_epoch, checkpoint,
              predictions=None, metrics=None, created=None, prune=None, fit_ended=None):
    """Write the complete results file atomically (layout in the module docstring).  ``fit_ended``: how the fit
    ended (finished, early_stopped) while its prune refits are still to run; the file's status is then
    ``running`` and the root attribute ``fit_ended`` says the fit itself needs no more epochs."""
    from .. import __version__

    with atomic_h5_write(path) as f:
        f.attrs["kind"] = KIND
        f.attrs["format_version"] = np.int64(FORMAT_VERSION)
        f.attrs["status"] = status
        if fit_ended is not None:
            f.attrs["fit_ended"] = fit_ended
        f.attrs["cellbox_nb_version"] = __version__
        numba = sys.modules.get("numba")  # (a file written without solving anything has no thread count)
        if numba is not None:
            f.attrs["numba_threads"] = np.int64(numba.get_num_threads())
        f.attrs["created"] = created or time.strftime("%Y-%m-%dT%H:%M:%S")
        f.attrs["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        f.create_dataset("config", data=json.dumps(config, sort_keys=True))
        g = f.create_group("data")
        g.attrs["meta"] = json.dumps(dataset.meta, sort_keys=True, default=str)
        write_arrays(g, dataset)
        for name, idx in zip(("train", "val", "test"), split):
            f.create_dataset(f"split/{name}", data=np.asarray(idx, dtype=np.int64))
        h = f.create_group("history")
        rows = len(history)
        for j, col in enumerate(HISTORY_COLUMNS):
            h.create_dataset(col, data=np.array([r[j] for r in history], dtype=np.float64).reshape(rows))
        h.attrs["rows"] = np.int64(rows)  # commit marker
        f.create_dataset("params/nodes", data=list(dataset.nodes), dtype=_str_dtype())
        for key, val in final.items():
            f.create_dataset(f"params/final/{key}", data=val)
        for key, val in best.items():
            f.create_dataset(f"params/best/{key}", data=val)
        f["params/best"].attrs["epoch"] = np.int64(best_epoch)
        c = f.create_group("checkpoint")
        for key, val in checkpoint.items():
            same = final.get(key[2:]) if key.startswith("p_") else None
            if same is not None and (same is val or np.array_equal(same, val)):
                c[key] = f[f"params/final/{key[2:]}"]  # a hard link: the current parameters are the final ones
            elif isinstance(val, np.ndarray):
                c.create_dataset(key, data=val)
            else:
                c.attrs[key] = json.dumps(val)
        if predictions is not None:
            f.create_dataset("predictions/X", data=predictions)
        if metrics is not None:
            f.create_dataset("metrics", data=json.dumps(metrics, sort_keys=True))
        if prune is not None:
            g = f.create_group("prune")
            g.attrs["select"] = prune["select"]
            g.attrs["chosen"] = np.int64(prune["chosen"])
            for key in PRUNE_ARRAYS:
                g.create_dataset(key, data=prune[key])
            g.create_dataset("mask", data=np.asarray(prune["mask"], dtype=bool))
            for key, val in prune["stage1"].items():
                g.create_dataset(f"stage1/{key}", data=val)


def _str_dtype():
    import h5py

    return h5py.string_dtype()


def read_fit(path, *, with_checkpoint=False):
    """Read a results file into a dict of arrays and plain values.

    Keys: status, config (dict), dataset (Dataset), split (train, val, test), history (dict column -> array),
    final and best (dicts W, alpha, d), best_epoch, nodes, predictions (or None), metrics (dict or None), created,
    prune (dict of the prune/ group, or None), and with ``with_checkpoint`` the checkpoint dict.  Raises
    InputDataError (one line) on a bad file.
    """
    f, fail = open_for_reading(path, "results file")
    with f:
        kind = f.attrs.get("kind")
        if not isinstance(kind, str) or kind != KIND:
            fail(f"not a cellbox-nb fit (attribute kind is {f.attrs.get('kind')!r})")
        version = f.attrs.get("format_version")
        if not (np.ndim(version) == 0 and np.issubdtype(np.asarray(version).dtype, np.integer)
                and int(version) == FORMAT_VERSION):
            shown = version.tolist() if isinstance(version, np.generic | np.ndarray) else version
            fail(f"format_version {shown!r} is not supported (this version reads {FORMAT_VERSION})")
        try:
            out = {"status": str(f.attrs["status"]), "config": json.loads(f["config"][()])}
            out["dataset"] = read_arrays(f["data"], fail, json.loads(f["data"].attrs.get("meta", "{}")))
            out["split"] = tuple(f[f"split/{k}"][()] for k in ("train", "val", "test"))
            rows = int(f["history"].attrs["rows"])
            out["history"] = {c: f[f"history/{c}"][:rows] for c in HISTORY_COLUMNS}
            out["final"] = {k: v[()] for k, v in f["params/final"].items()}
            out["best"] = {k: v[()] for k, v in f["params/best"].items()}
            out["best_epoch"] = int(f["params/best"].attrs["epoch"])
            out["nodes"] = list(f["params/nodes"].asstr()[()])
            out["predictions"] = f["predictions/X"][()] if "predictions" in f else None
            out["metrics"] = json.loads(f["metrics"][()]) if "metrics" in f else None
            out["created"] = str(f.attrs.get("created", ""))
            threads = f.attrs.get("numba_threads")
            out["numba_threads"] = int(threads) if threads is not None else None
            ended = f.attrs.get("fit_ended")
            out["fit_ended"] = str(ended) if ended is not None else None
            out["prune"] = None
            if "prune" in f:
                g = f["prune"]
                pr = {k: g[k][()] for k in PRUNE_ARRAYS}
                pr.update({"select": str(g.attrs["select"]), "chosen": int(g.attrs["chosen"]),
                           "mask": g["mask"][()], "stage1": {k: v[()] for k, v in g["stage1"].items()}})
                out["prune"] = pr
            if with_checkpoint:
                c = f["checkpoint"]
                ck = {k: v[()] for k, v in c.items()}
                ck.update({k: json.loads(v) for k, v in c.attrs.items()})
                out["checkpoint"] = ck
        except KeyError as exc:
            fail(f"missing {exc.args[0] if exc.args else 'an entry'}")
        except json.JSONDecodeError as exc:
            fail(f"an entry is not valid JSON ({exc})")
        except (TypeError, ValueError) as exc:  # an attribute or entry of the wrong type
            fail(f"an entry has the wrong type ({' '.join(str(exc).split())})")
        except OSError as exc:  # damage below the superblock: bad checksum, address past the end
            fail(f"damaged HDF5 content ({' '.join(str(exc).split())})")
    _check_fit_shapes(out, fail)
    return out


def _check_fit_shapes(out, fail):
    """Refuse (through ``fail``) a results file whose parts do not fit together: parameters, node names, split,
    predictions and history against the stored dataset (a damaged or hand-edited file)."""
    ds = out["dataset"]
    M, T, n = ds.M, ds.T, ds.n
    if not isinstance(out["config"], dict):
        fail("config is not a mapping")
    if out["metrics"] is not None and not isinstance(out["metrics"], dict):
        fail("metrics is not a mapping")
    if len(out["nodes"]) != n:
        fail(f"params/nodes has {len(out['nodes'])} names for {n} nodes")
    shapes = {"W": (n, n), "alpha": (n,), "d": (n,)}
    for which in ("final", "best"):
        for key, shape in shapes.items():
            if key not in out[which]:
                fail(f"missing params/{which}/{key}")
            arr = np.asarray(out[which][key])
            if arr.shape != shape or not np.issubdtype(arr.dtype, np.floating):
                fail(f"params/{which}/{key} has shape {arr.shape} and dtype {arr.dtype}, expected {shape} floats")
            if not np.all(np.isfinite(arr)):  # (training never stores one: a non-finite step is rejected)
                fail(f"params/{which}/{key} holds NaN or Inf")
    seen = np.zeros(M, dtype=bool)
    for name, idx in zip(("train", "val", "test"), out["split"]):
        idx = np.asarray(idx)
        if idx.ndim != 1 or not (idx.size == 0 or np.issubdtype(idx.dtype, np.integer)):
            fail(f"split/{name} is not a list of condition indices")
        if idx.size and (idx.min() < 0 or idx.max() >= M or seen[idx].any() or np.unique(idx).size < idx.size):
            fail(f"split/{name} has indices outside 0..{M - 1} or shared with another split")
        if idx.size:
            seen[idx] = True
    if out["predictions"] is not None and np.shape(out["predictions"]) != (M, T, n):
        fail(f"predictions/X has shape {np.shape(out['predictions'])}, expected {(M, T, n)}")
    lengths = {np.shape(v) for v in out["history"].values()}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1:
        fail("history columns have different lengths")
