"""Report figures and pages (cellbox_nb.report), CSV export (cellbox_nb.export), and their CLI commands.

One small fit (LI, 12 conditions x 5 times, 50 epochs) is trained once per module. The report tests check the
files themselves: each PNG by its signature and the width/height of its IHDR chunk, report.md and index.html by
their references to every figure. The export tests read the CSV files back with the csv module and compare with
read_fit exactly. The report tests skip when matplotlib is not installed (the ``plot`` extra).
"""

import csv
import json
import os
import struct
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from cellbox_nb._cli.main import cli
from cellbox_nb.data.dataset import simulate
from cellbox_nb.errors import ConfigError, InputDataError
from cellbox_nb.export import export_csv
from cellbox_nb.fit import metrics as mt
from cellbox_nb.fit.config import resolve
from cellbox_nb.fit.store import HISTORY_COLUMNS, read_fit
from cellbox_nb.fit.train import train

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fit_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("fit") / "fit.h5"
    train(simulate("LI", conditions=12, times=5, seed=0), resolve({"epochs": 50}), str(path))
    return str(path)


@pytest.fixture(scope="module")
def fit(fit_path):
    return read_fit(fit_path)


def needs_matplotlib():
    pytest.importorskip("matplotlib")


def png_size(path):
    """(width, height) of a PNG file; fails unless the file starts with the signature and an IHDR chunk."""
    with open(path, "rb") as fh:
        head = fh.read(33)
    assert head[:8] == PNG_SIGNATURE, f"{path}: not a PNG file"
    length, kind = struct.unpack(">I4s", head[8:16])
    assert kind == b"IHDR" and length == 13, f"{path}: first chunk is {kind!r}"
    return struct.unpack(">II", head[16:24])


def expected_figures(fit, conditions):
    names = ["W_heatmap.png"] + [f"trajectory_{c:04d}.png" for c in conditions]
    return names + ["scatter.png", "loss.png", "edges_roc_pr.png"]


def check_report_folder(out, files, figures):
    assert list(files) == figures + ["report.md", "index.html"]
    for name in figures:
        path = os.path.join(out, name)
        assert files[name] == path and os.path.isfile(path)
        width, height = png_size(path)
        assert width >= 300 and height >= 300, (name, width, height)
        assert os.path.getsize(path) > 5000, name
    md = open(os.path.join(out, "report.md"), encoding="utf-8").read()
    page = open(os.path.join(out, "index.html"), encoding="utf-8").read()
    for name in figures:
        assert f"]({name})" in md, name
        assert f'<img src="{name}"' in page, name
    return md, page


# -- report ---------------------------------------------------------------------------------------------------------

def test_report_default_writes_every_figure_and_both_pages(fit_path, fit, tmp_path):
    needs_matplotlib()
    from cellbox_nb.report import make_report

    out = str(tmp_path / "report")  # created by make_report
    files = make_report(fit_path, out)
    test = [int(c) for c in np.sort(fit["split"][2])[:3]]
    assert len(test) >= 1
    md, page = check_report_folder(out, files, expected_figures(fit, test))
    assert sorted(os.listdir(out)) == sorted(files)
    # the metrics table and the config on both pages
    for text in (md, page):
        assert "pearson_W" in text and "auroc" in text and '"epochs": 50' in text
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


def test_report_chosen_conditions_and_names(fit_path, fit, tmp_path):
    needs_matplotlib()
    from cellbox_nb.report import make_report

    names = fit["dataset"].conditions
    files = make_report(fit_path, tmp_path, conditions=[0, names[5], 2])
    check_report_folder(str(tmp_path), files, expected_figures(fit, [0, 5, 2]))
    # a second report into the folder with other conditions: the first one's trajectories go (they stayed beside
    # the new pages, which do not show them); a file of the user's stays
    (tmp_path / "notes.txt").write_text("mine\n")
    files = make_report(fit_path, tmp_path, conditions=[1])
    check_report_folder(str(tmp_path), files, expected_figures(fit, [1]))
    assert sorted(os.listdir(tmp_path)) == sorted(list(files) + ["notes.txt"])


@pytest.mark.parametrize("bad", [[12], [-1], ["no-such-condition"], []])
def test_report_refuses_unknown_conditions(fit_path, tmp_path, bad):
    needs_matplotlib()
    from cellbox_nb.report import make_report

    with pytest.raises(ConfigError, match="conditions"):
        make_report(fit_path, tmp_path / "r", conditions=bad)


def test_report_is_reproducible_byte_for_byte(fit_path, tmp_path):
    needs_matplotlib()
    from cellbox_nb.report import make_report

    a = make_report(fit_path, tmp_path / "a")
    b = make_report(fit_path, tmp_path / "b")
    for name in a:
        with open(a[name], "rb") as fa, open(b[name], "rb") as fb:
            assert fa.read() == fb.read(), name


def test_report_does_not_touch_pyplot_or_the_backend(fit_path, tmp_path):
    needs_matplotlib()
    import matplotlib

    from cellbox_nb.report import make_report

    backend = matplotlib.rcParams._get_backend_or_none()
    had_pyplot = "matplotlib.pyplot" in sys.modules
    make_report(fit_path, tmp_path)
    assert matplotlib.rcParams._get_backend_or_none() == backend
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot


def test_drawn_curves_have_the_metric_areas():
    """The plotted ROC (trapezoids) and PR (steps) curves enclose exactly AUROC and AUPR of fit.metrics."""
    from cellbox_nb.report import _curves

    rng = np.random.default_rng(3)
    scores = np.round(rng.random(300), 1)  # many ties
    labels = rng.random(300) < 0.2
    fpr, tpr, recall, precision = _curves(scores, labels)
    assert np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2) == pytest.approx(mt.auroc(scores, labels), abs=1e-12)
    assert np.sum(np.diff(recall) * precision[1:]) == pytest.approx(mt.aupr(scores, labels), abs=1e-12)
    assert recall[-1] == 1.0 and fpr[-1] == 1.0 and tpr[-1] == 1.0


def test_report_without_matplotlib_is_a_config_error(fit_path, tmp_path, monkeypatch):
    from cellbox_nb.report import make_report

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    with pytest.raises(ConfigError) as info:
        make_report(fit_path, tmp_path)
    assert str(info.value) == "the report needs matplotlib: pip install 'cellbox-nb[plot]'"
    assert os.listdir(tmp_path) == []


def test_report_bad_file_is_input_data_error(tmp_path):
    needs_matplotlib()
    from cellbox_nb.report import make_report

    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    with pytest.raises(InputDataError, match="not an HDF5 file"):
        make_report(bad, tmp_path / "r")


# -- export ---------------------------------------------------------------------------------------------------------

def read_rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


@pytest.mark.parametrize("which", ["best", "final"])
def test_export_round_trips_parameters_exactly(fit_path, fit, tmp_path, which):
    files = export_csv(fit_path, tmp_path, which=which)
    names = ["W.csv", "alpha.csv", "d.csv", "predictions.csv", "metrics.json", "history.csv"]
    assert files == [os.path.join(str(tmp_path), n) for n in names]
    nodes = fit["nodes"]
    params = fit[which]

    rows = read_rows(tmp_path / "W.csv")
    assert rows[0] == [""] + nodes
    assert [r[0] for r in rows[1:]] == nodes
    W = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    assert W.shape == params["W"].shape and np.array_equal(W, params["W"])
    for key in ("alpha", "d"):
        rows = read_rows(tmp_path / f"{key}.csv")
        assert rows[0] == ["node", "value"] and [r[0] for r in rows[1:]] == nodes
        assert np.array_equal(np.array([float(r[1]) for r in rows[1:]]), params[key])

    metrics = json.load(open(tmp_path / "metrics.json"))
    assert metrics.pop("params") == which
    if which == "best":  # (final: recomputed for the final parameters, test_export_final_predictions_...)
        assert metrics == fit["metrics"]
    else:
        assert set(metrics) == set(fit["metrics"]) and metrics["epochs"] == fit["metrics"]["epochs"]

    rows = read_rows(tmp_path / "history.csv")
    assert rows[0] == list(HISTORY_COLUMNS) and len(rows) - 1 == len(fit["history"]["epoch"]) == 50
    for j, col in enumerate(HISTORY_COLUMNS):
        assert np.array_equal(np.array([float(r[j]) for r in rows[1:]]), fit["history"][col]), col


def test_export_predictions_long_format(fit_path, fit, tmp_path):
    export_csv(fit_path, tmp_path)
    ds = fit["dataset"]
    rows = read_rows(tmp_path / "predictions.csv")
    assert rows[0] == ["condition", "split", "time", "node", "predicted", "measured", "observed"]
    body = rows[1:]
    assert len(body) == ds.M * ds.T * ds.n == 12 * 5 * 7
    pred = np.array([float(r[4]) for r in body]).reshape(ds.M, ds.T, ds.n)
    meas = np.array([float(r[5]) for r in body]).reshape(ds.M, ds.T, ds.n)
    assert np.array_equal(pred, fit["predictions"]) and np.array_equal(meas, ds.Y)
    assert {r[6] for r in body} == {"1"}
    assert [r[0] for r in body[::ds.T * ds.n]] == ds.conditions
    assert [float(r[2]) for r in body[:ds.T * ds.n:ds.n]] == list(ds.t)
    assert [r[3] for r in body[:ds.n]] == fit["nodes"]
    split_of = {}
    for name, idx in zip(("train", "val", "test"), fit["split"]):
        split_of.update({ds.conditions[int(i)]: name for i in idx})
    assert all(r[1] == split_of[r[0]] for r in body)


def test_export_final_predictions_use_the_final_parameters(fit_path, fit, tmp_path):
    from cellbox_nb import solve

    export_csv(fit_path, tmp_path, which="final")
    ds = fit["dataset"]
    pred = np.array([float(r[4]) for r in read_rows(tmp_path / "predictions.csv")[1:]]).reshape(ds.Y.shape)
    p = fit["final"]
    cfg = fit["config"]
    X = solve(p["W"], p["alpha"], ds.U, ds.t, decay=p["d"], rtol=cfg["rtol"], atol=cfg["atol"])
    assert np.array_equal(pred, X)
    # metrics.json is about those parameters too (it held the best parameters' metrics, labelled final): the
    # test MAE by hand from X against the clean responses, the Pearson r of W with scipy
    from scipy import stats

    m = json.loads((tmp_path / "metrics.json").read_text())
    test = np.asarray(fit["split"][2])
    assert m["params"] == "final" and m["epochs"] == fit["metrics"]["epochs"]
    assert m["mae_test"] == pytest.approx(np.mean(np.abs(X[test] - ds.Y_clean[test])), rel=1e-12)
    assert m["pearson_W"] == pytest.approx(stats.pearsonr(p["W"].ravel(), ds.W_true.ravel()).statistic, abs=1e-12)
    assert m["mae_test"] != fit["metrics"]["mae_test"]  # (the best epoch is not the last one in this fit)


def test_export_refuses_bad_which(fit_path, tmp_path):
    with pytest.raises(ConfigError, match="which"):
        export_csv(fit_path, tmp_path, which="last")


# -- command line ---------------------------------------------------------------------------------------------------

def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_report_and_export_exit_0(fit_path, fit, tmp_path):
    needs_matplotlib()
    res = invoke("report", fit_path, "--out", tmp_path / "r", "--conditions", "0,3", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    check_report_folder(str(tmp_path / "r"), out["files"], expected_figures(fit, [0, 3]))

    res = invoke("export", fit_path, "--csv", tmp_path / "c", "--which", "final", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["which"] == "final" and [os.path.basename(p) for p in out["files"]] == [
        "W.csv", "alpha.csv", "d.csv", "predictions.csv", "metrics.json", "history.csv"]
    assert all(os.path.isfile(p) for p in out["files"])

    res = invoke("export", fit_path, "--csv", tmp_path / "c2")  # human mode: one line per file on stderr
    assert res.exit_code == 0 and res.stdout == "" and len(res.stderr.splitlines()) == 6


@pytest.mark.parametrize("command", ["report", "export"])
@pytest.mark.parametrize("content", [b"this is not an HDF5 file\n", None])
def test_cli_bad_fit_file_exit_3_one_line(tmp_path, command, content):
    path = tmp_path / "bad.h5"
    if content is not None:
        path.write_bytes(content)
    flag = "--out" if command == "report" else "--csv"
    res = invoke(command, path, flag, tmp_path / "o")
    assert res.exit_code == 3, res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: results file"), res.stderr
    assert res.stdout == ""


@pytest.mark.parametrize("value", ["0,x", "0,99", ","])
def test_cli_report_bad_conditions_exit_2(fit_path, tmp_path, value):
    needs_matplotlib()
    res = invoke("report", fit_path, "--out", tmp_path / "r", "--conditions", value)
    assert res.exit_code == 2, res.output
    assert len(res.stderr.splitlines()) == 1 and "conditions" in res.stderr


def test_loss_figure_without_epochs_draws_no_empty_legend(fit):
    """A history with no finite loss and no best epoch: the figure says so, and no legend is asked for (matplotlib
    printed 'No artists with labels found to put in legend' on stderr from report.py)."""
    needs_matplotlib()
    import warnings

    from matplotlib.figure import Figure

    from cellbox_nb.report import _loss

    empty = dict(fit, history={k: np.full(3, np.nan) for k in fit["history"]}, best_epoch=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = _loss(Figure, empty)
    ax = fig.axes[0]
    assert ax.get_legend() is None and any(t.get_text() == "no epochs recorded" for t in ax.texts)
    assert _loss(Figure, fit).axes[0].get_legend() is not None
