"""The on-disk kernel cache never serves a kernel built from older sources.

Numba checks a cached kernel against its own file only, while the machine code includes the small kernels it calls
from other files.  These tests run a copy of the package in subprocesses, edit one file of the copy, and check that
the cached kernels of the other files are rebuilt (cellbox_nb._jit.refresh_stale_cache)."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import cellbox_nb

CALL = r"""
import numpy as np
from cellbox_nb.core.forward import fixed_step_solve
W = np.array([[0.0, 0.5], [-0.7, 0.0]])
x = fixed_step_solve(W, np.ones(2), np.ones(2), np.array([0.3, -0.2]), 2.0, 20)
print(repr(float(x[0])), repr(float(x[1])))
"""


@pytest.fixture
def package_copy(tmp_path):
    src = os.path.dirname(cellbox_nb.__file__)
    dst = tmp_path / "pkg" / "cellbox_nb"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "CELLBOX_NB_CACHE")}
    env["PYTHONPATH"] = str(tmp_path / "pkg")
    env["CELLBOX_NB_TEST_CWD"] = str(tmp_path)  # run there: `python -c` puts the working directory first on sys.path
    return dst, env


def _run(code, env):
    code = "import cellbox_nb, sys; assert cellbox_nb.__file__.startswith(sys.argv[1]), cellbox_nb.__file__\n" + code
    out = subprocess.run([sys.executable, "-c", code, env["PYTHONPATH"]], env=env, cwd=env["CELLBOX_NB_TEST_CWD"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_edit_in_one_file_rebuilds_cached_callers(package_copy):
    """fixed_step_solve (forward.py) inlines the right-hand side (rhs.py).  Run it (cached), change rhs.py's decay
    term from d x to 2 d x, run it again in a new process: the result must be the new model's, equal to what the
    copy computes with its cache disabled (exact: the same compiled arithmetic), and differ from the first."""
    pkg, env = package_copy
    first = _run(CALL, env)
    assert _run(CALL, env) == first  # served from the cache, same sources: same bits
    rhs = pkg / "core" / "rhs.py"
    text = rhs.read_text()
    assert "out[i] = alpha[i] * tanh(z[i]) - d[i] * x[i]" in text
    rhs.write_text(text.replace("out[i] = alpha[i] * tanh(z[i]) - d[i] * x[i]",
                                "out[i] = alpha[i] * tanh(z[i]) - 2.0 * d[i] * x[i]"))
    after = _run(CALL, env)
    fresh = _run(CALL, {**env, "CELLBOX_NB_CACHE": "0"})
    assert after == fresh
    assert after != first
    a = np.array([float(v) for v in after.split()])
    b = np.array([float(v) for v in first.split()])
    assert np.max(np.abs(a - b)) > 1e-3  # a real change of the model, not rounding


def test_unchanged_sources_keep_the_cache(package_copy):
    """The check itself: with the hash recorded and nothing edited, the cached kernels stay (the second process
    loads fixed_step_solve from disk, compiles nothing); after an edit anywhere in the package (config.py here, a
    comment) they are deleted and the new hash is recorded."""
    pkg, env = package_copy
    stats = CALL + "print(fixed_step_solve.stats.cache_hits.total(), fixed_step_solve.stats.cache_misses.total())\n"
    first = _run(stats, env).split()
    assert first[2:] == ["0", "1"]  # compiled
    assert _run(stats, env).split()[2:] == ["1", "0"]  # loaded from the cache
    marker = _run("import cellbox_nb._jit as j; print(j._marker_path())", env).strip()
    recorded = open(marker).read()
    cached = [f for f in os.listdir(pkg / "core" / "__pycache__") if f.startswith("forward.") and f.endswith(".nbi")]
    assert cached
    (pkg / "config.py").write_text((pkg / "config.py").read_text() + "\n# edited\n")
    assert _run(stats, env).split()[2:] == ["0", "1"]  # compiled again
    assert open(marker).read() != recorded
