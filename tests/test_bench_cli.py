"""`cellbox-nb bench` (cli/bench.py), its problems and timings (cellbox_nb.benchmark) and the floor rates
(cellbox_nb.floor). No assertion on how long anything takes: only that the records are complete and consistent."""

import json
import os
import shutil
import subprocess
import sys

import numba
import numpy as np
import pytest
from click.testing import CliRunner

import cellbox_nb
from cellbox_nb import benchmark as bm
from cellbox_nb import floor
from cellbox_nb._cli.main import cli, main
from cellbox_nb.errors import ConfigError
from test_cli_data import assert_one_error_line  # tests/ is on sys.path (conftest.py)

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")

SIZE_KEYS = {"kind", "n", "M", "T", "backend", "precision", "adjoint", "adjoint_integrator", "rtol", "atol", "seed",
             "loss_kind", "threads",
             "threading_layer", "repeats", "problem_s", "solve_first_s", "grad_first_s", "kernels_compiled",
             "kernels_loaded", "solve_s", "solve_min_s", "solve_max_s", "grad_s", "grad_min_s", "grad_max_s", "ratio",
             "steps_per_cond", "rejected_per_cond", "fev_per_cond", "bwd_steps_per_cond", "bwd_rejected_per_cond",
             "bwd_fev_per_cond", "loss", "grad_W_norm", "loadavg_start", "loadavg_end", "device", "machine",
             "versions", "utc"}


def invoke(*args):
    return CliRunner().invoke(cli, ["bench", *args])


def test_json_lines_have_the_documented_keys_and_match_the_api():
    result = invoke("--sizes", "7,4:3:2", "--repeats", "2", "--json", "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    recs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["n"], r["M"], r["T"]) for r in recs] == [(7, 30, 5), (4, 3, 2)]
    for rec in recs:
        assert set(rec) == SIZE_KEYS
        assert rec["kind"] == "size" and rec["backend"] == "cpu" and rec["precision"] == "float64"
        assert (rec["rtol"], rec["atol"], rec["seed"], rec["loss_kind"]) == (1e-6, 1e-8, 0, "mae")
        assert rec["repeats"] == 2 and rec["threads"] == numba.get_num_threads()
        for key in ("solve_s", "grad_s", "solve_first_s", "grad_first_s", "problem_s"):
            assert rec[key] > 0
        assert rec["solve_min_s"] <= rec["solve_s"] <= rec["solve_max_s"]
        assert rec["grad_min_s"] <= rec["grad_s"] <= rec["grad_max_s"]
        assert rec["ratio"] == pytest.approx(rec["grad_s"] / rec["solve_s"])
        assert rec["kernels_compiled"] >= 0 and rec["kernels_loaded"] >= 0
        assert rec["steps_per_cond"] >= 1 and rec["bwd_steps_per_cond"] >= 1
        assert rec["fev_per_cond"] >= 6 * rec["steps_per_cond"]  # Tsit5: at least 6 new stages per step
        assert rec["bwd_fev_per_cond"] >= rec["bwd_steps_per_cond"]
        assert rec["machine"]["cpu_count"] == os.cpu_count()
        assert rec["versions"]["cellbox_nb"] == cellbox_nb.__version__
        assert rec["versions"]["numba"] == numba.__version__
        # the same problem through the public API gives exactly the recorded loss, gradient and step counts
        p = bm.make_problem(rec["n"], rec["M"], rec["T"], seed=0)
        loss, grads, info = cellbox_nb.loss_and_grad(p["W"], p["alpha"], p["U"], p["t"], p["Y"], loss="mae",
                                                     rtol=1e-6, atol=1e-8, full_output=True)
        assert rec["loss"] == loss
        assert rec["grad_W_norm"] == float(np.linalg.norm(grads["W"]))
        assert rec["bwd_steps_per_cond"] == float(info["stats"][:, 3].mean())
        _, finfo = cellbox_nb.solve(p["W"], p["alpha"], p["U"], p["t"], full_output=True)
        assert rec["steps_per_cond"] == float(finfo["stats"][:, 0].mean())


@pytest.mark.skipif(shutil.which("cellbox-nb") is None, reason="the cellbox-nb console script is not installed")
def test_console_script_prints_only_json_lines_on_stdout():
    res = subprocess.run([shutil.which("cellbox-nb"), "bench", "--sizes", "3:2:2,4:2:2", "--repeats", "1", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    recs = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["n"] for r in recs] == [3, 4] and all(set(r) == SIZE_KEYS for r in recs)
    assert "[bench] n=3 M=2 T=2: problem" in res.stderr


def test_table_output_and_threads():
    result = invoke("--sizes", "3:2:2", "--repeats", "1", "--threads", "1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("# ") and "cellbox_nb " + cellbox_nb.__version__ in lines[0]
    assert "1 threads" in lines[1]
    assert lines[2].split()[:5] == ["n", "M", "T", "solve", "s"]
    assert lines[3].split()[:3] == ["3", "2", "2"] and lines[3].split()[-1] == "1"
    assert "[bench] n=3 M=2 T=2: problem" in result.stderr


@pytest.mark.parametrize("sizes", ["8", "7,x", "7:0:3", "7:3", "-7", "", " , "])
def test_bad_sizes_give_exit_2_and_one_line(sizes):
    result = invoke("--sizes", sizes, "--json")
    assert_one_error_line(result, 2)
    assert result.stderr.startswith("error: --sizes: ")


@pytest.mark.parametrize("args", [["--threads", str(numba.config.NUMBA_NUM_THREADS + 1)],
                                  ["--precision", "float32"],
                                  ["--adjoint", "discrete", "--adjoint-integrator", "tsit5"]])
def test_bad_options_give_exit_2_and_one_line(args):
    assert_one_error_line(invoke("--sizes", "3:2:2", *args), 2)


def test_usage_errors_through_the_entry_point(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--repeats", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--repeats" in err[0]


def test_cuda_without_a_device_gives_exit_2():
    from cellbox_nb.cuda import cuda_available

    if cuda_available():
        pytest.skip("a CUDA device (or the simulator) is available here")
    result = invoke("--backend", "cuda", "--sizes", "7", "--json")
    assert_one_error_line(result, 2)
    assert "cuda" in result.stderr


def test_parse_sizes():
    assert bm.parse_sizes("1000, 7") == [(1000, 50, 5), (7, 30, 5)]
    assert bm.parse_sizes("7,5:4:3") == [(7, 30, 5), (5, 4, 3)]
    for bad in ("8", "0:1:1", "5:4", "a:b:c", ""):
        with pytest.raises(ConfigError):
            bm.parse_sizes(bad)


def test_bench_scripts_share_the_package_problems():
    sys.path.insert(0, BENCH_DIR)
    try:
        import common
        import problems
    finally:
        sys.path.remove(BENCH_DIR)
    assert problems.make_problem is bm.make_problem and problems.GRID == bm.GRID
    assert common.machine is bm.machine and common.cache_files is bm.cache_index_files
    assert problems.parse_sizes("19") == [(19, 120, 5)]
    with pytest.raises(SystemExit):
        problems.parse_sizes("8")


def test_problem_is_seeded_and_well_scaled(monkeypatch):
    a = bm.make_problem(6, 4, 3, seed=2)
    b = bm.make_problem(6, 4, 3, seed=2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    W = a["W"]
    assert np.max(np.abs(np.linalg.eigvals(W))) == pytest.approx(bm.RHO)
    assert np.all(np.diag(W) == 0) and np.all((W != 0).sum(axis=1) == bm.IN_EDGES)
    assert np.all((a["U"] != 0).sum(axis=1) >= 1) and np.all((a["U"] != 0).sum(axis=1) <= 2)
    assert np.array_equal(a["t"], 20.0 * np.arange(1, 4) / 3)
    monkeypatch.setattr(bm, "EIG_MAX_N", 5)  # above it, W's rows are scaled to absolute sum RHO instead
    W = bm.make_model(6, 4, 3)[0]
    assert np.allclose(np.abs(W).sum(axis=1), bm.RHO)


def test_floor_measures_every_figure():
    rec = floor.measure(grid=[(5, 3, 2)], square=20, tanh_size=1000, copy_mb=1, budget_s=0.01)
    assert rec["kind"] == "floor"
    assert [(g["n"], g["M"]) for g in rec["gemm"]] == [(5, 3)]
    assert (rec["gemm_square"]["n"], rec["gemm_square"]["M"]) == (20, 20)
    for g in rec["gemm"] + [rec["gemm_square"]] + rec["matvec_1thread"]:
        assert g["seconds"] > 0 and g["gflops"] > 0 and g["repeats"] >= 3
    assert rec["tanh"]["numpy_ns"] > 0 and rec["tanh"]["numba_libm_ns"] > 0
    assert rec["tanh"]["core_ns"] is None or rec["tanh"]["core_ns"] > 0
    assert rec["copy"]["size_mb"] == 1 and rec["copy"]["gbps"] > 0
    (per,) = rec["per_rhs"]
    assert (per["n"], per["M"]) == (5, 3)
    assert per["gemm_ns"] == pytest.approx(2 * 25 / rec["gemm"][0]["gflops"])
    assert per["matvec_1thread_ns"] > 0 and per["tanh_ns"] > 0
    json.dumps(rec, allow_nan=False)
