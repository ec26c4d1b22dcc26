"""Generate the HDF5 files of the bad-input corpus (tests/bad_inputs/hdf5/): run from anywhere, commit the output.

    python tests/bad_inputs/make_corpus.py

Each file is a small valid dataset (3 conditions x 2 times x 3 nodes) or results file with exactly one defect;
``good.h5`` and ``fit_good.h5`` are the undamaged bases (the tests check that they load, so every refusal comes
from the defect). The text inputs of the corpus (network CSVs, CellBox folders, configs) are written by hand.
No solver runs here: the numbers are arbitrary, only the layout matters.
"""

import json
import os
import sys

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "hdf5")
STR = h5py.string_dtype()

M, T, N = 3, 2, 3


def base_arrays():
    """The arrays of the good dataset, in the layout of cellbox_nb.data.dataset."""
    U = np.array([[0.0, 0.0, 1.0], [0.0, 0.5, 0.0], [0.25, 0.0, 0.0]])
    t = np.array([5.0, 10.0])
    Y = np.arange(M * T * N, dtype=np.float64).reshape(M, T, N) / 100.0
    return {"U": U, "t": t, "Y": Y, "mask": np.ones((M, T, N), dtype=np.uint8), "nodes": ["a", "b", "c"],
            "conditions": ["c0", "c1", "c2"], "Y_clean": Y.copy(), "truth/W": np.eye(N) * 0.5,
            "truth/alpha": np.ones(N)}


def write_dataset_file(name, arrays=None, attrs=None, drop=(), groups=()):
    """Write a dataset file with the given arrays (name -> value; strings as lists) and root attributes."""
    arrays = dict(base_arrays(), **(arrays or {}))
    attrs = dict({"kind": "cellbox-nb dataset", "format_version": np.int64(1), "meta": "{}"}, **(attrs or {}))
    path = os.path.join(OUT, name)
    with h5py.File(path, "w", libver="latest", track_order=False) as f:
        for key, value in attrs.items():
            if value is not None:
                f.attrs[key] = value
        for key, value in arrays.items():
            if key in drop:
                continue
            if key in groups:
                f.create_group(key)
            elif isinstance(value, list) and value and isinstance(value[0], str):
                f.create_dataset(key, data=value, dtype=STR, track_times=False)
            else:
                f.create_dataset(key, data=value, track_times=False)
    return path


def truncate(src, dst, keep=0.5):
    with open(os.path.join(OUT, src), "rb") as fh:
        data = fh.read()
    with open(os.path.join(OUT, dst), "wb") as fh:
        fh.write(data[:int(len(data) * keep)])


def corrupt(src, dst, offset, length=8):
    """Copy ``src`` with ``length`` bytes at ``offset`` flipped (XOR 0x5A): HDF5 damage below the superblock."""
    with open(os.path.join(OUT, src), "rb") as fh:
        data = bytearray(fh.read())
    for i in range(offset, offset + length):
        data[i] ^= 0x5A
    with open(os.path.join(OUT, dst), "wb") as fh:
        fh.write(bytes(data))


def write_fit_file(name, edit=None):
    """A results file (status running, two epochs of history) written by cellbox_nb.fit.store, then edited."""
    from cellbox_nb.data.dataset import Dataset
    from cellbox_nb.fit.config import resolve
    from cellbox_nb.fit.store import write_fit

    a = base_arrays()
    ds = Dataset(U=a["U"], t=a["t"], Y=a["Y"], nodes=a["nodes"], conditions=a["conditions"])
    params = {"W": np.zeros((N, N)), "alpha": np.full(N, 0.5), "d": np.ones(N)}
    zeros = {k: np.zeros_like(v) for k, v in params.items()}
    checkpoint = {f"p_{k}": v for k, v in params.items()}
    checkpoint.update({f"m_{k}": v for k, v in zeros.items()})
    checkpoint.update({f"v_{k}": v for k, v in zeros.items()})
    checkpoint.update({"step": 2, "epoch": 2, "lr": 0.02, "best_val": 0.1, "best_ma": 0.1, "bad_epochs": 0,
                       "plateau_best": 0.1, "plateau_bad": 0, "ma_buffer": [0.1, 0.1],
                       "consecutive_rejections": 0, "wall": 0.01, "rng_state": None, "best_epoch": 2})
    history = [(1.0, 0.2, 0.2, 0.02, 1.0, 0.0, 0.005), (2.0, 0.1, 0.1, 0.02, 1.0, 0.0, 0.01)]
    path = os.path.join(OUT, name)
    if os.path.exists(path):
        os.remove(path)
    write_fit(path, status="running", config=resolve({"epochs": 2}), dataset=ds,
              split=(np.array([0]), np.array([1]), np.array([2])), history=history, final=params, best=params,
              best_epoch=2, checkpoint=checkpoint, created="2026-01-01T00:00:00")
    if edit is not None:
        with h5py.File(path, "r+") as f:
            edit(f)
    repack(path)


def repack(path):
    """Copy every object into a fresh file in the compact latest format (drops the space of deleted objects)."""
    tmp = path + ".repack"
    with h5py.File(path, "r") as src, h5py.File(tmp, "w", libver="latest") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        for name in src:
            src.copy(src[name], dst, name)
    os.replace(tmp, path)


def main():
    os.makedirs(OUT, exist_ok=True)
    for old in os.listdir(OUT):
        if old.endswith(".h5"):
            os.remove(os.path.join(OUT, old))
    a = base_arrays()
    write_dataset_file("good.h5")
    # -- not HDF5 / damaged files
    with open(os.path.join(OUT, "not_hdf5.h5"), "w") as fh:
        fh.write("U,t,Y\n1,2,3\n")
    open(os.path.join(OUT, "empty.h5"), "wb").close()
    truncate("good.h5", "truncated.h5")
    # offsets found by scanning good.h5 (h5py 3.16 / HDF5 1.14): an object header with a bad checksum, and a
    # dataset whose data address lies past the end of the file
    corrupt("good.h5", "corrupt_object_header.h5", 8730)
    corrupt("good.h5", "corrupt_data_address.h5", 6402)
    # -- attributes
    write_dataset_file("wrong_kind.h5", attrs={"kind": "something else"})
    write_dataset_file("no_kind.h5", attrs={"kind": None})
    write_dataset_file("no_format_version.h5", attrs={"format_version": None})
    write_dataset_file("format_version_2.h5", attrs={"format_version": np.int64(2)})
    write_dataset_file("format_version_text.h5", attrs={"format_version": "1"})
    write_dataset_file("meta_not_json.h5", attrs={"meta": "{not json"})
    write_dataset_file("meta_not_object.h5", attrs={"meta": "[1, 2]"})
    # -- missing or wrong-kind entries
    write_dataset_file("missing_Y.h5", drop=("Y",))
    write_dataset_file("missing_nodes.h5", drop=("nodes",))
    write_dataset_file("missing_mask.h5", drop=("mask",))
    write_dataset_file("U_is_group.h5", groups=("U",))
    write_dataset_file("Y_clean_is_group.h5", groups=("Y_clean",))
    # -- shapes, values, names
    write_dataset_file("U_wrong_shape.h5", arrays={"U": np.zeros((M, N + 1))})
    write_dataset_file("U_1d.h5", arrays={"U": np.zeros(N)})
    write_dataset_file("U_empty.h5", arrays={"U": np.zeros((0, N))})
    write_dataset_file("mask_wrong_shape.h5", arrays={"mask": np.ones((M, N), dtype=np.uint8)})
    write_dataset_file("U_text.h5", arrays={"U": np.array([[b"x"] * N] * M)})
    write_dataset_file("U_inf.h5", arrays={"U": np.where(np.eye(M, N) > 0, np.inf, a["U"])})
    Y = a["Y"].copy()
    Y[1, 0, 2] = np.nan
    write_dataset_file("Y_nan_observed.h5", arrays={"Y": Y})
    write_dataset_file("t_unsorted.h5", arrays={"t": np.array([10.0, 5.0])})
    write_dataset_file("t_negative.h5", arrays={"t": np.array([-5.0, 10.0])})
    write_dataset_file("t_zero.h5", arrays={"t": np.array([0.0, 10.0])})
    write_dataset_file("t_2d.h5", arrays={"t": np.array([[5.0, 10.0]])})
    write_dataset_file("nodes_duplicate.h5", arrays={"nodes": ["a", "b", "a"]})
    write_dataset_file("nodes_numeric.h5", arrays={"nodes": np.arange(N)})
    write_dataset_file("conditions_count.h5", arrays={"conditions": ["c0", "c1"]})
    write_dataset_file("mask_values.h5", arrays={"mask": np.full((M, T, N), 2, dtype=np.uint8)})
    write_dataset_file("truth_W_nan.h5", arrays={"truth/W": np.full((N, N), np.nan)})
    write_dataset_file("Y_clean_shape.h5", arrays={"Y_clean": np.zeros((M, N))})
    write_dataset_file("kind_array.h5", attrs={"kind": np.array([1, 2])})
    write_dataset_file("mask_all_false.h5", arrays={"mask": np.zeros((M, T, N), dtype=np.uint8)})
    write_dataset_file("U_complex.h5", arrays={"U": a["U"] + 1j})
    write_dataset_file("other_good.h5", arrays={"Y": a["Y"] + 0.5})  # valid, other data than good.h5
    # -- results files for --resume
    write_fit_file("fit_good.h5")
    write_fit_file("fit_format_version_2.h5", lambda f: f.attrs.__setitem__("format_version", np.int64(2)))
    write_fit_file("fit_missing_history.h5", lambda f: f.__delitem__("history"))
    write_fit_file("fit_missing_checkpoint.h5", lambda f: f.__delitem__("checkpoint"))
    write_fit_file("fit_config_not_json.h5",
                   lambda f: (f.__delitem__("config"), f.create_dataset("config", data="{lr: 0.02")))
    write_fit_file("fit_format_version_text.h5", lambda f: f.attrs.__setitem__("format_version", "one"))
    truncate("fit_good.h5", "fit_truncated.h5")
    # -- results files whose parts do not fit together (export, report)
    write_fit_file("fit_W_shape.h5", lambda f: (f.__delitem__("params/best/W"),
                                                f.create_dataset("params/best/W", data=np.zeros((2, 2)))))
    write_fit_file("fit_nodes_count.h5", lambda f: (f.__delitem__("params/nodes"),
                                                    f.create_dataset("params/nodes", data=["a"], dtype=STR)))
    write_fit_file("fit_split_out_of_range.h5", lambda f: (f.__delitem__("split/test"),
                                                           f.create_dataset("split/test", data=np.array([999]))))
    write_fit_file("fit_metrics_not_mapping.h5", lambda f: f.create_dataset("metrics", data="[1, 2]"))
    write_fit_file("fit_W_nan.h5", lambda f: f["params/final/W"].__setitem__((0, 1), np.nan))
    sizes = {name: os.path.getsize(os.path.join(OUT, name)) for name in sorted(os.listdir(OUT))}
    json.dump(sizes, sys.stdout, indent=1)
    print(f"\n{len(sizes)} files, {sum(sizes.values())} bytes")


if __name__ == "__main__":
    main()
