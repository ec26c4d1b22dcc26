"""The bad-input corpus (tests/bad_inputs/cases.yaml): each broken input ends with its documented exit code and
exactly one ``error: ...`` line on stderr holding the expected fragment; no traceback, nothing on stdout, and no
file created or changed (the corpus is copied into a temporary folder first, and the whole folder is compared).

Cases run in-process through click's CliRunner; those marked ``subprocess: true`` also run as a real process.
"""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cellbox_nb._cli.main import cli

CORPUS = Path(__file__).parent / "bad_inputs"
CASES = yaml.safe_load((CORPUS / "cases.yaml").read_text(encoding="utf-8"))
NOT_COPIED = ("cases.yaml", "make_corpus.py", "__pycache__")
CLI = [sys.executable, "-m", "cellbox_nb._cli.main"]


def _prepare(tmp_path):
    """A fresh copy of the corpus ({dir}) and an empty folder ({tmp}) under tmp_path."""
    d, t = tmp_path / "corpus", tmp_path / "tmp"
    shutil.copytree(CORPUS, d, ignore=shutil.ignore_patterns(*NOT_COPIED))
    t.mkdir()
    return str(d), str(t)


def _fill(text, d, t):
    return text.replace("{dir}", d).replace("{tmp}", t)


def _snapshot(root):
    """Every file and folder under root with the hash of its bytes: detects a created, removed or changed file."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(folder, name), root)] = "dir"
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _check(case, code, stdout, stderr, d, t):
    message = _fill(case["message"], d, t)
    assert code == case["code"], f"{case['id']}: exit code {code}, expected {case['code']}; stderr: {stderr!r}"
    assert "Traceback" not in stderr and "Traceback" not in stdout, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"{case['id']}: expected one stderr line, got {lines!r}"
    assert lines[0].startswith("error: "), lines[0]
    assert message in lines[0], f"{case['id']}: {message!r} not in {lines[0]!r}"
    assert stdout == "", stdout


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input_in_process(case, tmp_path):
    d, t = _prepare(tmp_path)
    before = _snapshot(tmp_path)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)}
    try:
        res = CliRunner().invoke(cli, [_fill(a, d, t) for a in case["args"]], env={"CELLBOX_NB_DEBUG": None})
    finally:  # `train` installs its own handlers once the data are loaded; keep pytest's
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    _check(case, res.exit_code, res.stdout, res.stderr, d, t)
    assert _snapshot(tmp_path) == before, "a file was created, removed or changed"


SUBPROCESS_CASES = [c for c in CASES if c.get("subprocess")]


@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=[c["id"] for c in SUBPROCESS_CASES])
def test_bad_input_in_a_subprocess(case, tmp_path):
    d, t = _prepare(tmp_path)
    before = _snapshot(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "CELLBOX_NB_DEBUG"}
    res = subprocess.run(CLI + [_fill(a, d, t) for a in case["args"]], capture_output=True, text=True, env=env,
                         timeout=300)
    _check(case, res.returncode, res.stdout, res.stderr, d, t)
    assert _snapshot(tmp_path) == before, "a file was created, removed or changed"


def test_manifest_is_well_formed_and_uses_every_file():
    ids = [c["id"] for c in CASES]
    assert len(ids) >= 40 and len(set(ids)) == len(ids)
    assert len(SUBPROCESS_CASES) >= 3
    used = " ".join(" ".join(c["args"]) for c in CASES)
    controls = {"hdf5/good.h5", "hdf5/fit_good.h5", "cellbox/good", "sweep/good.yaml"}
    for c in CASES:
        assert set(c) <= {"id", "code", "args", "message", "subprocess"}, c
        assert c["code"] in (2, 3) and c["message"].strip() and "\n" not in c["message"], c
    for kind in ("network", "config", "hdf5", "cellbox", "sweep"):
        for entry in sorted((CORPUS / kind).iterdir()):
            rel = f"{kind}/{entry.name}"
            assert rel in controls or "{dir}/" + rel in used, f"{rel} is in the corpus but no case uses it"


def test_controls_are_valid():
    """The undamaged bases load, so each refusal above comes from its defect."""
    from cellbox_nb.data.load import load_data
    from cellbox_nb.fit.store import read_fit

    ds = load_data(str(CORPUS / "hdf5" / "good.h5"))
    assert (ds.M, ds.T, ds.n) == (3, 2, 3)
    fit = read_fit(CORPUS / "hdf5" / "fit_good.h5", with_checkpoint=True)
    assert fit["status"] == "running" and len(fit["history"]["epoch"]) == 2
    folder = load_data(str(CORPUS / "cellbox" / "good"))
    assert (folder.M, folder.T, folder.n) == (2, 1, 3)


@pytest.mark.parametrize("name", ["CELLBOX_NB_SCRATCH_KEEP_BYTES", "CELLBOX_NB_LOCKSTEP_BLOCK"])
def test_a_tuning_variable_that_is_not_an_integer(name, tmp_path):
    """A cellbox-nb tuning variable holding no integer: exit 2, one line naming the variable, no file written (it
    was "internal error: ValueError: invalid literal for int()", exit 1)."""
    env = {k: v for k, v in os.environ.items() if k != "CELLBOX_NB_DEBUG"}
    env[name] = "64MiB"
    out = tmp_path / "fit.h5"
    res = subprocess.run(CLI + ["train", "--network", "LI", "--out", str(out)], capture_output=True, text=True,
                         env=env, timeout=300)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and "Traceback" not in res.stderr and res.stdout == "", res.stderr
    assert lines == [f"error: environment variable {name}: expected an integer, got '64MiB'"], lines
    assert list(tmp_path.iterdir()) == []
