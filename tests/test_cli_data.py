"""The command line for the data layer: `networks`, `simulate`, exit codes and the one-line error contract.

Expectations: the README table (network sizes), read_dataset on the written file, and the exit codes of
DESIGN.md section 4 (0 ok, 1 internal, 2 usage/config, 3 input data, 4 numerical). Comparisons are exact.
"""

import json
import os
import shutil
import signal
import subprocess
import sys

import click
import numpy as np
import pytest
from click.testing import CliRunner

from cellbox_nb._cli._common import run_command
from cellbox_nb._cli.main import cli
from cellbox_nb.data.dataset import read_dataset
from cellbox_nb.errors import ConfigError, InputDataError, NumericalError

SIZES = {"LI": 7, "LL": 18, "CY": 6, "BF": 7, "BFC": 10, "TF": 8, "mCAD": 5, "VSC": 8, "HSC": 11, "GSD": 19}
SHARED_GSD = "/work/shared/data/beeline/Curated_GSD.csv"


def invoke(*args, env=None):
    return CliRunner().invoke(cli, list(args), env=env)


def assert_one_error_line(result, code):
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.startswith("cellbox-nb, version ")


def test_networks_table_and_json():
    result = invoke("networks")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 1 + len(SIZES)
    for line, (name, n) in zip(lines[1:], SIZES.items()):
        assert line.split()[:2] == [name, str(n)]
    result = invoke("networks", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)["networks"]
    assert {r["name"]: r["n"] for r in rows} == SIZES
    gsd = rows[-1]
    assert (gsd["edges"], gsd["positive"], gsd["negative"], gsd["alpha"]) == (79, 52, 27, 0.2)


def test_simulate_json_writes_a_readable_file(tmp_path):
    out = tmp_path / "data.h5"
    result = invoke("simulate", "--network", "li", "--conditions", "6", "--times", "4", "--tfinal", "10",
                    "--noise", "0.001", "--seed", "4", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    ds = read_dataset(out)
    assert summary["path"] == str(out) and summary["network"] == "LI" and summary["n"] == 7
    assert (summary["conditions"], summary["times"], summary["noise"], summary["seed"]) == (6, 4, 0.001, 4)
    assert ds.Y.shape == (6, 4, 7) and ds.t[-1] == 10.0
    assert (summary["y_min"], summary["y_max"]) == (float(ds.Y.min()), float(ds.Y.max()))
    assert ds.meta["seed"] == 4 and ds.meta["network"] == "LI"


def test_simulate_human_summary_on_stderr_and_overwrite(tmp_path):
    out = tmp_path / "d.h5"
    result = invoke("simulate", "--network", "random:6", "--conditions", "3", "--out", str(out))
    assert result.exit_code == 0 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "wrote" in result.stderr
    first = out.read_bytes()
    result = invoke("simulate", "--network", "CY", "--conditions", "3", "--out", str(out))
    assert_one_error_line(result, 2)
    assert "--overwrite" in result.stderr and out.read_bytes() == first
    result = invoke("simulate", "--network", "CY", "--conditions", "3", "--out", str(out), "--overwrite")
    assert result.exit_code == 0
    assert read_dataset(out).meta["network"] == "CY"


@pytest.mark.parametrize("args, code, phrase", [
    (["--network", "GDS"], 2, "did you mean GSD"),
    (["--network", "random:zero"], 2, "positive integer"),
    (["--network", SHARED_GSD], 3, "row labels differ"),
    (["--network", "missing/net.csv"], 3, "not found"),
    (["--network", "LI", "--max-targets", "9"], 2, "max_targets"),
])
def test_simulate_bad_inputs_give_one_line(tmp_path, args, code, phrase):
    out = tmp_path / "x.h5"
    result = invoke("simulate", *args, "--out", str(out))
    assert_one_error_line(result, code)
    assert phrase in result.stderr and not out.exists()


def test_simulate_bad_csv_in_tmp(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("Genes,a,b\na,0,1\nb,zero,0\n")
    result = invoke("simulate", "--network", str(bad), "--out", str(tmp_path / "x.h5"))
    assert_one_error_line(result, 3)
    assert "'zero' is not a number" in result.stderr


def test_simulate_missing_output_folder(tmp_path):
    result = invoke("simulate", "--network", "LI", "--out", str(tmp_path / "no" / "x.h5"))
    assert_one_error_line(result, 2)


@pytest.mark.parametrize("args", [["--conditions", "0"], ["--noise", "-1"], ["--tfinal", "0"],
                                  ["--method", "sobol"], ["--seed", "-2"], ["--bogus"]])
def test_bad_option_values_are_usage_errors(tmp_path, args):
    result = invoke("simulate", "--network", "LI", "--out", str(tmp_path / "x.h5"), *args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert not (tmp_path / "x.h5").exists()


def test_missing_required_options():
    assert invoke("simulate", "--network", "LI").exit_code == 2
    assert invoke("simulate", "--out", "x.h5").exit_code == 2


def _command(exc):
    @click.command()
    @run_command
    def boom():
        raise exc

    return boom


@pytest.mark.parametrize("exc, code", [(InputDataError("bad\ndata"), 3), (NumericalError("max steps"), 4),
                                       (RuntimeError("oops"), 1), (KeyError("k"), 1),
                                       (PermissionError(13, "Permission denied", "/x/out.h5"), 2),
                                       (OSError(28, "No space left on device"), 2), (MemoryError(), 1)])
def test_run_command_maps_exceptions_to_exit_codes(exc, code):
    result = CliRunner().invoke(_command(exc), [], env={"CELLBOX_NB_DEBUG": "0"})
    assert_one_error_line(result, code)
    if isinstance(exc, OSError):  # the file system's refusal, named, not an internal error
        assert "cannot write or read" in result.stderr and exc.strerror in result.stderr
    elif isinstance(exc, MemoryError):
        assert "out of memory" in result.stderr
    elif code == 1:
        assert "internal error" in result.stderr and "CELLBOX_NB_DEBUG=1" in result.stderr


def test_debug_env_prints_the_traceback():
    result = CliRunner().invoke(_command(RuntimeError("oops")), [], env={"CELLBOX_NB_DEBUG": "1"})
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1] == "error: internal error: RuntimeError: oops"


EXE = shutil.which("cellbox-nb")


@pytest.mark.skipif(EXE is None, reason="the cellbox-nb console script is not installed (pip install -e .)")
def test_console_script_in_a_subprocess(tmp_path):
    ok = subprocess.run([EXE, "networks", "--json"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and len(json.loads(ok.stdout)["networks"]) == 10
    bad = subprocess.run([EXE, "simulate", "--network", SHARED_GSD, "--out", str(tmp_path / "x.h5")],
                         capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k != "CELLBOX_NB_DEBUG"})
    assert bad.returncode == 3 and bad.stdout == ""
    assert len(bad.stderr.splitlines()) == 1 and bad.stderr.startswith("error: network file")
    assert "Traceback" not in bad.stderr


@pytest.mark.skipif(EXE is None, reason="the cellbox-nb console script is not installed (pip install -e .)")
def test_console_script_simulate_in_a_subprocess(tmp_path):
    out = tmp_path / "s.h5"
    run = subprocess.run([EXE, "simulate", "--network", "TF", "--conditions", "5", "--seed", "1", "--out", str(out),
                          "--json"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    ds = read_dataset(out)
    assert json.loads(run.stdout)["n"] == ds.n == 8
    assert np.all(np.count_nonzero(ds.U, axis=1) <= 2)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc (a folder no file can be made in)")
def test_an_unwritable_output_folder_is_exit_code_2(tmp_path):
    src = tmp_path / "s.h5"
    assert invoke("simulate", "--network", "CY", "--conditions", "2", "--out", str(src)).exit_code == 0
    result = invoke("simulate", "--network", "CY", "--conditions", "2", "--out", "/proc/cellbox_nb_test.h5")
    assert_one_error_line(result, 2)
    assert "cannot write or read" in result.stderr


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    """mkstemp's temporaries are 0600; the renamed results must get what a plain open under the umask gives, so a
    group-shared cluster folder stays readable (they were 0600 whatever the umask)."""
    old = os.umask(umask)
    try:
        out = tmp_path / "s.h5"
        assert invoke("simulate", "--network", "CY", "--conditions", "2", "--out", str(out)).exit_code == 0
    finally:
        os.umask(old)
    assert os.stat(out).st_mode & 0o777 == mode


@pytest.mark.skipif(EXE is None, reason="the cellbox-nb console script is not installed (pip install -e .)")
def test_no_arguments_print_the_help_and_option_errors_name_their_command():
    run = subprocess.run([EXE], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.startswith("Usage: cellbox-nb") and "train" in run.stdout
    bad = subprocess.run([EXE, "train", "--data"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "error: Option '--data' requires an argument. (see 'cellbox-nb train --help')")


def test_export_writes_all_files_or_none(tmp_path):
    """A file export cannot write (here metrics.json, which is a folder) leaves the folder as it was: no file of
    the export replaced or added (they used to be written one by one, so W.csv ... predictions.csv were there)."""
    fit = os.path.join(os.path.dirname(__file__), "bad_inputs", "hdf5", "fit_good.h5")
    out = tmp_path / "ex"
    (out / "metrics.json").mkdir(parents=True)
    (out / "W.csv").write_text("old\n")
    result = invoke("export", fit, "--csv", str(out))
    assert_one_error_line(result, 2)
    assert sorted(os.listdir(out)) == ["W.csv", "metrics.json"] and (out / "W.csv").read_text() == "old\n"
    (out / "metrics.json").rmdir()
    assert invoke("export", fit, "--csv", str(out)).exit_code == 0
    assert (out / "W.csv").read_text() != "old\n" and (out / "metrics.json").is_file()
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]


def test_mpi_abort_gives_the_command_lines_codes_and_lines(capsys):
    """abort_on_error (an error on one MPI rank ends the job): the exit code and one line as run_command gives
    them (an OSError is 2 naming the file, as without MPI); the errors all ranks raise together end rank 1 with
    their code and rank 0 alone reports them; an error during the set-up is agreed in settle (one collective)."""
    from cellbox_nb.errors import Interrupted
    from cellbox_nb.fit.mpi import Conditions, abort_on_error

    class Comm:
        def __init__(self, rank, others):
            self.rank, self.others = rank, others  # others: what the other rank sends to the allgather

        def Get_rank(self):
            return self.rank

        def Get_size(self):
            return 2

        def Abort(self, code):
            raise SystemExit(code)

        def allgather(self, value):
            return [value, self.others] if self.rank == 0 else [self.others, value]

    def ranks(rank=1, settled=True, others=(None, "d")):
        r = Conditions(Comm(rank, others))
        r.settled = settled
        return r

    for exc, code, text in [(OSError(28, "No space left on device", "fit.h5"), 2,
                             "cannot write or read 'fit.h5': No space left on device"),
                            (InputDataError("bad\ndata"), 3, "bad data"),
                            (RuntimeError("oops"), 1, "internal error: RuntimeError: oops")]:
        with pytest.raises(SystemExit) as stopped:
            with abort_on_error(ranks()):
                raise exc
        assert stopped.value.code == code
        assert capsys.readouterr().err == f"error: rank 1: {text}\n"
    for exc in (NumericalError("agreed"), Interrupted("stop")):
        with pytest.raises(type(exc)):  # rank 0 reports (run_command)
            with abort_on_error(ranks(rank=0)):
                raise exc
        with pytest.raises(SystemExit) as stopped:  # rank 1 ends with the code, silently
            with abort_on_error(ranks()):
                raise exc
        assert stopped.value.code == exc.exit_code and capsys.readouterr().err == ""
    # the set-up: every rank failed the same way (one line from rank 0, no rank named), or rank 1 alone
    for rank, others, err in [(0, ((2, "unknown config key 'x'"), None), "error: unknown config key 'x'\n"),
                              (1, ((2, "unknown config key 'x'"), None), ""),
                              (0, (None, "d"), "error: rank 0: unknown config key 'x'\n"),
                              (0, ((3, "other"), None), "error: rank 0: unknown config key 'x'\n"
                                                         "error: rank 1: other\n")]:
        with pytest.raises(SystemExit) as stopped:
            with abort_on_error(ranks(rank, settled=False, others=others)):
                raise ConfigError("unknown config key 'x'")
        assert stopped.value.code == 2 and capsys.readouterr().err == err
    root = ranks(0, settled=False, others=((3, "data 'x' not found"), None))
    with pytest.raises(SystemExit) as stopped:  # rank 0 did its set-up, rank 1 failed: rank 0 reports it
        with abort_on_error(root):
            root.settle(digest="d")
    assert stopped.value.code == 3 and capsys.readouterr().err == "error: rank 1: data 'x' not found\n"
    root = ranks(0, settled=False, others=(None, "other digest"))
    with pytest.raises(SystemExit) as stopped:  # the ranks read different data: agreed, one line
        with abort_on_error(root):
            root.settle(digest="d")
    assert stopped.value.code == 3 and capsys.readouterr().err.startswith("error: MPI ranks 0 and 1 read different")


def _python(code, **kw):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, **kw)


def test_the_command_line_loads_without_numba():
    """Importing the package and the command line does not import numba (PEP 562 attributes load the solver on
    first use): the ~0.3 s of that import used to be a window where Ctrl-C printed a traceback."""
    run = _python("import sys, cellbox_nb, cellbox_nb._cli.main; print('numba' in sys.modules); "
                  "from cellbox_nb import solve, loss_and_grad, SolveError; print('numba' in sys.modules, "
                  "solve.__module__, loss_and_grad.__module__, SolveError.__module__, 'solve' in dir(cellbox_nb))")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "True", "cellbox_nb.api", "cellbox_nb.api", "cellbox_nb.api", "True"]
    sub = _python("import cellbox_nb; print(cellbox_nb.config.LOCKSTEP_MIN_N, cellbox_nb.api.solve.__name__)")
    assert sub.stdout == "64 solve\n", sub.stderr  # submodules as attributes, as when the import loaded them all
    missing = _python("import cellbox_nb; cellbox_nb.no_such_name")
    assert missing.returncode == 1 and "AttributeError: module 'cellbox_nb' has no attribute 'no_such_name'" in \
        missing.stderr


def test_ctrl_c_while_the_command_line_starts_is_one_line_and_130():
    """Between the import of the command line and main(), SIGINT ends the process at once with one line (nothing
    is written yet); main() gives SIGINT back to Python; an inherited ignored SIGINT stays ignored."""
    dfl = dict(preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    script = "import sys; sys.argv[0] = '/usr/bin/cellbox-nb'; "  # as the console script starts
    kill = "import os, signal, time; os.kill(os.getpid(), signal.SIGINT); time.sleep(0.5); print('alive')"
    run = _python(script + "import cellbox_nb._cli; " + kill, **dfl)
    assert (run.returncode, run.stderr, run.stdout) == (130, "error: interrupted\n", "")
    ignored = _python(script + "import cellbox_nb._cli; " + kill,
                      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert (ignored.returncode, ignored.stdout) == (0, "alive\n"), ignored.stderr
    # once main.py is imported, and in any process that is not the console script, SIGINT is Python's
    check = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    for code in (script + "import cellbox_nb._cli.main; " + check, "import cellbox_nb._cli._common; " + check):
        after = _python(code, **dfl)
        assert after.stdout == "True\n", (code, after.stderr)
    caught = _python("import os, signal, cellbox_nb._cli._common\ntry:\n os.kill(os.getpid(), signal.SIGINT)\n"
                     " import time; time.sleep(0.5)\nexcept KeyboardInterrupt:\n print('caught')", **dfl)
    assert caught.stdout == "caught\n", caught.stderr


def test_an_output_path_that_is_a_symlink_keeps_the_link(tmp_path):
    """Writing through a symbolic link replaces its target and keeps the link, as a plain open would (the atomic
    rename used to replace the link by a plain file, leaving the target stale)."""
    real = tmp_path / "store" / "s.h5"
    real.parent.mkdir()
    link = tmp_path / "s.h5"
    assert invoke("simulate", "--network", "CY", "--conditions", "2", "--out", str(real)).exit_code == 0
    os.symlink(real, link)
    first = read_dataset(str(real))
    assert invoke("simulate", "--network", "CY", "--conditions", "3", "--out", str(link), "--overwrite").exit_code == 0
    assert os.path.islink(link) and os.readlink(link) == str(real)
    assert read_dataset(str(real)).U.shape[0] == 3 and first.U.shape[0] == 2
    assert sorted(os.listdir(real.parent)) == ["s.h5"]


def test_a_discarded_stale_file_that_is_a_link_removes_the_link_only(tmp_path):
    """FileSet.discard (an export's prune.csv of an earlier fit) removes a symbolic link itself, never the file it
    points to (which may be outside the folder); written files go through links and keep them."""
    from cellbox_nb.data.h5atomic import all_or_none

    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "prune.csv").write_text("keep\n")
    (shared / "W.csv").write_text("old\n")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(shared / "prune.csv", out / "prune.csv")
    os.symlink(shared / "W.csv", out / "W.csv")
    with all_or_none() as files:
        with open(files.reserve(out / "W.csv"), "w") as fh:
            fh.write("new\n")
        files.discard(out / "prune.csv")
    assert files.finals == [str(out / "W.csv")]  # as given, not the link's target
    assert sorted(os.listdir(out)) == ["W.csv"] and os.path.islink(out / "W.csv")
    assert (shared / "W.csv").read_text() == "new\n" and (shared / "prune.csv").read_text() == "keep\n"


def test_warnings_on_the_command_line_are_one_line():
    """A Python warning raised by a command is one `warning: ...` line on stderr (Python's default shows the
    source file, line and code: two lines, e.g. matplotlib's from report.py)."""
    code = ("import warnings\nfrom cellbox_nb._cli.main import cli, main\n@cli.command('warnme')\ndef warnme():\n"
            "    warnings.warn('first\\nsecond', RuntimeWarning)\nmain(['warnme'])")
    run = _python(code)
    assert run.returncode == 0 and run.stderr.splitlines() == ["warning: first second"], run.stderr


def test_usage_error_when_the_launcher_says_ranks_but_mpi_has_one(tmp_path):
    """A launcher variable saying several ranks (PMI_SIZE=2, as srun sets it) while MPI itself has one rank (no
    launcher, or another MPI's): a usage error of train is still one line and exit 2 (it was a traceback, exit 1)."""
    pytest.importorskip("mpi4py", reason="the MPI path needs mpi4py (pip install -e '.[test]')")
    env = {k: v for k, v in os.environ.items() if k != "CELLBOX_NB_DEBUG"}
    env["PMI_SIZE"] = "2"
    res = subprocess.run([sys.executable, "-m", "cellbox_nb._cli.main", "train", "--bogus"], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        "error: No such option '--bogus'. Did you mean '--out'? (see 'cellbox-nb train --help')"]
