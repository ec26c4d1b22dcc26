"""Dataset validation, subset, the HDF5 round trip and its refusals, and simulate.

Round trips are checked bitwise (array bytes). simulate is checked against scipy's DOP853 integration of the
model written out here, and for reproducibility exactly.
"""

import json
import os

import h5py
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from cellbox_nb.data.dataset import Dataset, read_dataset, simulate, write_dataset
from cellbox_nb.data.network import load_network
from cellbox_nb.errors import ConfigError, InputDataError


def make_dataset(M=4, T=3, n=5, seed=0, masked=True):
    rng = np.random.default_rng(seed)
    Y = rng.normal(size=(M, T, n))
    mask = None
    if masked:
        mask = rng.random((M, T, n)) > 0.2
        mask[0, 0, 0] = False
        Y[~mask] = np.nan
    return Dataset(U=rng.random((M, n)), t=np.cumsum(rng.random(T) + 0.1), Y=Y,
                   nodes=[f"node{i}" for i in range(n)], mask=mask, W_true=rng.normal(size=(n, n)),
                   alpha_true=rng.random(n), Y_clean=rng.normal(size=(M, T, n)),
                   meta={"network": "test", "noise": 0.01, "seed": seed, "nested": {"a": [1, 2]}})


def same_bytes(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_round_trip_is_bitwise(tmp_path):
    ds = make_dataset()
    path = tmp_path / "d.h5"
    write_dataset(path, ds)
    back = read_dataset(path)
    for name in ("U", "t", "Y", "W_true", "alpha_true", "Y_clean"):
        assert same_bytes(getattr(back, name), getattr(ds, name)), name
    assert same_bytes(back.mask, ds.mask)
    assert back.nodes == ds.nodes and back.conditions == ["c0000", "c0001", "c0002", "c0003"]
    assert back.meta == ds.meta
    assert os.listdir(tmp_path) == ["d.h5"]  # no temporary file left behind


def test_round_trip_minimal_and_all_observed(tmp_path):
    ds = Dataset(U=np.eye(2), t=[1.0, 2.0], Y=np.zeros((2, 2, 2)), nodes=["a", "b"], conditions=["x", "y"],
                 mask=np.ones((2, 2, 2), dtype=bool))
    write_dataset(tmp_path / "m.h5", ds)
    back = read_dataset(tmp_path / "m.h5")
    assert back.mask is None and back.W_true is None and back.alpha_true is None and back.Y_clean is None
    assert back.conditions == ["x", "y"] and back.meta == {}
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert f.attrs["kind"] == "cellbox-nb dataset" and int(f.attrs["format_version"]) == 1
        assert f["mask"].dtype == np.uint8 and f["mask"][()].all()
        assert "truth" not in f


def test_write_refuses_existing_file_and_overwrites_on_request(tmp_path):
    path = tmp_path / "d.h5"
    write_dataset(path, make_dataset(seed=1))
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="exists"):
        write_dataset(path, make_dataset(seed=2))
    assert path.read_bytes() == before
    write_dataset(path, make_dataset(seed=2), overwrite=True)
    assert same_bytes(read_dataset(path).U, make_dataset(seed=2).U)
    with pytest.raises(ConfigError, match="does not exist"):
        write_dataset(tmp_path / "no" / "d.h5", make_dataset())
    bad = make_dataset()
    bad.meta["x"] = object()
    with pytest.raises(InputDataError, match="JSON"):
        write_dataset(tmp_path / "e.h5", bad)


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "d.h5"
    write_dataset(path, make_dataset(seed=1))
    before = path.read_bytes()

    def boom(self):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Dataset, "observed", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_dataset(path, make_dataset(seed=2), overwrite=True)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["d.h5"]


@pytest.mark.parametrize("change, phrase", [
    (lambda d: d.update(U=np.ones(5)), "U must have shape"),
    (lambda d: d.update(t=np.ones((2, 2))), "t must have shape"),
    (lambda d: d.update(Y=np.zeros((4, 3, 4))), "Y has shape"),
    (lambda d: d.update(mask=np.ones((4, 3, 4), dtype=bool)), "mask has shape"),
    (lambda d: d.update(mask=np.full((4, 3, 5), 2)), "mask must be boolean"),
    (lambda d: d["U"].__setitem__((0, 0), np.inf), "U has 1 non-finite"),
    (lambda d: d["t"].__setitem__(0, np.nan), "t has 1 non-finite"),
    (lambda d: d.update(t=np.array([0.0, 1.0, 2.0])), "t must start after 0"),
    (lambda d: d.update(t=np.array([1.0, 2.0, 2.0])), "strictly increasing"),
    (lambda d: d["Y"].__setitem__((1, 2, 3), np.nan), "non-finite observed value(s), the first at condition 1"),
    (lambda d: d.update(nodes=["a", "b", "c", "d"]), "nodes has 4 entries"),
    (lambda d: d.update(nodes=["a", "b", "c", "d", "a"]), "nodes repeats 'a'"),
    (lambda d: d.update(conditions=["x", "y", "z", "x"]), "conditions repeats 'x'"),
    (lambda d: d.update(W_true=np.zeros((5, 4))), "W_true has shape"),
    (lambda d: d.update(alpha_true=np.array([1, 2, 3, 4, np.nan])), "alpha_true has 1 non-finite"),
    (lambda d: d.update(Y_clean=np.zeros((4, 3))), "Y_clean has shape"),
    (lambda d: d.update(U="abc"), "U must be an array of numbers"),
])
def test_dataset_validation(change, phrase):
    rng = np.random.default_rng(0)
    fields = dict(U=rng.random((4, 5)), t=np.array([1.0, 2.0, 3.0]), Y=rng.random((4, 3, 5)),
                  nodes=list("abcde"))
    change(fields)
    with pytest.raises(InputDataError) as err:
        Dataset(**fields)
    assert phrase in str(err.value)


def test_unobserved_entries_may_be_nan():
    ds = make_dataset(masked=True)
    assert np.isnan(ds.Y[0, 0, 0]) and not ds.mask[0, 0, 0]
    assert ds.observed().shape == ds.Y.shape
    assert make_dataset(masked=False).observed().all()


def test_subset():
    ds = make_dataset(M=6)
    sub = ds.subset([4, 1])
    assert (sub.M, sub.T, sub.n) == (2, ds.T, ds.n)
    assert sub.conditions == ["c0004", "c0001"]
    assert same_bytes(sub.U, ds.U[[4, 1]]) and same_bytes(sub.Y, ds.Y[[4, 1]])
    assert same_bytes(sub.mask, ds.mask[[4, 1]]) and same_bytes(sub.Y_clean, ds.Y_clean[[4, 1]])
    assert same_bytes(sub.W_true, ds.W_true) and same_bytes(sub.t, ds.t) and sub.nodes == ds.nodes
    assert sub.meta == ds.meta and sub.meta is not ds.meta
    sel = np.zeros(6, dtype=bool)
    sel[[0, 5]] = True
    assert ds.subset(sel).conditions == ["c0000", "c0005"]
    for bad in ([], [6], [-1], [1, 1], [0.5], np.ones(5, dtype=bool), [[0]]):
        with pytest.raises(ConfigError, match="idx"):
            ds.subset(bad)


# ---- read refusals ------------------------------------------------------------------------------------


def edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


READ_REFUSALS = {
    "wrong kind": (lambda f: f.attrs.__setitem__("kind", "something else"), "not a cellbox-nb dataset"),
    "no kind": (lambda f: f.attrs.__delitem__("kind"), "not a cellbox-nb dataset"),
    "no version": (lambda f: f.attrs.__delitem__("format_version"), "no format_version"),
    "version 2": (lambda f: f.attrs.__setitem__("format_version", 2), "format_version 2 is not supported"),
    "version text": (lambda f: f.attrs.__setitem__("format_version", "1"), "is not supported"),
    "bad meta": (lambda f: f.attrs.__setitem__("meta", "{not json"), "meta is not valid JSON"),
    "meta list": (lambda f: f.attrs.__setitem__("meta", "[1]"), "meta is not a JSON object"),
    "Y shape": (lambda f: (f.__delitem__("Y"), f.create_dataset("Y", data=np.zeros((4, 3, 2)))), "Y has shape"),
    "truth shape": (lambda f: (f.__delitem__("truth/W"), f.create_dataset("truth/W", data=np.zeros(3))),
                    "W_true has shape"),
    "nonfinite U": (lambda f: f["U"].__setitem__((0, 0), np.inf), "U has 1 non-finite"),
    "nonfinite Y": (lambda f: f["Y"].__setitem__((0, 1, 0), np.nan), "Y has"),
    "nonfinite clean": (lambda f: f["Y_clean"].__setitem__((0, 0, 0), np.nan), "Y_clean has 1 non-finite"),
    "nodes length": (lambda f: (f.__delitem__("nodes"), f.create_dataset("nodes", data=["a"],
                                                                         dtype=h5py.string_dtype())),
                     "nodes has 1 entries"),
    "nodes numeric": (lambda f: (f.__delitem__("nodes"), f.create_dataset("nodes", data=np.arange(5))),
                      "UTF-8 string"),
    "clean group": (lambda f: (f.__delitem__("Y_clean"), f.create_group("Y_clean")), "'Y_clean' is not a dataset"),
}
for _name in ("U", "t", "Y", "mask", "nodes", "conditions"):
    READ_REFUSALS[f"missing {_name}"] = ((lambda name: lambda f: f.__delitem__(name))(_name),
                                         f"missing dataset '{_name}'")


@pytest.mark.parametrize("case", list(READ_REFUSALS))
def test_read_refuses_bad_files(tmp_path, case):
    fn, phrase = READ_REFUSALS[case]
    ds = make_dataset(masked=False)
    ds.Y[0, 1, 0] = 0.0
    path = tmp_path / "d.h5"
    write_dataset(path, ds)
    edit(path, fn)
    with pytest.raises(InputDataError) as err:
        read_dataset(path)
    msg = str(err.value)
    assert phrase in msg and str(path) in msg and "\n" not in msg


def test_read_refuses_missing_and_non_hdf5(tmp_path):
    with pytest.raises(InputDataError, match="not found"):
        read_dataset(tmp_path / "none.h5")
    text = tmp_path / "text.h5"
    text.write_text("hello\n")
    with pytest.raises(InputDataError, match="not an HDF5 file"):
        read_dataset(text)
    with pytest.raises(InputDataError, match="not found"):
        read_dataset(tmp_path)


# ---- simulate -----------------------------------------------------------------------------------------


def reference_responses(W, alpha, U, t):
    """x(t) of dx/dt = alpha*tanh(W x - u) - x, x(0) = 0, by scipy DOP853 at rtol = atol = 1e-10."""
    out = np.empty((U.shape[0], t.size, W.shape[0]))
    for c, u in enumerate(U):
        sol = solve_ivp(lambda _, x: alpha * np.tanh(W @ x - u) - x, (0.0, t[-1]), np.zeros(W.shape[0]),
                        method="DOP853", t_eval=t, rtol=1e-10, atol=1e-10)
        assert sol.success
        out[c] = sol.y.T
    return out


def test_simulate_clean_responses_match_scipy():
    net = load_network("LI")
    ds = simulate(net, conditions=4, times=5, noise=0.01, seed=3)
    assert ds.U.shape == (4, 7) and ds.Y.shape == (4, 5, 7) and ds.mask is None
    np.testing.assert_array_equal(ds.t, [4.0, 8.0, 12.0, 16.0, 20.0])
    nz = ds.U[ds.U != 0]
    assert np.all((nz > 0) & (nz <= 1)) and np.all(np.count_nonzero(ds.U, axis=1) <= 2)
    ref = reference_responses(net.W, net.alpha, ds.U, ds.t)
    np.testing.assert_allclose(ds.Y_clean, ref, rtol=0, atol=1e-7)
    assert ds.nodes == net.nodes
    assert same_bytes(ds.W_true, net.W) and same_bytes(ds.alpha_true, net.alpha)
    for key, value in (("network", "LI"), ("noise", 0.01), ("seed", 3), ("tfinal", 20.0), ("n", 7)):
        assert ds.meta[key] == value
    json.dumps(ds.meta)


def test_simulate_is_seeded_and_noise_has_its_own_stream():
    a = simulate("CY", conditions=40, times=5, noise=0.05, seed=11)
    b = simulate("CY", conditions=40, times=5, noise=0.05, seed=11)
    for name in ("U", "Y", "Y_clean"):
        assert same_bytes(getattr(a, name), getattr(b, name))
    c = simulate("CY", conditions=40, times=5, noise=0.0, seed=11)
    assert same_bytes(c.U, a.U) and same_bytes(c.Y_clean, a.Y_clean) and same_bytes(c.Y, c.Y_clean)
    d = simulate("CY", conditions=40, times=5, noise=0.05, seed=12)
    assert not np.array_equal(d.U, a.U)
    resid = (a.Y - a.Y_clean).ravel()  # 40*5*6 = 1200 draws: sd within 10 %, mean within 4 standard errors
    assert abs(resid.std() / 0.05 - 1) < 0.1
    assert abs(resid.mean()) < 4 * 0.05 / np.sqrt(resid.size)


def test_simulate_random_network_and_argument_checks():
    ds = simulate("random:12", conditions=5, times=3, seed=2, tfinal=10.0)
    np.testing.assert_array_equal(ds.W_true, load_network("random:12", seed=2).W)
    assert ds.t[-1] == 10.0
    for kwargs, word in (({"conditions": 0, "times": 5}, "conditions"), ({"conditions": 5, "times": 0}, "times"),
                         ({"conditions": 5, "times": 5, "noise": -1.0}, "noise"),
                         ({"conditions": 5, "times": 5, "max_targets": 8}, "max_targets"),
                         ({"conditions": 5, "times": 5, "tfinal": 0.0}, "tfinal"),
                         ({"conditions": 5, "times": 5, "method": "grid"}, "method")):
        with pytest.raises(ConfigError, match=word):
            simulate("LI", **kwargs)


def test_simulated_dataset_round_trips(tmp_path):
    ds = simulate("mCAD", conditions=6, times=4, max_targets=1, seed=0)
    write_dataset(tmp_path / "s.h5", ds)
    back = read_dataset(tmp_path / "s.h5")
    for name in ("U", "t", "Y", "Y_clean", "W_true", "alpha_true"):
        assert same_bytes(getattr(back, name), getattr(ds, name)), name
    assert back.meta == ds.meta and back.nodes == ds.nodes
