"""Perturbation-response datasets: the in-memory ``Dataset``, its HDF5 file, and ``simulate``.

HDF5 layout (format_version 1)
------------------------------
Root attributes:

- ``kind``: the string ``"cellbox-nb dataset"``.
- ``format_version``: the integer 1. Readers refuse any other value.
- ``meta``: a JSON object as a string (network name, noise, seed, tfinal, ...; free-form).

Datasets (M conditions, T time points, n nodes; all at the root unless a group is named):

- ``U``          float64 (M, n)     perturbation of each condition (model: dx/dt = alpha*tanh(W x - u) - x).
- ``t``          float64 (T,)       observation times, strictly increasing, t[0] > 0.
- ``Y``          float64 (M, T, n)  measured responses x(t); entries with mask 0 may be NaN.
- ``mask``       uint8 (M, T, n)    1 = observed, 0 = missing. An all-ones mask reads back as ``mask=None``.
- ``nodes``      UTF-8 strings (n,) node names, the column order of U and Y.
- ``conditions`` UTF-8 strings (M,) condition names.
- ``Y_clean``    float64 (M, T, n)  optional: noise-free responses (simulated data).
- ``truth/W``    float64 (n, n)     optional: ground-truth W, W[i, j] = effect of node j on node i.
- ``truth/alpha`` float64 (n,)      optional: ground-truth gains.

Files are written to a temporary file in the destination folder and renamed into place (``os.replace``), so a
reader never sees a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import ConfigError, InputDataError, NumericalError
from ._args import check_float, check_int, seed_sequence
from .design import design_perturbations, observation_times
from .h5atomic import atomic_h5_write, open_for_reading
from .network import Network, load_network

KIND = "cellbox-nb dataset"
FORMAT_VERSION = 1
Y_MAX = 1e100  # observed responses beyond this are refused: their squared errors near float64's range (1e308)
_ARRAYS = ("U", "t", "Y", "mask", "nodes", "conditions")  # datasets every file has


def condition_names(M: int) -> list[str]:
    """Default condition names ``c0000``, ``c0001``, ... for M conditions."""
    return [f"c{i:04d}" for i in range(M)]


@dataclass
class Dataset:
    """Perturbation conditions, observation times and responses, with optional ground truth.

    Parameters
    ----------
    U : ndarray of float64, shape (M, n)
        Perturbation of each condition (finite).
    t : ndarray of float64, shape (T,)
        Observation times: finite, strictly increasing, t[0] > 0.
    Y : ndarray of float64, shape (M, T, n)
        Responses; finite wherever observed.
    nodes : list of str, length n
        Unique node names.
    mask : ndarray of bool, shape (M, T, n), optional
        True = observed. None means every entry is observed.
    conditions : list of str, length M, optional
        Unique condition names; default ``c0000``, ``c0001``, ...
    W_true : ndarray of float64, shape (n, n), optional
        Ground-truth W (W[i, j] = effect of node j on node i).
    alpha_true : ndarray of float64, shape (n,), optional
        Ground-truth gains.
    Y_clean : ndarray of float64, shape (M, T, n), optional
        Noise-free responses.
    meta : dict
        JSON-serialisable description (network, noise, seed, tfinal, ...).

    Raises
    ------
    InputDataError
        On construction, if a shape, name list or value is invalid (see :meth:`validate`).
    """

    U: np.ndarray
    t: np.ndarray
    Y: np.ndarray
    nodes: list[str]
    mask: np.ndarray | None = None
    conditions: list[str] | None = None
    W_true: np.ndarray | None = None
    alpha_true: np.ndarray | None = None
    Y_clean: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.U = _float_array("U", self.U)
        self.t = _float_array("t", self.t)
        self.Y = _float_array("Y", self.Y)
        self.nodes = [str(v) for v in self.nodes]
        if self.conditions is None and self.U.ndim == 2:
            self.conditions = condition_names(self.U.shape[0])
        self.conditions = [str(v) for v in (self.conditions or [])]
        self.mask = None if self.mask is None else _bool_array("mask", self.mask)
        for name in ("W_true", "alpha_true", "Y_clean"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, _float_array(name, value))
        self.meta = dict(self.meta)
        self.validate()

    @property
    def M(self) -> int:
        """Number of conditions."""
        return self.U.shape[0]

    @property
    def T(self) -> int:
        """Number of observation times."""
        return self.t.shape[0]

    @property
    def n(self) -> int:
        """Number of nodes."""
        return self.U.shape[1]

    def observed(self) -> np.ndarray:
        """The mask as a bool array of shape (M, T, n) (all True when ``mask`` is None)."""
        return np.ones(self.Y.shape, dtype=bool) if self.mask is None else self.mask

    def validate(self) -> None:
        """Check shapes, names and values.

        Raises
        ------
        InputDataError
            One line naming the offending field: wrong number of dimensions or shape, non-finite U, t,
            W_true, alpha_true or Y_clean, t not strictly increasing or t[0] <= 0, non-finite Y at an
            observed entry, wrong-length or repeated node/condition names.
        """
        if self.U.ndim != 2 or 0 in self.U.shape:
            raise InputDataError(f"U must have shape (M, n) with M, n >= 1, got {self.U.shape}")
        if self.t.ndim != 1 or self.t.size == 0:
            raise InputDataError(f"t must have shape (T,) with T >= 1, got {self.t.shape}")
        M, n = self.U.shape
        shape = (M, self.t.size, n)
        _check_shape("Y", self.Y, shape)
        _check_finite("U", self.U)
        _check_finite("t", self.t)
        if self.t[0] <= 0:
            raise InputDataError(f"t must start after 0 (x(0) = 0 is the initial state), got t[0] = {self.t[0]:g}")
        steps = np.diff(self.t)
        if np.any(steps <= 0):
            k = int(np.argmax(steps <= 0))
            raise InputDataError(f"t must be strictly increasing: t[{k}] = {self.t[k]:g}, "
                                 f"t[{k + 1}] = {self.t[k + 1]:g}")
        if self.mask is not None:
            _check_shape("mask", self.mask, shape)
        bad = ~np.isfinite(self.Y) & self.observed()
        if bad.any():
            c, k, i = np.argwhere(bad)[0]
            raise InputDataError(f"Y has {int(bad.sum())} non-finite observed value(s), the first at "
                                 f"condition {c}, time {k}, node {i}")
        huge = (np.abs(np.where(self.observed(), self.Y, 0.0)) > Y_MAX)
        if huge.any():  # the losses (sums of |x - y| or (x - y)^2) of such data overflow float64
            c, k, i = np.argwhere(huge)[0]
            raise InputDataError(f"Y has {int(huge.sum())} observed value(s) beyond +-{Y_MAX:g} (the first at "
                                 f"condition {c}, time {k}, node {i}: {self.Y[c, k, i]:g}); the model's responses "
                                 f"are O(1), so are the data on the scale of responses (e.g. log fold changes)?")
        _check_names("nodes", self.nodes, n)
        _check_names("conditions", self.conditions, M)
        for name, expected in (("W_true", (n, n)), ("alpha_true", (n,)), ("Y_clean", shape)):
            value = getattr(self, name)
            if value is not None:
                _check_shape(name, value, expected)
                _check_finite(name, value)

    def subset(self, idx) -> "Dataset":
        """The dataset restricted to some conditions.

        Parameters
        ----------
        idx : array_like of int, shape (K,), or of bool, shape (M,)
            Conditions to keep (indices, in the order given, or a boolean selector).

        Returns
        -------
        Dataset
            With U (K, n), Y, mask, Y_clean (K, T, n) and the K condition names; t, nodes, truth and meta are
            copied unchanged.

        Raises
        ------
        ConfigError
            If ``idx`` is empty, not integer/boolean, out of range, repeats a condition, or is a boolean
            selector of the wrong length.
        """
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if idx.shape != (self.M,):
                raise ConfigError(f"idx: a boolean selector needs shape ({self.M},), got {idx.shape}")
            idx = np.flatnonzero(idx)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ConfigError("idx must be a non-empty 1-D array of condition indices or a boolean selector")
        if idx.min() < 0 or idx.max() >= self.M:
            raise ConfigError(f"idx: condition indices must lie in 0..{self.M - 1}")
        if np.unique(idx).size != idx.size:
            raise ConfigError("idx repeats a condition")
        return replace(
            self, U=self.U[idx], Y=self.Y[idx], mask=None if self.mask is None else self.mask[idx],
            conditions=[self.conditions[i] for i in idx],
            Y_clean=None if self.Y_clean is None else self.Y_clean[idx], meta=dict(self.meta))


def data_digest(ds: Dataset) -> str:
    """A digest of what a fit reads from a dataset: shapes, node and condition names, U, t, the observed Y and the
    mask (equal digests: the same data; a resumed fit and the ranks of an MPI fit compare them)."""
    h = hashlib.sha256()
    obs = ds.observed()
    h.update(json.dumps([list(ds.U.shape), ds.T, list(ds.nodes), list(ds.conditions)]).encode())
    for arr in (ds.U, ds.t, np.where(obs, ds.Y, 0.0), obs):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _float_array(name: str, value) -> np.ndarray:
    try:
        raw = np.asarray(value)
        complex_ = raw.dtype.kind == "c"
        arr = None if complex_ else np.array(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputDataError(f"{name} must be an array of numbers") from None
    if complex_:  # the imaginary part would be dropped with only a warning
        raise InputDataError(f"{name} must be an array of real numbers, got dtype {raw.dtype}")
    return arr


def _bool_array(name: str, value) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):  # ragged nesting
        raise InputDataError(f"{name} must be an array of booleans (rows of equal length)") from None
    if arr.dtype == bool:
        return arr.copy()
    if np.issubdtype(arr.dtype, np.integer) and np.isin(arr, (0, 1)).all():
        return arr.astype(bool)
    raise InputDataError(f"{name} must be boolean (or 0/1 integers), got dtype {arr.dtype}")


def _check_shape(name: str, arr: np.ndarray, expected: tuple) -> None:
    if arr.shape != expected:
        raise InputDataError(f"{name} has shape {arr.shape}, expected {expected} from U (M, n) and t (T,)")


def _check_finite(name: str, arr: np.ndarray) -> None:
    if not np.isfinite(arr).all():
        raise InputDataError(f"{name} has {int((~np.isfinite(arr)).sum())} non-finite value(s)")


def _check_names(name: str, names: list[str], expected: int) -> None:
    if len(names) != expected:
        raise InputDataError(f"{name} has {len(names)} entries, expected {expected}")
    if len(set(names)) != len(names):
        dup = next(v for v in names if names.count(v) > 1)
        raise InputDataError(f"{name} repeats {dup!r}")


def write_dataset(path, ds: Dataset, *, overwrite: bool = False) -> None:
    """Write a dataset to an HDF5 file (layout in the module docstring), atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file; its folder must exist.
    ds : Dataset
    overwrite : bool
        Replace an existing file; otherwise an existing file is refused.

    Raises
    ------
    ConfigError
        The file exists and ``overwrite`` is False, or its folder does not exist.
    InputDataError
        ``ds.meta`` is not JSON-serialisable.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConfigError(f"cannot write '{path}': folder '{folder}' does not exist")
    if os.path.exists(path) and not overwrite:
        raise ConfigError(f"'{path}' exists; pass overwrite=True (--overwrite) to replace it")
    try:
        meta = json.dumps(ds.meta, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InputDataError(f"dataset meta is not JSON-serialisable: {exc}") from None
    with atomic_h5_write(path) as f:
        f.attrs["kind"] = KIND
        f.attrs["format_version"] = np.int64(FORMAT_VERSION)
        f.attrs["meta"] = meta
        write_arrays(f, ds)


def write_arrays(group, ds: Dataset) -> None:
    """Write the arrays of ``ds`` into an open HDF5 group (the layout of the module docstring)."""
    import h5py

    group.create_dataset("U", data=ds.U)
    group.create_dataset("t", data=ds.t)
    group.create_dataset("Y", data=ds.Y)
    group.create_dataset("mask", data=ds.observed().astype(np.uint8))
    group.create_dataset("nodes", data=ds.nodes, dtype=h5py.string_dtype())
    group.create_dataset("conditions", data=ds.conditions, dtype=h5py.string_dtype())
    if ds.Y_clean is not None:
        group.create_dataset("Y_clean", data=ds.Y_clean)
    if ds.W_true is not None:
        group.create_dataset("truth/W", data=ds.W_true)
    if ds.alpha_true is not None:
        group.create_dataset("truth/alpha", data=ds.alpha_true)


def read_dataset(path) -> Dataset:
    """Read a dataset written by :func:`write_dataset`.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Dataset
        ``mask`` is None when the file's mask is all ones.

    Raises
    ------
    InputDataError
        One line naming the file: missing, not HDF5, not a cellbox-nb dataset, missing or unsupported
        format_version, a missing dataset, bad meta JSON, or a Dataset validation failure (shapes,
        non-finite values, names).
    """
    f, fail = open_for_reading(path, "dataset file")
    try:
        return _read_open_dataset(f, fail)
    except (OSError, KeyError) as exc:  # damage below the superblock: bad checksum, address past the end
        fail(f"damaged HDF5 content ({' '.join(str(exc).split())})")


def _read_open_dataset(f, fail) -> Dataset:
    """The checks of read_dataset on the open file, then read_arrays; closes the file."""
    with f:
        kind = f.attrs.get("kind")
        if isinstance(kind, bytes):
            kind = kind.decode("utf-8", "replace")
        if not isinstance(kind, str) or kind != KIND:  # (an array attribute would make != an array)
            fail(f"not a cellbox-nb dataset (attribute kind is {kind!r}, expected {KIND!r})")
        version = f.attrs.get("format_version")
        if version is None:
            fail("no format_version attribute")
        if not (np.ndim(version) == 0 and np.issubdtype(np.asarray(version).dtype, np.integer)
                and int(version) == FORMAT_VERSION):
            shown = version.tolist() if isinstance(version, np.generic | np.ndarray) else version
            fail(f"format_version {shown!r} is not supported (this version reads {FORMAT_VERSION})")
        try:
            meta = json.loads(f.attrs.get("meta", "{}"))
        except (TypeError, ValueError):
            fail("attribute meta is not valid JSON")
        if not isinstance(meta, dict):
            fail("attribute meta is not a JSON object")
        return read_arrays(f, fail, meta)


def read_arrays(group, fail, meta=None) -> Dataset:
    """Read a Dataset from an open HDF5 group written by :func:`write_arrays`.

    ``fail(problem)`` is called (and must raise) with a one-line problem description.
    """
    import h5py

    for name in _ARRAYS:
        if not isinstance(group.get(name), h5py.Dataset):
            fail(f"missing dataset '{name}'")

    def optional(name):
        obj = group.get(name)
        if obj is None:
            return None
        if not isinstance(obj, h5py.Dataset):
            fail(f"'{name}' is not a dataset")
        return obj[()]

    try:
        nodes = list(group["nodes"].asstr()[()])
        conditions = list(group["conditions"].asstr()[()])
    except (TypeError, ValueError, UnicodeDecodeError):
        fail("nodes and conditions must be UTF-8 string datasets")
    mask = group["mask"][()]
    W_true, alpha_true, Y_clean = optional("truth/W"), optional("truth/alpha"), optional("Y_clean")
    try:
        return Dataset(U=group["U"][()], t=group["t"][()], Y=group["Y"][()], nodes=nodes,
                       mask=None if mask.shape == group["Y"].shape and np.all(mask == 1) else mask,
                       conditions=conditions, W_true=W_true, alpha_true=alpha_true, Y_clean=Y_clean,
                       meta=meta or {})
    except InputDataError as exc:
        fail(str(exc))


def simulate(network, *, conditions: int, times: int, tfinal: float = 20.0, noise: float = 0.01,
             max_targets: int = 2, seed=0, method: str = "lhs", rtol: float = 1e-8,
             atol: float = 1e-10) -> Dataset:
    """Simulate a seed-paper style perturbation dataset from a ground-truth network.

    The perturbations come from :func:`design_perturbations` with levels in (0, 1]; the responses are
    x(t_k) of dx/dt = alpha * tanh(W x - u) - x, x(0) = 0, at t_k = tfinal * k / T, computed by
    :func:`cellbox_nb.api.solve`; Y adds independent Gaussian noise of standard deviation ``noise`` to every
    entry. The design and the noise use two streams spawned from ``seed`` (``np.random.SeedSequence``), so
    changing ``noise`` leaves U unchanged.

    Parameters
    ----------
    network : Network or str
        The truth, or a spec for :func:`load_network` (``random:N`` then uses ``seed``).
    conditions : int
        Number of conditions M (>= 1).
    times : int
        Number of observation times T (>= 1).
    tfinal : float
        Last observation time (> 0).
    noise : float
        Standard deviation of the additive Gaussian noise (>= 0).
    max_targets : int
        Most nodes perturbed per condition.
    seed : int or numpy.random.SeedSequence
        Seed (>= 0); the same arguments give the same dataset.
    method : {"lhs", "uniform"}
        Perturbation levels (see :func:`design_perturbations`).
    rtol, atol : float
        Solver tolerances for the clean responses.

    Returns
    -------
    Dataset
        U (M, n), t (T,), Y and Y_clean (M, T, n), mask None, the network's node names, W_true and
        alpha_true, and meta with the network name and every argument above.

    Raises
    ------
    ConfigError
        An invalid argument. NumericalError: the solve failed or gave non-finite responses.
    """
    if not isinstance(network, Network):
        network = load_network(network, seed=seed)
    conditions = check_int("conditions", conditions, minimum=1)
    times = check_int("times", times, minimum=1)
    noise = check_float("noise", noise, minimum=0.0)
    design_stream, noise_stream = seed_sequence(seed).spawn(2)
    U = design_perturbations(network.n, conditions, max_targets=max_targets, low=0.0, high=1.0,
                             method=method, seed=design_stream)
    t = observation_times(tfinal, times)

    from ..api import solve

    Y_clean = np.asarray(solve(network.W, network.alpha, U, t, rtol=rtol, atol=atol), dtype=np.float64)
    if not np.isfinite(Y_clean).all():
        raise NumericalError(f"simulate: the responses of network {network.name} are not finite")
    Y = Y_clean + noise * np.random.default_rng(noise_stream).standard_normal(Y_clean.shape)
    meta = {
        "source": "cellbox_nb.data.dataset.simulate", "network": network.name, "network_kind": network.kind,
        "n": network.n, "conditions": conditions, "times": times, "tfinal": float(t[-1]),
        "noise": noise, "noise_model": "additive gaussian", "max_targets": max_targets, "method": method,
        "seed": None if isinstance(seed, np.random.SeedSequence) else int(seed),
        "rtol": float(rtol), "atol": float(atol),
    }
    return Dataset(U=U, t=t, Y=Y, nodes=list(network.nodes), W_true=network.W.copy(),
                   alpha_true=network.alpha.copy(), Y_clean=Y_clean, meta=meta)
